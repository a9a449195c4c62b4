"""Figures of the gating: the path of gates as placed on one sample, and the strategy tree.

The gating path is the reviewer's view: one small density plot per gate, drawn on the events of the gate's
parent population, with the gate as placed and the % of parent in the title. Gates placed by a fallback or
that failed are titled in orange / red so a reviewer's eye goes to them first.

It is drawn for every sample of a batch, so it is built for speed: each parent population is subsampled
once (bounded, seeded), binned with ``np.bincount`` and painted straight into one RGB image
(:mod:`._raster`); percentages in the titles still count every event. :func:`gating_path_png` gives the
PNG bytes (what the pipeline stores); :func:`gating_path` wraps the same image in a matplotlib Figure.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys as K
from ..gating import gate_from_dict
from ..gating._gates import bound as open_bound
from ..gating._strategy import population_rows
from ._raster import Canvas, Frame, nice_ticks, viridis

if TYPE_CHECKING:  # matplotlib is imported where a Figure is built: batch workers never need it
    from matplotlib.figure import Figure

__all__ = ["gating_path", "gating_path_png", "strategy_diagram"]

_STATUS_COLOR = {
    "ok": (0, 0, 0),
    "fallback": (192, 96, 0),
    "failed": (192, 0, 0),
    "skipped": (128, 128, 128),
    "manual": (112, 48, 160),  # set by a reviewer (--overrides)
    "control": (0, 112, 160),  # set from a control well (FMO / isotype / unstained)
    "patient": (0, 112, 64),  # placed on the patient's pooled samples
}
_GATE_COLOR = (208, 28, 28)
_BAR_COLOR = np.array([74, 111, 165])
_DOT_COLOR = np.array([59, 82, 139])
# panel geometry in pixels (at 72 dpi, the size the report shows): plot area, and margins around it
_PLOT_W, _PLOT_H = 176, 150
_LEFT, _RIGHT, _TOP, _BOTTOM = 46, 12, 24, 36
_CELL_W, _CELL_H = _LEFT + _PLOT_W + _RIGHT, _TOP + _PLOT_H + _BOTTOM
_HEADER = 30
_BINS_2D = (_PLOT_W // 2, _PLOT_H // 2)  # 2 x 2 pixels per bin


def _column(adata: AnnData, dim: str, rows: np.ndarray | None = None) -> np.ndarray | None:
    from ..panels import find_var

    dim = find_var(adata, dim, required=False)
    if dim is None:
        return None
    # index X directly: an AnnData view of a million events costs ~0.1 s in categorical bookkeeping
    j = adata.var_names.get_loc(dim)
    x = adata.X[:, j] if rows is None else adata.X[rows, j]
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=float).ravel()


def _gate_entries(adata: AnnData) -> list[dict]:
    """One entry per gate: id, gate dict, status, message, population and parent (when known)."""
    gating = adata.uns.get(K.GATING, {})
    rows = population_rows(gating)
    parents = {p["name"]: p["parent"] for p in rows}
    by_gate = {p.get("gate", p["name"]): p["name"] for p in rows}
    entries = []
    for gate_id, info in gating.get("gates", {}).items():
        population = by_gate.get(str(gate_id), str(gate_id) if str(gate_id) in parents else None)
        parent = info.get("parent", parents.get(population) if population else None)
        entries.append(
            {
                "id": str(gate_id),
                "gate": info.get("gate"),
                "status": str(info.get("status", "ok")),
                "message": str(info.get("message", "") or ""),
                "population": population,
                "parent": None if parent is None else str(parent),
            }
        )
    # boolean populations (``Teff = CD4 and not FOXP3+``) have no geometry: nothing to draw unless it failed
    entries = [e for e in entries if e["gate"] or e["status"] in ("failed", "fallback")]
    order = {name: i for i, name in enumerate(parents)}
    return sorted(entries, key=lambda e: order.get(e["population"], len(order)))


def _limits(values: np.ndarray, coords: Iterable[float]) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    lo, hi = np.quantile(finite, [0.001, 0.999]) if finite.size else (0.0, 1.0)
    # show the gate's edges, but never let a far-away vertex squash the data into a corner
    span = hi - lo if hi > lo else 1.0
    extra = [c for c in coords if c is not None and np.isfinite(c)]
    extra = [min(max(c, lo - 0.25 * span), hi + 0.25 * span) for c in extra]
    lo, hi = min([lo, *extra]), max([hi, *extra])
    pad = 0.04 * (hi - lo) if hi > lo else 0.5
    return float(lo - pad), float(hi + pad)


def _gate_coords(gate: dict, axis: int) -> list[float]:
    kind = gate["kind"]
    if kind == "range":
        return [*gate["low"], *gate["high"]][axis :: len(gate["dims"])]
    if kind == "polygon":
        return [v[axis] for v in gate["vertices"]]
    cov = np.asarray(gate["covariance"], dtype=float)
    half = math.sqrt(max(cov[axis, axis] * float(gate["distance_square"]), 0.0))
    return [gate["mean"][axis] - half, gate["mean"][axis] + half]


def gate_outline(gate: dict, xlim, ylim, n: int = 120) -> list[np.ndarray]:
    """Closed outlines (arrays of x, y vertices in data units) of a 2-D gate; open box sides lie
    outside ``xlim`` x ``ylim``. A 1-D range gate has no outline (its bounds are drawn as lines)."""
    kind = gate["kind"]
    if kind == "polygon":
        return [np.asarray(gate["vertices"], dtype=float)]
    if kind == "ellipse":
        cov = np.asarray(gate["covariance"], dtype=float)
        vals, vecs = np.linalg.eigh(cov)
        radii = np.sqrt(np.clip(vals, 0, None) * float(gate["distance_square"]))
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        circle = np.column_stack([np.cos(t), np.sin(t)]) * radii
        return [circle @ vecs.T + np.asarray(gate["mean"], dtype=float)]
    if kind == "range" and len(gate["dims"]) == 2:
        wide = [
            (lim[0] - (lim[1] - lim[0]), lim[1] + (lim[1] - lim[0])) for lim in (xlim, ylim)
        ]  # an open side is drawn far outside the frame, so it does not show
        low, high = [open_bound(v) for v in gate["low"]], [open_bound(v) for v in gate["high"]]
        lo = [wide[i][0] if low[i] is None else low[i] for i in range(2)]
        hi = [wide[i][1] if high[i] is None else high[i] for i in range(2)]
        box = [(lo[0], lo[1]), (hi[0], lo[1]), (hi[0], hi[1]), (lo[0], hi[1])]
        return [np.asarray(box, dtype=float)]
    return []


def _title(entry: dict, pct: float) -> str:
    name = entry["population"] or entry["id"]
    parent = (
        f" of {entry['parent']}" if entry["parent"] and entry["parent"] != "root" else " of all"
    )
    value = "n/a" if not np.isfinite(pct) else f"{pct:.1f}%"
    status = "" if entry["status"] == "ok" else f" [{entry['status']}]"
    return f"{name}: {value}{parent}{status}"


class _Subsamples:
    """Each parent population's mask (every event) and one bounded, seeded subsample of its rows."""

    def __init__(self, adata: AnnData, max_points: int, seed: int):
        self.adata, self.max_points, self.seed = adata, int(max_points), seed
        self.pops = adata.obsm.get(K.POPULATIONS)
        self._cache: dict[str | None, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, parent: str | None) -> tuple[np.ndarray, np.ndarray]:
        if parent not in self.pops_columns:
            parent = None
        if parent not in self._cache:
            mask = (
                np.ones(self.adata.n_obs, dtype=bool)
                if parent is None
                else self.pops[parent].to_numpy(dtype=bool)
            )
            rows = np.flatnonzero(mask)
            if rows.size > self.max_points:
                # one seed per population: a panel does not change when another gate is added
                rng = np.random.default_rng([self.seed, zlib.crc32(str(parent).encode())])
                rows = np.sort(rng.choice(rows, self.max_points, replace=False))
            self._cache[parent] = (mask, rows)
        return self._cache[parent]

    @property
    def pops_columns(self):
        return set() if self.pops is None else set(getattr(self.pops, "columns", []))


