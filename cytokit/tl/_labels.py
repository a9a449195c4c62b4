"""Readable cluster labels, cluster abundance per sample, and the cluster x gated-population cross-check.

A cluster is named from the median of each marker against positivity thresholds found in the pooled
distribution of that marker (density valleys; a tail rule when the marker is unimodal), never from constants:
``"CD4+ CD25hi FOXP3+"``, ``"CD8+"``, ``"CD3- CD56+"``. Markers positive in most clusters (CD3 among
lymphocytes) are named only where they are negative, so labels stay short. Positive clusters whose medians fall in two
well separated groups are split into "+" and "hi".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks

from .. import _keys as K
from ..errors import CytokitError
from ..panels import load_panel
from ._utils import default_markers, matrix, resolve, sample_file

logger = logging.getLogger("cytokit")

__all__ = [
    "cluster_abundance",
    "cluster_population_overlap",
    "label_clusters",
    "positivity_threshold",
]

_LABEL_PANEL = "ldil2_treg"  # shipped panel whose marker order labels follow ("CD4+ CD25hi FOXP3+")
_BINS = 256
_SMOOTH = 2.5  # kernel sd in bins (1 % of the robust range)
_MIN_DEPTH = 0.35  # a peak counts when the valley beside it is at most 65 % of its height
_MIN_MASS = 0.004  # ... and it holds at least 0.4 % of the events
_TAIL_SD = 2.0  # unimodal markers: a cluster median 2 robust sd above the peak is positive
_BACKGROUND = (
    2 / 3
)  # a marker positive in more than 2/3 of the clusters is named only where negative
_HI_GAP_SD = (
    2.0  # positive cluster medians split into "+" and "hi" at a gap of 2 within-cluster sds
)


def positivity_threshold(values: np.ndarray) -> float:
    """Positivity threshold of one marker from its pooled distribution.

    The density valley after the lowest significant peak of the smoothed histogram (negative events from
    the rest); for a unimodal marker, the peak plus two robust standard deviations of its lower half
    (cluster medians, not single events, are compared with it, so two sds is already far).
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) < 10 or np.ptp(x) == 0:
        return float(x.max()) if len(x) else np.nan
    lo, hi = np.quantile(x, [0.001, 0.999])
    if hi <= lo:
        lo, hi = float(x.min()), float(x.max())
    counts, edges = np.histogram(x, bins=_BINS, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    dens = gaussian_filter1d(counts.astype(np.float64), _SMOOTH, mode="constant")
    peaks = _significant_peaks(dens)
    if len(peaks) >= 2:
        return float(centres[peaks[0] + int(np.argmin(dens[peaks[0] : peaks[1] + 1]))])
    mode = centres[int(np.argmax(dens))]
    below = mode - x[(x <= mode) & (x >= lo)]
    sd = 1.4826 * float(np.median(below)) if len(below) > 5 else float(np.std(x))
    return float(mode + _TAIL_SD * max(sd, (hi - lo) / _BINS))


def _significant_peaks(dens: np.ndarray) -> np.ndarray:
    """Peaks deep enough (relative to their own height) and heavy enough, by position."""
    peaks, props = find_peaks(np.r_[0.0, dens, 0.0], prominence=dens.max() * 1e-3)
    peaks = peaks - 1
    keep = props["prominences"] >= _MIN_DEPTH * dens[peaks]
    peaks = peaks[keep]
    while len(peaks) >= 2:
        cuts = [a + int(np.argmin(dens[a : b + 1])) for a, b in pairwise(peaks)]
        bounds = np.r_[0, cuts]
        mass = np.add.reduceat(dens, bounds) / max(dens.sum(), 1e-12)
        if mass.min() >= _MIN_MASS:
            break
        peaks = np.delete(peaks, int(np.argmin(mass)))
    return peaks


def _states(medians: pd.DataFrame, spreads: pd.DataFrame, thresholds: pd.Series) -> pd.DataFrame:
    """ "-", "+" or "hi" for each cluster (rows) and marker (columns).

    Positive clusters are those whose median passes the marker's threshold. When their medians fall in two
    groups and the gap between the groups is wider than ``_HI_GAP_SD`` times the within-cluster spread of
    the clusters beside it (distinct populations, not a blend), the upper group is "hi" (CD25 on Treg vs
    activated Teff, CD4 on T cells vs monocytes, CD56bright vs CD56dim NK).
    """
    states = pd.DataFrame("-", index=medians.index, columns=medians.columns, dtype=object)
    for marker in medians.columns:
        m = medians[marker].to_numpy()
        pos = np.isfinite(m) & (m >= thresholds[marker])
        states.loc[pos, marker] = "+"
        order = np.flatnonzero(pos)[np.argsort(m[pos], kind="stable")]
        if len(order) < 2:
            continue
        gaps = np.diff(m[order])
        g = int(np.argmax(gaps))
        within = spreads[marker].to_numpy()[order[g : g + 2]].mean()
        if gaps[g] > _HI_GAP_SD * within:
            states.loc[pos & (m > m[order[g]]), marker] = "hi"
    return states


def _readable(states: pd.Series, majority_positive: pd.Series) -> str:
    """One label: positive markers; markers positive in most clusters (CD3) only where negative.

    A cluster with nothing to name this way gets the states of the majority-positive markers ("CD3+"), or
    when negative for everything, its first three markers ("CD3- CD4- CD8-").
    """
    parts = [
        f"{marker}{state}"
        for marker, state in states.items()
        if (state == "-") == bool(majority_positive[marker])
    ]
    if not parts:
        parts = [
            f"{marker}{states[marker]}" for marker in states.index[majority_positive.to_numpy()]
        ]
    return " ".join(parts or [f"{marker}-" for marker in states.index[:3]])


def label_clusters(
    adata: AnnData, *, key: str = K.CLUSTER, markers: Sequence[str] | None = None
) -> pd.DataFrame:
    """Per-cluster median marker levels and a readable label from data-driven positivity.

    Parameters
    ----------
    adata
        Clustered events: ``obs[key]`` from :func:`flowsom` or :func:`leiden`.
    key
        ``obs`` column of the clusters.
    markers
        Markers to describe; default: those the clustering used (``uns[key]["markers"]``).

    Returns
    -------
    DataFrame indexed by cluster: ``count``, ``pct`` (of all events), the median of each marker and
    ``label``. The positivity thresholds are in ``.attrs["thresholds"]`` (a dict by marker: pandas
    compares ``attrs`` when it truncates a wide frame for printing, which a Series there breaks).
    """
    clusters = _clusters(adata, key)
    if markers is None:
        names = list(adata.uns.get(key, {}).get("markers", [])) or default_markers(adata)
        names = [n for n in names if n in adata.var_names]
    else:
        names = resolve(adata, markers)
    names = _label_order(adata, names)
    X = matrix(adata, names)
    thresholds = pd.Series([positivity_threshold(X[:, j]) for j in range(X.shape[1])], index=names)
    grouped = pd.DataFrame(X, columns=names).groupby(clusters.to_numpy(), observed=False)
    medians = grouped.median().reindex(clusters.cat.categories)
    spreads = (grouped.quantile(0.75) - grouped.quantile(0.25)).reindex(
        clusters.cat.categories
    ) / 1.349
    states = _states(medians, spreads, thresholds)
    majority = (states != "-").mean(axis=0) > _BACKGROUND
    counts = clusters.value_counts().reindex(clusters.cat.categories).fillna(0).astype(int)
    table = medians.copy()
    table.insert(0, "pct", 100.0 * counts / max(len(clusters), 1))
    table.insert(0, "count", counts)
    table["label"] = [_readable(states.loc[c], majority) for c in medians.index]
    table.index.name = key
    table.attrs["thresholds"] = {m: float(v) for m, v in thresholds.items()}
    return table


def _label_order(adata: AnnData, names: list[str]) -> list[str]:
    """Markers in the order labels name them: lineage before functional, then the shipped panel's order."""
    try:
        known = load_panel(_LABEL_PANEL).names
    except CytokitError:
        known = []
    roles = adata.var[K.ROLE].astype(str) if K.ROLE in adata.var.columns else None

    def rank(item: tuple[int, str]) -> tuple[int, int, int]:
        i, name = item
        functional = int(roles is not None and roles[name] != "lineage")
        return functional, known.index(name) if name in known else len(known), i

    return [name for _, name in sorted(enumerate(names), key=rank)]


def cluster_abundance(
    adata: AnnData, *, key: str = K.CLUSTER, groupby: str = K.SAMPLE
) -> pd.DataFrame:
    """Events per sample and cluster, as the rows of ``clusters.csv``.

    Every cluster appears for every sample (count 0 where absent), so abundances can be compared between
    timepoints. Columns: ``groupby``, ``cluster``, ``count``, ``pct`` (of the sample's events, sums to 100
    per sample), ``label`` (from :func:`label_clusters`).
    """
    clusters = _clusters(adata, key)
    if groupby in adata.obs.columns:
        groups = adata.obs[groupby].astype(str).to_numpy()
    else:
        info = adata.uns.get(K.SAMPLE_INFO)
        name = info.get("sample", "all") if isinstance(info, dict) else "all"
        logger.warning("obs has no %r column: abundance of all events as sample %r", groupby, name)
        groups = np.full(adata.n_obs, str(name), dtype=object)
    table = pd.crosstab(pd.Categorical(groups), clusters.to_numpy(), dropna=False)
    table = table.reindex(columns=clusters.cat.categories, fill_value=0)
    long = table.stack().rename("count").reset_index()
    long.columns = [groupby, "cluster", "count"]
    totals = long.groupby(groupby, observed=True)["count"].transform("sum")
    long["pct"] = 100.0 * long["count"] / totals.where(totals > 0, 1)
    labels = label_clusters(adata, key=key)["label"]
    long["label"] = long["cluster"].map(labels).astype(str)
    long["cluster"] = long["cluster"].astype(str)
    long[groupby] = long[groupby].astype(str)
    return long.reset_index(drop=True)


def cluster_population_overlap(
    adata: AnnData, *, key: str = K.CLUSTER, population_key: str = K.POPULATION
) -> pd.DataFrame:
    """Fraction of each gated population's events in each cluster (clusters x populations; columns sum to 1).

    The unsupervised cross-check of the gating: the CD4+ CD25hi FOXP3+ cluster should hold most gated Tregs.
    Populations without events are left out.
    """
    clusters = _clusters(adata, key)
    if population_key not in adata.obs.columns:
        raise CytokitError(
            f"obs has no {population_key!r} column: gate the events first", sample_file(adata)
        )
    populations = adata.obs[population_key].astype("category").cat.remove_unused_categories()
    table = pd.crosstab(clusters, populations, normalize="columns", dropna=False)
    table.index.name, table.columns.name = key, population_key
    return table


def _clusters(adata: AnnData, key: str) -> pd.Series:
    if key not in adata.obs.columns:
        raise CytokitError(
            f"obs has no {key!r} column: run tl.flowsom or tl.leiden first", sample_file(adata)
        )
    return adata.obs[key].astype("category")


def gate_cluster_agreement(
    adata: AnnData,
    population: str = "Treg",
    *,
    key: str = K.CLUSTER,
    population_key: str = K.POPULATION,
    groupby: str = "sample",
    min_purity: float = 0.5,
) -> pd.DataFrame:
    """Per sample, a gated population's % of events next to the % of events in its matching clusters.

    The clusters matching ``population`` are those whose events are mostly (``min_purity``) that population,
    so the comparison is fixed before looking at any sample. Supervised and unsupervised analyses agree when
    the two columns move together across samples (``attrs["spearman"]``).
    """
    from scipy.stats import spearmanr

    clusters = _clusters(adata, key)
    if population_key not in adata.obs.columns:
        raise CytokitError(
            f"obs has no {population_key!r} column: gate the events first", sample_file(adata)
        )
    is_pop = adata.obs[population_key].astype(str).to_numpy() == population
    purity = pd.Series(is_pop).groupby(clusters.to_numpy()).mean()
    matching = [str(c) for c in purity.index[purity >= min_purity]]
    in_match = clusters.astype(str).isin(matching).to_numpy()
    groups = adata.obs[groupby].astype(str).to_numpy()
    table = (
        pd.DataFrame({groupby: groups, "gated": is_pop, "clustered": in_match})
        .groupby(groupby, sort=True)
        .mean()
        .mul(100.0)
        .rename(columns={"gated": "gated_pct", "clustered": "cluster_pct"})
        .reset_index()
    )
    table.attrs["population"] = population
    table.attrs["clusters"] = matching
    enough = (
        len(table) >= 3 and table["cluster_pct"].nunique() > 1 and table["gated_pct"].nunique() > 1
    )
    table.attrs["spearman"] = (
        float(spearmanr(table["gated_pct"], table["cluster_pct"])[0]) if enough else np.nan
    )
    return table
