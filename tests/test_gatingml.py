"""GatingML 2.0 export and import: FlowKit on the raw file reproduces cytokit's gating, and back."""

from __future__ import annotations

import io
from pathlib import Path

import anndata as ad
import flowkit as fk
import numpy as np
import pandas as pd
import pytest

import cytokit as ck
from cytokit.errors import GatingError, MarkerError, StrategyError
from cytokit.gating._gates import EllipseGate, PolygonGate, RangeGate
from cytokit.gating._gatingml import (
    _xml_id,
    apply_gatingml,
    export_gatingml,
    load_gatingml,
    to_gating_strategy,
)
from cytokit.gating._strategy import parse_expr, population_rows
from cytokit.io import read_fcs, write_fcs

CHANNELS = ["FSC-A", "SSC-A", "FL1-A", "FL2-A", "FL3-A", "FL4-A", "Time"]
STAINS = ["", "", "CD3 FITC", "CD4 PE", "CD25 APC", "FOXP3 BV421", ""]
FLUOR = CHANNELS[2:6]


# ------------------------------------------------------------------------------------------ fixtures
def _simulate(n: int, seed: int) -> tuple[np.ndarray, pd.DataFrame]:
    """Raw (spilled) events of a small T-cell sample, and the spillover matrix that mixed them."""
    rng = np.random.default_rng(seed)
    lymph = rng.random(n) < 0.8
    cd3 = lymph & (rng.random(n) < 0.7)
    cd4 = cd3 & (rng.random(n) < 0.65)
    foxp3 = cd4 & (rng.random(n) < 0.1)
    cd25 = foxp3 & (rng.random(n) < 0.85) | cd4 & (rng.random(n) < 0.05)
    fsc = np.where(lymph, rng.normal(60e3, 8e3, n), rng.normal(20e3, 8e3, n))
    ssc = np.where(lymph, rng.normal(20e3, 5e3, n), rng.normal(60e3, 20e3, n))

    def marker(pos, level):
        return np.where(pos, rng.lognormal(np.log(level), 0.35, n), rng.normal(0, 150, n))

    true = np.column_stack(
        [marker(cd3, 8e3), marker(cd4, 12e3), marker(cd25, 3e3), marker(foxp3, 5e3)]
    )
    spill = pd.DataFrame(np.eye(4), index=FLUOR, columns=FLUOR)
    for source, detector, value in [("FL1-A", "FL2-A", 0.18), ("FL3-A", "FL4-A", 0.07)]:
        spill.loc[source, detector] = value
    spill.loc["FL2-A", "FL3-A"] = 0.03
    fluor = true @ spill.to_numpy()
    time = np.sort(rng.uniform(0, 500, n))
    events = np.column_stack([np.clip(fsc, 0, 262143), np.clip(ssc, 0, 262143), fluor, time])
    return events.astype(np.float32), spill


def _preprocess(adata: ad.AnnData, *, asinh: str | None = None, user: bool = False) -> ad.AnnData:
    """The pipeline's preprocessing: compensate (file or user matrix), logicle (asinh for one channel)."""
    adata = adata.copy()
    ck.pp.compensate(adata, adata.uns["spillover"].copy() if user else None)
    if asinh is not None:
        ck.pp.transform(adata, "arcsinh", cofactor=150.0, channels=[_var(adata, asinh)])
    ck.pp.transform(adata)
    return adata


def _var(adata: ad.AnnData, channel: str) -> str:
    return str(adata.var_names[list(adata.var["channel"]).index(channel)])