def _percent(adata: AnnData, entry: dict, parent_mask: np.ndarray, columns) -> float:
    """% of parent over every event: from ``obsm["populations"]``, else by applying the gate."""
    pops = adata.obsm.get(K.POPULATIONS)
    n_parent = np.count_nonzero(parent_mask)  # 10x cheaper than a sum over a million booleans
    if n_parent == 0:
        return np.nan
    if pops is not None and entry["population"] in getattr(pops, "columns", []):
        inside = pops[entry["population"]].to_numpy(dtype=bool) & parent_mask
        return 100.0 * np.count_nonzero(inside) / n_parent
    full = np.column_stack([_column(adata, d) for d in columns])
    return 100.0 * gate_from_dict(entry["gate"]).apply(full[parent_mask]).sum() / n_parent


def _panel(adata: AnnData, entry: dict, subsamples: _Subsamples) -> dict:
    """What one panel shows: title, limits, binned counts (or dots), the gate; no drawing yet."""
    gate = entry["gate"]
    dims = list(gate["dims"]) if gate else []
    panel = {"entry": entry, "title": _title(entry, np.nan), "dims": dims, "gate": gate}
    mask, rows = subsamples(entry["parent"])
    columns = [_column(adata, d, rows) for d in dims]
    if not dims or any(c is None for c in columns):
        panel["note"] = entry["message"] or "gate not drawable"
        return panel
    panel["title"] = _title(entry, _percent(adata, entry, mask, dims))
    pts = np.column_stack(columns)
    xlim = _limits(pts[:, 0], _gate_coords(gate, 0))
    panel["xlim"] = xlim
    if len(dims) == 1:
        bins = int(np.clip(2 * np.sqrt(len(pts)), 20, 120))
        panel["counts"] = _bin(pts[:, 0], xlim, bins)
        panel["ylim"] = (0.0, 1.05 * max(float(panel["counts"].max(initial=0)), 1.0))
        return panel
    ylim = _limits(pts[:, 1], _gate_coords(gate, 1))
    panel["ylim"] = ylim
    if len(pts) >= 2000:
        panel["density"] = _bin2d(pts, xlim, ylim, _BINS_2D)
    else:  # too few events for a density: plain dots
        panel["dots"] = pts
    return panel


