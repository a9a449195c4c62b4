"""``report.html``: one self-contained page with the run's QC, gating, trial readouts, statistics and methods.

Sections, in reading order: overview (counts, headline Treg result, warnings), QC table, gating strategy,
trial results (trajectories and paired boxes for Treg % of CD4 and the Treg/Teff ratio, Treg vs Teff
activation, other readouts), statistics, per-sample gating paths, clusters (when run), methods.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..readouts import HELPER_READOUTS, READOUT_LABELS, timepoint_order
from . import _figures as svg
from ._html import details, esc, img, page, section, table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["write_report"]

logger = logging.getLogger("cytokit")

_HEADLINE = ("treg_pct_cd4", "treg_teff_ratio")
_MORE = (
    "treg_ki67_pct",
    "teff_ki67_pct",
    "treg_hladr_pct",
    "teff_hladr_pct",
    "treg_cd25_median_linear",
    "teff_cd25_pct",
    "treg_cd45raneg_pct",
    "treg_helios_pct",
    "treg_cd127lo_pct_cd4",
    "nk_cd56bright_pct_lymph",
    "nk_cd56bright_pct_nk",
    *HELPER_READOUTS,
)
_STATS_HEADERS = {
    "n_pairs": "pairs",
    "baseline_median": "baseline median",
    "median_difference": "median change",
    "median_fold_change": "median fold",
    "p_value": "p (Wilcoxon)",
    "p_adj": "q (BH)",
}


def _measured(summary: pd.DataFrame, readout: str) -> bool:
    return readout in summary and pd.to_numeric(summary[readout], errors="coerce").notna().any()


def _status_counts(qc: pd.DataFrame) -> dict[str, int]:
    status = qc["status"].astype(str) if "status" in qc else pd.Series(dtype=str)
    return {s: int((status == s).sum()) for s in ("ok", "warning", "failed")}


def _overview(summary, stats, qc, *, notes: str = "") -> str:
    counts = _status_counts(qc)
    cards = [
        (len(qc), "input files", ""),
        (counts["ok"], "ok", ""),
        (counts["warning"], "with warnings", "warn" if counts["warning"] else ""),
        (counts["failed"], "failed", "bad" if counts["failed"] else ""),
        (summary["patient"].nunique() if "patient" in summary else 0, "patients", ""),
        (summary["timepoint"].nunique() if "timepoint" in summary else 0, "timepoints", ""),
    ]
    html = (
        '<div class="cards">'
        + "".join(
            f'<div class="card {c}"><b>{esc(v)}</b><span>{esc(t)}</span></div>' for v, t, c in cards
        )
        + "</div>"
    )
    html += notes + _headline(stats)
    problems = qc.loc[qc["status"].astype(str) != "ok"] if "status" in qc else qc.iloc[:0]
    if len(problems):
        items = "".join(
            f'<li><span class="status-{esc(r.get("status"))}">{esc(r.get("status"))}</span> '
            f"<b>{esc(r.get('sample', r.get('file')))}</b>: {esc(r.get('message', ''))}</li>"
            for r in problems.to_dict("records")
        )
        html += f'<h3>Samples to review</h3><ul class="warnings">{items}</ul>'
    return section("overview", "Run overview", html)


_RUN_NOTES = ("strategy choice", "pre-gated files", "absent markers")


def _run_notes(methods: Mapping) -> str:
    """Run facts a reader must see before the numbers (also listed in the methods)."""
    items = "".join(
        f"<li><b>{esc(k)}</b>: {esc(methods[k])}</li>" for k in _RUN_NOTES if methods.get(k)
    )
    return f'<ul class="note">{items}</ul>' if items else ""


def _headline(stats: pd.DataFrame) -> str:
    if stats is None or stats.empty or "readout" not in stats:
        return (
            '<p class="note">No paired statistics (a single timepoint, or no baseline pairs).</p>'
        )
    rows = stats.loc[stats["readout"].isin(_HEADLINE)].copy()
    if rows.empty:
        return ""
    rows["readout"] = rows["readout"].map(READOUT_LABELS)
    cols = [
        "readout",
        "timepoint",
        "n_pairs",
        "baseline_median",
        "median",
        "median_fold_change",
        "p_value",
        "p_adj",
    ]
    signif = ["signif" if q < 0.05 else "" for q in rows["p_adj"].fillna(1.0)]
    return (
        "<h3>Headline: Treg % of CD4 and Treg/Teff ratio versus baseline</h3>"
        + table(rows[cols], row_classes=signif, headers=_STATS_HEADERS)
        + '<p class="note">Green rows: Benjamini-Hochberg q &lt; 0.05 across all readouts and timepoints.</p>'
    )


def _qc(qc: pd.DataFrame) -> str:
    classes = [
        s if s in ("warning", "failed") else ""
        for s in qc.get("status", pd.Series(dtype=str)).astype(str)
    ]
    return section("qc", "Quality control", table(qc, row_classes=classes or None))


def _strategy(populations: pd.DataFrame) -> str:
    if populations is None or populations.empty or "population" not in populations:
        return section("strategy", "Gating strategy", '<p class="note">No gated sample.</p>')
    tree = svg.strategy_tree(populations)
    pivot = populations.pivot_table(
        index="population", columns="sample", values="pct_parent", sort=False
    )
    pivot = pivot.reset_index()
    body = img(
        tree,
        "gating strategy tree",
        "Populations of the strategy, each with its median % of parent.",
    )
    body += details("Population % of parent, every sample", table(pivot))
    return section("strategy", "Gating strategy", body)


def _trial(summary: pd.DataFrame, stats: pd.DataFrame) -> str:
    body = ""
    for readout in _HEADLINE:
        if not _measured(summary, readout):
            continue
        body += f"<h3>{esc(READOUT_LABELS[readout])}</h3><div class='grid2'>"
        body += img(
            svg.trial_trajectories(summary, readout),
            f"{readout} per patient",
            "Each patient over time; black: median.",
        )
        body += img(
            svg.paired_boxes(summary, stats, readout),
            f"{readout} paired",
            "p: Wilcoxon signed-rank vs baseline; q: BH-adjusted.",
        )
        body += "</div>"
    if any(_measured(summary, r) for r in svg.ACTIVATION_READOUTS):  # not for other strategies
        body += "<h3>Treg versus Teff: expansion and activation</h3>"
        body += img(
            svg.activation(summary),
            "Treg vs Teff activation",
            "Median fold change versus each patient's baseline (band: interquartile range); flat blue "
            "lines with rising red ones = Treg expansion and activation without effector activation.",
        )
    if any(_measured(summary, r) for r in HELPER_READOUTS):
        body += "<h3>Helper T-cell subsets: cTfh, Th1/Th2/Th17 and the Th17/Treg balance</h3>"
        body += img(
            svg.helper_subsets(summary),
            "helper subsets",
            "Median fold change versus each patient's baseline (band: interquartile range). cTfh = "
            "CD45RA- non-Treg CD4 CXCR5+; Th1/Th2/Th17 by CXCR3/CCR6 (CCR4 where measured) among CXCR5- "
            "memory CD4. In the ld-IL2 SLE trial Tregs rose while cTfh and Th17 fell and Th1/Th2 stayed flat.",
        )
    more = [r for r in _MORE if _measured(summary, r)]
    if more:
        grid = (
            "<div class='grid2'>"
            + "".join(img(svg.paired_boxes(summary, stats, r), f"{r} paired") for r in more)
            + "</div>"
        )
        body += details(f"Activation and subset readouts ({len(more)})", grid, open_=True)
    if not body:
        body = '<p class="note">No readouts.</p>'
    return section("trial", "Trial results", body)


def _stats(stats: pd.DataFrame, summary: pd.DataFrame) -> str:
    body = (
        '<p class="note">Wilcoxon signed-rank test (two-sided, scipy) of each readout at each timepoint '
        "against each patient's baseline (smallest day), on patients measured at both; p-values adjusted "
        "with Benjamini-Hochberg across every readout and timepoint (q). An empty p means the test could "
        "not be run (see note).</p>"
    )
    if stats is not None and not stats.empty:
        shown = stats.drop(columns=["day"], errors="ignore")
        shown.insert(1, "label", shown["readout"].map(READOUT_LABELS).fillna(shown["readout"]))
        signif = ["signif" if q < 0.05 else "" for q in shown["p_adj"].fillna(1.0)]
        body += table(shown, row_classes=signif, headers=_STATS_HEADERS)
    else:
        body += '<p class="note">(no tests)</p>'
    if summary is not None and not summary.empty:
        body += details(f"Summary table ({len(summary)} samples)", table(summary))
    return section("stats", "Statistics", body)


def _gating(gate_figures: Mapping, qc: pd.DataFrame, summary: pd.DataFrame) -> str:
    if not gate_figures:
        return section("gating", "Gating per sample", '<p class="note">No gating figures.</p>')
    status = dict(zip(qc.get("sample", []), qc.get("status", []), strict=False)) if len(qc) else {}
    order = list(summary["sample"].astype(str)) if "sample" in summary else []
    names = sorted(gate_figures, key=lambda s: (order.index(s) if s in order else len(order), s))
    blocks = []
    for name in names:
        st = str(status.get(name, "ok"))
        label = f'{esc(name)} <span class="status-{esc(st)}">({esc(st)})</span>'
        try:
            figure = img(gate_figures[name], f"gating path of {name}")
            blocks.append(details(label, figure, open_=st != "ok"))  # samples to review start open
        except OSError as err:
            logger.warning("report: gating figure of %s not readable: %s", name, err)
    note = (
        '<p class="note">Each panel: the gate as placed on that sample over its parent population, '
        "titled with the % of parent; orange/red titles: fallback or failed placement.</p>"
    )
    return section("gating", "Gating per sample", note + "".join(blocks))


#: Name of the cluster x marker heatmap among the cluster figures: shown beside the abundance-change table.
CLUSTER_HEATMAP = "Cluster x marker medians"
#: Name of the per-cluster fold chart: beside the heatmap (same cluster rows, same order).
ABUNDANCE_CHANGE = "Cluster % change vs baseline (median fold over patients)"
_DA_SHOWN = [
    "cluster",
    "label",
    "timepoint",
    "baseline_median",
    "median",
    "median_fold_change",
    "p_adj",
]


def _clusters(clusters, cluster_figures, da=None, alpha: float = 0.05) -> str:
    if clusters is None and not cluster_figures:
        return ""
    figures = dict(cluster_figures or {})
    body = ""
    if isinstance(da, pd.DataFrame) and not da.empty:
        body += _da_block(da, alpha)
    pair = [figures.pop(n) for n in (CLUSTER_HEATMAP, ABUNDANCE_CHANGE) if n in figures]
    names = [n for n in (CLUSTER_HEATMAP, ABUNDANCE_CHANGE) if n in (cluster_figures or {})]
    if pair:
        body += '<div class="grid2">' + "".join(
            f"<div>{img(f, n, n)}</div>" for f, n in zip(pair, names, strict=True)
        )
        body += "</div>"
    # single figures two by two; wide multi-panel figures (names ending "markers") on their own row
    wide = {n: f for n, f in figures.items() if str(n).endswith("markers")}
    pairs = [img(f, str(n), str(n)) for n, f in figures.items() if n not in wide]
    if pairs:
        body += f'<div class="grid2">{"".join(f"<div>{p}</div>" for p in pairs)}</div>'
    for name, source in wide.items():
        body += img(source, str(name), str(name))
    if isinstance(clusters, pd.DataFrame) and not clusters.empty:
        index = [c for c in ("cluster", "label") if c in clusters]
        if "pct" in clusters and "sample" in clusters and index:
            wide = clusters.pivot_table(
                index=index, columns="sample", values="pct", sort=False
            ).reset_index()
            body += details("Cluster % per sample", table(wide), open_=False)
        else:
            body += table(clusters)
    return section("clusters", "Unsupervised clusters", body)


def _da_block(da: pd.DataFrame, alpha: float) -> str:
    """The clusters whose abundance changes (q < alpha), with their labels; the full table folded."""
    shown = [c for c in _DA_SHOWN if c in da]
    changed = da.loc[da["p_adj"] < alpha].sort_values(["p_adj", "timepoint"])[shown]
    method = str(da["method"].iloc[0]) if "method" in da else "wilcoxon"
    test = (
        "quasi-binomial GLM on counts with patient blocks"
        if method == "glm"
        else "Wilcoxon signed-rank on per-sample %"
    )
    note = (
        f'<p class="note">Cluster % = events of the cluster / every event of the clustered population of '
        f"the sample; paired with each patient's baseline ({test}); q = Benjamini-Hochberg over every "
        f"cluster and timepoint. {len(changed)} of {len(da)} cluster x timepoint tests with q &lt; "
        f"{alpha:g}.</p>"
    )
    headers = {"median_fold_change": "median fold", "p_adj": "q", "baseline_median": "baseline %"}
    headers["median"] = "median %"
    if len(changed):
        body = table(changed, headers=headers)
    else:
        closest = da.sort_values("p_value", kind="stable").head(5)[shown]
        body = f'<p class="note">None at q &lt; {alpha:g}; the five smallest p-values:</p>' + table(
            closest, headers=headers
        )
    signif = ["signif" if q < alpha else "" for q in da["p_adj"].fillna(1.0)]
    full = details(
        "Differential abundance, every cluster and timepoint (da.csv)",
        table(da, row_classes=signif),
    )
    return "<h3>Clusters that change versus baseline</h3>" + note + body + full


def _methods(methods: Mapping) -> str:
    items = []
    for key, value in methods.items():
        if isinstance(value, Mapping):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        elif isinstance(value, list | tuple):
            value = ", ".join(map(str, value))
        items.append(f"<dt>{esc(key)}</dt><dd>{esc(value)}</dd>")
    command = (
        methods.get("command") or "cytokit run INPUT --out DIR  (with the panel/strategy above)"
    )
    body = f'<dl class="methods">{"".join(items)}</dl>'
    body += f"<h3>How to rerun</h3><pre>{esc(command)}</pre>"
    body += (
        '<p class="note">Readouts: Treg % of CD4 = 100 x Treg / CD4 events; Treg/Teff ratio = Treg / Teff '
        "events; subset percentages are of their parent (e.g. Ki67+ % of Treg); CD25 median on Tregs in "
        "transformed and linear units. Fold vs baseline = value / the patient's baseline value. "
        "treg_change_auc = trapezoid area over day of (Treg % of CD4 - baseline), percentage points x days, "
        "over the AUC window above (default: from baseline to the last sample). Helper subsets (when the panel has CXCR5/PD-1/CXCR3/CCR6): "
        "cTfh = CXCR5+ % of CD4 among memory (CD45RA-, not Treg) CD4; PD-1hi % of cTfh; Th1 CXCR3+CCR6-, "
        "Th2 CXCR3-CCR6- (CCR4+ where measured), Th17 CXCR3-CCR6+ (CCR4+ where measured) % of memory CD4, "
        "among CXCR5- memory cells; th17_treg_ratio = Th17 / Treg events; chemokine-receptor thresholds "
        "gate the excess of memory cells over the sample's naive CD4 cells (median-anchored Overton "
        "subtraction). Unavailable readouts are empty, never 0.</p>"
    )
    return section("methods", "Methods", body)


def write_report(
    out_dir: str | Path,
    *,
    summary: pd.DataFrame,
    stats: pd.DataFrame,
    qc: pd.DataFrame,
    populations: pd.DataFrame,
    gate_figures: Mapping[str, str | Path | bytes],
    methods: Mapping,
    clusters: pd.DataFrame | None = None,
    cluster_figures: Mapping[str, str | Path | bytes | Figure] | None = None,
    da: pd.DataFrame | None = None,
) -> Path:
    """Write ``report.html`` into ``out_dir``: one self-contained page (no network, no external files).

    Parameters
    ----------
    out_dir
        Folder to write into (created if needed).
    summary, stats, qc, populations
        The run's ``summary.csv``, ``stats.csv``, ``qc.csv`` and ``populations.csv`` frames.
    gate_figures
        Sample -> gating-path PNG (path or bytes), shown collapsed one per sample.
    methods
        Versions, panel, strategy, parameters and ``command`` to rerun (values may be nested dicts).
    clusters, cluster_figures
        ``clusters.csv`` frame and named figures (PNG path/bytes or Figure) of the unsupervised analysis;
        the figure named :data:`CLUSTER_HEATMAP` sits beside the differential abundance table.
    da
        ``da.csv`` frame: the clusters that change versus baseline are listed with their labels.

    Returns
    -------
    Path of the written ``report.html``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summary if summary is not None else pd.DataFrame()
    qc = qc if qc is not None else pd.DataFrame()
    stats = stats if stats is not None else pd.DataFrame()
    parts = [
        _overview(summary, stats, qc, notes=_run_notes(methods or {})),
        _qc(qc),
        _strategy(populations),
        _trial(summary, stats)
        if {"patient", "timepoint"} <= set(summary.columns) and len(summary)
        else "",
        _stats(stats, summary),
        _gating(gate_figures, qc, summary),
        _clusters(clusters, cluster_figures, da),
        _methods(methods or {}),
    ]
    nav = [
        ("overview", "Overview"),
        ("qc", "QC"),
        ("strategy", "Strategy"),
        ("trial", "Trial"),
        ("stats", "Statistics"),
        ("gating", "Gating"),
        ("clusters", "Clusters"),
        ("methods", "Methods"),
    ]
    nav = [(a, t) for a, t in nav if f'id="{a}"' in "".join(parts)]
    tps = (
        ", ".join(timepoint_order(summary))
        if {"timepoint"} <= set(summary.columns) and len(summary)
        else ""
    )
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = (
        f"{len(qc)} files; timepoints {tps}; generated {when}"
        if tps
        else f"{len(qc)} files; {when}"
    )
    path = out / "report.html"
    path.write_text(
        page("cytokit immunomonitoring report", subtitle, nav, "".join(parts)), encoding="utf-8"
    )
    logger.info("wrote %s", path)
    return path
