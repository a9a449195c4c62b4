"""Readouts: population table, per-sample readouts, fold change and AUC versus baseline.

``make_gated`` builds a small gated AnnData of the engine's shape (obsm["populations"], uns["gating"])
from real gate objects, so the expected counts are known exactly; test_pl and test_report reuse it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

from cytokit import readouts
from cytokit.gating import EllipseGate, PolygonGate, RangeGate

MARKERS = [
    "FSC-A",
    "FSC-H",
    "SSC-A",
    "Viability",
    "CD3",
    "CD4",
    "CD8",
    "CD25",
    "FOXP3",
    "Ki67",
    "HLA-DR",
]

# population -> (parent, gate or None for a boolean population)
_TREE = {
    "cells": (None, RangeGate(("FSC-A",), (0.1,), (None,))),
    "singlets": (
        "cells",
        PolygonGate(("FSC-A", "FSC-H"), ((0.0, 0.0), (1.0, 0.8), (1.0, 1.2), (0.0, 0.2))),
    ),
    "lymphocytes": (
        "singlets",
        EllipseGate(("FSC-A", "SSC-A"), (0.5, 0.3), ((0.05, 0.0), (0.0, 0.03)), 4.0),
    ),
    "live": ("lymphocytes", RangeGate(("Viability",), (None,), (0.6,))),
    "CD3": ("live", RangeGate(("CD3",), (0.4,), (None,))),
    "CD4": ("CD3", RangeGate(("CD4", "CD8"), (0.5, None), (None, 0.5))),
    "Treg": ("CD4", RangeGate(("CD25", "FOXP3"), (0.6, 0.6), (None, None))),
    "Teff": ("CD4", None),  # CD4 and FOXP3-
    "Treg_Ki67pos": ("Treg", RangeGate(("Ki67",), (0.5,), (None,))),
    "Teff_Ki67pos": ("Teff", RangeGate(("Ki67",), (0.5,), (None,))),
    "Treg_HLADRpos": ("Treg", RangeGate(("HLA-DR",), (0.5,), (None,))),
}


def make_gated(
    n: int = 4000, seed: int = 0, treg_shift: float = 0.0, transform: bool = False
) -> AnnData:
    """A gated sample: uniform-ish events, populations from real gates (counts known exactly)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, size=(n, len(MARKERS))).astype(np.float32)
    j = {m: i for i, m in enumerate(MARKERS)}
    X[:, j["FSC-H"]] = X[:, j["FSC-A"]] + rng.normal(0, 0.05, n)
    X[:, j["SSC-A"]] = rng.normal(0.3, 0.15, n)
    X[:, j["FOXP3"]] = np.clip(X[:, j["FOXP3"]] + treg_shift, 0, 1)
    adata = AnnData(X, var=pd.DataFrame(index=MARKERS))
    adata.obs_names = [str(i) for i in range(n)]
    adata.var["marker"] = MARKERS
    adata.var["channel"] = [f"ch{i}" for i in range(len(MARKERS))]
    pops = {}
    gates = {}
    for name, (parent, gate) in _TREE.items():
        base = np.ones(n, bool) if parent is None else pops[parent]
        if gate is None:
            inside = ~RangeGate(("FOXP3",), (0.6,), (None,)).apply(X[:, [j["FOXP3"]]])
            gates[name] = {"gate": {}, "method": "boolean", "status": "ok", "message": ""}
        else:
            inside = gate.apply(X[:, [j[d] for d in gate.dims]])
            gates[name] = {"gate": gate.to_dict(), "method": "test", "status": "ok", "message": ""}
        pops[name] = base & inside
    adata.obsm["populations"] = pd.DataFrame(pops, index=adata.obs_names)
    adata.uns["gating"] = {
        "strategy": "test",
        "populations": [{"name": k, "parent": v[0] or "root"} for k, v in _TREE.items()],
        "gates": gates,
        "warnings": [],
    }
    adata.uns["sample_info"] = {"file": "S1.fcs", "sample": "S1", "warnings": []}
    if transform:
        adata.uns["transform"] = {m: {"kind": "linear", "T": 1000.0, "A": 0.0} for m in MARKERS}
    return adata


def test_population_table_counts_and_percentages():
    adata = make_gated()
    pops = adata.obsm["populations"]
    table = readouts.population_table(adata).set_index("population")
    assert list(table.columns) == ["parent", "count", "pct_parent", "pct_total"]
    assert table.loc["Treg", "count"] == pops["Treg"].sum()
    assert table.loc["Treg", "parent"] == "CD4"
    assert table.loc["Treg", "pct_parent"] == pytest.approx(
        100 * pops["Treg"].sum() / pops["CD4"].sum()
    )
    # the engine names the top parent "root": that means all events
    assert table.loc["cells", "pct_parent"] == pytest.approx(100 * pops["cells"].mean())
    assert table.loc["CD4", "pct_total"] == pytest.approx(100 * pops["CD4"].sum() / adata.n_obs)
    assert (table["pct_parent"].dropna().between(0, 100)).all()