def _bin(x: np.ndarray, lim, bins: int) -> np.ndarray:
    i = np.floor((x - lim[0]) / (lim[1] - lim[0]) * bins)
    i = i[(i >= 0) & (i < bins)].astype(np.intp)
    return np.bincount(i, minlength=bins)


def _bin2d(pts: np.ndarray, xlim, ylim, bins: tuple[int, int]) -> np.ndarray:
    """Counts, rows = y bins from the top (image order), columns = x bins."""
    ix = np.floor((pts[:, 0] - xlim[0]) / (xlim[1] - xlim[0]) * bins[0])
    iy = np.floor((ylim[1] - pts[:, 1]) / (ylim[1] - ylim[0]) * bins[1])
    ok = (ix >= 0) & (ix < bins[0]) & (iy >= 0) & (iy < bins[1])
    flat = iy[ok].astype(np.intp) * bins[0] + ix[ok].astype(np.intp)
    return np.bincount(flat, minlength=bins[0] * bins[1]).reshape(bins[1], bins[0])


def gating_panels(adata: AnnData, *, max_points: int = 30000, seed: int = 0) -> list[dict]:
    """The panels of :func:`gating_path` as data: ``title``, ``dims``, ``gate``, ``xlim``/``ylim`` and
    the binned ``counts`` (1-D), ``density`` (2-D) or ``dots`` (few events), or a ``note``."""
    subsamples = _Subsamples(adata, max_points, seed)
    return [_panel(adata, entry, subsamples) for entry in _gate_entries(adata)]


# ------------------------------------------------------------------------------------------ drawing
def _draw_plot(panel: dict) -> np.ndarray:
    frame = Frame(_PLOT_W, _PLOT_H, panel["xlim"], panel["ylim"])
    gate = panel["gate"]
    if "counts" in panel:
        counts = panel["counts"]
        xs = (np.arange(_PLOT_W) + 0.5) / _PLOT_W  # pixel centres as a fraction of the x range
        heights = counts[np.minimum((xs * len(counts)).astype(int), len(counts) - 1)]
        top = _PLOT_H - heights / panel["ylim"][1] * _PLOT_H
        filled = np.arange(_PLOT_H)[:, None] >= top[None, :]
        rgb = np.full((_PLOT_H, _PLOT_W, 3), 255.0)
        x_data = panel["xlim"][0] + xs * (panel["xlim"][1] - panel["xlim"][0])
        lo, hi = open_bound(gate["low"][0]), open_bound(gate["high"][0])
        shaded = np.ones(_PLOT_W, dtype=bool)
        shaded &= True if lo is None else x_data >= lo
        shaded &= True if hi is None else x_data < hi
        rgb[:, shaded] = 0.92 * 255 + 0.08 * np.array(_GATE_COLOR)  # the gate's side, lightly
        rgb[filled] = 0.8 * _BAR_COLOR + 0.2 * rgb[filled]
        frame.raster(rgb.astype(np.uint8))
        for bound in (lo, hi):
            if bound is not None:
                frame.line([bound, bound], panel["ylim"], _GATE_COLOR)
        return frame.result()
    if "density" in panel:
        density = panel["density"]
        top = math.log(max(int(density.max()), 1)) or 1.0
        rgb = viridis(np.log(np.maximum(density, 1)) / top)  # log scale from 1 event
        frame.raster(rgb, mask=density > 0)
    elif len(panel.get("dots", ())):
        px, py = frame.px(panel["dots"][:, 0], panel["dots"][:, 1])
        ok = (px >= 0) & (px < frame.rgb.shape[1] - 2) & (py >= 0) & (py < frame.rgb.shape[0] - 2)
        px, py = px[ok].astype(int), py[ok].astype(int)
        for dy in range(frame.ss):
            for dx in range(frame.ss):
                frame.rgb[py + dy, px + dx] = _DOT_COLOR
    for outline in gate_outline(gate, panel["xlim"], panel["ylim"]):
        frame.line(outline[:, 0], outline[:, 1], _GATE_COLOR, closed=True)
    return frame.result()


