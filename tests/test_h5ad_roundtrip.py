"""A gated sample written to .h5ad and read back (a notebook user's first save) gives the same results.

h5py stores neither None nor lists of dicts and gives lists back as numpy arrays and dicts in
alphabetical order: every reader of ``uns`` (readouts, GatingML export, the gating figure, priors)
must work on what comes back, not only on what ``gate()`` left in memory.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import cytokit as ck
from cytokit import pl, readouts
from cytokit.gating import apply_gatingml, consensus_prior, export_gatingml, gate
from cytokit.gating._strategy import load_strategy, population_rows
from cytokit.io import read_fcs


def _load(path) -> ad.AnnData:
    adata = read_fcs(path)
    ck.pp.compensate(adata)
    ck.pp.transform(adata)
    return adata


def _roundtrip(adata: ad.AnnData, tmp_path, name: str = "sample.h5ad") -> ad.AnnData:
    path = tmp_path / name
    adata.write_h5ad(path)
    return ad.read_h5ad(path)


def _same_readouts(a: ad.AnnData, b: ad.AnnData) -> None:
    pd.testing.assert_frame_equal(readouts.population_table(a), readouts.population_table(b))
    before, after = pd.Series(readouts.sample_readouts(a)), pd.Series(readouts.sample_readouts(b))
    pd.testing.assert_series_equal(before, after)


@pytest.fixture(scope="module")
def files(small_trial):
    return sorted(small_trial.glob("*.fcs"))


# treg_surface places its Treg gate with the corner method (diagnostics of its own), treg with valleys
@pytest.mark.parametrize("strategy", ["treg", "treg_surface"])
def test_gated_sample_survives_h5ad(files, tmp_path, strategy):
    adata = _load(files[0])
    gate(adata, strategy)
    back = _roundtrip(adata, tmp_path)

    # the tree in strategy order (an h5py group of names would come back alphabetical)
    rows = population_rows(back.uns["gating"])
    assert rows == population_rows(adata.uns["gating"])
    assert [r["name"] for r in rows] == [n.id for n in load_strategy(strategy).nodes]
    assert rows[0]["parent"] is None and any(r.get("expr") for r in rows)
    _same_readouts(adata, back)
    assert export_gatingml(back) == export_gatingml(adata)  # same gates, ids and custom_info
    assert pl.gating_path_png(back) == pl.gating_path_png(adata)  # drawn, and drawn the same
    pl.gating_path(back)
    pl.strategy_diagram(back.uns["gating"]["populations"])


def test_read_back_gating_is_a_usable_prior(files, tmp_path):
    first = _load(files[0])
    gate(first)
    back = _roundtrip(first, tmp_path)
    other = _load(files[1])
    from_memory = gate(other, prior=consensus_prior([first.uns["gating"]]), copy=True)
    from_file = gate(other, prior=consensus_prior([back.uns["gating"]]), copy=True)
    pd.testing.assert_frame_equal(from_memory.obsm["populations"], from_file.obsm["populations"])
    gates = from_file.uns["gating"]["gates"]
    assert gates["CD3"]["gate"]["low"] == from_memory.uns["gating"]["gates"]["CD3"]["gate"]["low"]


def test_partly_gated_and_gatingml_applied_samples_survive_h5ad(files, tmp_path):
    # a required gate fails (no FOXP3 stain): the populations above it are kept, with the error
    full = _load(files[0])
    adata = full[:, full.var_names != "FOXP3"].copy()
    with pytest.raises(ck.errors.CytokitError, match="FOXP3"):
        gate(adata)
    back = _roundtrip(adata, tmp_path, "partial.h5ad")
    assert str(back.uns["gating"]["error"]) == adata.uns["gating"]["error"]
    _same_readouts(adata, back)

    # gates from a GatingML file (FlowKit geometry in params, open bounds) applied to the raw file
    placed = _load(files[1])
    gate(placed)
    xml = tmp_path / "gates.xml"
    xml.write_bytes(export_gatingml(placed))
    applied = apply_gatingml(read_fcs(files[1]), xml, copy=True)
    back = _roundtrip(applied, tmp_path, "applied.h5ad")
    assert population_rows(back.uns["gating"]) == population_rows(applied.uns["gating"])
    _same_readouts(applied, back)
    geometry = back.uns["gating"]["gates"]["CD3"]["params"]["geometry"]
    assert np.isnan(np.asarray(geometry["high"], dtype=float)).all()  # CD3+: open above
