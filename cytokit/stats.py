"""Paired statistics of trial readouts versus baseline, with Benjamini-Hochberg adjustment.

For each readout and each timepoint after baseline, the pairs are the patients measured at both; the test
is the Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, two-sided, zero differences dropped as in
Wilcoxon's original method, exact null distribution where scipy chooses it). P-values are adjusted with
Benjamini-Hochberg across every readout and timepoint of the table at once. A test that cannot be run
(fewer than ``min_pairs`` pairs, or every difference zero) leaves ``p_value`` empty and says why in
``note``; it never raises.
"""

from __future__ import annotations

import importlib.util
import logging

import numpy as np
import pandas as pd
from scipy import stats as sps

from .readouts import HELPER_READOUTS, READOUTS, baseline_rows, timepoint_order

__all__ = [
    "DA_COLUMNS",
    "DEFAULT_READOUTS",
    "MIN_PAIRS",
    "STATS_COLUMNS",
    "bh_adjust",
    "differential_abundance",
    "paired_tests",
]

logger = logging.getLogger("cytokit")

#: Fewest patient pairs for which a test is run. With n pairs the smallest two-sided exact p-value is
#: 2 / 2**n, so 3 pairs can at best give 0.25 and fewer than 6 can never reach 0.05 (said in ``note``).
MIN_PAIRS = 3

#: Readouts tested by default: trial readouts, not raw event counts (they depend on how many events were
#: acquired) nor the transformed CD25 median (its linear twin is tested, so the fold change means MFI fold).
DEFAULT_READOUTS = tuple(
    r for r in READOUTS if not r.endswith("_count") and r != "treg_cd25_median"
)

STATS_COLUMNS = [
    "readout",
    "timepoint",
    "day",
    "n_pairs",
    "baseline_median",
    "median",
    "median_difference",
    "median_fold_change",
    "p_value",
    "p_adj",
    "note",
]


def bh_adjust(p) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (step-up FDR); NaN entries stay NaN and are not counted.

    Parameters
    ----------
    p
        Array-like of p-values in [0, 1], any shape, NaN for tests that were not run.

    Returns
    -------
    Float array of the same shape: ``min_{j >= i} (m / j) p_(j)`` clipped to 1, m = number of non-NaN.
    """
    p = np.asarray(p, dtype=float)
    flat = p.ravel()
    out = np.full(flat.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(flat))
    m = ok.size
    if m:
        order = ok[np.argsort(flat[ok], kind="stable")]
        scaled = flat[order] * m / np.arange(1, m + 1)
        out[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return out.reshape(p.shape)


def _pairs(
    summary: pd.DataFrame, readout: str, is_base: pd.Series, baseline: str | None
) -> pd.DataFrame:
    """Frame of patient, timepoint, value and that patient's baseline value (both finite)."""
    frame = pd.DataFrame(
        {
            "patient": summary["patient"].astype(str).values,
            "timepoint": summary["timepoint"].astype(str).values,
            "value": pd.to_numeric(summary[readout], errors="coerce").to_numpy(float),
            "is_base": is_base.to_numpy(bool),
        }
    )
    base = frame.loc[frame["is_base"]].drop_duplicates("patient").set_index("patient")["value"]
    later = frame.loc[~frame["is_base"]].copy()
    later["base"] = later["patient"].map(base).astype(float)
    if baseline is not None:
        later = later.loc[later["timepoint"] != baseline]
    later = later.dropna(subset=["value", "base"])
    # a patient sampled twice at one timepoint counts once (mean of the repeats)
    return (
        later.groupby(["timepoint", "patient"], sort=False)[["value", "base"]].mean().reset_index()
    )


