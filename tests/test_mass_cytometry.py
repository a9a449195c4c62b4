"""Mass cytometry (CyTOF) files as labs have them: real files from ../shared/data/real/cytof.

Three whole-blood files (CytoNorm's example data, 1,000 events each): ion counts, no scatter, DNA
intercalator channels (Ir191/Ir193), CD45, CD3, CD4, CD8, CD25, FOXP3. Nobody gated them for us: the
checks are the ranges every immunologist expects of blood, and that the run says what it cannot do
(1,000 events hold a few FOXP3+ cells, too few to place CD25 among them) in one line instead of an
internal error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cytokit as ck
from cytokit import _keys as K
from cytokit.errors import CytokitError, StrategyError
from cytokit.gating import load_strategy
from cytokit.pipeline._choose import choose_strategy, file_markers

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
CYTOF = sorted((REAL / "cytof").glob("*.fcs")) if (REAL / "cytof").is_dir() else []
needs_cytof = pytest.mark.skipif(
    not CYTOF,
    reason=f"real CyTOF files not found in {REAL / 'cytof'} (a fresh clone has no ../shared)",
)


def _raw_and_transformed(path):
    adata = ck.read_fcs(path)
    raw = np.asarray(adata.X, dtype=float).copy()
    ck.pp.transform(adata)
    return adata, raw


@needs_cytof
def test_mass_channels_get_arcsinh_cofactor_5_by_default():
    """Ion counts are arcsinh(x / 5) under the default method (logicle is for fluorescence)."""
    adata, raw = _raw_and_transformed(CYTOF[0])
    j = list(adata.var_names).index("CD3")
    record = adata.uns[K.TRANSFORM]["CD3"]
    assert record["kind"] == "asinh" and record["cofactor"] == 5.0
    counted = raw[:, j] != 0
    np.testing.assert_allclose(
        adata.X[counted, j], np.arcsinh(raw[counted, j] / 5.0), rtol=1e-5, atol=1e-5
    )
    # the exact zeros (39 % of CD3 here) are spread over [-1, 0) ions as the instrument spreads
    # every other count over [c - 1, c): no spike of zero width at the negatives
    zeros = adata.X[~counted, j]
    assert (~counted).mean() > 0.2 and record.get("zeros_spread")
    assert zeros.min() >= np.arcsinh(-1 / 5.0) - 1e-6 and zeros.max() <= 0
    assert len(np.unique(zeros)) > 0.9 * len(zeros)
    again = ck.read_fcs(CYTOF[0])
    ck.pp.transform(again)
    np.testing.assert_array_equal(again.X[:, j], adata.X[:, j])  # seeded: the same every run
    # the cells' CD3 spans several natural-log units, not logicle's 0..1
    assert np.percentile(adata.X[:, j], 99) > 3.0


@needs_cytof
def test_fluorescence_files_keep_logicle():
    donor = REAL / "Donor1.fcs"
    adata = ck.read_fcs(donor)
    ck.pp.compensate(adata)
    ck.pp.transform(adata)
    kinds = {v["kind"] for k, v in adata.uns[K.TRANSFORM].items() if k in ("CD3", "CD4", "CD8")}
    assert kinds == {"logicle"}


@needs_cytof
@pytest.mark.parametrize(
    "text, name", [("Ir191Di", "DNA1"), ("193Ir_DNA2", "DNA2"), ("DNA-1", "DNA1")]
)
def test_dna_intercalator_channels_are_recognised(text, name):
    assert ck.panels.canonical_marker(text) == name
    assert ck.panels.canonical_marker("Pt195Di") is None  # platinum is also used for barcodes


@needs_cytof
def test_a_cytof_file_gets_the_cytof_strategy():
    strategy, why = choose_strategy(file_markers(CYTOF[0]))
    assert strategy == "treg_cytof" and "mass" in why
    assert choose_strategy(file_markers(REAL / "Donor1.fcs"))[0] != "treg_cytof"


@needs_cytof
@pytest.mark.parametrize("path", CYTOF, ids=[p.stem[6:13] for p in CYTOF])
def test_cytof_lineage_gates_on_real_blood(path):
    adata, _ = _raw_and_transformed(path)
    # ~150 CD4 T cells: too few for the CD25 x FOXP3 mixture that guides the FOXP3 valley, so FOXP3+
    # is placed on FOXP3 alone (and says so); its 3-8 events are then too few to place CD25 within
    with pytest.raises(CytokitError, match=r"only \d+ events in 'FOXP3\+'"):
        ck.gate(adata, strategy="treg_cytof")
    counts = adata.uns[K.GATING]["counts"]
    assert "guide skipped" in adata.uns[K.GATING]["gates"]["FOXP3+"]["message"]

    def pct(name, parent):
        return 100.0 * counts[name] / (adata.n_obs if parent == "root" else counts[parent])

    # files exported from a cell gate: nearly every event is a DNA+ single cell; in whole blood the
    # CD45-bright leukocytes are a minority beside the granulocytes, 50-85 % of them T cells,
    # CD4 40-75 % and CD8 15-45 % of T cells
    assert pct("cells", "root") > 90 and pct("singlets", "cells") > 90
    assert 20 < pct("lymphocytes", "singlets") < 70
    assert 50 < pct("CD3", "live") < 85
    assert 40 < pct("CD4", "CD3") < 75
    assert 15 < pct("CD8", "CD3") < 45
    assert 1 < pct("FOXP3+", "CD4") < 12  # FOXP3+ regulatory T cells, a few % of CD4 in blood
    pops = adata.obsm[K.POPULATIONS]
    assert not (pops["CD4"] & pops["CD8"]).any()
    gates = adata.uns[K.GATING]["gates"]
    assert gates["CD3"]["status"] == "ok" and gates["CD4"]["status"] == "ok"


@needs_cytof
def test_the_flow_strategy_on_a_cytof_file_is_a_one_line_error(tmp_path):
    """No scatter: the sample fails naming the missing marker, no internal error (the GatingML of a
    sample without a placed gate was one)."""
    result = ck.run(
        CYTOF[0].parent, tmp_path / "out", strategy="treg", jobs=1, cluster=False, figures=False
    )
    messages = result.qc["message"].astype(str)
    assert result.qc["status"].eq("failed").all()
    assert messages.str.contains("FSC-A|FSC-H not found", regex=False).all()
    assert not messages.str.contains("internal error").any()


# ------------------------------------------------------------------------------------- extends
def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_extends_replaces_gates_where_they_stand_and_keeps_the_rest(tmp_path):
    base = load_strategy("treg")
    child = _write(
        tmp_path / "mine.yaml",
        """