def _place(adata: ad.AnnData) -> None:
    """Gates in transformed units, placed from this sample's data as the engine would record them."""
    v = {c: _var(adata, c) for c in CHANNELS}
    X = pd.DataFrame(adata.X, columns=adata.var_names)
    q = X.quantile([0.02, 0.5, 0.98])
    gates = {
        "lymphocytes": PolygonGate(
            (v["FSC-A"], v["SSC-A"]),
            ((0.15, 0.0), (0.35, 0.0), (0.36, 0.12), (0.25, 0.16), (0.15, 0.13)),
        ),
        "CD3": RangeGate((v["FL1-A"],), (_valley(X[v["FL1-A"]]),), (None,)),
        "CD4": RangeGate((v["FL2-A"],), (_valley(X[v["FL2-A"]]),), (None,)),
        "FOXP3+": RangeGate((v["FL4-A"],), (_valley(X[v["FL4-A"]]),), (None,)),
        "Treg": RangeGate(
            (v["FL3-A"], v["FL4-A"]), (_valley(X[v["FL3-A"]]), _valley(X[v["FL4-A"]])), (None, None)
        ),
        "blob": EllipseGate(
            (v["FL3-A"], v["FL4-A"]),
            (float(q[v["FL3-A"]][0.98]), float(q[v["FL4-A"]][0.98])),
            ((0.01, 0.002), (0.002, 0.02)),
            1.0,
        ),
    }
    parents = {"lymphocytes": "root", "CD3": "lymphocytes", "CD4": "CD3", "FOXP3+": "CD4"}
    parents |= {"Treg": "CD4", "blob": "CD4"}
    outside = {"lymphocytes": "non-lymphocyte", "CD3": "B/NK"}
    pops = [{"name": g, "parent": parents[g], "label": True} for g in gates]
    for pop in pops:
        if pop["name"] in outside:
            pop["outside"] = outside[pop["name"]]
    pops += [
        {"name": "Teff", "parent": "CD4", "label": True, "expr": "CD4 and not FOXP3+"},
        {"name": "odd", "parent": "CD3", "label": False, "expr": "CD4 and not (Treg or blob)"},
    ]
    records = {k: {"gate": g.to_dict(), "method": "test", "status": "ok"} for k, g in gates.items()}
    records |= {p["name"]: {"gate": {}, "method": "boolean", "status": "ok"} for p in pops[-2:]}
    adata.uns["gating"] = {"strategy": "test", "populations": pops, "gates": records}


def _valley(x: pd.Series) -> float:
    """Lowest histogram bin between the two main modes (good enough for the simulated markers)."""
    hist, edges = np.histogram(x, bins=60)
    peaks = np.argsort(hist)[::-1]
    a = peaks[0]
    b = next(p for p in peaks if abs(p - a) > 8)
    lo, hi = sorted((a, b))
    return float(edges[lo + np.argmin(hist[lo:hi])])


def _cytokit_masks(adata: ad.AnnData) -> dict[str, np.ndarray]:
    """Memberships as cytokit computes them: gate.apply on transformed X within the parent."""
    from cytokit.gating._gates import gate_from_dict

    masks: dict[str, np.ndarray] = {"root": np.ones(adata.n_obs, dtype=bool)}

    def ev(tree):
        if tree[0] == "name":
            return masks[tree[1]]
        if tree[0] == "not":
            return ~ev(tree[1])
        return (np.logical_and if tree[0] == "and" else np.logical_or)(ev(tree[1]), ev(tree[2]))

    gating = adata.uns["gating"]
    for pop in population_rows(gating):
        if pop.get("expr"):
            inside = ev(parse_expr(pop["expr"]))
        else:
            gate = gate_from_dict(gating["gates"][pop["name"]]["gate"])
            inside = gate.apply(adata[:, list(gate.dims)].X)
        masks[pop["name"]] = inside & masks[pop["parent"] or "root"]
    del masks["root"]
    return masks


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """(path of the raw FCS file, preprocessed and gated AnnData)."""
    path = tmp_path_factory.mktemp("gml") / "S01_D0.fcs"
    events, spill = _simulate(20000, seed=7)
    write_fcs(path, events, CHANNELS, STAINS, spillover=spill)
    adata = _preprocess(read_fcs(path))
    _place(adata)
    return path, adata


def _flowkit_counts(xml: bytes, path) -> tuple[fk.GatingStrategy, dict[str, int]]:
    strategy = fk.parse_gating_xml(io.BytesIO(xml))
    results = strategy.gate_sample(fk.Sample(str(path)))
    return strategy, {name: results.get_gate_count(name, p) for name, p in strategy.get_gate_ids()}


# --------------------------------------------------------------------------------------------- export
def test_flowkit_on_raw_file_reproduces_counts(sample):
    path, adata = sample
    xml = export_gatingml(adata)
    assert xml.startswith(b"<?xml")
    _, counts = _flowkit_counts(xml, path)
    ours = {k: int(m.sum()) for k, m in _cytokit_masks(adata).items()}
    ids = {name: _xml_id(name, set()) for name in ours}
    for name in ("CD4", "Treg", "Teff", "lymphocytes", "CD3", "FOXP3+", "blob", "odd"):
        assert ours[name] > 20, f"{name} too small to test"
        assert abs(counts[ids[name]] - ours[name]) <= 0.01 * ours[name], name