def _test(x: np.ndarray, y: np.ndarray, min_pairs: int) -> tuple[float, str]:
    """Wilcoxon signed-rank p-value of x vs y, or NaN with the reason."""
    n = len(x)
    if n < min_pairs:
        return np.nan, f"fewer than {min_pairs} pairs"
    if np.all(x - y == 0):
        return np.nan, "all differences are zero"
    p = float(sps.wilcoxon(x, y, alternative="two-sided").pvalue)
    note = "" if n >= 6 else f"{n} pairs: p cannot fall below 0.05"
    return p, note


def paired_tests(
    summary: pd.DataFrame,
    readouts: list[str] | None = None,
    *,
    baseline: str | None = None,
    min_pairs: int = MIN_PAIRS,
) -> pd.DataFrame:
    """Wilcoxon signed-rank test of each readout at each later timepoint versus baseline (stats.csv).

    Parameters
    ----------
    summary
        One row per sample with ``patient``, ``timepoint``, optional ``day`` and readout columns.
    readouts
        Columns to test; default every :data:`DEFAULT_READOUTS` column present (helper-subset
        readouts only when some sample has a value).
    baseline
        Timepoint label used as every patient's baseline. Default None: each patient's own baseline
        (smallest ``day``, else the first timepoint), as in :func:`cytokit.readouts.add_baseline_change`.
    min_pairs
        Fewest pairs for which a test is run (default :data:`MIN_PAIRS`).

    Returns
    -------
    DataFrame with :data:`STATS_COLUMNS`: per readout and timepoint, ``n_pairs``; ``baseline_median`` and
    ``median`` over the paired patients; ``median_difference`` and ``median_fold_change`` (medians of the
    per-patient difference and value/baseline ratio); ``p_value``; ``p_adj`` (Benjamini-Hochberg over the
    whole table); ``note`` (why a p-value is empty, or a caveat).
    """
    if readouts is None:  # helper subsets only when the panel measured them (no rows of blanks)
        readouts = [
            r
            for r in DEFAULT_READOUTS
            if r in summary
            and (
                r not in HELPER_READOUTS or pd.to_numeric(summary[r], errors="coerce").notna().any()
            )
        ]
    if not {"patient", "timepoint"} <= set(summary.columns):
        return pd.DataFrame(columns=STATS_COLUMNS)
    summary = summary.loc[summary["patient"].notna() & summary["timepoint"].notna()]
    if baseline is not None:
        is_base = summary["timepoint"].astype(str) == str(baseline)
    else:
        is_base = baseline_rows(summary)
    order = [t for t in timepoint_order(summary) if baseline is None or t != str(baseline)]
    days = _median_days(summary)
    rows = []
    for readout in readouts:
        pairs = _pairs(summary, readout, is_base, baseline)
        for tp in order:
            sel = pairs.loc[pairs["timepoint"] == tp]
            if sel.empty and tp not in set(summary.loc[~is_base, "timepoint"].astype(str)):
                continue  # a timepoint that is only ever a baseline
            rows.append(_row(readout, tp, days.get(tp, np.nan), sel, min_pairs))
    table = pd.DataFrame(rows, columns=STATS_COLUMNS)
    table["p_adj"] = bh_adjust(table["p_value"].to_numpy(float))
    logger.info("paired tests: %d readouts x %d timepoints", len(readouts), len(order))
    return table


def _row(readout: str, tp: str, day: float, sel: pd.DataFrame, min_pairs: int) -> dict:
    x, y = sel["value"].to_numpy(float), sel["base"].to_numpy(float)
    p, note = _test(x, y, min_pairs)
    with np.errstate(divide="ignore", invalid="ignore"):
        fold = np.where(y != 0, x / np.where(y != 0, y, 1.0), np.nan)
    fold = fold[np.isfinite(fold)]
    return {
        "readout": readout,
        "timepoint": tp,
        "day": day,
        "n_pairs": len(sel),
        "baseline_median": float(np.median(y)) if len(y) else np.nan,
        "median": float(np.median(x)) if len(x) else np.nan,
        "median_difference": float(np.median(x - y)) if len(x) else np.nan,
        "median_fold_change": float(np.median(fold)) if fold.size else np.nan,
        "p_value": p,
        "p_adj": np.nan,
        "note": note,
    }