name: mine
extends: treg
gates:
  - id: CD3
    parent: live
    dims: [CD3]
    method: otsu
    params: {side: high}
  - id: CD3bright
    parent: CD3
    dims: [CD3]
    method: tail
    params: {side: high, k: 2.0}
    required: false
""",
    )
    strat = load_strategy(child)
    assert strat.name == "mine"
    assert strat.node("CD3").method == "otsu" and base.node("CD3").method == "valley"
    assert strat.names.index("CD3") == base.names.index("CD3")  # replaced where it stood
    assert "CD3bright" in strat.names
    assert set(base.names) < set(strat.names)  # base gates, its includes and populations kept
    assert strat.node("Teff").expr == base.node("Teff").expr
    assert base.path in strat.sources  # the cache key covers the base file


def test_extends_errors_name_the_file(tmp_path):
    missing = _write(tmp_path / "a.yaml", "extends: no_such_strategy\ngates: []\n")
    with pytest.raises(StrategyError, match="no_such_strategy"):
        load_strategy(missing)
    _write(tmp_path / "b.yaml", "extends: c.yaml\ngates: []\n")
    loop = _write(tmp_path / "c.yaml", "extends: b.yaml\ngates: []\n")
    with pytest.raises(StrategyError, match="loops"):
        load_strategy(loop)


@needs_cytof
def test_cytof_gates_reproduce_in_flowkit():
    """The exported GatingML (arcsinh dims, DNA and CD45 gates) gives FlowKit cytokit's counts."""
    import io

    import flowkit as fk

    from cytokit.gating import export_gatingml

    adata, _ = _raw_and_transformed(CYTOF[1])
    with pytest.raises(CytokitError):
        ck.gate(adata, strategy="treg_cytof")
    strategy = fk.parse_gating_xml(io.BytesIO(export_gatingml(adata)))
    results = strategy.gate_sample(fk.Sample(str(CYTOF[1])))
    pops = adata.obsm[K.POPULATIONS]
    for name in ("cells", "singlets", "lymphocytes", "CD3", "CD4", "CD8"):
        assert results.get_gate_count(name) == int(pops[name].sum()), name