def test_export_writes_without_importing_flowkit(sample, tmp_path):
    """A batch worker exports every sample: FlowKit (a second or more to import) stays out of it."""
    import pickle
    import subprocess
    import sys

    _, adata = sample
    pickled = tmp_path / "adata.pkl"
    pickled.write_bytes(pickle.dumps(adata))
    code = (
        "import pickle, sys; from cytokit.gating import export_gatingml; "
        f"xml = export_gatingml(pickle.loads(open({str(pickled)!r}, 'rb').read())); "
        "assert xml.startswith(b'<?xml'); print('flowkit' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("seed", "naming", "drift"),
    [(11, "bd", "strong"), (23, "beckman", "mild")],
    ids=["bd", "beckman"],
)
def test_pipeline_gates_reproduced_by_flowkit(tmp_path, seed, naming, drift):
    """read_fcs -> compensate -> transform -> gate(treg) -> export; FlowKit on the raw file agrees."""
    from cytokit.datasets import simulate_sample

    sim = simulate_sample(20000, seed=seed, day=8, naming=naming, drift=drift)
    path = sim.write(tmp_path / f"P01_D8_{naming}.fcs")
    adata = read_fcs(path)
    ck.pp.compensate(adata)
    ck.pp.transform(adata)
    ck.gate(adata, strategy="treg")
    _, counts = _flowkit_counts(export_gatingml(adata), path)
    pops = adata.obsm["populations"]
    for name in ("CD4", "Treg", "Teff"):
        ours = int(pops[name].sum())
        assert ours > 100 and abs(counts[name] - ours) <= 0.01 * ours, name
    ids = {_xml_id(p, set()): p for p in pops.columns}
    assert set(counts) <= set(ids)  # gate ids are the population names (XML-safe)
    for gid, count in counts.items():
        assert abs(count - pops[ids[gid]].sum()) <= max(0.01 * pops[ids[gid]].sum(), 1), gid
    # and back: the exported file applied to the file as read gives the engine's populations
    xml_path = tmp_path / "gates.xml"
    export_gatingml(adata, xml_path)
    back = apply_gatingml(read_fcs(path), xml_path, copy=True)
    for name in back.obsm["populations"]:
        assert (back.obsm["populations"][name] != pops[name]).sum() <= 0.001 * len(pops), name
    engine, again = adata.obs["population"].astype(str), back.obs["population"].astype(str)
    named = engine.isin(pops.columns)  # events the engine labels with a population (not "debris")
    assert (engine[named] == again[named]).mean() > 0.999


def test_round_trip_ids_and_coordinates(sample, tmp_path):
    _, adata = sample
    out = tmp_path / "gates.xml"
    xml = export_gatingml(adata, out)
    assert out.read_bytes() == xml
    strategy = fk.parse_gating_xml(str(out))
    names = {name for name, _ in strategy.get_gate_ids()}
    assert {"lymphocytes", "CD3", "CD4", "FOXP3pos", "Treg", "Teff", "blob", "odd"} <= names
    placed = adata.uns["gating"]["gates"]
    treg = strategy.get_gate("Treg")
    assert [d.id for d in treg.dimensions] == ["FL3-A", "FL4-A"]  # $PnN, not marker names
    assert [d.min for d in treg.dimensions] == pytest.approx(
        placed["Treg"]["gate"]["low"], abs=1e-12
    )
    assert all(d.compensation_ref == "FCS" for d in treg.dimensions)
    poly = strategy.get_gate("lymphocytes")
    assert np.allclose(poly.vertices, placed["lymphocytes"]["gate"]["vertices"])
    assert all(d.compensation_ref == "uncompensated" for d in poly.dimensions)
    blob = strategy.get_gate("blob")
    assert np.allclose(blob.coordinates, placed["blob"]["gate"]["mean"])
    assert np.allclose(blob.covariance_matrix, placed["blob"]["gate"]["covariance"])
    assert strategy.get_parent_gate_id("Treg")[0] == "CD4"
    # Teff = "CD4 and not FOXP3+" under CD4: the reference to its own parent is implied
    teff = strategy.get_gate("Teff")
    assert strategy.get_parent_gate_id("Teff")[0] == "CD4"
    assert teff.type == "not" and [r["ref"] for r in teff.gate_refs] == ["FOXP3pos"]
    odd = strategy.get_gate("odd")  # nested expression: a helper gate for (Treg or blob)
    assert odd.type == "and"
    assert [(r["ref"], r["complement"]) for r in odd.gate_refs] == [("CD4", False), ("odd_1", True)]
    assert strategy.get_gate("odd_1").type == "or"
    xform = strategy.get_transform(treg.dimensions[0].transformation_ref)
    recorded = adata.uns["transform"][_var(adata, "FL3-A")]
    assert isinstance(xform, fk.transforms.LogicleTransform)
    assert (xform.param_t, xform.param_w, xform.param_m) == (
        recorded["T"],
        recorded["W"],
        recorded["M"],
    )


