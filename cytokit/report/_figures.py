"""The report's trial figures and strategy tree as SVG: the same data as the ``cytokit.pl`` figures.

``cytokit.pl`` draws them with matplotlib for notebooks; the report draws them here, straight to SVG
(``_svg``), because importing matplotlib and drawing ~17 figures was ~1.3 s CPU of a four-sample run
(issue 9). The data of each figure comes from the same helpers as ``cytokit.pl`` (``pl._trial``,
``pl._gating``), so both show the same numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..pl._gating import _layout, _tree
from ..pl._trial import (
    _ACTIVATION,
    _TEFF,
    _TREG,
    _fold_quantiles,
    _helper_data,
    _label,
    _p_labels,
    _paired_data,
    _patient_colors,
    _tick_positions,
    _trajectory_data,
    _with_folds,
    _x,
)
from ._svg import Axes, Canvas, span, text_width

__all__ = ["activation", "helper_subsets", "paired_boxes", "strategy_tree", "trial_trajectories"]

_SIZE = 11  # px: tick labels 10, axis labels 11, titles 13


def trial_trajectories(summary: pd.DataFrame, readout: str) -> str:
    """SVG of :func:`cytokit.pl.trial_trajectories`: one line per patient over time, the median in black."""
    frame, xlabel, ticks = _trajectory_data(summary, readout)
    colors = _patient_colors(frame["patient"])
    legend = frame["patient"].nunique() <= 16
    names = [*colors, "median"] if legend else []
    legend_w = max((23 + text_width(n, 10) for n in names), default=0) + 16 if legend else 0
    canvas = Canvas(576 + legend_w * 0.5, 360)
    ax = _axes(canvas, frame["x"], frame["y"], right=legend_w + 14, bottom=58)
    ax.frame(
        title=_label(readout), xlabel=xlabel, ylabel=_label(readout), xticks=_xticks(xlabel, ticks)
    )
    for patient, rows in frame.groupby("patient", sort=False):
        rows = rows.sort_values("x")
        ax.plot(rows["x"], rows["y"], color=colors[patient], width=1.2, opacity=0.75, marker=2.5)
    med = frame.groupby("x")["y"].median()
    ax.plot(med.index, med.to_numpy(), color="#000000", width=3.2)
    if legend:
        items = [(p, colors[p], 1.5) for p in colors] + [("median", "#000000", 3.2)]
        height = 15 * len(items)
        canvas.legend(ax.left + ax.w + 12, ax.top + max(ax.h / 2 - height / 2, 0), items)
    return canvas.svg()


def paired_boxes(summary: pd.DataFrame, stats: pd.DataFrame, readout: str) -> str:
    """SVG of :func:`cytokit.pl.paired_boxes`: boxes per timepoint, each patient's points joined, p/q/n
    of the paired test above each timepoint after baseline."""
    values = pd.to_numeric(summary.get(readout, pd.Series(dtype=float)), errors="coerce")
    frame, order, pos = _paired_data(summary, values)
    labels, foot, ylim = _p_labels(stats, readout, pos, frame["y"])
    slanted = len(order) > 8
    canvas = Canvas(576, 378)
    ylo, yhi = span(frame["y"])
    if np.isfinite(ylim):
        yhi = ylim
    ax = Axes(canvas, (70, 34, 576 - 70 - 12, 378 - 34 - (66 if slanted else 40)),
              (-0.5, len(order) - 0.5), (ylo, yhi))  # fmt: skip
    ax.frame(title=f"{_label(readout)} vs baseline", ylabel=_label(readout), grid_x=False,
             xticks=list(enumerate(order)), rotate_x=slanted)  # fmt: skip
    for _, rows in frame.groupby("patient", sort=False):
        rows = rows.sort_values("x")
        ax.plot(rows["x"], rows["y"], color="#9aa5b1", width=1.0, opacity=0.8)
    for i, t in enumerate(order):
        group = frame.loc[frame["tp"] == t, "y"].to_numpy()
        if group.size:
            ax.box(i, _box_stats(group), half_width=0.25)
    ax.dots(frame["x"], frame["y"], color=_TREG, radius=3.0)
    for x, lines in labels:
        for k, line in enumerate(reversed(lines)):
            canvas.text(ax.x(x), ax.y(foot) - 2 - 11 * k, line, size=9, baseline="bottom")
    return canvas.svg()


def _box_stats(values: np.ndarray) -> tuple[float, float, float, float, float]:
    """Whisker low, Q1, median, Q3, whisker high as matplotlib's boxplot: whiskers at the most extreme
    values within 1.5 IQR of the box."""
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    iqr = q3 - q1
    inside = values[(values >= q1 - 1.5 * iqr) & (values <= q3 + 1.5 * iqr)]
    lo, hi = (inside.min(), inside.max()) if inside.size else (q1, q3)
    return float(min(lo, q1)), float(q1), float(med), float(q3), float(max(hi, q3))


#: the readouts of the Treg-versus-Teff figure (a strategy without Treg and Teff has none of them)
ACTIVATION_READOUTS = tuple(r for _, treg, teff in _ACTIVATION for r in (treg, teff))


def activation(summary: pd.DataFrame) -> str:
    """SVG of :func:`cytokit.pl.activation`: median fold vs baseline (band IQR) of Treg and Teff
    expansion, Ki67+, HLA-DR+ and CD25, one panel each."""
    folded = _with_folds(summary, [r for _, a, b in _ACTIVATION for r in (a, b)])
    panels = [
        (title, [(treg, _TREG, "Treg"), (teff, _TEFF, "Teff")]) for title, treg, teff in _ACTIVATION
    ]
    canvas = _fold_panels(folded, panels, empty="not measured", legends=False)
    canvas.legend(canvas.width - 150, 4, [("Treg", _TREG, 2.0), ("Teff", _TEFF, 2.0)], across=True)
    return canvas.svg()


def helper_subsets(summary: pd.DataFrame) -> str:
    """SVG of :func:`cytokit.pl.helper_subsets`: cTfh, Th1/Th2/Th17 and Th17/Treg as median fold vs
    baseline, one panel per measured group, each with its legend."""
    panels, folded = _helper_data(summary)
    if not panels:
        canvas = Canvas(330, 306)
        Axes(canvas, (20, 30, 290, 240), (0, 1), (0, 1)).message("helper subsets: not measured")
        return canvas.svg()
    return _fold_panels(folded, panels, empty="no baseline pairs", legends=True).svg()


def _fold_panels(folded: pd.DataFrame, panels: list, *, empty: str, legends: bool) -> Canvas:
    """Panels side by side of median fold-vs-baseline lines ``(readout, colour, name)`` with IQR bands."""
    x, xlabel, ticks = _x(folded)
    width, height, left, gap = 288.0, 306.0 + (22 if legends else 0), 62.0, 44.0
    canvas = Canvas(left + len(panels) * (width + gap), height)
    for k, (title, lines) in enumerate(panels):
        drawn = [(q, color, name) for r, color, name in lines
                 if (q := _fold_quantiles(folded, x, r)) is not None]  # fmt: skip
        box = (left + k * (width + gap), 40.0, width, 306.0 - 40 - 56)
        if not drawn:
            Axes(canvas, box, (0, 1), (0, 1)).message(empty)
            canvas.text(box[0] + width / 2, 31, title, size=_SIZE, baseline="bottom")
            continue
        xs = [v for q, _, _ in drawn for v in q.index]
        ys = [1.0] + [v for q, _, _ in drawn for v in q.to_numpy().ravel()]
        ax = Axes(canvas, box, span(xs), span(ys))
        ax.frame(title=title, xlabel=xlabel, xticks=_xticks(xlabel, ticks),
                 rotate_x=xlabel == "timepoint" and len(ticks) > 5, ylabel="fold vs baseline (median, IQR)" if k == 0 else "", size=10,
                 title_size=_SIZE)  # fmt: skip
        for q, color, _ in drawn:
            ax.band(list(q.index), q[0.25].to_numpy(), q[0.75].to_numpy(), color=color)
        ax.hline(1.0, width=1.0, dash="5,3")
        for q, color, _ in drawn:
            ax.plot(list(q.index), q[0.5].to_numpy(), color=color, width=1.8, marker=2.5)
        if legends:  # in a row under the panel, where it hides no line
            items = [(n, c, 1.8) for _, c, n in drawn]
            canvas.legend(ax.left, ax.top + ax.h + 44, items, size=9, across=True)
    return canvas


def _axes(canvas: Canvas, xs, ys, *, right: float, bottom: float) -> Axes:
    box = (70.0, 34.0, canvas.width - 70 - right, canvas.height - 34 - bottom)
    return Axes(canvas, box, span(xs), span(ys))


def _xticks(xlabel: str, ticks: dict) -> list | None:
    """Timepoint names at their ranks (x is the timepoint), else nice day ticks (None)."""
    if xlabel != "timepoint":
        return None
    return [(v, t) for v, t in _tick_positions(ticks).items()]


def strategy_tree(populations: pd.DataFrame) -> str:
    """SVG of :func:`cytokit.pl.strategy_diagram`: the gating tree, root on the left, each box with
    the population's median % of parent across samples."""
    names, parents, pct = _tree(populations)
    pos = _layout(names, parents)
    size, gap, row, top = 10.5, 24.0, 32.0, 30.0
    labels = {n: (n, f"{pct[n]:.1f}%" if n in pct else "") for n in names if n in pos}
    depth = max((d for d, _ in pos.values()), default=0) + 1
    # each column as wide as its longest name (not all as the widest): the tree stays readable scaled
    widths = [40.0] * depth
    for name, (first, second) in labels.items():
        d = pos[name][0]
        widths[d] = max(widths[d], text_width(max(first, second, key=len), size) + 16)
    lefts = [12 + sum(widths[:d]) + gap * d for d in range(depth)]
    rows = max((r for _, r in pos.values()), default=0) + 1
    canvas = Canvas(lefts[-1] + widths[-1] + 12, top + rows * row + 8)
    title = "Gating strategy" + (" (median % of parent across samples)" if pct else "")
    canvas.text(canvas.width / 2, 18, title, size=12)

    def centre(name: str) -> tuple[float, float]:
        d, r = pos[name]
        return lefts[d] + widths[d] / 2, top + r * row + row / 2

    def half(name: str) -> float:
        return widths[pos[name][0]] / 2

    for name in labels:
        parent = parents.get(name)
        if parent in pos:
            (px, py), (x, y) = centre(parent), centre(name)
            start, end = px + half(parent), x - half(name)
            mid = (start + end) / 2
            canvas.line([(start, py), (mid, py), (mid, y), (end, y)], color="#9aa5b1", width=1.0)
    for name, (first, second) in labels.items():
        x, y = centre(name)
        canvas.add(
            f'<rect x="{x - half(name):.1f}" y="{y - 13:.1f}" width="{2 * half(name):.1f}" height="26" rx="4" '
            'fill="#eef3f8" stroke="#4a6fa5" stroke-width="1"/>'
        )
        if second:
            canvas.text(x, y - 5.5, first, size=size)
            canvas.text(x, y + 6.5, second, size=size - 1, color="#444444")
        else:
            canvas.text(x, y, first, size=size)
    return canvas.svg()
