"""``refine:`` draws a population counted on several markers as a diagonal polygon on two of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cytokit as ck
from cytokit import _keys as K
from cytokit.datasets import _biology as bio
from cytokit.datasets import simulate_sample
from cytokit.gating import gate, gate_from_dict

SHIPPED = Path(__file__).resolve().parents[1] / "gating"


def _refined_strategy(tmp_path: Path) -> Path:
    text = (SHIPPED / "treg.yaml").read_text()
    old = "        FOXP3: {from: FOXP3+, side: high}\n    expect: [0.5, 40]"
    assert old in text
    text = text.replace(old, "        FOXP3: {from: FOXP3+, side: high}\n      refine: FOXP3+\n"
                        "    expect: [0.5, 40]")  # fmt: skip
    text = text.replace("include: [shared/", f"include: [{SHIPPED}/shared/").replace(
        ", shared/", f", {SHIPPED}/shared/"
    )
    path = tmp_path / "treg_refined.yaml"
    path.write_text(text)
    return path


def _f1(called: np.ndarray, true: np.ndarray) -> float:
    return 2 * (called & true).sum() / (called.sum() + true.sum())


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    # a drawn structure whose naive Tregs have dim FOXP3 and activated Tconv FOXP3lo CD25+: the box
    # of a FOXP3 and a CD25 threshold misses the first and keeps the second
    tmp = tmp_path_factory.mktemp("refine")
    sim = simulate_sample(30000, seed=6402, patient=0, day=0, drift="mild", realism="drawn")
    ad = ck.read_fcs(sim.write(tmp / "s.fcs"))
    ck.pp.compensate(ad)
    ck.pp.transform(ad)
    true = np.isin(np.asarray(bio.LABELS)[sim.labels], bio.TREG_LABELS)
    return ad, true, _refined_strategy(tmp)


def test_refined_treg_gate_is_a_polygon_that_classifies_events_better(drawn):
    ad, true, strategy = drawn
    box = gate(ad, copy=True)
    poly = gate(ad, strategy, copy=True)
    rec = poly.uns[K.GATING]["gates"]["Treg"]
    assert rec["gate"]["kind"] == "polygon" and rec["details"]["refined"]["from"] == "FOXP3+"
    assert box.uns[K.GATING]["gates"]["Treg"]["gate"]["kind"] == "range"
    cd4 = poly.obsm[K.POPULATIONS]["CD4"].to_numpy()
    f1_box = _f1(box.obsm[K.POPULATIONS]["Treg"].to_numpy(), true & cd4)
    f1_poly = _f1(poly.obsm[K.POPULATIONS]["Treg"].to_numpy(), true & cd4)
    assert f1_poly > f1_box + 0.02, (f1_box, f1_poly)
    # Treg and Teff never share an event, though Tregs below the FOXP3+ threshold are now Tregs
    pops = poly.obsm[K.POPULATIONS]
    assert not (pops["Treg"] & pops["Teff"]).any()


def test_a_reviewers_threshold_cuts_the_refined_polygon(drawn):
    ad, _, strategy = drawn
    auto = gate(ad, strategy, copy=True)
    cd25 = auto[:, "CD25"].X.ravel()
    treg = auto.obsm[K.POPULATIONS]["Treg"].to_numpy()
    value = float(np.quantile(cd25[treg], 0.25)) + 1e-5
    fixed = gate(ad, strategy, thresholds={("Treg", "CD25"): value}, copy=True)
    rec = fixed.uns[K.GATING]["gates"]["Treg"]
    assert rec["status"] == "manual" and rec["gate"]["kind"] == "polygon"
    g = gate_from_dict(rec["gate"])
    assert min(v[list(g.dims).index("CD25")] for v in g.vertices) == pytest.approx(value)
    after = fixed.obsm[K.POPULATIONS]["Treg"].to_numpy()
    assert not (after & ~treg).any()  # the cut only removes events ...
    assert np.mean(cd25[treg & ~after] < value) > 0.98  # ... those below it (edge rounding aside)