def test_failed_gate_gives_nan_not_zero_down_the_tree():
    adata = make_gated()
    adata.uns["gating"]["gates"]["Treg"]["status"] = "failed"
    table = readouts.population_table(adata).set_index("population")
    assert pd.isna(table.loc["Treg", "count"]) and np.isnan(table.loc["Treg", "pct_parent"])
    assert np.isnan(table.loc["Treg_Ki67pos", "pct_parent"])  # child of a failed gate
    assert table.loc["Teff", "count"] > 0  # a sibling is unaffected
    r = readouts.sample_readouts(adata)
    assert (
        np.isnan(r["treg_pct_cd4"])
        and np.isnan(r["treg_ki67_pct"])
        and np.isnan(r["treg_teff_ratio"])
    )
    assert np.isfinite(r["teff_pct_cd4"])


def _known_sample() -> AnnData:
    """60 events with hand-set memberships: 50 CD4 (10 Treg, 3 of them Ki67+; 40 Teff, 4 Ki67+),
    CD25 of the Tregs 0.50, 0.55, ..., 0.95 (median 0.725), asinh-transformed with cofactor 150."""
    n = 60
    cd4 = np.arange(n) < 50
    treg = np.arange(n) < 10
    teff = cd4 & ~treg
    ki67 = np.isin(np.arange(n), [0, 1, 2, 10, 11, 12, 13])
    X = np.zeros((n, 2), dtype=np.float32)
    X[:10, 0] = np.arange(10) * 0.05 + 0.5
    X[10:, 0] = 0.1
    adata = AnnData(X, var=pd.DataFrame(index=["PE-Cy7-A", "Ki67"]))
    adata.obs_names = [str(i) for i in range(n)]
    adata.var["marker"] = ["", "Ki67"]
    adata.var["stain"] = ["CD25 PE-Cy7", "Ki67 FITC"]  # CD25 named by its stain only
    adata.var["channel"] = ["PE-Cy7-A", "FITC-A"]
    pops = {"CD4": cd4, "Treg": treg, "Teff": teff, "Treg_Ki67pos": treg & ki67,
            "Teff_Ki67pos": teff & ki67}  # fmt: skip
    parents = {"CD4": "root", "Treg": "CD4", "Teff": "CD4", "Treg_Ki67pos": "Treg",
               "Teff_Ki67pos": "Teff"}  # fmt: skip
    adata.obsm["populations"] = pd.DataFrame(pops, index=adata.obs_names)
    adata.uns["gating"] = {
        "strategy": "test",
        "populations": [{"name": k, "parent": v} for k, v in parents.items()],
        "gates": {k: {"gate": {}, "method": "test", "status": "ok"} for k in pops},
        "warnings": [],
    }
    adata.uns["transform"] = {"PE-Cy7-A": {"kind": "asinh", "cofactor": 150.0}}
    return adata


def test_sample_readouts_on_known_memberships():
    r = readouts.sample_readouts(_known_sample())
    assert list(r) == list(readouts.READOUTS)
    assert (r["cd4_count"], r["treg_count"], r["teff_count"]) == (50, 10, 40)
    assert r["treg_pct_cd4"] == pytest.approx(20.0)
    assert r["teff_pct_cd4"] == pytest.approx(80.0)
    assert r["treg_teff_ratio"] == pytest.approx(0.25)
    assert r["treg_ki67_pct"] == pytest.approx(30.0)
    assert r["teff_ki67_pct"] == pytest.approx(10.0)
    assert r["treg_cd25_median"] == pytest.approx(0.725, abs=1e-6)
    # linear scale: the middle pair 0.70, 0.75 back through asinh (150 * sinh), then averaged
    linear = 150 * (np.sinh(0.70) + np.sinh(0.75)) / 2
    assert r["treg_cd25_median_linear"] == pytest.approx(linear, rel=1e-5)
    # populations the sample lacks are NaN, never 0
    for key in ("treg_cd127lo_pct_cd4", "treg_helios_pct", "nk_cd56bright_pct_lymph",
                "teff_hladr_pct"):  # fmt: skip
        assert np.isnan(r[key]), key


def test_no_transform_means_linear_median_equals_median():
    r = readouts.sample_readouts(make_gated(seed=4))
    assert r["treg_cd25_median_linear"] == r["treg_cd25_median"]


def test_empty_denominator_is_nan():
    adata = make_gated(n=300)
    adata.obsm["populations"]["Treg"] = False
    adata.obsm["populations"]["Treg_Ki67pos"] = False
    r = readouts.sample_readouts(adata)
    assert r["treg_count"] == 0 and r["treg_pct_cd4"] == 0
    assert np.isnan(r["treg_ki67_pct"]) and np.isnan(r["treg_cd25_median"])