def _median_days(summary: pd.DataFrame) -> dict[str, float]:
    if "day" not in summary:
        return {}
    days = pd.to_numeric(summary["day"], errors="coerce")
    return days.groupby(summary["timepoint"].astype(str).values).median().to_dict()


# --- differential abundance of clusters ------------------------------------------------------------

DA_METHODS = ("auto", "wilcoxon", "glm")

DA_COLUMNS = [
    "cluster",
    "label",
    "timepoint",
    "day",
    "n_pairs",
    "baseline_median",
    "median",
    "median_difference",
    "median_fold_change",
    "p_value",
    "p_adj",
    "method",
    "p_wilcoxon",
    "p_adj_wilcoxon",
    "note",
]


def differential_abundance(
    clusters: pd.DataFrame,
    *,
    method: str = "auto",
    baseline: str | None = None,
    min_pairs: int = MIN_PAIRS,
) -> pd.DataFrame:
    """Paired differential abundance of each cluster at each later timepoint versus each patient's baseline.

    Parameters
    ----------
    clusters
        ``clusters.csv`` rows: ``sample, patient, timepoint, [day], cluster, [label], count, pct``.
    method
        ``"wilcoxon"``: signed-rank test of the per-sample cluster % against the same patient's baseline,
        the machinery of :func:`paired_tests` (the table's medians and folds always come from it).
        ``"glm"``: p-values from a quasi-binomial GLM of the cluster's event counts out of the population's,
        with the patient as a block and the timepoint as the effect (Wald test, dispersion from Pearson's
        chi-square): the fixed-effect design of diffcyt's DA tests (Weber et al., Commun Biol 2019), which
        uses every event's count, not only the sign and rank of the change; needs statsmodels. With 8
        patients the signed-rank p-value cannot fall below 2 / 2**8 = 0.0078, so after Benjamini-Hochberg
        over 15 clusters x 3 timepoints a cluster doubling in every patient can still miss q < 0.05; the
        count model does not have that floor (under no change its p-values are uniform: tests).
        ``"auto"`` (default): ``"glm"`` when statsmodels is installed, else ``"wilcoxon"``. The
        signed-rank p-values are always in ``p_wilcoxon`` / ``p_adj_wilcoxon``; ``method`` names the one
        in ``p_value`` / ``p_adj``.
    baseline, min_pairs
        As in :func:`paired_tests`.

    Returns
    -------
    DataFrame with :data:`DA_COLUMNS`, one row per cluster x later timepoint; ``p_adj`` is
    Benjamini-Hochberg over every cluster and timepoint of the table.
    """
    if method not in DA_METHODS:
        raise ValueError(f"method must be one of {DA_METHODS}, got {method!r}")
    if method == "auto":
        method = "glm" if importlib.util.find_spec("statsmodels") is not None else "wilcoxon"
    needed = {"sample", "patient", "timepoint", "cluster", "pct"}
    if clusters is None or clusters.empty or not needed <= set(clusters.columns):
        return pd.DataFrame(columns=DA_COLUMNS)
    frame = clusters.assign(cluster=clusters["cluster"].astype(str))
    meta_cols = [c for c in ("patient", "timepoint", "day") if c in frame]
    meta = frame.drop_duplicates("sample").set_index("sample")[meta_cols]
    wide = frame.pivot_table(index="sample", columns="cluster", values="pct", aggfunc="sum")
    names = sorted(wide.columns, key=lambda c: (len(c), c))
    summary = meta.join(wide[names].add_prefix("cluster:")).reset_index()
    table = paired_tests(
        summary, [f"cluster:{c}" for c in names], baseline=baseline, min_pairs=min_pairs
    )
    table = table.rename(columns={"readout": "cluster"})
    table["cluster"] = table["cluster"].str.removeprefix("cluster:")
    labels = (
        frame.drop_duplicates("cluster").set_index("cluster")["label"]
        if "label" in frame
        else pd.Series(dtype=str)
    )
    table.insert(1, "label", table["cluster"].map(labels).fillna("").astype(str))
    table["method"] = method
    table["p_wilcoxon"] = table["p_value"]
    table["p_adj_wilcoxon"] = table["p_adj"]
    if method == "glm" and len(table):
        p, notes = _glm_pvalues(frame, summary, table, baseline)
        table["p_value"] = p
        table["note"] = [
            "; ".join(filter(None, [a, b])) for a, b in zip(table["note"], notes, strict=True)
        ]
        table["p_adj"] = bh_adjust(table["p_value"].to_numpy(float))
    return table[DA_COLUMNS]


