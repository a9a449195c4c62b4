"""Leiden community detection on the events' kNN graph (the graph-based alternative to FlowSOM)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
from anndata import AnnData
from scipy import sparse

from .. import _keys as K
from .._logging import timed
from ._neighbors import jaccard_graph, knn
from ._utils import check_events, matrix, renumber_by_size, resolve

logger = logging.getLogger("cytokit")

__all__ = ["leiden"]


def leiden(
    adata: AnnData,
    markers: Sequence[str] | None = None,
    *,
    n_neighbors: int = 15,
    resolution: float = 1.0,
    seed: int = 0,
    key_added: str = K.CLUSTER,
    copy: bool = False,
) -> AnnData | None:
    """Cluster events by Leiden community detection on their k-nearest-neighbour graph.

    The graph joins each event to its ``n_neighbors`` nearest events (exact Euclidean distance on the
    markers) with PhenoGraph's Jaccard weights; communities maximise the modularity of the
    reichardt-bornholdt configuration model at ``resolution`` (higher: more, smaller clusters).

    Parameters
    ----------
    adata
        Compensated, transformed events (``X``), var names = markers.
    markers
        Markers (or channel names) to cluster on; default: the lineage and functional markers.
    n_neighbors
        Neighbours per event in the graph.
    resolution
        Resolution of the partition.
    seed
        Seed of leidenalg; equal seeds give equal clusters.
    key_added
        ``obs`` column of the labels and ``uns`` key of the parameters.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Sets ``obs[key_added]`` (categorical "1".."k", "1" the largest)
    and ``uns[key_added]`` = ``{"method", "markers", "params", "modularity"}``. Needs ``igraph`` and
    ``leidenalg`` (``pip install cytokit[cluster]``).
    """
    import igraph
    import leidenalg

    adata = adata.copy() if copy else adata
    start = time.perf_counter()
    names = resolve(adata, markers)
    X = matrix(adata, names)
    check_events(X, 3, "Leiden clustering", adata)
    edges = sparse.triu(jaccard_graph(knn(X, n_neighbors + 1)[0]), k=1).tocoo()
    g = igraph.Graph(n=X.shape[0], edges=np.column_stack([edges.row, edges.col]).tolist())
    g.es["weight"] = edges.data.tolist()
    part = leidenalg.find_partition(
        g,
        leidenalg.RBConfigurationVertexPartition,
        weights="weight",
        resolution_parameter=resolution,
        n_iterations=-1,
        seed=seed,
    )
    membership = np.asarray(part.membership, dtype=np.intp)
    labels, _ = renumber_by_size(membership, int(membership.max()) + 1)
    adata.obs[key_added] = labels
    adata.uns[key_added] = {
        "method": "leiden",
        "markers": list(names),
        "params": {
            "n_neighbors": int(n_neighbors),
            "resolution": float(resolution),
            "seed": int(seed),
        },
        "modularity": float(part.modularity),
    }
    logger.info(timed(f"leiden: {len(labels.categories)} clusters of {X.shape[0]} events", start))
    return adata if copy else None
