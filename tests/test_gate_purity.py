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


def _gated_with_truth(seed: int, patient: int, realism: str, tmp_path, n: int = 10000):
    """uns["gating"], the GatingML and each readout's error against the simulator's truth."""
    from cytokit import readouts
    from cytokit.datasets._simulate import truth_readouts
    from cytokit.gating import export_gatingml

    sim = simulate_sample(n, seed=seed, patient=patient, day=0, drift="mild", realism=realism)
    ad = ck.read_fcs(sim.write(tmp_path / f"s{seed}_{patient}.fcs"))
    ck.pp.compensate(ad)
    ck.pp.transform(ad)
    gate(ad, "treg")
    truth, got = truth_readouts(sim.labels, sim.states), readouts.sample_readouts(ad)
    keys = (
        "treg_pct_cd4",
        "treg_helios_pct",
        "treg_cd45raneg_pct",
        "treg_hladr_pct",
        "treg_ki67_pct",
    )
    errors = {k: float(got[k]) - float(truth[k]) for k in keys}
    return ad.uns["gating"], export_gatingml(ad), errors


def test_an_overlap_on_foxp3_that_moves_no_readout_is_a_note_not_a_warning(tmp_path):
    # drawn structure, seed 8203 patient 3: the mixture finds > 5 % of the FOXP3-threshold box's
    # events foreign (the populations overlap on FOXP3), yet no Treg subset's % of the box moves by
    # more than 5 points without them, and the gate drawn through the overlap has Treg % of CD4 and
    # every subset readout within tolerance. Before, the overlap alone made the sample a qc.csv
    # `warning`; now it is a note, kept in the record and in the GatingML for a reviewer
    gating, xml, errors = _gated_with_truth(8203, 3, "drawn", tmp_path)
    imp = gating["gates"]["Treg"]["details"]["impurity"]
    assert imp["cut_pct"] > 5.0 > imp["pct"]
    assert abs(errors.pop("treg_pct_cd4")) < 1.0
    assert all(abs(e) < 5.0 for e in errors.values()), errors
    assert not _purity_warnings(gating), gating["warnings"]
    assert any("overlap on FOXP3" in n for n in gating["notes"]), gating["notes"]
    from lxml import etree

    notes = [el.text or "" for el in etree.fromstring(xml).iter("{*}note")]
    assert any("overlap on FOXP3" in t for t in notes), notes


def test_an_overlap_on_foxp3_that_moves_a_subset_past_its_tolerance_is_warned(tmp_path):
    # real structure, seed 8206 patient 2: nearly half the box's events are foreign to the mixture,
    # and without them Helios+ % of the box moves by far more than 5 points: the Treg gate drawn
    # through that overlap has the right count (Treg % of CD4 within 1 point, its own impurity
    # small) but its CD45RA- % of Treg is off by more than 5 points. The warning names the subset
    # and how far it moves (before: a generic "subsets' % may be off" for any overlap past 5 %)
    gating, _, errors = _gated_with_truth(8206, 2, "real", tmp_path)
    imp = gating["gates"]["Treg"]["details"]["impurity"]
    assert imp["pct"] < 5.0 < imp["cut_pct"]
    assert abs(errors["treg_pct_cd4"]) < 1.0
    assert max(abs(errors["treg_helios_pct"]), abs(errors["treg_cd45raneg_pct"])) > 5.0, errors
    warnings = _purity_warnings(gating)
    assert len(warnings) == 1, gating["warnings"]
    assert "without its foreign events Treg_Heliospos is" in warnings[0], warnings
    moved = gating["gates"]["Treg_Heliospos"]["details"]["members_pct"]
    assert abs(moved["box_members_pct"] - moved["box_pct"]) > 5.0


def test_a_treg_count_far_from_the_mixtures_is_warned(tmp_path):
    # real-blood overlap (dim FOXP3 on Tregs, FOXP3lo CD25+ activated Tconv): the FOXP3 valley gates
    # about 4 points of CD4 too few with no fallback; the mixture counts far more
    gating, _, treg_error = _gated(8202, tmp_path, patient=2, realism="overlap")
    assert treg_error < -2.0
    assert gating["gates"]["Treg"]["status"] == "ok"
    assert gating["gates"]["FOXP3+"]["status"] == "ok"
    warnings = _purity_warnings(gating)
    assert len(warnings) == 1 and "% of CD4 in the gate but" in warnings[0], gating["warnings"]