def _summary(days=True):
    rows = []
    values = {"P1": [5.0, 10.0, 8.0], "P2": [4.0, 6.0, 2.0], "P3": [np.nan, 5.0, 6.0]}
    for patient, vals in values.items():
        for tp, day, v in zip(["D0", "D8", "D29"], [0, 8, 29], vals, strict=True):
            rows.append(
                {
                    "sample": f"{patient}_{tp}",
                    "patient": patient,
                    "timepoint": tp,
                    "day": day,
                    "treg_pct_cd4": v,
                    "teff_ki67_pct": 2.0,
                }
            )
    frame = pd.DataFrame(rows).iloc[::-1].reset_index(drop=True)  # order of rows must not matter
    return frame if days else frame.drop(columns="day")


def test_fold_vs_baseline_and_auc():
    out = readouts.add_baseline_change(_summary()).set_index("sample")
    assert out.loc["P1_D8", "treg_fold_vs_baseline"] == pytest.approx(2.0)
    assert out.loc["P1_D8", "treg_pct_cd4_fold_vs_baseline"] == pytest.approx(2.0)
    assert out.loc["P1_D0", "treg_fold_vs_baseline"] == pytest.approx(1.0)
    assert out.loc["P2_D29", "treg_fold_vs_baseline"] == pytest.approx(0.5)
    assert np.isnan(
        out.loc["P3_D8", "treg_fold_vs_baseline"]
    )  # baseline missing -> NaN, not 0 or inf
    assert out.loc["P1_D8", "teff_ki67_pct_fold_vs_baseline"] == pytest.approx(1.0)
    # P1: change 0, 5, 3 at days 0, 8, 29: trapezoid = 8*2.5 + 21*4 = 104
    assert out.loc["P1_D29", "treg_change_auc"] == pytest.approx(104.0)
    assert out.loc["P1_D0", "treg_change_auc_per_day"] == pytest.approx(104.0 / 29)
    # P2: change 0, 2, -2: 8*1 + 21*0 = 8
    assert out.loc["P2_D8", "treg_change_auc"] == pytest.approx(8.0)
    assert np.isnan(out.loc["P3_D8", "treg_change_auc"])
    assert set(out["baseline_timepoint"]) == {"D0"}


def test_auc_window_interpolates_edges():
    out = readouts.add_baseline_change(_summary(), auc_window=(8, 29)).set_index("sample")
    assert out.loc["P1_D8", "treg_change_auc"] == pytest.approx(21 * 4.0)
    out = readouts.add_baseline_change(_summary(), auc_window=(4, 8)).set_index("sample")
    assert out.loc["P1_D8", "treg_change_auc"] == pytest.approx(4 * (2.5 + 5) / 2)


def test_baseline_without_day_is_first_timepoint_in_manifest_order():
    frame = _summary(days=False).iloc[::-1].reset_index(drop=True)  # manifest order D0, D8, D29
    out = readouts.add_baseline_change(frame).set_index("sample")
    assert out.loc["P1_D29", "treg_fold_vs_baseline"] == pytest.approx(8.0 / 5.0)
    assert np.isnan(out.loc["P1_D29", "treg_change_auc"])


def test_baseline_is_smallest_day_per_patient():
    frame = _summary()
    frame.loc[(frame["patient"] == "P2") & (frame["timepoint"] == "D0"), "day"] = np.nan
    base = readouts.baseline_rows(frame)
    chosen = frame.loc[base].set_index("patient")["timepoint"]
    assert chosen["P1"] == "D0" and chosen["P2"] == "D8"


def test_timepoint_order_by_day():
    frame = pd.DataFrame({"timepoint": ["W4", "D0", "D8", "W4"], "day": [28, 0, 8, 28]})
    assert readouts.timepoint_order(frame) == ["D0", "D8", "W4"]


def test_samples_without_patient_get_no_fold_and_no_pairs():
    from cytokit import stats

    frame = _summary()
    extra = pd.DataFrame(
        [{"sample": "odd", "patient": None, "timepoint": None, "treg_pct_cd4": 3.0}]
    )
    frame = pd.concat([frame, extra], ignore_index=True)
    out = readouts.add_baseline_change(frame).set_index("sample")
    assert np.isnan(out.loc["odd", "treg_fold_vs_baseline"])
    assert out.loc["P1_D8", "treg_fold_vs_baseline"] == pytest.approx(2.0)
    assert stats.paired_tests(out.reset_index(), ["treg_pct_cd4"])["n_pairs"].max() == 2
    assert stats.paired_tests(frame.drop(columns="patient")).empty


def test_gate_that_passes_all_events_keeps_readouts():
    # a file without a Time channel: time_ok is skipped but keeps every event (when_missing: pass);
    # the readouts below it are real, not missing
    adata = make_gated()
    adata.uns["gating"]["gates"]["cells"]["status"] = "skipped"  # present in obsm: passed
    r = readouts.sample_readouts(adata)
    assert np.isfinite(r["treg_pct_cd4"]) and np.isfinite(r["treg_teff_ratio"])
