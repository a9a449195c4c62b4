"""Cluster phenotypes and abundance change: the cluster x marker median heatmap, the DA forest of folds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.figure import Figure

from .. import _keys as K

__all__ = ["abundance_change", "cluster_heatmap"]


def cluster_heatmap(
    adata: AnnData,
    *,
    key: str = K.CLUSTER,
    markers: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    abundance: Mapping[str, float] | None = None,
) -> Figure:
    """Median of each marker per cluster, each marker scaled to its range over the clusters.

    Rows are clusters ("7  CD4+ CD25hi FOXP3+  (3.1 %)"), columns markers; the colour is the median between
    the marker's lowest (0) and highest (1) cluster, so the marker that sets a cluster apart stands out
    whatever its scale (the medians themselves: :func:`cytokit.tl.label_clusters`). No numbers in the
    cells: 165 text objects doubled the time to draw the report's copy.

    Parameters
    ----------
    adata
        Clustered events (``obs[key]``).
    key
        ``obs`` column of the clusters.
    markers
        Markers to show; default those the clustering used.
    labels
        Cluster -> readable label; default ``uns[key]["labels"]`` or :func:`cytokit.tl.label_clusters`.
    abundance
        Cluster -> % shown after the label (e.g. the mean % over every event of the samples).
    """
    from ..tl import label_clusters

    described = label_clusters(adata, key=key, markers=markers)
    names = [c for c in described.columns if c not in ("count", "pct", "label")]
    medians = described[names].astype(float)
    if labels is None:
        labels = adata.uns.get(key, {}).get("labels") or described["label"].to_dict()
    lo, hi = medians.min(axis=0), medians.max(axis=0)
    scaled = (medians - lo) / (hi - lo).where(hi > lo, 1.0)
    rows = []
    for c in medians.index.astype(str):
        text = f"{c}  {labels.get(c, '')}".rstrip()
        if abundance is not None and c in abundance:
            text += f"  ({abundance[c]:.1f} %)"
        rows.append(text)
    width = 1.6 + 0.06 * max(len(r) for r in rows) + 0.4 * len(names)
    fig = Figure(figsize=(width, 1.2 + 0.3 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(scaled.to_numpy(), aspect="auto", cmap="YlOrRd", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_title("median per cluster (colour: scaled per marker)", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.6, label="scaled median")
    return fig


def abundance_change(da: pd.DataFrame, *, alpha: float = 0.05) -> Figure:
    """Median fold of each cluster's % versus baseline, per timepoint (``da.csv``); significant: filled.

    One row per cluster (with its label), one marker colour per timepoint; the x axis is log2 of the
    median per-patient fold, filled markers have ``p_adj < alpha``.
    """
    from ._embedding import _palette

    frame = da.dropna(subset=["median_fold_change"]).copy()
    frame["cluster"] = frame["cluster"].astype(str)
    clusters = sorted(frame["cluster"].unique(), key=lambda c: (len(c), c))
    labels = frame.drop_duplicates("cluster").set_index("cluster")["label"].fillna("")
    timepoints = list(dict.fromkeys(frame["timepoint"].astype(str)))
    palette = _palette(max(len(timepoints), 1))
    rows = [f"{c}  {labels.get(c, '')}".rstrip() for c in clusters]
    width = 6.0 + 0.07 * max((len(r) for r in rows), default=10)
    fig = Figure(figsize=(width, 0.9 + 0.3 * max(len(rows), 1)), layout="constrained")
    ax = fig.add_subplot()
    y = {c: i for i, c in enumerate(clusters)}
    offset = np.linspace(-0.25, 0.25, len(timepoints)) if len(timepoints) > 1 else [0.0]
    for k, tp in enumerate(timepoints):
        sel = frame.loc[frame["timepoint"].astype(str) == tp]
        ys = sel["cluster"].map(y).to_numpy(float) + offset[k]
        xs = np.log2(sel["median_fold_change"].to_numpy(float).clip(1e-3))
        signif = (sel["p_adj"] < alpha).to_numpy()
        colour = palette[k]
        if signif.any():
            ax.scatter(xs[signif], ys[signif], color=colour, s=36, label=f"{tp} (q < {alpha:g})")
        if (~signif).any():
            ax.scatter(xs[~signif], ys[~signif], facecolor="none", edgecolor=colour, s=36, label=tp)
    ax.axvline(0, color="#888888", lw=1)
    ax.set_yticks(range(len(rows)), rows)
    ax.invert_yaxis()
    ax.set_xlabel("log2 median fold of cluster % vs baseline")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize="small")
    ax.grid(axis="x", alpha=0.3)
    return fig
