"""Map events onto a fitted FlowSOM model: every event of a sample, or a new sample, to the same clusters.

A run fits the map and its metaclusters on a pooled subsample (a few hundred events per sample), then
assigns every event of each sample's clustered population to its nearest node and that node's metacluster,
as FlowSOM users do with ``NewData``/``GetClusters`` and CATALYST with its full-data ``cluster``. The model
is a plain dict (``uns["cluster"]`` of the clustered AnnData) or a small JSON file, so a notebook maps a new
sample onto a finished run's clusters with :func:`map_clusters`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys as K
from ..errors import CytokitError
from ._som import _best_matching
from ._utils import matrix, resolve, sample_file

logger = logging.getLogger("cytokit")

__all__ = [
    "cluster_categorical",
    "cluster_counts",
    "map_clusters",
    "map_events",
    "read_cluster_model",
    "write_cluster_model",
]

_MODEL_KEYS = ("markers", "codes", "node_cluster")


def _check_model(model: Mapping, where: str | None = None) -> Mapping:
    missing = [k for k in _MODEL_KEYS if k not in model]
    if missing:
        raise CytokitError(f"not a fitted cluster model (missing {', '.join(missing)})", where)
    return model


def model_clusters(model: Mapping) -> list[str]:
    """Cluster names of a model in their order ("1".."k", "1" the largest in the training events)."""
    names = {str(n) for n in np.asarray(model["node_cluster"]).tolist() if str(n)}
    return sorted(names, key=lambda n: (len(n), n))


def map_events(X: np.ndarray, model: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """Nearest SOM node of each event (rows of ``X``, the model's markers in order) and its cluster name.

    This is the one assignment rule: :func:`~cytokit.tl.flowsom` labels its training events with it, the
    run labels every event of every sample with it, and :func:`map_clusters` labels a new sample with it.
    """
    _check_model(model)
    codes = np.ascontiguousarray(model["codes"], dtype=np.float32)
    X = np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != codes.shape[1]:
        raise ValueError(
            f"X must have {codes.shape[1]} columns (the model's markers), got {X.shape}"
        )
    nodes, _ = _best_matching(X, codes, np.einsum("ij,ij->i", X, X))
    return nodes, np.asarray(model["node_cluster"]).astype(str)[nodes]


def cluster_counts(X: np.ndarray, model: Mapping) -> pd.Series:
    """Events per cluster of the model (every cluster present, 0 where none), mapping the rows of ``X``."""
    clusters = model_clusters(model)
    if len(X) == 0:
        return pd.Series(0, index=pd.Index(clusters, name=K.CLUSTER), dtype=np.int64)
    nodes, _ = map_events(X, model)
    per_node = np.bincount(nodes, minlength=len(model["node_cluster"]))
    node_cluster = np.asarray(model["node_cluster"]).astype(str)
    counts = pd.Series(per_node, index=node_cluster).groupby(level=0).sum()
    return counts.reindex(clusters, fill_value=0).rename_axis(K.CLUSTER).astype(np.int64)


def cluster_categorical(model: Mapping, names: np.ndarray) -> pd.Categorical:
    """Cluster names as a categorical with every cluster of the model, in the model's order."""
    return pd.Categorical(np.asarray(names).astype(object), categories=model_clusters(model))


def map_clusters(
    adata: AnnData,
    model: Mapping | AnnData | str | Path,
    *,
    population: str | None = None,
    key_added: str = K.CLUSTER,
    copy: bool = False,
) -> AnnData | None:
    """Assign the events of ``adata`` to the clusters of a fitted model (nearest SOM node, its metacluster).

    Parameters
    ----------
    adata
        Events compensated and transformed as the model's training events were (``pp.compensate``,
        ``pp.transform`` with the same method); the model's markers are found by name
        (:func:`cytokit.panels.find_var`), so panel spellings may differ.
    model
        A fitted model: ``uns["cluster"]`` of a clustered AnnData (:func:`~cytokit.tl.flowsom`, a run's
        ``cells.h5ad``), that AnnData itself, or the path of a ``cluster_model.json`` a run writes.
    population
        Map only the events of this gated population (``obsm["populations"]`` column, e.g. ``"live"`` or
        ``"CD4"``); the others get no cluster (NaN). Default: every event, or the population the model was
        trained on (``model["population"]``) when ``adata`` is gated and has it.
    key_added
        ``obs`` column of the clusters; ``uns[key_added]`` receives the model.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Sets ``obs[key_added]`` (categorical with every cluster of the
    model) and ``obs[key_added + "_node"]`` (the SOM node, -1 where not mapped).
    """
    adata = adata.copy() if copy else adata
    model = _as_model(model)
    keep = _population_mask(adata, population, model)
    names = resolve(adata, model["markers"])
    rows = np.flatnonzero(keep)
    X = matrix(adata[rows] if len(rows) < adata.n_obs else adata, names)
    nodes = np.full(adata.n_obs, -1, dtype=np.intp)
    clusters = np.full(adata.n_obs, np.nan, dtype=object)
    if len(rows):
        nodes[rows], clusters[rows] = map_events(X, model)
    adata.obs[key_added] = cluster_categorical(model, clusters)
    adata.obs[f"{key_added}_node"] = nodes
    adata.uns[key_added] = dict(model)
    logger.info("mapped %d events onto %d clusters", len(rows), len(model_clusters(model)))
    return adata if copy else None


def _population_mask(adata: AnnData, population: str | None, model: Mapping) -> np.ndarray:
    pops = adata.obsm.get(K.POPULATIONS)
    if population is None:
        trained_on = model.get("population")
        if trained_on and pops is not None and trained_on in pops.columns:
            population = str(trained_on)
        else:
            return np.ones(adata.n_obs, dtype=bool)
    if pops is None or population not in pops.columns:
        raise CytokitError(
            f"no gated population {population!r} to map: gate the events first (ck.gate)",
            sample_file(adata),
        )
    return np.asarray(pops[population], dtype=bool)


def _as_model(model) -> dict:
    if isinstance(model, AnnData):
        found = model.uns.get(K.CLUSTER)
        if not isinstance(found, Mapping):
            raise CytokitError(f"the AnnData has no fitted model in uns[{K.CLUSTER!r}]")
        return dict(_check_model(found))
    if isinstance(model, str | Path):
        return read_cluster_model(model)
    return dict(_check_model(model))


def write_cluster_model(model: Mapping, path: str | Path) -> Path:
    """Write a fitted model (codes, node clusters, markers, labels, parameters) as a small JSON file."""
    _check_model(model)

    def plain(v):
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, Mapping):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        return v

    path = Path(path)
    path.write_text(json.dumps(plain(dict(model)), indent=1))
    return path


def read_cluster_model(path: str | Path) -> dict:
    """A model written by :func:`write_cluster_model` (``cluster_model.json`` of a run)."""
    path = Path(path)
    try:
        model = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CytokitError(f"cannot read the cluster model: {err}", path) from None
    _check_model(model, str(path))
    model["codes"] = np.asarray(model["codes"], dtype=np.float32)
    model["node_cluster"] = np.asarray(model["node_cluster"]).astype(str)
    return model
