"""Placements set from outside a sample's fit: a reviewer's thresholds and whole gates, control wells."""

from __future__ import annotations

import numpy as np
import pytest
from test_gating_engine import synthetic_sample

from cytokit import _keys as K
from cytokit.errors import GatingError
from cytokit.gating import gate, gate_from_dict
from cytokit.gating._strategy import parse_expr, population_rows


def _names(tree) -> set[str]:
    return {tree[1]} if tree[0] == "name" else set().union(*(_names(t) for t in tree[1:]))


def _placed(adata, name: str):
    """The gate placed for ``name`` as an object (open bounds None: NaN in uns never compares equal)."""
    g = adata.uns[K.GATING]["gates"].get(name, {}).get("gate")
    return gate_from_dict(g) if g else None


def _descendants(adata, name: str) -> set[str]:
    """``name`` and every population below it, defined from it (boolean expressions) or placed on it."""
    pops = population_rows(adata.uns[K.GATING])
    gates = adata.uns[K.GATING]["gates"]
    needs = {p["name"]: {p["parent"]} | (_names(parse_expr(p["expr"])) if p.get("expr") else set())
             for p in pops}  # fmt: skip
    for gid, rec in gates.items():  # populations a placement reads (within, from, reference)
        params = rec.get("params") or {}
        for b in [params, *(params.get("bounds") or {}).values()]:
            needs.setdefault(gid, set()).update(
                str(b[k])
                for k in ("within", "from", "reference")
                if isinstance(b, dict) and b.get(k)
            )
    out, changed = {name}, True
    while changed:
        new = {n for n, refs in needs.items() if refs & out and n not in out}
        out |= new
        changed = bool(new)
    return out


@pytest.fixture(scope="module")
def plain():
    adata = synthetic_sample(8000, seed=3)
    gate(adata)
    return adata


def test_threshold_override_changes_the_gate_and_its_descendants_only(plain):
    before = plain.obsm[K.POPULATIONS]
    cd25 = plain[:, "CD25"].X.ravel()
    # a reviewer who finds the CD25 cut too low (the automatic gate may be a box or the diagonal
    # polygon of the FOXP3/CD25/CD127 discriminant: the reviewer's cut applies to either)
    value = float(np.quantile(cd25[before["Treg"].to_numpy()], 0.2)) + 1e-5  # not on an event
    fixed = gate(plain, thresholds={("Treg", "CD25"): value}, copy=True)

    rec = fixed.uns[K.GATING]["gates"]["Treg"]
    assert rec["status"] == "manual"
    g = gate_from_dict(rec["gate"])
    j = list(g.dims).index("CD25")
    if rec["gate"]["kind"] == "range":
        assert g.low[j] == pytest.approx(value)
    else:
        assert min(v[j] for v in g.vertices) == pytest.approx(value)
    after = fixed.obsm[K.POPULATIONS]
    # exactly the Tregs of the automatic gate that lie below the reviewer's cut are gone
    lost = before["Treg"].to_numpy() & ~after["Treg"].to_numpy()
    assert lost.sum() > 0
    # (an event on the polygon's diagonal edge may flip with the edge's rounding when it is cut)
    assert (cd25[lost] >= value).sum() <= 2 and np.mean(cd25[lost] < value) > 0.98
    assert not (after["Treg"].to_numpy() & ~before["Treg"].to_numpy()).any()
    below = _descendants(plain, "Treg")
    for name in before.columns:
        if name not in below:  # every population outside the Treg subtree is untouched
            assert (before[name] == after[name]).all(), name
            assert _placed(fixed, name) == _placed(plain, name), name
    parents = {p["name"]: p["parent"] for p in population_rows(fixed.uns[K.GATING])}
    for name in below - {"Treg"}:  # functional subsets follow the corrected Tregs
        if name in after and parents[name] == "Treg":
            assert not (after[name] & ~after["Treg"]).any(), name
    assert (fixed.obs[K.POPULATION] == "Treg").sum() == after["Treg"].sum()


def test_whole_gate_override_replaces_the_placement(plain):
    box = {"kind": "range", "dims": ["CD25", "FOXP3"], "low": [0.5, 0.45], "high": [None, None]}
    fixed = gate(plain, gates={"Treg": {"gate": box, "note": "reviewed on P01_D8"}}, copy=True)
    rec = fixed.uns[K.GATING]["gates"]["Treg"]
    assert rec["status"] == "manual" and "reviewed on P01_D8" in rec["message"]
    X = np.column_stack([plain[:, "CD25"].X.ravel(), plain[:, "FOXP3"].X.ravel()])
    cd4 = fixed.obsm[K.POPULATIONS]["CD4"].to_numpy()
    expected = cd4 & (X[:, 0] >= 0.5) & (X[:, 1] >= 0.45)
    assert (fixed.obsm[K.POPULATIONS]["Treg"].to_numpy() == expected).all()


def test_control_status_is_recorded(plain):
    fixed = gate(
        plain,
        thresholds={("Treg_Ki67pos", "Ki67"): {"value": 0.5, "status": "control", "note": "FMO"}},
        copy=True,
    )
    rec = fixed.uns[K.GATING]["gates"]["Treg_Ki67pos"]
    assert rec["status"] == "control" and rec["gate"]["low"] == [0.5]
    treg, ki67 = fixed.obsm[K.POPULATIONS]["Treg"], fixed.obsm[K.POPULATIONS]["Treg_Ki67pos"]
    values = plain[:, "Ki67"].X.ravel()
    assert (ki67.to_numpy() == (treg.to_numpy() & (values >= 0.5))).all()


@pytest.mark.parametrize(
    ("kw", "text"),
    [
        ({"thresholds": {("NoSuchGate", "CD25"): 0.4}}, "NoSuchGate"),
        ({"thresholds": {("Treg", "CD3"): 0.4}}, "no threshold on 'CD3'"),
        ({"thresholds": {("Treg", "CD25"): "high"}}, "not a number"),
        ({"gates": {"Treg": {"kind": "blob"}}}, "not a valid gate"),
    ],
)
def test_bad_override_is_a_gating_error(plain, kw, text):
    with pytest.raises(GatingError, match=text):
        gate(plain, copy=True, **kw)


def test_manual_gate_is_labelled_in_the_gating_figure(plain):
    from cytokit import pl

    fixed = gate(plain, thresholds={("Treg", "CD25"): 0.6}, copy=True)
    titles = [panel["title"] for panel in pl.gating_panels(fixed)]
    assert any(t.startswith("Treg:") and "[manual]" in t for t in titles), titles
    assert not any("[manual]" in t for t in titles if not t.startswith("Treg:"))
