"""Paired Wilcoxon tests versus baseline and Benjamini-Hochberg adjustment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import wilcoxon

from cytokit import stats


def _trial(n_patients=8, seed=0, days=(0, 8, 29)):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_patients):
        base = rng.uniform(3, 8)
        for d in days:
            rows.append(
                {
                    "sample": f"P{i}_D{d}",
                    "patient": f"P{i}",
                    "timepoint": f"D{d}",
                    "day": d,
                    "treg_pct_cd4": base * (1 + d / 10 * rng.uniform(0.2, 1.0)),
                    "treg_teff_ratio": rng.uniform(0.05, 0.1),
                }
            )
    return pd.DataFrame(rows).sample(frac=1, random_state=seed).reset_index(drop=True)


def test_p_values_equal_scipy_wilcoxon_on_pairs():
    summary = _trial()
    table = stats.paired_tests(summary)
    assert list(table.columns) == stats.STATS_COLUMNS
    assert set(table["timepoint"]) == {"D8", "D29"}
    for readout in ("treg_pct_cd4", "treg_teff_ratio"):
        wide = summary.pivot(index="patient", columns="timepoint", values=readout)
        for tp in ("D8", "D29"):
            row = table.loc[(table["readout"] == readout) & (table["timepoint"] == tp)].iloc[0]
            expected = wilcoxon(wide[tp], wide["D0"]).pvalue
            assert row["p_value"] == pytest.approx(expected, rel=1e-12)
            assert row["n_pairs"] == 8
            assert row["baseline_median"] == pytest.approx(wide["D0"].median())
            assert row["median"] == pytest.approx(wide[tp].median())
            assert row["median_fold_change"] == pytest.approx((wide[tp] / wide["D0"]).median())
    # every Treg % rose for every patient: exact two-sided p = 2 / 2**8
    d8 = table.loc[(table["readout"] == "treg_pct_cd4") & (table["timepoint"] == "D8")].iloc[0]
    assert d8["p_value"] == pytest.approx(2 / 2**8)


def test_missing_values_drop_pairs_and_too_few_pairs_give_note():
    summary = _trial(n_patients=5)
    summary.loc[
        summary["patient"].isin(["P0", "P1", "P2"]) & (summary["day"] == 29), "treg_pct_cd4"
    ] = np.nan
    table = stats.paired_tests(summary, ["treg_pct_cd4"])
    d29 = table.loc[table["timepoint"] == "D29"].iloc[0]
    assert d29["n_pairs"] == 2 and np.isnan(d29["p_value"]) and "fewer than" in d29["note"]
    d8 = table.loc[table["timepoint"] == "D8"].iloc[0]
    assert d8["n_pairs"] == 5 and np.isfinite(d8["p_value"]) and "0.05" in d8["note"]


def test_all_zero_differences_is_not_an_error():
    summary = _trial(n_patients=6)
    summary["treg_teff_ratio"] = 1.0
    table = stats.paired_tests(summary, ["treg_teff_ratio"])
    assert table["p_value"].isna().all()
    assert (table["note"] == "all differences are zero").all()
    assert table["median_fold_change"].eq(1.0).all()


def test_fixed_baseline_label_and_missing_baseline():
    summary = _trial(n_patients=7)
    summary = summary.loc[~((summary["patient"] == "P0") & (summary["timepoint"] == "D0"))]
    table = stats.paired_tests(summary, ["treg_pct_cd4"], baseline="D0")
    assert set(table["timepoint"]) == {"D8", "D29"}
    assert (table["n_pairs"] == 6).all()  # P0 has no D0 and drops out
    # default: P0's baseline is its own smallest day (D8), so it pairs only at D29
    table = stats.paired_tests(summary, ["treg_pct_cd4"])
    n = table.set_index("timepoint")["n_pairs"]
    assert n["D8"] == 6 and n["D29"] == 7


def test_p_adj_is_bh_over_whole_table():
    table = stats.paired_tests(_trial(seed=2))
    assert np.allclose(table["p_adj"], stats.bh_adjust(table["p_value"].to_numpy()), equal_nan=True)
    assert (table["p_adj"] >= table["p_value"]).all()


def test_bh_hand_computed():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    # sorted 0.005, 0.01, 0.03, 0.04 with m = 4: 0.02, 0.02, 0.04, 0.04 (step-up minimum)
    expected = np.array([0.02, 0.04, 0.04, 0.02, np.nan])
    assert np.allclose(stats.bh_adjust(p), expected, equal_nan=True)
    assert np.allclose(stats.bh_adjust([0.5, 0.9]), [0.9, 0.9])
    assert stats.bh_adjust([]).shape == (0,)
    assert np.isnan(stats.bh_adjust([np.nan, np.nan])).all()


def _bh_reference(p):
    """Direct definition: q_i = min over j with p_j >= p_i of m p_j / rank_j."""
    p = np.asarray(p, float)
    m = len(p)
    ranks = np.argsort(np.argsort(p, kind="stable"), kind="stable") + 1
    return np.array(
        [min(1.0, min(m * p[j] / ranks[j] for j in range(m) if p[j] >= p[i])) for i in range(m)]
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=30))
def test_bh_matches_definition(values):
    q = stats.bh_adjust(values)
    assert np.allclose(q, _bh_reference(values), atol=1e-12)
    assert np.all(q >= np.asarray(values) - 1e-15) and np.all(q <= 1)


# --- differential abundance of clusters ------------------------------------------------------------


def _cluster_rows(n_patients=8, seed=0, fold=2.0, days=(0, 8)):
    """clusters.csv rows: cluster "3" grows ``fold``-times at every later day, the others share the rest."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_patients):
        share = rng.dirichlet([20, 10, 1])  # clusters 1, 2 and a rare 3 (~3 %)
        for d in days:
            p = share.copy()
            if d:
                p[2] *= fold * rng.uniform(0.9, 1.1)
            p /= p.sum()
            counts = rng.multinomial(20_000, p)
            for c, n in enumerate(counts, start=1):
                rows.append(
                    {
                        "sample": f"P{i}_D{d}",
                        "patient": f"P{i}",
                        "timepoint": f"D{d}",
                        "day": d,
                        "cluster": str(c),
                        "label": "CD4+ CD25hi FOXP3+" if c == 3 else f"type {c}",
                        "count": n,
                        "pct": 100 * n / counts.sum(),
                    }
                )
    return pd.DataFrame(rows)


