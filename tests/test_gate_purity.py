"""The purity check of a gate counted by a discriminant (issue #11 item 8: QC warnings that track wrong
readouts). A Treg gate can hold the right number of events with the wrong cells (FOXP3lo activated Tconv
kept, dim-FOXP3 Tregs missed): Treg % of CD4 is then right and its subsets' % (Helios+, CD45RA-) wrong,
with no fallback anywhere. The mixture that counted the Tregs says how many gated events it places
outside them."""

from __future__ import annotations

import numpy as np
import pytest

import cytokit as ck
from cytokit.datasets import _biology as bio
from cytokit.datasets import simulate_sample
from cytokit.gating import gate


def _cd4_like(rng, n_bulk=9000, n_pop=600):
    """FOXP3, CD25, CD127 of a FOXP3- bulk and a FOXP3+ CD25+ CD127lo population 6 SDs away."""
    bulk = rng.normal([0.0, 0.0, 0.0], 0.05, size=(n_bulk, 3))
    pop = rng.normal([0.3, 0.3, -0.3], 0.05, size=(n_pop, 3))
    return np.vstack([bulk, pop]), np.r_[np.zeros(n_bulk, bool), np.ones(n_pop, bool)]


def test_membership_tells_which_gated_events_belong_to_the_population():
    from cytokit.gating._methods_2d import discriminant_split, gate_impurity

    rng = np.random.default_rng(3)
    X, true = _cd4_like(rng)
    pos, info = discriminant_split(X, [1, 1, -1], membership=True)
    prob = info["membership"]
    assert pos is not None and prob.shape == (len(X),)
    assert gate_impurity(prob, pos) < 1.0  # the split itself is clean
    # a gate of the same size that swaps 20 % of the population for bulk events (the right count,
    # other cells) is about 20 % impure
    swap = np.flatnonzero(true)[:120]
    wrong = true.copy()
    wrong[swap] = False
    wrong[np.flatnonzero(~true)[:120]] = True
    assert wrong.sum() == true.sum()
    assert 15.0 < gate_impurity(prob, wrong) < 25.0
    assert "membership" not in discriminant_split(X, [1, 1, -1])[1]  # only when asked


def _gated(seed: int, tmp_path, *, patient: int = 1, realism: str = "drawn"):
    sim = simulate_sample(20000, seed=seed, patient=patient, day=0, drift="mild", realism=realism)
    ad = ck.read_fcs(sim.write(tmp_path / f"s{seed}.fcs"))
    ck.pp.compensate(ad)
    ck.pp.transform(ad)
    gate(ad, "treg")
    labels = np.asarray(bio.LABELS)[sim.labels]
    treg = np.isin(labels, bio.TREG_LABELS)
    cd4 = np.isin(labels, bio.CD4_LABELS)
    called = ad.obsm["populations"]["Treg"].to_numpy()
    foreign = 100.0 * (called & ~treg).sum() / called.sum()
    treg_error = 100.0 * (called.sum() - treg.sum()) / cd4.sum()
    return ad.uns["gating"], foreign, treg_error


def _purity_warnings(gating) -> list[str]:
    return [w for w in gating["warnings"] if w.startswith("Treg: ") and "mixture" in w]


@pytest.mark.parametrize("seed", [8201, 8202])
def test_treg_gate_impurity_follows_its_foreign_cells_and_warns_past_the_tolerance(seed, tmp_path):
    # seed 8201 (drawn structure): FOXP3lo activated Tconv overlap dim-FOXP3 naive Tregs; a FOXP3
    # threshold held about the right count with ~11 % foreign cells (Helios+ % of Treg 11 points low),
    # the FOXP3 x CD127 gate with ~5 %. Seed 8202: well separated, ~2 % foreign. Before the check no
    # warning named either.
    gating, foreign, treg_error = _gated(seed, tmp_path)
    assert abs(treg_error) < 1.0  # the count is right either way: only the cells differ
    impurity = gating["gates"]["Treg"]["details"]["impurity"]["pct"]
    assert abs(impurity - foreign) < 4.0, (impurity, foreign)
    warnings = [w for w in _purity_warnings(gating) if "so its subsets' % may be off" in w]
    assert bool(warnings) == (foreign > 7.0), (foreign, gating["warnings"])
    if warnings:  # it names the subset the foreign cells move most
        assert "outside the population" in warnings[0] and "Treg_Heliospos" in warnings[0]


def test_an_overlap_on_foxp3_with_a_consistent_gate_is_a_note_not_a_warning(tmp_path):
    # seed 8201: the FOXP3 threshold alone and the FOXP3/CD25/CD127 mixture disagree on a tenth of
    # the FOXP3+ events (the populations overlap on FOXP3), but the Treg gate drawn through the
    # overlap holds the right count and agrees with the mixture on its count and its make-up. The
    # overlap is the blood's, not the gate's error: before, it made the sample a qc.csv `warning`
    # (on simulated overlap/real trials it marked most samples, few of them with a wrong readout);
    # now it is a note a reviewer still finds in the record and the GatingML. Seed 8202 is separated.
    overlapping, foreign, treg_error = _gated(8201, tmp_path)
    separated, _, _ = _gated(8202, tmp_path)
    imp = overlapping["gates"]["Treg"]["details"]["impurity"]
    assert imp["cut_pct"] > 10.0 > 5.0 > imp["pct"]
    assert abs(treg_error) < 0.5 and foreign < 5.0  # the gate is right: count and cells
    assert not _purity_warnings(overlapping), overlapping["warnings"]
    assert any("overlap on FOXP3" in n for n in overlapping["notes"])
    assert separated["gates"]["Treg"]["details"]["impurity"]["cut_pct"] < 5.0
    assert not _purity_warnings(separated) and not separated["notes"]


def test_the_overlap_note_is_in_the_gatingml_export(tmp_path):
    from lxml import etree

    from cytokit.gating import export_gatingml

    sim = simulate_sample(20000, seed=8201, patient=1, day=0, drift="mild", realism="drawn")
    ad = ck.read_fcs(sim.write(tmp_path / "s.fcs"))
    ck.pp.compensate(ad)
    ck.pp.transform(ad)
    gate(ad, "treg")
    root = etree.fromstring(export_gatingml(ad))
    notes = [el.text for el in root.iter("{*}note")]
    assert any("overlap on FOXP3" in (t or "") for t in notes), notes


def test_a_treg_count_far_from_the_mixtures_is_warned(tmp_path):
    # real-blood overlap (dim FOXP3 on Tregs, FOXP3lo CD25+ activated Tconv): the FOXP3 valley gates
    # about 4 points of CD4 too few with no fallback; the mixture counts far more
    gating, _, treg_error = _gated(8202, tmp_path, patient=2, realism="overlap")
    assert treg_error < -2.0
    assert gating["gates"]["Treg"]["status"] == "ok"
    assert gating["gates"]["FOXP3+"]["status"] == "ok"
    warnings = _purity_warnings(gating)
    assert len(warnings) == 1 and "% of CD4 in the gate but" in warnings[0], gating["warnings"]