def test_asinh_and_user_matrix(sample):
    path, _ = sample
    other = _preprocess(read_fcs(path), asinh="FL3-A", user=True)  # CD25 on asinh(x/150)
    assert other.uns["compensation"]["source"] == "user"
    _place(other)
    xml = export_gatingml(other)
    strategy, counts = _flowkit_counts(xml, path)
    assert list(strategy.comp_matrices) == ["cytokit_compensation"]
    cd25 = strategy.get_gate("Treg").dimensions[0]
    assert cd25.compensation_ref == "cytokit_compensation"
    assert isinstance(strategy.get_transform(cd25.transformation_ref), fk.transforms.AsinhTransform)
    # asinh(x/c) is FlowKit's fasinh up to a factor (1 with M = 1/ln10): coordinates are unchanged
    assert cd25.min == pytest.approx(
        other.uns["gating"]["gates"]["Treg"]["gate"]["low"][0], rel=1e-12
    )
    for name, mask in _cytokit_masks(other).items():
        gid = _xml_id(name, set())
        assert abs(counts[gid] - mask.sum()) <= max(0.01 * mask.sum(), 1), name


def test_failed_gate_and_its_children_are_left_out(sample):
    _, adata = sample
    other = adata.copy()
    other.uns["gating"] = {**adata.uns["gating"], "gates": dict(adata.uns["gating"]["gates"])}
    other.uns["gating"]["gates"]["CD4"] = {"gate": {}, "status": "failed", "message": "no valley"}
    names = {n for n, _ in to_gating_strategy(other).get_gate_ids()}
    assert names == {"lymphocytes", "CD3"}


def test_skipped_pass_through_gate_hands_its_children_to_its_parent(sample):
    _, adata = sample
    other = adata.copy()
    gating = other.uns["gating"] = {
        **adata.uns["gating"],
        "gates": dict(adata.uns["gating"]["gates"]),
    }
    gating["gates"]["lymphocytes"] = {"gate": {}, "status": "skipped", "message": "no SSC-A"}
    gating["counts"] = {"lymphocytes": other.n_obs}  # kept: its population is all parent events
    strategy = to_gating_strategy(other)
    names = {n for n, _ in strategy.get_gate_ids()}
    assert "lymphocytes" not in names and {"CD3", "CD4", "Treg", "Teff"} <= names
    assert strategy.find_matching_gate_paths("CD3") == [("root",)]


def test_export_errors_name_the_problem(sample):
    _, adata = sample
    bare = adata.copy()
    del bare.uns["gating"]
    with pytest.raises(StrategyError, match="no placed gates"):
        export_gatingml(bare)
    missing = adata[:, [v for v in adata.var_names if v != _var(adata, "FL4-A")]].copy()
    with pytest.raises(MarkerError, match=r"^S01_D0.fcs: gate '(FOXP3\+|Treg|blob)' needs"):
        export_gatingml(missing)


def test_xml_ids_are_valid_and_unique():
    taken: set[str] = set()
    ids = [_xml_id(n, taken) for n in ("FOXP3+", "B/NK", "DN/DP T", "CD45RA-", "1st", "B/NK")]
    assert ids == ["FOXP3pos", "B_NK", "DN_DP_T", "CD45RAneg", "_1st", "B_NK_2"]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("CD4 and not FOXP3+", ("not", ("name", "FOXP3+"))),
        ("CD3 or Treg", True),  # the parent's events: no gate of its own
        ("not CD4", False),
        ("(CD4 or A) and (B or not CD3)", ("name", "B")),
        ("A and not (B or CD4)", False),
    ],
)
def test_references_to_ancestors_fold_away(expr, expected):
    from cytokit.gating._gatingml import _simplify

    assert _simplify(parse_expr(expr), {"CD3", "CD4"}) == expected


