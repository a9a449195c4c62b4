"""Samples that are mostly dead cells (a poorly thawed vial): the lymphocyte gate must still find the
live lymphocytes, and say that the sample's viability is low. Hand-made transformed samples
(``synthetic_sample`` of the engine tests plus a dense dead-cell cloud), a few thousand events."""

from __future__ import annotations

import anndata
import numpy as np
import pytest
from test_gating_engine import synthetic_sample, treg_pct, truth_pct

from cytokit import _keys as K
from cytokit.gating import gate

LIVE_LYMPH = ["B/NK", "CD8", "DN", "Treg", "Teff"]


def mostly_dead(n_live: int, n_dead: int, *, seed: int):
    """``synthetic_sample`` plus ``n_dead`` dead cells as they look in a poorly thawed vial: a tight
    cloud of lower forward scatter and a little higher side scatter than the live lymphocytes
    (shrunken cells), bright in the viability dye, dim unspecific stain on every marker."""
    ad = synthetic_sample(n=n_live, seed=seed, time_anomaly=False)
    r = np.random.default_rng(seed + 100)
    X = r.normal(0.22, 0.04, (n_dead, ad.n_vars))
    col = {d: ad.var_names.get_loc(d) for d in ("FSC-A", "FSC-H", "SSC-A", "Viability", "Time")}
    X[:, col["FSC-A"]] = r.normal(0.22, 0.02, n_dead)
    X[:, col["FSC-H"]] = X[:, col["FSC-A"]] * 0.85 + r.normal(0, 0.006, n_dead)
    X[:, col["SSC-A"]] = r.normal(0.15, 0.02, n_dead)
    X[:, col["Viability"]] = r.normal(0.65, 0.05, n_dead)
    dead = anndata.AnnData(X.astype(np.float32))
    dead.var_names = ad.var_names
    dead.obs["truth"] = "dead"
    dead.obs_names = [f"d{i}" for i in range(n_dead)]
    out = anndata.concat([ad, dead])
    out.obs["truth"] = out.obs["truth"].astype("category")
    out.X[:, col["Time"]] = r.permutation(np.linspace(0, 1, out.n_obs))  # interleaved in time
    out.var, out.uns = ad.var.copy(), dict(ad.uns)
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_a_mostly_dead_sample_gates_its_live_lymphocytes_and_says_viability_is_low(seed):
    # regression (simulated trial 9981, mild drift, patient 5, days 0 and 29: 60k events, dead cells
    # 4 of 10): the densest low side-scatter cloud was the dead cells, the lymphocyte gate took it
    # (14,675 dead of 16,693), the live gate kept 10.7 % and FOXP3+ had 19 events: GatingError
    ad = mostly_dead(5000, 9000, seed=seed)
    truth = ad.obs["truth"].astype(str).to_numpy()
    assert (truth == "dead").mean() > 0.6
    gate(ad)
    g = ad.uns[K.GATING]
    pops = ad.obsm[K.POPULATIONS]
    live, lymph = pops["live"].to_numpy(), np.isin(truth, LIVE_LYMPH)
    assert (live & lymph).sum() / lymph.sum() > 0.9  # the live lymphocytes are gated ...
    assert (truth[live] == "dead").mean() < 0.02  # ... and little else
    assert abs(treg_pct(ad) - truth_pct(ad)) < 1.5, (treg_pct(ad), truth_pct(ad))
    rec = g["gates"]["lymphocytes"]
    assert rec["status"] == "fallback" and "viability" in rec["message"]
    assert any(w.startswith("lymphocytes") and "low viability" in w for w in g["warnings"])


def test_a_mostly_dead_sample_says_so_when_its_lymphocyte_cloud_was_picked_right():
    # four dead cells for every live one, but the live lymphocytes are still the densest cloud: the
    # gate is as usual, and the sample is warned of its low viability all the same
    ad = mostly_dead(5000, 20000, seed=3)
    gate(ad)
    g = ad.uns[K.GATING]
    assert g["gates"]["lymphocytes"]["status"] == "ok"
    truth = ad.obs["truth"].astype(str).to_numpy()
    live = ad.obsm[K.POPULATIONS]["live"].to_numpy()
    assert (truth[live] == "dead").mean() < 0.02
    low = [w for w in g["warnings"] if "low viability" in w]
    assert len(low) == 1 and low[0].startswith("lymphocytes"), g["warnings"]


@pytest.mark.parametrize("drop", [(), ("Viability",)])
def test_a_sample_of_mostly_live_cells_keeps_its_scatter_pick(drop):
    # the check only acts on a cloud that is mostly dead: a usual sample (6 % dead cells), or a panel
    # without a viability dye, gets the same lymphocyte gate as without the check
    import yaml

    from cytokit._resources import resolve_definition
    from cytokit.gating._strategy import strategy_from_dict

    doc = yaml.safe_load(resolve_definition("gating", "treg").read_text())
    gates = doc["gates"][:5]  # time_ok .. live, as shipped
    assert gates[3]["id"] == "lymphocytes" and gates[3]["params"]["dead_check"] == "live"
    unchecked = [
        {**g, "params": {k: v for k, v in g["params"].items() if k != "dead_check"}} for g in gates
    ]
    placed = []
    for spec in (gates, unchecked):
        ad = synthetic_sample(n=6000, seed=4, drop=drop)
        gate(ad, strategy_from_dict({"name": "lymph", "gates": spec}))
        placed.append(ad.uns[K.GATING]["gates"]["lymphocytes"])
    assert placed[0]["gate"] == placed[1]["gate"]
    assert placed[0]["status"] == "ok"
    if not drop:
        assert placed[0]["details"]["viability"]["live_pct"] > 90
