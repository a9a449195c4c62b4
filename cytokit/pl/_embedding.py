"""Scatter plots of an embedding (UMAP) coloured by clusters, populations or marker levels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys as K
from ..errors import CytokitError

__all__ = ["umap"]

_MAX_LEGEND = 30


def umap(
    adata: AnnData,
    *,
    color: str | Sequence[str] = K.CLUSTER,
    basis: str = K.UMAP,
    size: float | None = None,
    ncols: int = 3,
    panel_size: float = 4.0,
    cmap: str = "viridis",
    title: str | Sequence[str] | None = None,
    legend_labels: Mapping[str, str] | None = None,
):
    """Events on the UMAP embedding, one panel per ``color`` (an obs column or a marker name).

    Categorical obs columns (clusters, populations) get a legend, numeric ones and markers a colour bar.

    Parameters
    ----------
    adata
        Events with ``obsm[basis]`` (from :func:`cytokit.tl.umap`).
    color
        One or more obs columns or markers (marker names fall back to channel names).
    basis
        ``obsm`` key of the two-dimensional coordinates.
    size
        Marker size in points^2; default scales with the number of events.
    ncols, panel_size
        Panels per row and the size of one panel in inches.
    cmap
        Colour map of numeric values.
    title
        Panel titles; default the ``color`` names.
    legend_labels
        Text after each category in legends, e.g. ``tl.label_clusters(adata)["label"]`` to show
        "1  CD4+ CD25hi FOXP3+".

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    if basis not in adata.obsm:
        raise CytokitError(f"obsm has no {basis!r}: run tl.umap first")
    xy = np.asarray(adata.obsm[basis])[:, :2]
    colors = [color] if isinstance(color, str) else list(color)
    titles = colors if title is None else ([title] if isinstance(title, str) else list(title))
    size = size if size is not None else float(np.clip(12_000 / max(len(xy), 1), 0.5, 20))
    nrows = max(1, -(-len(colors) // ncols))
    ncol = min(ncols, max(1, len(colors)))
    # room for the legend: long cluster labels ("7  CD3+ CD4+ CD25hi FOXP3+") would squeeze the panel
    longest = max((len(str(v)) for v in (legend_labels or {}).values()), default=0)
    legend_width = max(0.25 * panel_size, 0.075 * (longest + 4))
    fig = Figure(
        figsize=((panel_size + legend_width) * ncol, panel_size * nrows), layout="constrained"
    )
    axes = fig.subplots(nrows, ncol, squeeze=False).ravel()
    order = np.random.default_rng(0).permutation(len(xy))  # no group drawn wholly on top of another
    for ax, key, name in zip(axes, colors, titles, strict=False):
        _panel(fig, ax, xy[order], _values(adata, key).iloc[order], size, cmap, legend_labels or {})
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("UMAP1")
        ax.set_ylabel("UMAP2")
    for ax in axes[len(colors) :]:
        ax.set_visible(False)
    return fig


def _values(adata: AnnData, key: str) -> pd.Series:
    """An obs column, else a marker's values (var name, marker or channel name)."""
    if key in adata.obs.columns:
        return adata.obs[key].reset_index(drop=True)
    from ..panels import find_var

    j = adata.var_names.get_loc(find_var(adata, key))
    col = adata.X[:, j]
    col = col.toarray() if hasattr(col, "toarray") else col
    return pd.Series(np.asarray(col, dtype=float).ravel())


def _panel(
    fig, ax, xy, values: pd.Series, size: float, cmap: str, names: Mapping[str, str]
) -> None:
    numeric = pd.api.types.is_numeric_dtype(values) and not isinstance(
        values.dtype, pd.CategoricalDtype
    )
    if numeric:
        points = ax.scatter(
            xy[:, 0],
            xy[:, 1],
            c=values.to_numpy(),
            s=size,
            cmap=cmap,
            linewidths=0,
            rasterized=True,
        )
        fig.colorbar(points, ax=ax, shrink=0.8)
        return
    cats = values.astype("category")
    palette = _palette(len(cats.cat.categories))
    codes = cats.cat.codes.to_numpy()
    colours = np.where(codes[:, None] >= 0, palette[np.maximum(codes, 0)], (0.8, 0.8, 0.8, 1.0))
    ax.scatter(xy[:, 0], xy[:, 1], c=colours, s=size, linewidths=0, rasterized=True)
    if len(cats.cat.categories) <= _MAX_LEGEND:
        handles = [
            ax.scatter(
                [],
                [],
                color=palette[i],
                s=30,
                label=f"{c}  {names[str(c)]}" if str(c) in names else str(c),
            )
            for i, c in enumerate(cats.cat.categories)
        ]
        ax.legend(
            handles=handles,
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            frameon=False,
            fontsize="small",
        )


def _palette(n: int) -> np.ndarray:
    """``n`` distinct RGBA colours (tab10/tab20, then a hue wheel)."""
    from matplotlib import colormaps

    for name, size in (("tab10", 10), ("tab20", 20)):
        if n <= size:
            return np.c_[np.asarray(colormaps[name].colors)[:n], np.ones(n)]
    return colormaps["hsv"](np.linspace(0, 1, n, endpoint=False))
