"""UMAP embedding of events for viewing clusters and populations.

The exact kNN graph (``_neighbors.knn``) is turned into UMAP's fuzzy graph here in numpy (the same
formulas as umap-learn's ``fuzzy_simplicial_set``, which numba compiles for several seconds in every
new process), the layout starts from the first two principal components (no spectral eigensolver:
it took most of the 23 s a 12k-event trial pool spent in UMAP) and umap-learn's own SGD optimises it.
PCA initialisation keeps the global arrangement as well as the spectral one (Kobak & Linderman 2021,
Nat Biotechnol 39:156, "Initialization is critical for preserving global data structure in both t-SNE
and UMAP").
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence

import numpy as np
from anndata import AnnData

from .. import _keys as K
from .._logging import timed
from ._neighbors import knn
from ._utils import check_events, matrix, resolve

logger = logging.getLogger("cytokit")

__all__ = ["umap"]

#: Epochs when not given. umap-learn uses 200 (500 under 10,000 events) from a spectral start; from a PCA
#: start the pooled trial layouts (10-20k events) looked the same after 100 (checked by eye on simulated
#: trials), at half the time.
DEFAULT_EPOCHS = 100
#: umap-learn's constants of ``smooth_knn_dist`` (umap/umap_.py).
_SMOOTH_K_TOLERANCE = 1e-5
_MIN_K_DIST_SCALE = 1e-3


def fuzzy_graph(idx: np.ndarray, dist: np.ndarray, n_iter: int = 64):
    """UMAP's fuzzy simplicial set of a kNN graph (each row's own event first), as a sparse matrix.

    Per event, ``rho`` is the distance to its nearest other event and ``sigma`` solves
    ``sum_j exp(-(d_j - rho) / sigma) = log2(k)`` by bisection (umap-learn's ``smooth_knn_dist``,
    vectorised over events); memberships ``exp(-(d - rho) / sigma)`` are symmetrised by the fuzzy union
    ``A + A' - A o A'``.
    """
    from scipy import sparse

    n, k = dist.shape
    d = np.asarray(dist, dtype=np.float64)
    positive = np.where(d > 0, d, np.inf)
    rho = positive.min(axis=1)
    rho[~np.isfinite(rho)] = 0.0
    rest = d[:, 1:] - rho[:, None]
    target = np.log2(k)
    lo, hi, mid = np.zeros(n), np.full(n, np.inf), np.ones(n)
    active = np.arange(n)
    for _ in range(n_iter):
        if active.size == 0:
            break
        m = mid[active]
        r = rest[active]
        psum = np.where(r > 0, np.exp(-np.maximum(r, 0) / m[:, None]), 1.0).sum(axis=1)
        done = np.abs(psum - target) < _SMOOTH_K_TOLERANCE
        over = psum > target
        h = np.where(over, m, hi[active])
        low = np.where(over, lo[active], m)
        step = np.where(over | np.isfinite(h), (low + h) / 2, m * 2)
        keep = ~done
        hi[active[keep]], lo[active[keep]], mid[active[keep]] = h[keep], low[keep], step[keep]
        active = active[keep]
    floor = _MIN_K_DIST_SCALE * np.where(rho > 0, d.mean(axis=1), d.mean())
    sigma = np.maximum(mid, floor)
    excess = d - rho[:, None]
    vals = np.where(excess <= 0, 1.0, np.exp(-np.maximum(excess, 0) / sigma[:, None]))
    vals[idx == np.arange(n)[:, None]] = 0.0
    rows = np.repeat(np.arange(n), k)
    A = sparse.csr_matrix((vals.ravel(), (rows, np.asarray(idx).ravel())), shape=(n, n))
    A.eliminate_zeros()
    At = A.T.tocsr()
    graph = A + At - A.multiply(At)
    graph.eliminate_zeros()
    return graph.tocoo()


def _pca_start(X: np.ndarray, seed: int) -> np.ndarray:
    """First two principal components (random where the data have fewer than two directions)."""
    Xc = np.asarray(X, dtype=np.float64) - X.mean(axis=0)
    if Xc.shape[1] >= 2 and Xc.shape[0] > 2:
        _, _, vt = np.linalg.svd(Xc, full_matrices=False)
        start = Xc @ vt[:2].T
    else:
        start = np.zeros((Xc.shape[0], 2))
    flat = np.ptp(start, axis=0) <= 0
    if flat.any():
        start[:, flat] = np.random.default_rng(seed).uniform(-1, 1, (len(start), int(flat.sum())))
    return (10.0 * start / np.abs(start).max()).astype(np.float32)


def umap(
    adata: AnnData,
    markers: Sequence[str] | None = None,
    *,
    n_neighbors: int = 15,
    min_dist: float = 0.3,
    n_epochs: int | None = None,
    seed: int = 0,
    copy: bool = False,
) -> AnnData | None:
    """Embed events in two dimensions with UMAP; coordinates go to ``obsm["X_umap"]``.

    Parameters
    ----------
    adata
        Compensated, transformed events (``X``), var names = markers.
    markers
        Markers (or channel names) to embed; default: the lineage and functional markers.
    n_neighbors
        Size of the local neighbourhood (larger: more global structure).
    min_dist
        How tightly UMAP packs neighbouring events.
    n_epochs
        Optimisation rounds of the layout; default :data:`DEFAULT_EPOCHS` (100, from a PCA start).
    seed
        Seed of the layout (umap-learn's SGD is then deterministic and single-threaded).
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Sets ``obsm["X_umap"]`` (events x 2, float32) and
    ``uns["umap"] = {"markers", "params"}``.
    """
    adata = adata.copy() if copy else adata
    start = time.perf_counter()
    names = resolve(adata, markers)
    X = matrix(adata, names)
    check_events(X, 4, "UMAP", adata)
    k = max(2, min(n_neighbors, X.shape[0] - 1))
    epochs = DEFAULT_EPOCHS if n_epochs is None else int(n_epochs)
    idx, dist = knn(X, k)
    graph = fuzzy_graph(idx, dist)
    with warnings.catch_warnings():  # numba / umap-learn chatter
        warnings.simplefilter("ignore")
        from umap.umap_ import find_ab_params, simplicial_set_embedding

        a, b = find_ab_params(1.0, min_dist)
        embedding = simplicial_set_embedding(
            data=X,
            graph=graph,
            n_components=2,
            initial_alpha=1.0,
            a=a,
            b=b,
            gamma=1.0,
            negative_sample_rate=5,
            n_epochs=epochs,
            init=_pca_start(X, seed),
            random_state=np.random.RandomState(seed),
            metric="euclidean",
            metric_kwds={},
            densmap=False,
            densmap_kwds={},
            output_dens=False,
        )[0]
    adata.obsm[K.UMAP] = np.asarray(embedding, dtype=np.float32)
    adata.uns[K.UMAP_PARAMS] = {
        "markers": list(names),
        "params": {
            "n_neighbors": int(k),
            "min_dist": float(min_dist),
            "n_epochs": epochs,
            "init": "pca",
            "seed": int(seed),
        },
    }
    logger.info(timed(f"umap: {X.shape[0]} events on {len(names)} markers", start))
    return adata if copy else None