def _glm_pvalues(
    frame: pd.DataFrame, summary: pd.DataFrame, table: pd.DataFrame, baseline: str | None
) -> tuple[np.ndarray, list[str]]:
    """Wald p-value of each (cluster, timepoint) row from a quasi-binomial GLM on counts, patient blocks."""
    try:
        import statsmodels.api as sm
    except ImportError as err:
        raise ImportError("method='glm' needs statsmodels: pip install statsmodels") from err
    if baseline is not None:
        is_base = summary["timepoint"].astype(str) == str(baseline)
    else:
        is_base = baseline_rows(summary)
    level = pd.Series(
        np.where(is_base, "__baseline__", summary["timepoint"].astype(str)), index=summary["sample"]
    )
    counts = frame.pivot_table(index="sample", columns="cluster", values="count", aggfunc="sum")
    totals = counts.sum(axis=1)
    counts = counts.reindex(level.index)
    patients = summary.set_index("sample")["patient"].astype(str).reindex(level.index)
    design = pd.get_dummies(
        pd.DataFrame({"patient": patients, "tp": level}), drop_first=False, dtype=float
    )
    # reference levels: the first patient and the baseline (columns dropped from the full dummies)
    design = design.drop(columns=[f"patient_{sorted(patients.unique())[0]}", "tp___baseline__"])
    design.insert(0, "const", 1.0)
    p = np.full(len(table), np.nan)
    notes = [""] * len(table)
    fits: dict[str, object] = {}
    for i, (cluster, tp) in enumerate(zip(table["cluster"], table["timepoint"], strict=True)):
        column = f"tp_{tp}"
        if column not in design or cluster not in counts:
            notes[i] = "glm: no samples at this timepoint"
            continue
        if cluster not in fits:
            fits[cluster] = _fit_quasi_binomial(sm, counts[cluster], totals, design)
        fit = fits[cluster]
        if isinstance(fit, str):
            notes[i] = f"glm: {fit}"
        else:
            p[i] = float(fit.pvalues[column])
    return p, notes


def _fit_quasi_binomial(sm, y: pd.Series, n: pd.Series, design: pd.DataFrame):
    import warnings

    y = y.to_numpy(float)
    n = n.reindex(design.index).to_numpy(float)
    ok = np.isfinite(y) & (n > 0)
    if y[ok].sum() == 0 or (n[ok] - y[ok]).sum() == 0:
        return "no events in the cluster"
    X = design.loc[ok]
    X = X.loc[:, X.abs().sum(axis=0) > 0]
    if len(X) <= X.shape[1]:
        return "fewer samples than parameters"
    family = sm.families.Binomial()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # proportions weighted by the events (statsmodels' two-column form mis-scales X2)
            model = sm.GLM(y[ok] / n[ok], X, family=family, var_weights=n[ok])
            first = model.fit()
            # quasi-binomial dispersion from Pearson's chi-square, never below binomial (1)
            dispersion = max(1.0, float(first.pearson_chi2 / max(first.df_resid, 1)))
            return model.fit(scale=dispersion, use_t=True)  # t on the residual df: few samples
    except Exception as err:  # separation, singular design: no p-value, a note says why
        return f"fit failed ({type(err).__name__})"