def _axis_ticks(canvas: Canvas, x0: int, y0: int, panel: dict) -> None:
    """Tick marks and labels below and left of the plot area whose top-left corner is (x0, y0)."""
    (xa, xb), (ya, yb) = panel["xlim"], panel["ylim"]
    ticks, decimals = nice_ticks(xa, xb)
    for t in ticks:
        px = x0 + (t - xa) / (xb - xa) * (_PLOT_W - 1)
        canvas.draw.line([(px, y0 + _PLOT_H), (px, y0 + _PLOT_H + 3)], fill=(90, 90, 90))
        canvas.text((px, y0 + _PLOT_H + 4), f"{t:.{decimals}f}", size=8, anchor="mt")
    integer = len(panel["dims"]) == 1
    ticks, decimals = nice_ticks(ya, yb)
    if integer:
        ticks, decimals = ticks[ticks == np.round(ticks)], 0
    for t in ticks:
        py = y0 + _PLOT_H - 1 - (t - ya) / (yb - ya) * (_PLOT_H - 1)
        canvas.draw.line([(x0 - 3, py), (x0, py)], fill=(90, 90, 90))
        canvas.text((x0 - 4, py), f"{t:.{decimals}f}", size=8, anchor="rm")
    canvas.text((x0 + _PLOT_W / 2, y0 + _PLOT_H + 16), panel["dims"][0], size=9, anchor="mt")
    ylabel = "events" if integer else panel["dims"][1]
    canvas.text((x0 - 36, y0 + _PLOT_H / 2), ylabel, size=9, rotate=True)


def _draw_panel(canvas: Canvas, panel: dict, left: int, top: int) -> None:
    entry = panel["entry"]
    color = _STATUS_COLOR.get(entry["status"], (0, 0, 0))
    x0, y0 = left + _LEFT, top + _TOP
    canvas.text((x0 + _PLOT_W / 2, top + 6), panel["title"], size=10, color=color, anchor="mt",
                fit=_CELL_W - 6)  # fmt: skip
    if "note" in panel:
        canvas.text((x0 + _PLOT_W / 2, y0 + _PLOT_H / 2), panel["note"][:40], size=9, anchor="mm")
        return
    canvas.paste(_draw_plot(panel), (x0, y0))
    _axis_ticks(canvas, x0, y0, panel)
    if entry["status"] != "ok" and entry["message"]:
        note = entry["message"][:60]
        canvas.draw.rectangle([x0 + 2, y0 + 2, x0 + _PLOT_W - 3, y0 + 13], fill=(255, 255, 255))
        canvas.text((x0 + 4, y0 + 3), note, size=7, color=(192, 0, 0), fit=_PLOT_W - 8)


def _render(adata: AnnData, *, max_points: int, ncols: int, seed: int) -> Canvas:
    panels = gating_panels(adata, max_points=max_points, seed=seed)
    n = max(len(panels), 1)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    canvas = Canvas(_CELL_W * ncols, _HEADER + _CELL_H * nrows)
    sample = adata.uns.get(K.SAMPLE_INFO, {}).get("sample", "")
    canvas.text((canvas.image.width / 2, 8), f"Gating path {sample}".strip(), size=13, anchor="mt")
    for i, panel in enumerate(panels):
        row, col = divmod(i, ncols)
        _draw_panel(canvas, panel, col * _CELL_W, _HEADER + row * _CELL_H)
    if not panels:
        canvas.text((canvas.image.width / 2, _HEADER + _CELL_H / 2), "no gates placed", anchor="mm")
    return canvas


def gating_path_png(
    adata: AnnData, *, max_points: int = 30000, ncols: int = 4, seed: int = 0
) -> bytes:
    """PNG bytes of :func:`gating_path` (what a batch run stores in ``gates/<sample>.png``)."""
    return _render(adata, max_points=max_points, ncols=ncols, seed=seed).png()


