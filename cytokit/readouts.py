"""Per-sample trial readouts from a gated AnnData, and per-patient change versus baseline.

A gated sample (``obsm["populations"]``, ``uns["gating"]``, see DEVELOPERS.md) gives one population table
and one row of readouts (Treg % of CD4, Treg/Teff ratio, activation markers). Rows of many samples make the
trial's ``summary.csv``; :func:`add_baseline_change` adds each patient's fold change versus baseline and the
area under the Treg change curve. A readout that cannot be computed (population or marker absent, gate
failed, empty denominator) is NaN, never 0, so that a missing measurement is never read as a real zero.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from anndata import AnnData

from . import _keys as K
from .gating._strategy import population_rows
from .panels import find_var

__all__ = [
    "HELPER_READOUTS",
    "READOUTS",
    "READOUT_LABELS",
    "add_baseline_change",
    "baseline_rows",
    "population_table",
    "sample_readouts",
    "timepoint_order",
]

logger = logging.getLogger("cytokit")

# readout -> (numerator population, denominator population); percentages are 0-100.
_PCT_READOUTS: dict[str, tuple[str, str]] = {
    "treg_pct_cd4": ("Treg", "CD4"),
    "teff_pct_cd4": ("Teff", "CD4"),
    "treg_cd127lo_pct_cd4": ("Treg_CD127lo", "CD4"),
    "treg_ki67_pct": ("Treg_Ki67pos", "Treg"),
    "teff_ki67_pct": ("Teff_Ki67pos", "Teff"),
    "teff_hladr_pct": ("Teff_HLADRpos", "Teff"),
    "treg_hladr_pct": ("Treg_HLADRpos", "Treg"),
    "treg_cd45raneg_pct": ("Treg_CD45RAneg", "Treg"),
    "treg_helios_pct": ("Treg_Heliospos", "Treg"),
    "teff_cd25_pct": ("Teff_CD25pos", "Teff"),
    "nk_cd56bright_pct_lymph": ("NK_CD56bright", "lymphocytes"),
    "nk_cd56bright_pct_nk": ("NK_CD56bright", "NK"),
    # helper subsets (gating/shared/helper_subsets.yaml); memory CD4 = CD4 CD45RA- and not Treg
    "tfh_pct_cd4": ("cTfh", "CD4"),
    "tfh_pd1hi_pct_tfh": ("cTfh_PD1hi", "cTfh"),
    "th1_pct_mem": ("Th1", "CD4mem"),
    "th2_pct_mem": ("Th2", "CD4mem"),
    "th17_pct_mem": ("Th17", "CD4mem"),
    "th1_17_pct_mem": ("Th1_17", "CD4mem"),
    "il17a_pct_cd4": ("IL17Apos", "CD4"),
    "ifng_pct_cd4": ("IFNgpos", "CD4"),
    "il4_pct_cd4": ("IL4pos", "CD4"),
}
# readout -> (numerator population, denominator population) of count ratios
_RATIO_READOUTS: dict[str, tuple[str, str]] = {
    "treg_teff_ratio": ("Treg", "Teff"),
    "th17_treg_ratio": ("Th17", "Treg"),
}

#: Readout columns of ``summary.csv`` in their column order, with a label for tables and figures.
READOUT_LABELS: dict[str, str] = {
    "cd4_count": "CD4 T cells (events)",
    "treg_count": "Treg (events)",
    "teff_count": "Teff (events)",
    "treg_pct_cd4": "Treg (% of CD4)",
    "teff_pct_cd4": "Teff (% of CD4)",
    "treg_teff_ratio": "Treg/Teff ratio",
    "treg_cd127lo_pct_cd4": "Treg CD127lo (% of CD4)",
    "treg_cd25_median": "CD25 median on Treg (transformed)",
    "treg_cd25_median_linear": "CD25 median on Treg (linear)",
    "treg_ki67_pct": "Ki67+ (% of Treg)",
    "teff_ki67_pct": "Ki67+ (% of Teff)",
    "teff_hladr_pct": "HLA-DR+ (% of Teff)",
    "treg_hladr_pct": "HLA-DR+ (% of Treg)",
    "treg_cd45raneg_pct": "CD45RA- (% of Treg)",
    "treg_helios_pct": "Helios+ (% of Treg)",
    "teff_cd25_pct": "CD25+ (% of Teff)",
    "nk_cd56bright_pct_lymph": "CD56bright NK (% of lymphocytes)",
    "nk_cd56bright_pct_nk": "CD56bright (% of NK)",
    "tfh_pct_cd4": "cTfh CXCR5+ (% of CD4)",
    "tfh_pd1hi_pct_tfh": "PD-1hi (% of cTfh)",
    "th1_pct_mem": "Th1 CXCR3+CCR6- (% of memory CD4)",
    "th2_pct_mem": "Th2 CXCR3-CCR6- (% of memory CD4)",
    "th17_pct_mem": "Th17 CXCR3-CCR6+ (% of memory CD4)",
    "th1_17_pct_mem": "Th1/17 CXCR3+CCR6+ (% of memory CD4)",
    "th17_treg_ratio": "Th17/Treg ratio",
    "il17a_pct_cd4": "IL-17A+ (% of CD4)",
    "ifng_pct_cd4": "IFN-gamma+ (% of CD4)",
    "il4_pct_cd4": "IL-4+ (% of CD4)",
}
#: The helper-subset readouts (SLE trial): empty unless the panel has their markers.
HELPER_READOUTS: tuple[str, ...] = (
    "tfh_pct_cd4",
    "tfh_pd1hi_pct_tfh",
    "th1_pct_mem",
    "th2_pct_mem",
    "th17_pct_mem",
    "th1_17_pct_mem",
    "th17_treg_ratio",
    "il17a_pct_cd4",
    "ifng_pct_cd4",
    "il4_pct_cd4",
)
READOUTS: tuple[str, ...] = tuple(READOUT_LABELS)


def _populations(adata: AnnData) -> tuple[pd.DataFrame, dict[str, str | None]]:
    """The bool population frame and ``{name: parent}`` in strategy order (unknown parents are None)."""
    if K.POPULATIONS not in adata.obsm:
        return pd.DataFrame(index=adata.obs_names), {}
    pops = pd.DataFrame(adata.obsm[K.POPULATIONS]).astype(bool)
    parents = {p["name"]: p["parent"] for p in population_rows(adata.uns.get(K.GATING))}
    for name in pops.columns:
        parents.setdefault(str(name), None)
    return pops, parents


def _unusable(adata: AnnData, parents: dict[str, str | None], pops: pd.DataFrame) -> set[str]:
    """Populations whose counts mean nothing: absent, own gate failed/skipped, or an ancestor unusable.

    In a file exported from a gate (``gate(..., start_at=...)``) that population and its ancestors were
    skipped because every event belongs to them: their counts are the file's events, not unusable.
    Likewise a skipped gate whose population is present passed its parent's events on purpose
    (``when_missing: pass``: no Time channel, no CCR4 stain).
    """
    gating = adata.uns.get(K.GATING, {})
    status = {n: str(g.get("status", "ok")) for n, g in gating.get("gates", {}).items()}
    bad = {n for n, s in status.items() if s == "failed" or (s == "skipped" and n not in pops)}
    name = gating.get("start_at")
    while name in parents and name in pops.columns:  # the pre-gated branch, up to the root
        bad.discard(name)
        name = parents[name]
    bad |= {n for n in parents if n not in pops.columns}
    changed = True
    while changed:  # propagate down the tree
        new = {n for n, p in parents.items() if p in bad and n not in bad}
        bad |= new
        changed = bool(new)
    return bad


def population_table(adata: AnnData) -> pd.DataFrame:
    """Count and percentages (0-100) of every population of a gated sample.

    Parameters
    ----------
    adata
        Gated sample (``obsm["populations"]`` and ``uns["gating"]["populations"]``).

    Returns
    -------
    DataFrame with columns ``population, parent, count, pct_parent, pct_total`` in strategy order.
    ``pct_total`` is relative to all events of the file. Percentages are NaN where the denominator is
    empty or the population's gate (or an ancestor's) failed; the count is then NaN too.
    """
    pops, parents = _populations(adata)
    bad = _unusable(adata, parents, pops)
    # per column count_nonzero: a DataFrame sum over a million booleans per population was 10x slower
    counts = pd.Series(
        [np.count_nonzero(pops[c].to_numpy()) for c in pops.columns],
        index=pops.columns,
        dtype=float,
    )
    n_total = float(adata.n_obs)
    rows = []
    for name, parent in parents.items():
        count = np.nan if name in bad else float(counts.get(name, np.nan))
        # a parent that is not itself a population ("root", None) means all events of the file
        denom = float(counts[parent]) if parent in counts.index and parent in parents else n_total
        if parent is not None and parent in bad:
            denom = np.nan
        rows.append(
            {
                "population": name,
                "parent": parent if parent is not None else "",
                "count": count,
                "pct_parent": _pct(count, denom),
                "pct_total": _pct(count, n_total),
            }
        )
    table = pd.DataFrame(rows, columns=["population", "parent", "count", "pct_parent", "pct_total"])
    table["count"] = table["count"].astype("Float64").round().astype("Int64")
    return table


def _pct(num: float, denom: float) -> float:
    return 100.0 * num / denom if np.isfinite(num) and np.isfinite(denom) and denom > 0 else np.nan


def _ratio(num: float, denom: float) -> float:
    return num / denom if np.isfinite(num) and np.isfinite(denom) and denom > 0 else np.nan


def _median_on(adata: AnnData, mask: np.ndarray, marker: str) -> tuple[float, float]:
    """Median of ``marker`` over ``mask`` events: transformed, and on the linear (inverse) scale."""
    var = find_var(adata, marker, required=False)
    if var is None or not mask.any():
        return np.nan, np.nan
    # index X directly: an AnnData view of a million events costs ~0.1 s of bookkeeping
    column = adata.X[:, [adata.var_names.get_loc(var)]]
    values = np.asarray(column.toarray() if hasattr(column, "toarray") else column)[:, 0][mask]
    values = values[np.isfinite(values)].astype(float)
    if values.size == 0:
        return np.nan, np.nan
    median = float(np.median(values))
    params = adata.uns.get(K.TRANSFORM, {}).get(var)
    if params is None:  # not transformed: the values are already linear
        return median, median
    from .pp import inverse_transform  # another stage's module; imported when needed

    # the transform is monotone, so the median of the linear values is taken on the sorted middle pair
    ordered = np.sort(values)
    middle = ordered[[(values.size - 1) // 2, values.size // 2]]
    linear = np.asarray(inverse_transform(middle, params), dtype=float)
    return median, float(linear.mean())


def sample_readouts(adata: AnnData) -> dict[str, float]:
    """One summary row of readouts for a gated sample (see :data:`READOUT_LABELS`).

    Counts are events in the population; percentages are 0-100 of the named parent (``treg_ki67_pct`` =
    Ki67+ % of Treg); ``treg_teff_ratio = treg_count / teff_count``; helper subsets are % of CD4
    (cTfh, cytokine+), of cTfh (PD-1hi) or of memory CD4 (CD45RA- not Treg: Th1, Th2, Th17, Th1/17),
    ``th17_treg_ratio = Th17 count / Treg count``; ``treg_cd25_median`` is the median
    CD25 of Tregs on the transformed scale and ``treg_cd25_median_linear`` the same on the linear scale.
    A readout that cannot be computed is NaN (empty in CSV), never 0.
    """
    table = population_table(adata).set_index("population")
    counts = {n: (float(c) if pd.notna(c) else np.nan) for n, c in table["count"].items()}

    def count(name: str) -> float:
        return counts.get(name, np.nan)

    out: dict[str, float] = {
        "cd4_count": count("CD4"),
        "treg_count": count("Treg"),
        "teff_count": count("Teff"),
    }
    for key, (num, denom) in _PCT_READOUTS.items():
        out[key] = _pct(count(num), count(denom))
    for key, (num, denom) in _RATIO_READOUTS.items():
        out[key] = _ratio(count(num), count(denom))
    treg = np.isfinite(count("Treg"))
    # .to_numpy(): np.asarray on a Series looks up array attributes through pandas, which hashes a
    # million event names the first time (0.14 s)
    treg_col = adata.obsm[K.POPULATIONS]["Treg"] if treg else None
    mask = treg_col.to_numpy(dtype=bool) if treg else np.zeros(0, bool)
    med, med_linear = _median_on(adata, mask, "CD25") if treg else (np.nan, np.nan)
    out["treg_cd25_median"], out["treg_cd25_median_linear"] = med, med_linear
    return {key: out[key] for key in READOUTS}


def timepoint_order(summary: pd.DataFrame) -> list[str]:
    """Timepoint labels ordered by their median ``day`` (ties and missing days: first appearance)."""
    tp = summary["timepoint"].astype(str)
    first = {t: i for i, t in reversed(list(enumerate(tp)))}
    if "day" in summary:
        days = pd.to_numeric(summary["day"], errors="coerce").groupby(tp.values).median()
    else:
        days = pd.Series(dtype=float)
    key = {t: (days.get(t, np.nan), first[t]) for t in first}
    return sorted(first, key=lambda t: (np.isnan(key[t][0]), np.nan_to_num(key[t][0]), key[t][1]))


def baseline_rows(summary: pd.DataFrame) -> pd.Series:
    """Bool Series, True on each patient's baseline row.

    The baseline is the patient's row with the smallest ``day``; for a patient without any day it is the
    earliest timepoint in :func:`timepoint_order` (the manifest order), first row on ties.
    """
    order = {t: i for i, t in enumerate(timepoint_order(summary))}
    rank = summary["timepoint"].astype(str).map(order).astype(float)
    day = pd.to_numeric(summary["day"], errors="coerce") if "day" in summary else rank * np.nan
    frame = pd.DataFrame(
        {"patient": summary["patient"].astype(str).values, "day": day.values, "rank": rank.values},
        index=np.arange(len(summary)),
    )
    has_day = frame.groupby("patient")["day"].transform(lambda d: d.notna().any())
    frame["key"] = np.where(has_day, frame["day"], frame["rank"])
    frame["key"] = frame["key"].fillna(np.inf)
    chosen = frame.sort_values(["key"], kind="stable").groupby("patient").head(1).index
    return pd.Series(np.isin(np.arange(len(summary)), chosen), index=summary.index)


def add_baseline_change(
    summary: pd.DataFrame,
    *,
    readouts: list[str] | None = None,
    auc_window: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """Per patient change versus baseline: fold changes and the area under the Treg change curve.

    Parameters
    ----------
    summary
        One row per sample with ``patient``, ``timepoint``, optional ``day`` and readout columns.
    readouts
        Readouts to express as fold of baseline; default every :data:`READOUTS` column present.
    auc_window
        ``(first_day, last_day)`` of the maintenance period for the AUC. Default: from the patient's
        baseline day to their last sampled day.

    Returns
    -------
    A copy of ``summary`` with ``baseline_timepoint``; ``<readout>_fold_vs_baseline`` (value / the
    patient's baseline value; NaN where either is missing or the baseline is 0); ``treg_fold_vs_baseline``
    (= ``treg_pct_cd4_fold_vs_baseline``, the contract name); ``treg_change_auc``: trapezoid integral over
    ``day`` of ``treg_pct_cd4 - baseline treg_pct_cd4`` (percentage points x days) over the window, the
    curve linearly interpolated at the window edges, NaN without days or with fewer than two points in the
    window; and ``treg_change_auc_per_day`` = that area / window length (the mean change in points).
    Both AUC columns are per patient, repeated on each of the patient's rows.
    """
    if not {"patient", "timepoint"} <= set(summary.columns):
        logger.warning("summary has no patient/timepoint columns: no change versus baseline")
        return summary.copy()
    known = summary["patient"].notna() & summary["timepoint"].notna()
    if not known.all():  # samples without a patient or timepoint have no baseline: NaN folds
        done = add_baseline_change(summary.loc[known], readouts=readouts, auc_window=auc_window)
        return pd.concat([done, summary.loc[~known]]).loc[summary.index]
    out = summary.copy()
    if readouts is None:
        readouts = [r for r in READOUTS if r in out]
    is_base = baseline_rows(out)
    patient = out["patient"].astype(str)
    base = out.loc[is_base].set_index(patient[is_base])
    out["baseline_timepoint"] = patient.map(base["timepoint"].astype(str)).values
    for r in readouts:
        value = pd.to_numeric(out[r], errors="coerce").astype(float)
        ref = patient.map(pd.to_numeric(base[r], errors="coerce").astype(float)).astype(float)
        fold = value / ref.where(ref != 0)
        out[f"{r}_fold_vs_baseline"] = fold.replace([np.inf, -np.inf], np.nan).values
    if "treg_pct_cd4" in readouts:
        out["treg_fold_vs_baseline"] = out["treg_pct_cd4_fold_vs_baseline"]
        auc = _treg_auc(out, is_base, auc_window)
        out["treg_change_auc"] = patient.map(auc["auc"]).astype(float).values
        out["treg_change_auc_per_day"] = patient.map(auc["per_day"]).astype(float).values
    return out


def _treg_auc(
    summary: pd.DataFrame, is_base: pd.Series, window: tuple[float, float] | None
) -> pd.DataFrame:
    """Per patient trapezoid area of (treg_pct_cd4 - baseline) over day, and that area per day."""
    result = {}
    if "day" not in summary:
        return pd.DataFrame(columns=["auc", "per_day"], dtype=float)
    frame = pd.DataFrame(
        {
            "patient": summary["patient"].astype(str).values,
            "day": pd.to_numeric(summary["day"], errors="coerce").values,
            "value": pd.to_numeric(summary["treg_pct_cd4"], errors="coerce").values,
            "base": is_base.values,
        }
    )
    for patient, rows in frame.groupby("patient", sort=False):
        result[patient] = _auc_one(rows, window)
    return pd.DataFrame.from_dict(result, orient="index", columns=["auc", "per_day"])


def _auc_one(rows: pd.DataFrame, window: tuple[float, float] | None) -> tuple[float, float]:
    base = rows.loc[rows["base"]]
    base_value, base_day = float(base["value"].iloc[0]), float(base["day"].iloc[0])
    points = rows.dropna(subset=["day", "value"]).groupby("day")["value"].mean().sort_index()
    if not np.isfinite(base_value) or not np.isfinite(base_day) or len(points) < 2:
        return np.nan, np.nan
    days, change = points.index.to_numpy(float), points.to_numpy(float) - base_value
    lo, hi = (base_day, days[-1]) if window is None else (float(window[0]), float(window[1]))
    lo, hi = max(lo, days[0]), min(hi, days[-1])
    if not hi > lo:
        return np.nan, np.nan
    inside = days[(days > lo) & (days < hi)]
    grid = np.concatenate([[lo], inside, [hi]])
    area = float(np.trapezoid(np.interp(grid, days, change), grid))
    return area, area / (hi - lo)
