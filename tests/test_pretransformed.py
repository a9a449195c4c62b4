"""Files that hold fluorescence already transformed (flowCore ``write.FCS`` after ``transform``, FlowJo's
transformed exports): neither compensated nor transformed again, gated as the raw file would be."""

from __future__ import annotations

import io

import numpy as np
import pytest

import cytokit as ck
from cytokit import _keys as K
from cytokit.datasets import simulate_sample
from cytokit.gating import export_gatingml, gate
from cytokit.io import write_fcs
from cytokit.pp import pretransformed
from cytokit.pp._transform import linear_kind

DECADES = 4.5  # flowCore's logicle (M = 4.5) writes fluorescence as decades 0..4.5


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(raw path, raw preprocessed AnnData, sample writer): the writer makes a pre-transformed twin."""
    folder = tmp_path_factory.mktemp("pretransformed")
    sim = simulate_sample(20_000, seed=31)
    raw = sim.write(folder / "raw.fcs")
    adata = ck.read_fcs(raw)
    ck.pp.compensate(adata)
    ck.pp.transform(adata)

    def twin(name: str, keywords: dict | None = None):
        events = np.asarray(ck.read_fcs(raw).X, dtype=np.float32).copy()
        fluor = [
            j for j in range(adata.n_vars) if not linear_kind(adata.var.iloc[j], adata.var_names[j])
        ]
        events[:, fluor] = np.asarray(adata.X, dtype=np.float32)[:, fluor] * DECADES
        ranges = [float(r) for r in adata.var[K.RANGE]]  # the instrument's 18-bit scale, as written
        return write_fcs(folder / name, events, list(sim.channels), list(sim.stains),
                         spillover=sim.spillover, keywords=keywords or {}, ranges=ranges)  # fmt: skip

    return raw, adata, twin, fluor_names(adata)


def fluor_names(adata) -> list[str]:
    return [v for v in adata.var_names if not linear_kind(adata.var.loc[v], v)]


def test_raw_files_are_not_taken_for_transformed_ones(files):
    raw, *_ = files
    assert pretransformed(ck.read_fcs(raw)) == {}


def test_transformed_values_are_scaled_not_compensated_or_transformed_again(files):
    *_, twin, fluor = files
    pre = ck.read_fcs(twin("pre.fcs"))
    before = np.asarray(pre.X).copy()
    ck.pp.compensate(pre)
    assert K.COMPENSATION not in pre.uns  # GatingML then applies no matrix to the file's values
    np.testing.assert_array_equal(np.asarray(pre.X), before)
    ck.pp.transform(pre)
    tops = {pre.uns[K.TRANSFORM][v]["T"] for v in fluor}
    assert len(tops) == 1  # one scale for the whole file, as it was written
    top = tops.pop()
    j = [list(pre.var_names).index(v) for v in fluor]
    np.testing.assert_allclose(np.asarray(pre.X)[:, j], before[:, j] / top, rtol=1e-6)
    assert 0.75 < np.abs(np.asarray(pre.X)[:, j]).max() <= 1.0  # about 0..1, as logicle gives


def test_flowcore_range_keyword_gives_the_scale_and_the_raw_files_gates(files):
    _, adata, twin, fluor = files
    numbers = {str(c): i + 1 for i, c in enumerate(adata.var[K.CHANNEL])}
    keywords = {f"FLOWCORE_$P{numbers[adata.var.loc[v, K.CHANNEL]]}RMAX": DECADES for v in fluor}
    pre = ck.read_fcs(twin("flowcore.fcs", {**keywords, "TRANSFORMATION": "custom"}))
    ck.pp.compensate(pre)
    ck.pp.transform(pre)
    np.testing.assert_allclose(pre[:, fluor].X, adata[:, fluor].X, atol=1e-5)
    ours, theirs = gate(pre, copy=True), gate(adata, copy=True)
    for pop in ("CD4", "Treg", "Teff"):
        a = np.asarray(ours.obsm[K.POPULATIONS][pop], bool)
        b = np.asarray(theirs.obsm[K.POPULATIONS][pop], bool)
        assert b.sum() > 50 and (a != b).mean() < 0.001, pop


def test_gatingml_of_a_transformed_file_reproduces_counts_in_flowkit(files):
    fk = pytest.importorskip("flowkit")  # the export check needs FlowKit (a declared dependency)
    twin = files[2]
    path = twin("pre_gml.fcs")
    pre = ck.read_fcs(path)
    ck.pp.compensate(pre)
    ck.pp.transform(pre)
    gate(pre)
    strategy = fk.parse_gating_xml(io.BytesIO(export_gatingml(pre)))
    results = strategy.gate_sample(fk.Sample(str(path)))
    counts = {name: results.get_gate_count(name, p) for name, p in strategy.get_gate_ids()}
    for pop in ("CD4", "Treg"):
        n = int(np.asarray(pre.obsm[K.POPULATIONS][pop]).sum())
        assert abs(counts[pop] - n) <= 0.01 * n, (pop, counts[pop], n)