# --------------------------------------------------------------------------------------------- import
@pytest.mark.parametrize("preprocessed", [True, False], ids=["preprocessed", "as_read"])
def test_apply_exported_gates_matches_cytokit(sample, tmp_path, preprocessed):
    path, adata = sample
    xml_path = tmp_path / "gates.xml"
    export_gatingml(adata, xml_path)
    target = adata.copy() if preprocessed else read_fcs(path)
    assert apply_gatingml(target, xml_path) is None
    pops = target.obsm["populations"]
    expected = _cytokit_masks(adata)
    assert list(pops.columns) == list(expected)  # cytokit's names back (FOXP3+), no helper gates
    for name, mask in expected.items():
        assert (pops[name].to_numpy() != mask).sum() <= max(0.001 * mask.sum(), 2), name
    gating = target.uns["gating"]
    assert gating["counts"]["Treg"] == pops["Treg"].sum()
    rows = {p["name"]: p for p in population_rows(gating)}
    assert rows["Treg"]["parent"] == "CD4" and rows["lymphocytes"]["parent"] is None
    assert rows["Teff"]["expr"] == "not FOXP3+" and rows["odd"]["label"] is False
    shape = gating["gates"]["Treg"]["params"]["geometry"]
    assert shape["dims"] == ["FL3-A", "FL4-A"] and shape["transforms"][0].startswith("logicle")
    assert shape["low"] == pytest.approx(adata.uns["gating"]["gates"]["Treg"]["gate"]["low"])
    # labels as the engine gives them: deepest labelled population, else the gate's outside label
    label = target.obs["population"].to_numpy()
    assert target.obs["population"].dtype == "category"
    assert set(label[~pops["lymphocytes"].to_numpy()]) == {"non-lymphocyte"}
    assert set(label[(pops["lymphocytes"] & ~pops["CD3"]).to_numpy()]) == {"B/NK"}
    assert set(label[(pops["Treg"] & ~pops["blob"]).to_numpy()]) == {"Treg"}
    assert "odd" not in set(label)  # label: false


def test_gate_added_to_an_exported_file_is_kept(sample, tmp_path):
    path, adata = sample
    xml = export_gatingml(adata).decode()
    added = (
        '<gating:RectangleGate gating:id="CD3bright" gating:parent_id="CD3">'
        '<gating:dimension gating:compensation-ref="FCS" gating:min="12000">'
        '<data-type:fcs-dimension data-type:name="FL1-A"/></gating:dimension>'
        "</gating:RectangleGate></gating:Gating-ML>"
    )
    edited = tmp_path / "edited.xml"
    edited.write_text(xml.replace("</gating:Gating-ML>", added))
    gated = apply_gatingml(read_fcs(path), edited, copy=True)
    pops = gated.obsm["populations"]
    assert "CD3bright" in pops and "odd_1" not in pops  # the helper gate stays hidden
    assert pops.loc[pops["CD3bright"], "CD3"].all() and 0 < pops["CD3bright"].sum()
    row = next(p for p in population_rows(gated.uns["gating"]) if p["name"] == "CD3bright")
    assert row["parent"] == "CD3" and row["label"] is True


def test_apply_copy_and_key_added(sample, tmp_path):
    path, adata = sample
    xml_path = tmp_path / "gates.xml"
    export_gatingml(adata, xml_path)
    raw = read_fcs(path)
    gated = apply_gatingml(raw, xml_path, key_added="byog", copy=True)
    assert "byog" in gated.obs and "byog" not in raw.obs and "populations" not in raw.obsm


def test_apply_missing_channel_names_gate_and_file(sample, tmp_path):
    path, adata = sample
    xml_path = tmp_path / "gates.xml"
    export_gatingml(adata, xml_path)
    raw = read_fcs(path)
    raw = raw[:, [v for v in raw.var_names if raw.var.loc[v, "channel"] != "FL3-A"]].copy()
    with pytest.raises(
        MarkerError, match=r"S01_D0.fcs: gate '(Treg|blob)' of gates.xml needs .*FL3-A"
    ):
        apply_gatingml(raw, xml_path)


def test_flowkit_failure_is_a_one_line_gating_error(sample):
    class Broken(fk.GatingStrategy):
        def gate_sample(self, sample, cache_events=False, verbose=False):
            raise ValueError("matrix detectors missing\nsecond line")

    path, _ = sample
    with pytest.raises(
        GatingError, match=r"^S01_D0.fcs: GatingStrategy could not be applied: matrix"
    ) as err:
        apply_gatingml(read_fcs(path), Broken())
    assert "\n" not in str(err.value)


def test_load_errors(tmp_path):
    with pytest.raises(StrategyError, match="not found"):
        load_gatingml(tmp_path / "absent.xml")
    bad = tmp_path / "bad.xml"
    bad.write_text("<not-gatingml/>")
    with pytest.raises(StrategyError, match=r"^bad\.xml: "):
        load_gatingml(bad)