@pytest.mark.parametrize(
    "name, mass",
    [
        ("Nd142Di", True), ("142Nd_CD19", True), ("Y89Di", True), ("Ir191Di", True),
        ("V450-A", False), ("R660-A", False), ("B530-A", False), ("Y586-A", False),  # lasers, nm
        ("FL1-A", False), ("Event_length", False),
    ],
)  # fmt: skip
def test_isotopes_are_told_from_fluorescence_detectors(name, mass):
    """Fluorescence detectors named by laser and wavelength keep logicle (and cofactor 150)."""
    from cytokit.pp._transform import is_mass_channel

    assert is_mass_channel(name) is mass


def test_simulated_mass_cytometry_lineage_gates_find_the_true_cd4_cells(tmp_path):
    """The same simulated blood as CyTOF ion counts: recognised as mass cytometry, DNA/CD45 gates in
    place of scatter (doublets: the valley below the second DNA peak), and the CD4 gate holds the true
    CD4 T cells: >= 95 % of its events are CD4 T cells, >= 95 % of those kept by time QC are in it."""
    from cytokit.datasets import simulate_sample

    sim = simulate_sample(20_000, seed=11, platform="mass")
    path = sim.write(tmp_path / "P01_D0.fcs")
    assert "Ir191Di" in sim.channels and not any(c.startswith(("FSC", "SSC")) for c in sim.channels)
    assert choose_strategy(file_markers(path))[0] == "treg_cytof"
    adata = ck.read_fcs(path)
    ck.pp.transform(adata)
    assert adata.uns[K.TRANSFORM]["CD4"]["kind"] == "asinh"
    try:
        ck.gate(adata, strategy="treg_cytof")
    except CytokitError:
        pass  # the lineage gates are what is scored here
    labels = np.asarray(sim.label_names, dtype=object)[sim.labels]
    cd4_t = np.isin(
        labels, ["CD4_naive", "CD4_memory", "CD4_activated", "Treg_naive", "Treg_memory"]
    )
    pops = adata.obsm[K.POPULATIONS]
    gated, kept = pops["CD4"].to_numpy(), pops["time_ok"].to_numpy()
    assert (cd4_t & gated).sum() >= 0.95 * gated.sum()
    assert (cd4_t & gated).sum() >= 0.95 * (cd4_t & kept).sum()
    assert (labels[pops["singlets"].to_numpy()] == "doublet").mean() < 0.02


def test_readouts_on_simulated_ion_counts_stay_near_the_truth(tmp_path):
    """The treg strategy's rules on arcsinh ion counts (background of a few ions, spread zeros): the
    Ki67+ and HLA-DR+ % of Teff and the Treg % of CD4 of a simulated CyTOF sample near the truth."""
    from cytokit import readouts
    from cytokit.datasets import simulate_sample

    sim = simulate_sample(30_000, seed=3, platform="mass")
    adata = ck.read_fcs(sim.write(tmp_path / "P01_D0.fcs"))
    ck.pp.transform(adata)
    ck.gate(adata, strategy="treg_cytof")
    values = readouts.sample_readouts(adata)
    for name, tolerance in (("teff_ki67_pct", 2.5), ("teff_hladr_pct", 2.5), ("treg_pct_cd4", 1.5)):
        assert abs(values[name] - sim.truth[name]) < tolerance, name
