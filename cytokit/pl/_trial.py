"""Trial figures from the summary table: per-patient trajectories, paired boxes with p-values, activation.

All take the ``summary.csv`` frame (one row per sample with ``patient``, ``timepoint``, optional ``day``
and readout columns) and return a matplotlib Figure; nothing is saved or shown here. The data each
figure shows is prepared by helpers without matplotlib (``_x``, ``_fold_quantiles``, ``_activation_data``,
``_helper_data``), which the report's SVG figures (``cytokit.report._figures``) share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..readouts import READOUT_LABELS, add_baseline_change, timepoint_order

if TYPE_CHECKING:  # matplotlib loads only when a figure is drawn (the report draws SVG without it)
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "activation",
    "gate_cluster_agreement",
    "helper_subsets",
    "paired_boxes",
    "trial_trajectories",
]

_TREG, _TEFF = "#c0392b", "#2c7fb8"

# (title, Treg readout, Teff readout): the "Treg activation without effector activation" panels
_ACTIVATION = [
    ("Expansion (% of CD4)", "treg_pct_cd4", "teff_pct_cd4"),
    ("Ki67+ (% of subset)", "treg_ki67_pct", "teff_ki67_pct"),
    ("HLA-DR+ (% of subset)", "treg_hladr_pct", "teff_hladr_pct"),
    ("CD25 (Treg median MFI; Teff % CD25+)", "treg_cd25_median_linear", "teff_cd25_pct"),
]


# (title, [(readout, colour, legend name)]): the SLE trial's helper-subset panels
_HELPER = [
    ("cTfh and activated cTfh", [("tfh_pct_cd4", "#6a3d9a", "cTfh % CD4"),
                                 ("tfh_pd1hi_pct_tfh", "#cab2d6", "PD-1hi % cTfh")]),
    ("Th subsets (% of memory CD4)", [("th1_pct_mem", "#1b9e77", "Th1"), ("th2_pct_mem", "#d95f02", "Th2"),
                                      ("th17_pct_mem", "#e7298a", "Th17")]),
    ("Th17/Treg balance", [("th17_treg_ratio", "#e7298a", "Th17/Treg"), ("treg_pct_cd4", _TREG, "Treg % CD4")]),
    ("Cytokine+ (% of CD4)", [("il17a_pct_cd4", "#e7298a", "IL-17A+"), ("ifng_pct_cd4", "#1b9e77", "IFN-g+"),
                              ("il4_pct_cd4", "#d95f02", "IL-4+")]),
]  # fmt: skip


# fixed margins of the single-axes trial figures (fractions of the figure): room for 5-digit tick labels
# and the axis label on the left, the tick labels and axis label below, the title on top
_MARGINS = {"left": 0.12, "bottom": 0.12, "top": 0.92}

#: matplotlib's tab20 colours, one per patient (cycled)
TAB20 = (
    "#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896", "#9467bd",
    "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7", "#bcbd22", "#dbdb8d",
    "#17becf", "#9edae5",
)  # fmt: skip


def _label(readout: str) -> str:
    return READOUT_LABELS.get(readout, readout.replace("_", " "))


def _x(summary: pd.DataFrame) -> tuple[pd.Series, str, dict[str, float]]:
    """x of each row: ``day`` when every row has one, else the timepoint's rank; axis label; ticks."""
    order = timepoint_order(summary)
    tp = summary["timepoint"].astype(str)
    day = pd.to_numeric(summary["day"], errors="coerce") if "day" in summary else None
    if day is not None and day.notna().all() and len(day):
        ticks = day.groupby(tp.values).median().to_dict()
        return day.astype(float), "day", ticks
    rank = {t: float(i) for i, t in enumerate(order)}
    return tp.map(rank).astype(float), "timepoint", rank


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, color="#555555")
    ax.set_xticks([])
    ax.set_yticks([])


def _set_ticks(ax: Axes, ticks: dict[str, float], rotate: bool = False) -> None:
    seen = _tick_positions(ticks)
    ax.set_xticks(list(seen), list(seen.values()), fontsize=8, rotation=45 if rotate else 0)


