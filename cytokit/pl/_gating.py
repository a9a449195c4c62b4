"""Figures of the gating: the path of gates as placed on one sample, and the strategy tree.

The gating path is the reviewer's view: one small density plot per gate, drawn on the events of the gate's
parent population, with the gate as placed and the % of parent in the title. Gates placed by a fallback or
that failed are titled in orange / red so a reviewer's eye goes to them first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse, Polygon, Rectangle
from matplotlib.ticker import MaxNLocator

from .. import _keys as K
from ..gating import gate_from_dict

__all__ = ["gating_path", "strategy_diagram"]

_STATUS_COLOR = {"ok": "black", "fallback": "#c06000", "failed": "#c00000", "skipped": "#808080"}
_GATE_STYLE = {"edgecolor": "#d01c1c", "facecolor": "none", "linewidth": 1.6}


def _column(adata: AnnData, dim: str) -> np.ndarray | None:
    from ..panels import find_var

    dim = find_var(adata, dim, required=False)
    if dim is None:
        return None
    # index X directly: an AnnData view of a million events costs ~0.1 s in categorical bookkeeping
    x = adata.X[:, adata.var_names.get_loc(dim)]
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=float).ravel()


def _gate_entries(adata: AnnData) -> list[dict]:
    """One entry per gate: id, gate dict, status, message, population and parent (when known)."""
    gating = adata.uns.get(K.GATING, {})
    parents = {str(p["name"]): p.get("parent") for p in gating.get("populations", [])}
    by_gate = {str(p.get("gate", p["name"])): str(p["name"]) for p in gating.get("populations", [])}
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


def _draw_gate(ax: Axes, gate: dict, xlim, ylim) -> None:
    kind = gate["kind"]
    if kind == "range" and len(gate["dims"]) == 1:
        for bound in (gate["low"][0], gate["high"][0]):
            if bound is not None:
                ax.axvline(bound, color=_GATE_STYLE["edgecolor"], lw=1.6)
        lo = xlim[0] if gate["low"][0] is None else gate["low"][0]
        hi = xlim[1] if gate["high"][0] is None else gate["high"][0]
        ax.axvspan(lo, hi, color=_GATE_STYLE["edgecolor"], alpha=0.08, lw=0)
    elif kind == "range":
        (x0, y0), (x1, y1) = _box(gate, xlim, ylim)
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, **_GATE_STYLE))
    elif kind == "polygon":
        ax.add_patch(Polygon(np.asarray(gate["vertices"], dtype=float), closed=True, **_GATE_STYLE))
    elif kind == "ellipse":
        cov = np.asarray(gate["covariance"], dtype=float)
        vals, vecs = np.linalg.eigh(cov)
        r = np.sqrt(np.clip(vals, 0, None) * float(gate["distance_square"]))
        angle = math.degrees(math.atan2(vecs[1, 1], vecs[0, 1]))
        ax.add_patch(Ellipse(gate["mean"], 2 * r[1], 2 * r[0], angle=angle, **_GATE_STYLE))


def _box(gate: dict, xlim, ylim):
    lows = [xlim[0] if gate["low"][0] is None else gate["low"][0]]
    lows.append(ylim[0] if gate["low"][1] is None else gate["low"][1])
    highs = [xlim[1] if gate["high"][0] is None else gate["high"][0]]
    highs.append(ylim[1] if gate["high"][1] is None else gate["high"][1])
    return tuple(lows), tuple(highs)


def _title(entry: dict, pct: float) -> str:
    name = entry["population"] or entry["id"]
    parent = (
        f" of {entry['parent']}" if entry["parent"] and entry["parent"] != "root" else " of all"
    )
    value = "n/a" if not np.isfinite(pct) else f"{pct:.1f}%"
    status = "" if entry["status"] == "ok" else f" [{entry['status']}]"
    return f"{name}: {value}{parent}{status}"


def _percent(adata: AnnData, entry: dict, parent_mask: np.ndarray, X: np.ndarray) -> float:
    pops = adata.obsm.get(K.POPULATIONS)
    n_parent = int(parent_mask.sum())
    if n_parent == 0:
        return np.nan
    if pops is not None and entry["population"] in getattr(pops, "columns", []):
        inside = np.asarray(pops[entry["population"]], dtype=bool) & parent_mask
        return 100.0 * inside.sum() / n_parent
    return 100.0 * gate_from_dict(entry["gate"]).apply(X[parent_mask]).sum() / n_parent


def _panel(ax: Axes, adata: AnnData, entry: dict, max_points: int, rng) -> None:
    gate = entry["gate"]
    dims = list(gate["dims"]) if gate else []
    columns = [_column(adata, d) for d in dims]
    ax.set_title(_title(entry, np.nan), fontsize=9, color=_STATUS_COLOR.get(entry["status"], "k"))
    if not dims or any(c is None for c in columns):
        ax.text(
            0.5, 0.5, entry["message"] or "gate not drawable", ha="center", va="center", wrap=True
        )
        ax.set_axis_off()
        return
    X = np.column_stack(columns)
    pops = adata.obsm.get(K.POPULATIONS)
    parent_mask = np.ones(adata.n_obs, dtype=bool)
    if pops is not None and entry["parent"] in getattr(pops, "columns", []):
        parent_mask = np.asarray(pops[entry["parent"]], dtype=bool)
    pct = _percent(adata, entry, parent_mask, X)
    ax.set_title(_title(entry, pct), fontsize=9, color=_STATUS_COLOR.get(entry["status"], "k"))
    idx = np.flatnonzero(parent_mask)
    if idx.size > max_points:
        idx = np.sort(rng.choice(idx, max_points, replace=False))
    pts = X[idx]
    xlim = _limits(pts[:, 0], _gate_coords(gate, 0))
    if len(dims) == 1:
        bins = int(np.clip(2 * np.sqrt(len(pts)), 20, 120))
        counts, edges = np.histogram(pts[:, 0], bins=bins, range=xlim)
        ax.stairs(counts, edges, fill=True, color="#4a6fa5", alpha=0.8)
        ax.set_ylabel("events", fontsize=8)
        ylim = ax.get_ylim()
    else:
        ylim = _limits(pts[:, 1], _gate_coords(gate, 1))
        if len(pts) >= 2000:
            ax.hist2d(
                pts[:, 0],
                pts[:, 1],
                bins=90,
                range=[xlim, ylim],
                cmap="viridis",
                norm=LogNorm(),
                cmin=1,
            )
        elif len(pts):  # too few events for a density: plain dots
            ax.scatter(pts[:, 0], pts[:, 1], s=3, color="#3b528b", alpha=0.6, linewidths=0)
        ax.set_ylabel(dims[1], fontsize=8)
        ax.set_ylim(ylim)
    ax.set_xlim(xlim)
    ax.set_xlabel(dims[0], fontsize=8)
    ax.tick_params(labelsize=7)
    ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.yaxis.set_major_locator(MaxNLocator(4, integer=len(dims) == 1))
    _draw_gate(ax, gate, xlim, ylim)
    if entry["status"] != "ok" and entry["message"]:
        ax.text(
            0.02,
            0.98,
            entry["message"][:60],
            transform=ax.transAxes,
            fontsize=6,
            va="top",
            color="#c00000",
            bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1},
        )


def gating_path(
    adata: AnnData, *, max_points: int = 30000, ncols: int = 4, seed: int = 0
) -> Figure:
    """The gates as placed on one sample: a density plot per gate, in strategy order.

    Parameters
    ----------
    adata
        Gated sample (``uns["gating"]["gates"]``, ``obsm["populations"]``), transformed values in ``X``.
    max_points
        Events drawn per panel (a random subsample of the parent population); percentages use all events.
    ncols
        Panels per row.
    seed
        Seed of the subsample, so the figure is reproducible.

    Returns
    -------
    The Figure; each title reads ``population: % of parent`` and the gate's status when not ``ok``.
    """
    entries = _gate_entries(adata)
    rng = np.random.default_rng(seed)
    n = max(len(entries), 1)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    # a fixed grid (not constrained layout): several times faster to draw, and panels are all alike
    width, height = 3.1 * ncols, 2.8 * nrows + 0.45
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(
        left=0.55 / width,
        right=1 - 0.15 / width,
        bottom=0.45 / height,
        top=1 - 0.75 / height,
        wspace=0.42,
        hspace=0.62,
    )
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, entry in zip(axes, entries, strict=False):
        _panel(ax, adata, entry, max_points, rng)
    for ax in axes[len(entries) :]:
        ax.set_axis_off()
    if not entries:
        axes[0].text(0.5, 0.5, "no gates placed", ha="center", va="center")
    sample = adata.uns.get(K.SAMPLE_INFO, {}).get("sample", "")
    fig.suptitle(f"Gating path {sample}".strip(), fontsize=11)
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
    items = list(populations)
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
        ``uns["gating"]["populations"]`` (list of ``{"name", "parent"}``) or a population table
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