def test_da_is_the_paired_test_of_each_cluster_pct():
    rows = _cluster_rows(days=(0, 8, 29))
    da = stats.differential_abundance(rows, method="wilcoxon")
    assert list(da.columns) == stats.DA_COLUMNS
    assert len(da) == 3 * 2
    d8 = da.set_index(["cluster", "timepoint"]).loc[("3", "D8")]
    assert d8["label"] == "CD4+ CD25hi FOXP3+" and d8["n_pairs"] == 8
    wide = rows.loc[rows["cluster"] == "3"].pivot(
        index="patient", columns="timepoint", values="pct"
    )
    assert d8["p_value"] == pytest.approx(wilcoxon(wide["D8"], wide["D0"]).pvalue)
    assert d8["median_fold_change"] == pytest.approx(np.median(wide["D8"] / wide["D0"]))
    assert d8["baseline_median"] == pytest.approx(np.median(wide["D0"]))
    # BH across every cluster x timepoint of the table
    np.testing.assert_allclose(da["p_adj"], stats.bh_adjust(da["p_value"]))


def test_da_glm_uses_the_counts_and_finds_a_consistent_change():
    pytest.importorskip("statsmodels")
    changed = stats.differential_abundance(_cluster_rows(n_patients=4), method="glm")
    by = changed.set_index("cluster")
    # 4 pairs: the signed-rank test cannot go below 0.125, the counts of 20,000 events can
    assert by.loc["3", "p_adj"] < 0.001 and by.loc["3", "method"] == "glm"
    # the signed-rank p-values stay in the table beside the model's
    assert by.loc["3", "p_wilcoxon"] == pytest.approx(0.125)
    # no change (only patient-to-patient noise): p-values about uniform, not a flood of discoveries
    p = np.concatenate(
        [
            stats.differential_abundance(_cluster_rows(fold=1.0, seed=s), method="glm")["p_value"]
            for s in range(40)
        ]
    )
    assert 0.0 <= (p < 0.05).mean() <= 0.1 and 0.35 < np.median(p) < 0.65


def test_da_of_an_empty_table_has_the_columns():
    assert list(stats.differential_abundance(pd.DataFrame()).columns) == stats.DA_COLUMNS
    with pytest.raises(ValueError, match="method"):
        stats.differential_abundance(_cluster_rows(), method="ttest")