def trial_trajectories(summary: pd.DataFrame, readout: str) -> Figure:
    """One line per patient of ``readout`` over day (spaghetti plot), with the median per timepoint.

    Parameters
    ----------
    summary
        The trial's summary table.
    readout
        A numeric column of ``summary`` (e.g. ``"treg_pct_cd4"``).

    Returns
    -------
    The Figure; x is ``day`` when every sample has one, else the timepoints in order.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0))
    # fixed margins (room for the legend on the right): the report draws ~17 of these single-axes
    # figures and constrained layout's text measuring was half of each one's drawing time
    fig.subplots_adjust(**_MARGINS, right=0.83)
    ax = fig.add_subplot()
    ax.set_title(_label(readout), fontsize=11)
    if (
        readout not in summary
        or pd.to_numeric(summary[readout], errors="coerce").notna().sum() == 0
    ):
        _empty(ax, f"{readout}: not measured")
        return fig
    frame, xlabel, ticks = _trajectory_data(summary, readout)
    colors = _patient_colors(frame["patient"])
    for patient, rows in frame.groupby("patient", sort=False):
        rows = rows.sort_values("x")
        ax.plot(
            rows["x"], rows["y"], "-o", ms=3, lw=1, alpha=0.75, color=colors[patient], label=patient
        )
    med = frame.groupby("x")["y"].median()
    ax.plot(med.index, med.values, "-", color="black", lw=2.6, label="median", zorder=5)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(_label(readout), fontsize=9)
    if xlabel == "timepoint":
        _set_ticks(ax, ticks)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.25)
    if frame["patient"].nunique() <= 16:
        ax.legend(fontsize=7, ncol=1, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig


def _trajectory_data(summary: pd.DataFrame, readout: str) -> tuple[pd.DataFrame, str, dict]:
    """Rows ``x``, ``y``, ``patient`` of a measured readout (NaN dropped), the x label and ticks."""
    x, xlabel, ticks = _x(summary)
    frame = pd.DataFrame(
        {
            "x": x.values,
            "y": pd.to_numeric(summary[readout], errors="coerce").values,
            "patient": summary["patient"].astype(str).values,
        }
    ).dropna()
    return frame, xlabel, ticks


def _patient_colors(patients: pd.Series) -> dict[str, str]:
    names = list(dict.fromkeys(patients))
    return {p: TAB20[i % len(TAB20)] for i, p in enumerate(names)}


def _tick_positions(ticks: dict[str, float]) -> dict[float, str]:
    """Position -> label of the x ticks; several labels on the same day (or very close) would overlap,
    so the first of each position is kept."""
    seen: dict[float, str] = {}
    for t, v in sorted(ticks.items(), key=lambda kv: kv[1]):
        if np.isfinite(v):
            seen.setdefault(float(v), t)
    return seen


def _format_p(p: float, prefix: str) -> str:
    if not np.isfinite(p):
        return f"{prefix} n/a"
    return f"{prefix}={p:.2g}" if p >= 0.001 else f"{prefix}<0.001"


def paired_boxes(summary: pd.DataFrame, stats: pd.DataFrame, readout: str) -> Figure:
    """Box and points of ``readout`` per timepoint, each patient's points joined, p-values on top.

    Parameters
    ----------
    summary
        The trial's summary table.
    stats
        The table of :func:`cytokit.stats.paired_tests` (``p_value`` and ``p_adj`` per timepoint).
    readout
        A numeric column of ``summary``.

    Returns
    -------
    The Figure; above each timepoint after baseline: ``p`` (Wilcoxon signed-rank vs baseline), ``q``
    (Benjamini-Hochberg adjusted) and the number of pairs.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2))
    fig.subplots_adjust(**_MARGINS, right=0.98)  # fixed margins, as trial_trajectories
    ax = fig.add_subplot()
    ax.set_title(f"{_label(readout)} vs baseline", fontsize=11)
    values = pd.to_numeric(summary.get(readout, pd.Series(dtype=float)), errors="coerce")
    if values.notna().sum() == 0:
        _empty(ax, f"{readout}: not measured")
        return fig
    frame, order, pos = _paired_data(summary, values)
    for _, rows in frame.groupby("patient", sort=False):
        rows = rows.sort_values("x")
        ax.plot(rows["x"], rows["y"], "-", color="#9aa5b1", lw=0.8, alpha=0.8, zorder=1)
    groups = [frame.loc[frame["tp"] == t, "y"].to_numpy() for t in order]
    ax.boxplot(
        groups,
        positions=list(range(len(order))),
        widths=0.5,
        showfliers=False,
        patch_artist=True,
        boxprops={"facecolor": "#eef3f8"},
        medianprops={"color": "black"},
    )
    ax.scatter(frame["x"], frame["y"], s=14, color=_TREG, zorder=3)
    _annotate_p(ax, stats, readout, pos, frame["y"])
    ax.set_xticks(range(len(order)), order, fontsize=8, rotation=45 if len(order) > 8 else 0)
    if len(order) > 8:  # room for the slanted timepoint names
        fig.subplots_adjust(bottom=0.2)
    ax.set_ylabel(_label(readout), fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(axis="y", alpha=0.25)
    return fig


def _paired_data(summary: pd.DataFrame, values: pd.Series) -> tuple[pd.DataFrame, list[str], dict]:
    """Rows ``tp``, ``y``, ``patient``, ``x`` (the timepoint's rank) of a readout's values, the
    timepoints in order and their positions."""
    order = timepoint_order(summary)
    pos = {t: i for i, t in enumerate(order)}
    frame = pd.DataFrame(
        {
            "tp": summary["timepoint"].astype(str).values,
            "y": values.values,
            "patient": summary["patient"].astype(str).values,
        }
    ).dropna()
    frame["x"] = frame["tp"].map(pos).astype(float)
    return frame, order, pos


def _p_labels(
    stats: pd.DataFrame, readout: str, pos: dict, y: pd.Series
) -> tuple[list, float, float]:
    """``(x, [p, q, n] lines)`` above each tested timepoint, the y of their foot and the y limit that
    leaves room for them; empty without tests."""
    lo, hi = float(y.min()), float(y.max())
    if stats is None or stats.empty or "readout" not in stats:
        return [], hi, np.nan
    rows = stats.loc[stats["readout"] == readout]
    top = hi + 0.06 * (hi - lo if hi > lo else abs(hi) or 1.0)
    labels = []
    for _, row in rows.iterrows():
        x = pos.get(str(row["timepoint"]))
        if x is None:
            continue
        lines = [_format_p(float(row["p_value"]), "p"), _format_p(float(row["p_adj"]), "q")]
        labels.append((x, [*lines, f"n={int(row['n_pairs'])}"]))
    return labels, top, top + 0.32 * (top - lo if top > lo else 1.0)


def _annotate_p(ax: Axes, stats: pd.DataFrame, readout: str, pos: dict, y: pd.Series) -> None:
    labels, top, ylim = _p_labels(stats, readout, pos, y)
    if not np.isfinite(ylim):
        return
    for x, lines in labels:
        ax.text(x, top, "\n".join(lines), ha="center", va="bottom", fontsize=7)
    ax.set_ylim(top=ylim)


def activation(summary: pd.DataFrame) -> Figure:
    """Treg versus Teff over time as median fold of baseline: expansion, Ki67+, HLA-DR+ and CD25.

    Each panel shows the patients' median fold change versus their own baseline (band: 25-75th
    percentile) for Treg (red) and Teff (blue); a Treg response with flat Teff lines is the "Treg
    expansion and activation without effector activation" of the ld-IL2 trials.

    Parameters
    ----------
    summary
        The trial's summary table; fold columns are computed when absent.

    Returns
    -------
    The Figure (one panel per readout pair; "not measured" where the panel lacks the markers).
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    folded = _with_folds(summary, [r for _, a, b in _ACTIVATION for r in (a, b)])
    x, xlabel, ticks = _x(folded)
    fig = Figure(figsize=(12.8, 3.4))
    # fixed margins: constrained layout of the four panels and the outside legend cost more than the rest
    # of the figure's drawing
    fig.subplots_adjust(left=0.055, right=0.99, bottom=0.15, top=0.84, wspace=0.22)
    axes = fig.subplots(1, len(_ACTIVATION), squeeze=False)[0]
    for ax, (title, treg, teff) in zip(axes, _ACTIVATION, strict=True):
        lines = ((treg, _TREG, "Treg"), (teff, _TEFF, "Teff"))
        _fold_panel(ax, folded, (x, xlabel, ticks), title, lines, empty="not measured")
    axes[0].set_ylabel("fold vs baseline (median, IQR)", fontsize=8)
    handles = [
        Line2D([], [], color=_TREG, marker="o", ms=3),
        Line2D([], [], color=_TEFF, marker="o", ms=3),
    ]
    fig.legend(handles, ["Treg", "Teff"], loc="upper right", ncols=2, fontsize=8, frameon=False)
    return fig


def _with_folds(summary: pd.DataFrame, readouts: list[str]) -> pd.DataFrame:
    """``summary`` with the fold-vs-baseline columns of ``readouts`` (computed when absent)."""
    wanted = [r for r in readouts if r in summary]
    if any(f"{r}_fold_vs_baseline" not in summary for r in wanted):
        return add_baseline_change(summary, readouts=wanted)
    return summary


def _fold_panel(ax, folded, xaxis, title: str, lines, *, empty: str) -> bool:
    """One panel of median fold-vs-baseline lines (readout, colour, name); False when none is drawn."""
    x, xlabel, ticks = xaxis
    ax.set_title(title, fontsize=9)
    if not any([_fold_line(ax, folded, x, r, color, name) for r, color, name in lines]):
        _empty(ax, empty)
        return False
    ax.axhline(1.0, color="black", lw=0.8, ls="--")
    ax.set_xlabel(xlabel, fontsize=8)
    if xlabel == "timepoint":
        _set_ticks(ax, ticks, rotate=len(ticks) > 5)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.25)
    return True


def helper_subsets(summary: pd.DataFrame) -> Figure:
    """Helper T-cell subsets over time as median fold of baseline: cTfh, Th1/Th2/Th17, Th17/Treg.

    The SLE trial's readouts (He et al., Nat Med 2016: ld-IL2 raised Tregs and lowered cTfh and Th17
    while Th1/Th2 stayed flat), drawn like :func:`activation` (median fold versus each patient's own
    baseline, band 25-75th percentile). Panels whose markers the panel lacks are left out; the
    cytokine panel appears only for a stimulated intracellular-cytokine panel.

    Parameters
    ----------
    summary
        The trial's summary table; fold columns are computed when absent.

    Returns
    -------
    The Figure ("not measured" when no helper-subset readout has a value).
    """
    from matplotlib.figure import Figure

    panels, folded = _helper_data(summary)
    fig = Figure(figsize=(3.3 * max(len(panels), 1), 3.4), layout="constrained")
    if not panels:
        _empty(fig.add_subplot(), "helper subsets: not measured")
        return fig
    x, xlabel, ticks = _x(folded)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, lines) in zip(axes, panels, strict=True):
        if _fold_panel(ax, folded, (x, xlabel, ticks), title, lines, empty="no baseline pairs"):
            ax.legend(fontsize=7, frameon=False, loc="best")
    axes[0].set_ylabel("fold vs baseline (median, IQR)", fontsize=8)
    return fig


def _helper_data(summary: pd.DataFrame) -> tuple[list, pd.DataFrame]:
    """The helper-subset panels with measured lines ``(title, [(readout, colour, name)])`` and the summary
    with their fold columns."""
    measured = [
        (title, [line for line in lines if _has_values(summary, line[0])])
        for title, lines in _HELPER
    ]
    panels = [
        (title, lines) for title, lines in measured if lines and lines[0][0] != "treg_pct_cd4"
    ]
    return panels, _with_folds(summary, [r for _, lines in panels for r, _, _ in lines])


def _has_values(summary: pd.DataFrame, readout: str) -> bool:
    return readout in summary and pd.to_numeric(summary[readout], errors="coerce").notna().any()


def _fold_quantiles(summary: pd.DataFrame, x: pd.Series, readout: str) -> pd.DataFrame | None:
    """Per x, the 25th, 50th and 75th percentile over patients of ``readout``'s fold vs baseline
    (columns 0.25, 0.5, 0.75); None when it has no positive fold."""
    column = f"{readout}_fold_vs_baseline"
    if column not in summary:
        return None
    fold = pd.to_numeric(summary[column], errors="coerce")
    frame = pd.DataFrame({"x": x.values, "f": fold.values}).dropna()
    frame = frame.loc[frame["f"] > 0]
    if frame.empty:
        return None
    return frame.groupby("x")["f"].quantile([0.25, 0.5, 0.75]).unstack()


def _fold_line(ax: Axes, summary: pd.DataFrame, x: pd.Series, readout: str, color, name) -> bool:
    q = _fold_quantiles(summary, x, readout)
    if q is None:
        return False
    ax.fill_between(q.index, q[0.25], q[0.75], color=color, alpha=0.18, lw=0)
    ax.plot(q.index, q[0.5], "-o", ms=3, color=color, label=name)
    return True


def gate_cluster_agreement(table: pd.DataFrame) -> Figure:
    """Gated population % versus the % in its matching clusters, one point per sample (``tl.gate_cluster_agreement``)."""
    from matplotlib.figure import Figure

    population = table.attrs.get("population", "population")
    fig = Figure(figsize=(4.6, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(table["gated_pct"], table["cluster_pct"], s=22, color="#c0392b", zorder=3)
    top = float(np.nanmax([table["gated_pct"].max(), table["cluster_pct"].max(), 1.0])) * 1.08
    ax.plot([0, top], [0, top], color="#888888", lw=1, ls="--", label="identity")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    of = table.attrs.get("of", "pooled events")
    ax.set_xlabel(f"gated {population} (% of {of})")
    clusters = ", ".join(table.attrs.get("clusters", [])) or "none"
    ax.set_ylabel(f"cluster(s) {clusters} (% of {of})")
    rho = table.attrs.get("spearman", np.nan)
    ax.set_title(f"{population}: gating vs clustering (Spearman {rho:.2f})", fontsize=10)
    ax.grid(alpha=0.3)
    return fig
