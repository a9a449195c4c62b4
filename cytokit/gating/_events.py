"""Event-level kernels of the engine: gathering columns, polygon membership, boolean populations."""

from __future__ import annotations

import numpy as np


def _columns(X, needed: list[int], step: int = 1 << 16) -> np.ndarray:
    """``X[:, needed].T`` as one C-contiguous float32 block, gathered and transposed ``step`` events
    at a time: one allocation the size of the result, no event-sized temporary (a 1M-event sample
    allocated and page-faulted 60 MB more)."""
    if hasattr(X, "toarray"):  # sparse: densify the needed columns once
        return np.ascontiguousarray(X[:, needed].toarray().T, dtype=np.float32)
    X = np.asarray(X)
    block = np.empty((len(needed), X.shape[0]), dtype=np.float32)
    for start in range(0, X.shape[0], step):
        block[:, start : start + step] = X[start : start + step, needed].T
    return block


def _polygon_mask(vertices, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon, exactly :meth:`PolygonGate.apply`'s rule, on y-sorted events.

    Each edge only visits the events whose y lies in its span (a slice of the sorted order), so a
    64-vertex polygon costs a sort plus about two passes instead of 64 passes over all events.
    """
    x, y = np.asarray(x), np.asarray(y)
    order = np.argsort(y)  # float32 sorts as its exact float64 widening does, and faster
    ys, xs = y[order].astype(float), x[order].astype(float)
    inside = np.zeros(len(x), dtype=bool)
    v = np.asarray(vertices, dtype=float)
    for (x1, y1), (x2, y2) in zip(v, np.roll(v, -1, axis=0), strict=True):
        if y1 == y2:
            continue
        lo, hi = np.searchsorted(ys, [min(y1, y2), max(y1, y2)], side="left")
        if hi <= lo:
            continue
        x_at = x1 + (ys[lo:hi] - y1) * (x2 - x1) / (y2 - y1)
        inside[lo:hi] ^= xs[lo:hi] < x_at
    out = np.empty(len(x), dtype=bool)
    out[order] = inside
    return out


def _eval(tree: tuple, lookup) -> np.ndarray:
    op = tree[0]
    if op == "name":
        return lookup(tree[1])
    if op == "not":
        return ~_eval(tree[1], lookup)
    left, right = _eval(tree[1], lookup), _eval(tree[2], lookup)
    return left & right if op == "and" else left | right
