"""The k-nearest-neighbour graph of events shared by Leiden and UMAP (exact, scikit-learn trees)."""

from __future__ import annotations

import numpy as np
from scipy import sparse


def knn(X: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and distances of the ``n_neighbors`` nearest events of each event, itself first.

    Exact and deterministic (a KD/ball tree); on 10-15 transformed markers this is faster than approximate
    search for the pooled subsample sizes cytokit uses.
    """
    from sklearn.neighbors import NearestNeighbors

    k = min(n_neighbors, len(X))
    dist, idx = NearestNeighbors(n_neighbors=k).fit(X).kneighbors(X)
    # duplicated events may list a twin before themselves: put each event first in its own row
    first = idx[:, 0] != np.arange(len(X))
    if first.any():
        rows = np.flatnonzero(first)
        pos = (idx[rows] == rows[:, None]).argmax(axis=1)
        has_self = idx[rows, pos] == rows
        idx[rows[has_self], pos[has_self]] = idx[rows[has_self], 0]
        idx[rows, 0] = rows
        dist[rows, 0] = 0.0
    return idx.astype(np.int64), dist.astype(np.float32)


def jaccard_graph(idx: np.ndarray) -> sparse.csr_matrix:
    """Symmetric event graph weighted by the Jaccard overlap of neighbourhoods (PhenoGraph's weights).

    An edge joins ``i`` and ``j`` when either is among the other's neighbours; its weight is
    ``|N(i) & N(j)| / |N(i) | N(j)|`` with each neighbourhood holding the event itself.
    """
    n, k = idx.shape
    member = sparse.csr_matrix(
        (np.ones(n * k, dtype=np.float32), idx.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n)
    )
    adjacency = ((member + member.T) > 0).astype(np.float32)
    adjacency.setdiag(0)
    adjacency.eliminate_zeros()
    shared = (member @ member.T).multiply(adjacency).tocsr()
    shared.data = shared.data / (2.0 * k - shared.data)
    shared.eliminate_zeros()
    return shared