def gating_path(
    adata: AnnData, *, max_points: int = 30000, ncols: int = 4, seed: int = 0
) -> Figure:
    """The gates as placed on one sample: a density plot per gate, in strategy order.

    Parameters
    ----------
    adata
        Gated sample (``uns["gating"]["gates"]``, ``obsm["populations"]``), transformed values in ``X``.
    max_points
        Events drawn per parent population (a seeded random subsample); percentages use all events.
    ncols
        Panels per row.
    seed
        Seed of the subsample, so the figure is reproducible.

    Returns
    -------
    A Figure showing the rendered image; each panel title reads ``population: % of parent`` and the
    gate's status when not ``ok``. :func:`gating_panels` gives the same panels as data.
    """
    from matplotlib.figure import Figure

    image = np.asarray(_render(adata, max_points=max_points, ncols=ncols, seed=seed).image)
    dpi = 72  # the image's own scale: saved at 72 dpi it is written pixel for pixel
    fig = Figure(figsize=(image.shape[1] / dpi, image.shape[0] / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(image, interpolation="antialiased")
    ax.set_axis_off()
    return fig


def _tree(populations) -> tuple[list[str], dict[str, str | None], dict[str, float]]:
    """Names in order, parent map and (optional) median % of parent from a list of dicts or a table."""
    if isinstance(populations, pd.DataFrame):
        frame = populations.rename(columns={"name": "population"})
        names = list(dict.fromkeys(frame["population"].astype(str)))
        first = frame.drop_duplicates("population").set_index("population")
        parents = {n: _parent(first.loc[n].get("parent")) for n in names}
        pct = {}
        if "pct_parent" in frame:
            values = pd.to_numeric(frame["pct_parent"], errors="coerce")
            pct = values.groupby(frame["population"].astype(str)).median().dropna().to_dict()
        return names, parents, pct
    items = population_rows({"populations": populations})
    names = [str(p["name"]) for p in items]
    return names, {str(p["name"]): _parent(p.get("parent")) for p in items}, {}


def _parent(value) -> str | None:
    return (
        None
        if value is None or (isinstance(value, float) and np.isnan(value)) or value == ""
        else str(value)
    )


def _layout(names: list[str], parents: dict[str, str | None]) -> dict[str, tuple[int, float]]:
    """Depth and row of each node: leaves take consecutive rows, a parent sits at its children's mean."""
    children: dict[str | None, list[str]] = {}
    for n in names:
        p = parents.get(n)
        children.setdefault(p if p in parents else None, []).append(n)
    pos: dict[str, tuple[int, float]] = {}
    next_row = [0.0]

    def place(node: str, depth: int) -> float:
        kids = children.get(node, [])
        rows = [place(k, depth + 1) for k in kids]
        row = float(np.mean(rows)) if rows else next_row[0]
        if not rows:
            next_row[0] += 1
        pos[node] = (depth, row)
        return row

    for root in children.get(None, []):
        place(root, 0)
    return pos


def strategy_diagram(populations) -> Figure:
    """The gating strategy as a tree, root on the left.

    Parameters
    ----------
    populations
        ``uns["gating"]["populations"]`` (columns ``{"name": [...], "parent": [...]}``, or a list of
        ``{"name", "parent"}``) or a population table
        (``population``, ``parent`` and optionally ``pct_parent`` columns, one or many samples), in which
        case each box also shows the median % of parent across samples.

    Returns
    -------
    The Figure.
    """
    names, parents, pct = _tree(populations)
    pos = _layout(names, parents)
    depth = max((d for d, _ in pos.values()), default=0) + 1
    rows = max((r for _, r in pos.values()), default=0) + 1
    from matplotlib.figure import Figure

    fig = Figure(figsize=(min(2.0 + 1.55 * depth, 16), 0.8 + 0.42 * rows), layout="constrained")
    ax = fig.add_subplot()
    for name, (d, r) in pos.items():
        parent = parents.get(name)
        if parent in pos:
            pd_, pr = pos[parent]
            ax.plot([pd_ + 0.42, d - 0.42], [pr, r], color="#9aa5b1", lw=1, zorder=1)
        label = name if name not in pct else f"{name}\n{pct[name]:.1f}%"
        ax.text(
            d,
            r,
            label,
            ha="center",
            va="center",
            fontsize=8,
            zorder=2,
            bbox={"boxstyle": "round,pad=0.3", "facecolor": "#eef3f8", "edgecolor": "#4a6fa5"},
        )
    ax.set_xlim(-0.6, depth - 0.4)
    ax.set_ylim(rows - 0.4, -0.6)
    ax.set_axis_off()
    title = "Gating strategy" + (" (median % of parent across samples)" if pct else "")
    ax.set_title(title, fontsize=10)
    return fig
