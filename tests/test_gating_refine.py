"""``refine:`` draws a population counted on several markers as a diagonal polygon on two of them
(the shipped Treg strategy's FOXP3+CD127lo gate)."""

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

#: the Treg gate before FOXP3 x CD127 (a box of a FOXP3 and a CD25 threshold), kept for comparison
BOX = """
name: treg_box
extends: treg
gates:
  - id: Treg
    parent: CD4
    dims: [CD25, FOXP3]
    method: range
    params:
      bounds:
        CD25: {method: tail, side: high, peak: gated, within: FOXP3+, k: 3.5}
        FOXP3: {from: FOXP3+, side: high}
populations:
  - id: Teff
    parent: CD4
    expr: CD4 and not FOXP3+ and not Treg
"""


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
    box = tmp / "treg_box.yaml"
    box.write_text(BOX)
    return ad, true, box


def test_treg_gate_is_drawn_on_foxp3_x_cd127_and_classifies_events_better(drawn):
    ad, true, box_strategy = drawn
    poly = gate(ad, copy=True)
    box = gate(ad, box_strategy, copy=True)
    rec = poly.uns[K.GATING]["gates"]["FOXP3+CD127lo"]
    assert rec["gate"]["kind"] == "polygon" and rec["details"]["refined"]["from"] == "FOXP3+"
    assert rec["gate"]["dims"] == ["FOXP3", "CD127"]
    assert box.uns[K.GATING]["gates"]["Treg"]["gate"]["kind"] == "range"
    cd4 = poly.obsm[K.POPULATIONS]["CD4"].to_numpy()
    f1_box = _f1(box.obsm[K.POPULATIONS]["Treg"].to_numpy(), true & cd4)
    f1_poly = _f1(poly.obsm[K.POPULATIONS]["Treg"].to_numpy(), true & cd4)
    assert f1_poly > f1_box + 0.02, (f1_box, f1_poly)
    # Treg and Teff never share an event, though Tregs below the FOXP3+ threshold are now Tregs
    pops = poly.obsm[K.POPULATIONS]
    assert not (pops["Treg"] & pops["Teff"]).any()


def test_a_reviewers_threshold_cuts_the_polygon(drawn):
    ad, _, _ = drawn
    auto = gate(ad, copy=True)
    cd127 = auto[:, "CD127"].X.ravel()
    core = auto.obsm[K.POPULATIONS]["FOXP3+CD127lo"].to_numpy()
    value = float(np.quantile(cd127[core], 0.75)) - 1e-5
    fixed = gate(ad, thresholds={("FOXP3+CD127lo", "CD127"): value}, copy=True)
    rec = fixed.uns[K.GATING]["gates"]["FOXP3+CD127lo"]
    assert rec["status"] == "manual" and rec["gate"]["kind"] == "polygon"
    g = gate_from_dict(rec["gate"])
    assert max(v[list(g.dims).index("CD127")] for v in g.vertices) == pytest.approx(value)
    after = fixed.obsm[K.POPULATIONS]["FOXP3+CD127lo"].to_numpy()
    assert not (after & ~core).any()  # the cut only removes events ...
    assert np.mean(cd127[core & ~after] > value) > 0.98  # ... those above it (edge rounding aside)
    # ... and the Tregs below it follow
    assert not (fixed.obsm[K.POPULATIONS]["Treg"].to_numpy() & ~after).any()
