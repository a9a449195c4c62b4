"""Accuracy of the shipped Treg strategy on small simulated trials (seeds never used for tuning).

Goal (issue #3): per sample |Treg % of CD4 - truth| mean <= 1.0 pp and worst <= 2.0 pp; per patient the
fold change vs baseline within 15 % of the true fold. The full benchmark over more trials is
``python benchmarks/gating_accuracy.py``.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

import cytokit as ck
from cytokit.gating import gate

datasets = pytest.importorskip("cytokit.datasets")

DAYS = (0, 8, 29)


def _gated_trial(tmp_path, seed: int, drift: str, n_patients: int = 3, n_events: int = 15000):
    rows = []
    for p in range(n_patients):
        for day in DAYS:
            sim = datasets.simulate_sample(n_events, seed=seed, patient=p, day=day, drift=drift)
            adata = ck.read_fcs(sim.write(tmp_path / f"s{seed}_{p}_{day}.fcs"))
            if adata.uns.get("spillover") is not None:
                ck.pp.compensate(adata)
            ck.pp.transform(adata)
            gate(adata)
            pops = adata.obsm["populations"]
            rows.append(
                (p, day, sim.truth["treg_pct_cd4"], 100 * pops["Treg"].sum() / pops["CD4"].sum())
            )
    return np.array(rows)


@pytest.mark.parametrize(("seed", "drift"), [(913, "mild"), (4711, "strong")])
def test_treg_pct_and_fold_change_within_goal(tmp_path, seed, drift):
    logging.getLogger("cytokit").setLevel(logging.ERROR)
    rows = _gated_trial(tmp_path, seed, drift)
    err = np.abs(rows[:, 3] - rows[:, 2])
    assert err.mean() <= 1.0, err
    assert err.max() <= 2.0, err
    for p in np.unique(rows[:, 0]):
        pat = rows[rows[:, 0] == p]
        base = pat[pat[:, 1] == 0][0]
        later = pat[pat[:, 1] != 0]
        fold_err = np.abs((later[:, 3] / base[3]) / (later[:, 2] / base[2]) - 1)
        assert fold_err.max() <= 0.15, (p, fold_err)
