"""GatingML 2.0 export and import: FlowKit on the raw file reproduces cytokit's gating, and back."""

from __future__ import annotations

import io

import anndata as ad
import flowkit as fk
import numpy as np
import pandas as pd
import pytest

from cytokit.errors import MarkerError, StrategyError
from cytokit.gating._gates import EllipseGate, PolygonGate, RangeGate
from cytokit.gating._gatingml import (
    _xml_id,
    apply_gatingml,
    export_gatingml,
    load_gatingml,
    to_gating_strategy,
)
from cytokit.gating._strategy import parse_expr
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
    spill.loc["FL1-A", "FL2-A"], spill.loc["FL3-A", "FL4-A"], spill.loc["FL2-A", "FL3-A"] = (
        0.18,
        0.07,
        0.03,
    )
    fluor = true @ spill.to_numpy()
    time = np.sort(rng.uniform(0, 500, n))
    events = np.column_stack([np.clip(fsc, 0, 262143), np.clip(ssc, 0, 262143), fluor, time])
    return events.astype(np.float32), spill


def _preprocess(adata: ad.AnnData, *, asinh: str | None = None) -> ad.AnnData:
    """Compensate with the file's matrix, logicle (or asinh for one channel) fluorescence, linear rest."""
    from flowkit import transforms as fkt

    adata = adata.copy()
    spill = adata.uns["spillover"]
    idx = [list(adata.var["channel"]).index(c) for c in spill.columns]
    adata.X[:, idx] = adata.X[:, idx] @ np.linalg.inv(spill.to_numpy())
    adata.uns["compensation"] = {"source": "FCS", "matrix": spill}
    params = {}
    for j, (var, channel) in enumerate(zip(adata.var_names, adata.var["channel"], strict=True)):
        if channel == asinh:
            p = {"kind": "asinh", "cofactor": 150.0}
            adata.X[:, j] = np.arcsinh(adata.X[:, j] / 150.0)
        elif channel in FLUOR:
            p = {"kind": "logicle", "T": 262144.0, "W": 0.6, "M": 4.5, "A": 0.0}
            adata.X[:, j] = fkt.LogicleTransform(262144.0, 0.6, 4.5, 0.0).apply(adata.X[:, j])
        else:
            top = 262144.0 if channel != "Time" else 500.0
            p = {"kind": "linear", "T": top, "A": 0.0}
            adata.X[:, j] = adata.X[:, j] / top
        params[var] = p
    adata.uns["transform"] = params
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
    pops = [{"name": g, "parent": parents[g], "label": True} for g in gates]
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
    for pop in gating["populations"]:
        if pop.get("expr"):
            inside = ev(parse_expr(pop["expr"]))
        else:
            gate = gate_from_dict(gating["gates"][pop["name"]]["gate"])
            inside = gate.apply(adata[:, list(gate.dims)].X)
        masks[pop["name"]] = inside & masks[pop["parent"]]
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
    assert isinstance(xform, fk.transforms.LogicleTransform) and xform.param_w == 0.6


def test_asinh_and_user_matrix(sample):
    path, _ = sample
    raw = read_fcs(path)
    other = _preprocess(raw, asinh="FL3-A")  # CD25 on asinh(x/150)
    _place(other)
    spill = other.uns["compensation"]["matrix"]
    other.uns["compensation"] = {"source": "user", "matrix": spill}
    xml = export_gatingml(other)
    strategy, counts = _flowkit_counts(xml, path)
    assert list(strategy.comp_matrices) == ["cytokit_compensation"]
    cd25 = strategy.get_gate("Treg").dimensions[0]
    assert cd25.compensation_ref == "cytokit_compensation"
    assert isinstance(strategy.get_transform(cd25.transformation_ref), fk.transforms.AsinhTransform)
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


# --------------------------------------------------------------------------------------------- import
@pytest.mark.parametrize("preprocessed", [True, False], ids=["preprocessed", "as_read"])
def test_apply_exported_gates_matches_cytokit(sample, tmp_path, preprocessed):
    path, adata = sample
    xml_path = tmp_path / "gates.xml"
    export_gatingml(adata, xml_path)
    target = adata.copy() if preprocessed else read_fcs(path)
    assert apply_gatingml(target, xml_path) is None
    pops = target.obsm["populations"]
    for name, mask in _cytokit_masks(adata).items():
        got = pops[_xml_id(name, set())].to_numpy()
        assert (got != mask).sum() <= max(0.001 * mask.sum(), 2), name
    gating = target.uns["gating"]
    parents = {p["name"]: p["parent"] for p in gating["populations"]}
    assert parents["Treg"] == "CD4" and parents["lymphocytes"] is None
    teff = next(p for p in gating["populations"] if p["name"] == "Teff")
    assert teff["boolean"] == "not FOXP3pos"
    assert gating["gates"]["Treg"]["gate"]["kind"] == "range"
    label = target.obs["population"]
    assert label.dtype == "category"
    assert (label == "ungated").sum() == (~pops["lymphocytes"]).sum()
    deepest = pops["Treg"] & ~pops["blob"] & ~pops["odd"] & ~pops["Teff"]
    assert set(label[deepest.to_numpy()]) == {"Treg"}


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


def test_load_errors(tmp_path):
    with pytest.raises(StrategyError, match="not found"):
        load_gatingml(tmp_path / "absent.xml")
    bad = tmp_path / "bad.xml"
    bad.write_text("<not-gatingml/>")
    with pytest.raises(StrategyError, match=r"^bad\.xml: "):
        load_gatingml(bad)


def test_flowjo_workspace_import(sample, tmp_path):
    """A .wsp written by FlowKit (rectangle + polygon gates) is read and applied like GatingML."""
    path, _ = sample
    session = fk.Session(fcs_samples=[fk.Sample(str(path))])
    xform = fk.transforms.LogicleTransform(262144.0, 0.6, 4.5, 0.0)
    session.add_transform("logicle", xform)
    dims = [fk.Dimension("FSC-A"), fk.Dimension("SSC-A")]
    session.add_gate(
        fk.gates.PolygonGate("Lymph", dims, [[3e4, 0], [1e5, 0], [1e5, 4e4], [3e4, 4e4]]), ("root",)
    )
    cd4 = fk.Dimension(
        "FL2-A", compensation_ref="uncompensated", transformation_ref="logicle", range_min=0.5
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