def test_flowjo_workspace_import(sample, tmp_path):
    """A .wsp (polygon; rectangle on a Comp- channel, FlowKit #265) is read and applied like GatingML."""
    path, _ = sample
    session = fk.Session(fcs_samples=[fk.Sample(str(path))])
    xform = fk.transforms.LogicleTransform(262144.0, 0.6, 4.5, 0.0)
    session.add_transform("logicle", xform)
    dims = [fk.Dimension("FSC-A"), fk.Dimension("SSC-A")]
    session.add_gate(
        fk.gates.PolygonGate("Lymph", dims, [[3e4, 0], [1e5, 0], [1e5, 4e4], [3e4, 4e4]]), ("root",)
    )
    spill = read_fcs(path).uns["spillover"]
    session.add_comp_matrix("spill", fk.Matrix(spill.to_numpy(), list(spill.columns)))
    cd4 = fk.Dimension(
        "FL2-A", compensation_ref="spill", transformation_ref="logicle", range_min=0.5
    )
    session.add_gate(fk.gates.RectangleGate("CD4hi", [cd4]), ("root", "Lymph"))
    wsp = tmp_path / "gates.wsp"
    with open(wsp, "wb") as fh:
        session.export_wsp(fh, "All Samples")
    gated = apply_gatingml(read_fcs(path), wsp, copy=True)
    session.analyze_samples(use_mp=False)
    for name in ("Lymph", "CD4hi"):
        expected = session.get_gate_membership(session.get_sample_ids()[0], name)
        assert np.array_equal(gated.obsm["populations"][name].to_numpy(), expected), name


# ------------------------------------------------------------------------------- real instruments
REAL_FILES = [
    "Fortessa/FCS_3.0_Fortessa_PBS_Specimen_001_A1_A01.fcs",  # $SPILLOVER: compensation_ref="FCS"
    "HTS_BD_LSR-II/HTS_BD_LSR_II_Mixed_Specimen_001_D6_D06.fcs",
    "FACSCaliburHTS/Sample_Well_A02.fcs",  # log-amplified integer channels
    "MiltenyiBiotec/FCS2.0/EY_2013-07-19_PBS_FCS_2.0_Custom_Without_Add_Well_A1.001.fcs",
    "cyflow_cube_8/cyflow_cube_8.fcs",
]


@pytest.mark.parametrize("name", REAL_FILES, ids=lambda n: n.split("/")[0])
def test_real_instrument_files(name, tmp_path):
    """Chained thresholds on real files: FlowKit on the raw file and apply_gatingml agree exactly."""
    fcsparser = pytest.importorskip("fcsparser")
    path = Path(fcsparser.__file__).parent / "tests" / "data" / "FlowCytometers" / name
    if not path.is_file():
        pytest.skip(f"{path} not shipped with this fcsparser")
    adata = read_fcs(path)
    if "spillover" in adata.uns:
        ck.pp.compensate(adata)
    ck.pp.transform(adata)
    X = np.asarray(adata.X, dtype=float)
    inside, pops, gates, parent = np.ones(adata.n_obs, bool), [], {}, "root"
    channels = list(adata.var["channel"])
    chosen = [v for v, c in zip(adata.var_names, channels, strict=True) if "time" not in c.lower()]
    for var in chosen[-6:]:  # fluorescence where the file has it
        j = list(adata.var_names).index(var)
        values = np.unique(X[inside, j])
        k = len(values) // 2
        cut = float(values[k - 1] + values[k]) / 2  # between two data values, as a valley is
        gates[f"g{len(pops)}"] = {
            "gate": RangeGate((var,), (cut,), (None,)).to_dict(),
            "status": "ok",
        }
        pops.append({"name": f"g{len(pops)}", "parent": parent})
        parent, inside = pops[-1]["name"], inside & (X[:, j] >= cut)
    adata.uns["gating"] = {"strategy": "t", "populations": pops, "gates": gates}
    xml_path = tmp_path / "g.xml"
    xml = export_gatingml(adata, xml_path)
    if "compensation" in adata.uns:  # the file's own matrix is referenced, not copied
        assert b'compensation-ref="FCS"' in xml and b"spectrumMatrix" not in xml
    _, counts = _flowkit_counts(xml, path)
    assert counts[parent] == inside.sum() > 0
    back = apply_gatingml(adata, xml_path, copy=True)
    assert np.array_equal(back.obsm["populations"][parent].to_numpy(), inside)
