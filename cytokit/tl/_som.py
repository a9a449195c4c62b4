"""A self-organising map (Kohonen) trained in batch mode, the first stage of FlowSOM.

FlowSOM trains its map online (one event at a time, ``rlen`` passes, learning rate 0.05 -> 0.01, radius
shrinking from the 67th percentile of grid distances to 0). The batch rule used here reaches the same kind of
map with whole-array numpy: each pass assigns every event to its best matching node, then moves every node to
the neighbourhood-weighted mean of the events, the Gaussian neighbourhood shrinking from the same starting
radius to well under one grid step, so the last passes are plain k-means steps on the nodes.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .._logging import timed

logger = logging.getLogger("cytokit")

__all__ = ["SOM"]

_CHUNK = 65_536  # events per distance block: 65k x 100 nodes x 4 bytes = 26 MB


class SOM:
    """Self-organising map on a rectangular grid, scikit-learn style.

    Parameters
    ----------
    grid
        Nodes along x and y (FlowSOM's ``xdim``, ``ydim``).
    n_iter
        Passes over the data (FlowSOM's ``rlen``).
    sigma_start, sigma_end
        Gaussian neighbourhood width in grid steps at the first and last pass; ``sigma_start=None`` uses
        FlowSOM's starting radius, the 67th percentile of the distances between nodes.
    init
        ``"random"``: nodes start at distinct random events (FlowSOM's default); ``"pca"``: nodes start on
        the plane of the first two principal components.
    random_state
        Seed of the initialisation.

    Attributes
    ----------
    codes_ : ndarray of shape (n_nodes, n_features)
        The trained node vectors (FlowSOM's codes), node ``i`` at grid position ``positions_[i]``.
    positions_ : ndarray of shape (n_nodes, 2)
        Grid coordinates of the nodes.
    labels_ : ndarray of shape (n_events,)
        Best matching node of each training event.
    quantization_error_ : float
        Mean distance of the training events to their best matching node.
    """

    def __init__(
        self,
        grid: tuple[int, int] = (10, 10),
        *,
        n_iter: int = 10,
        sigma_start: float | None = None,
        sigma_end: float = 0.3,
        init: str = "random",
        random_state: int | None = 0,
    ):
        self.grid = grid
        self.n_iter = n_iter
        self.sigma_start = sigma_start
        self.sigma_end = sigma_end
        self.init = init
        self.random_state = random_state

    def _check_params(self, X: np.ndarray) -> np.ndarray:
        gx, gy = (int(g) for g in self.grid)
        if gx < 1 or gy < 1 or gx * gy < 2:
            raise ValueError(f"grid must have at least 2 nodes, got {self.grid}")
        if self.n_iter < 1:
            raise ValueError(f"n_iter must be >= 1, got {self.n_iter}")
        if self.init not in ("random", "pca"):
            raise ValueError(f"init must be 'random' or 'pca', got {self.init!r}")
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or len(X) == 0:
            raise ValueError(f"X must be a non-empty 2-D array, got shape {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("X contains NaN or infinite values")
        return X

    def fit(self, X: np.ndarray, y=None) -> SOM:
        """Train the map on events ``X`` (n_events x n_features)."""
        start = time.perf_counter()
        X = self._check_params(X)
        rng = np.random.default_rng(self.random_state)
        gx, gy = (int(g) for g in self.grid)
        self.positions_ = np.stack(np.unravel_index(np.arange(gx * gy), (gx, gy)), axis=1).astype(
            float
        )
        grid_d2 = ((self.positions_[:, None, :] - self.positions_[None, :, :]) ** 2).sum(-1)
        sigma0 = self.sigma_start
        if sigma0 is None:
            sigma0 = float(np.quantile(np.sqrt(grid_d2), 0.67))
        sigma0 = max(float(sigma0), self.sigma_end)
        codes = self._initial_codes(X, rng)
        sigmas = (
            np.geomspace(sigma0, self.sigma_end, self.n_iter)
            if self.n_iter > 1
            else [self.sigma_end]
        )
        sq = np.einsum("ij,ij->i", X, X)
        for sigma in sigmas:
            bmu, _ = _best_matching(X, codes, sq)
            counts = np.bincount(bmu, minlength=len(codes)).astype(np.float64)
            sums = _group_sum(bmu, X, len(codes))
            H = np.exp(-grid_d2 / (2.0 * sigma**2))
            weight = H @ counts
            ok = weight > 1e-12
            codes[ok] = ((H @ sums)[ok] / weight[ok, None]).astype(np.float32)
        bmu, d2 = _best_matching(X, codes, sq)
        self.codes_ = codes
        self.labels_ = bmu
        self.n_features_in_ = X.shape[1]
        self.quantization_error_ = float(np.sqrt(d2).mean())
        logger.debug(timed(f"SOM {gx}x{gy} on {X.shape[0]} x {X.shape[1]}", start))
        return self

    def _initial_codes(self, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n_nodes = len(self.positions_)
        if self.init == "pca":
            mean = X.mean(axis=0)
            _, s, vt = np.linalg.svd(X[:: max(1, len(X) // 20_000)] - mean, full_matrices=False)
            scale = s[:2] / np.sqrt(max(1, min(len(X), 20_000) - 1))
            span = self.positions_ / np.maximum(self.positions_.max(axis=0), 1) * 2 - 1
            k = min(2, vt.shape[0])
            return (mean + (span[:, :k] * scale[:k] * 2) @ vt[:k]).astype(np.float32)
        uniq = np.unique(X, axis=0) if len(X) <= 4 * n_nodes else X
        replace = len(uniq) < n_nodes
        rows = rng.choice(len(uniq), size=n_nodes, replace=replace)
        codes = uniq[rows].astype(np.float32, copy=True)
        if replace:  # fewer distinct events than nodes: jitter the copies apart
            codes += rng.normal(0.0, 1e-3, codes.shape).astype(np.float32)
        return codes

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Index of the best matching node of each event."""
        self._check_fitted()
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must have {self.n_features_in_} columns, got shape {X.shape}")
        return _best_matching(X, self.codes_, np.einsum("ij,ij->i", X, X))[0]

    def fit_predict(self, X: np.ndarray, y=None) -> np.ndarray:
        """Train on ``X`` and return the best matching node of each event."""
        return self.fit(X).labels_

    def _check_fitted(self) -> None:
        if not hasattr(self, "codes_"):
            raise AttributeError("this SOM is not fitted yet; call fit(X) first")

    def __repr__(self) -> str:
        return f"SOM(grid={tuple(self.grid)}, n_iter={self.n_iter}, init={self.init!r}, random_state={self.random_state})"


def _best_matching(
    X: np.ndarray, codes: np.ndarray, sq: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest node (Euclidean) and squared distance for each row of ``X``, in blocks of rows."""
    csq = np.einsum("ij,ij->i", codes, codes)
    minus2 = np.ascontiguousarray(-2.0 * codes.T, dtype=np.float32)
    bmu = np.empty(len(X), dtype=np.intp)
    d2 = np.empty(len(X), dtype=np.float32)
    for lo in range(0, len(X), _CHUNK):
        dist = X[lo : lo + _CHUNK] @ minus2
        dist += csq
        j = dist.argmin(axis=1)
        bmu[lo : lo + _CHUNK] = j
        d2[lo : lo + _CHUNK] = np.take_along_axis(dist, j[:, None], axis=1)[:, 0]
    d2 += sq
    np.maximum(d2, 0.0, out=d2)
    return bmu, d2


def _group_sum(groups: np.ndarray, X: np.ndarray, n_groups: int) -> np.ndarray:
    """Sum of the rows of ``X`` per group (n_groups x n_features, float64), one bincount per column."""
    return np.stack([np.bincount(groups, weights=col, minlength=n_groups) for col in X.T], axis=1)
