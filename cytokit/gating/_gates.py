"""Gates as placed on one sample: small value objects with one ``apply(X) -> bool mask``.

Coordinates are in transformed units of the dimensions they name (var_names of the AnnData, i.e. markers
where known). Placement methods (``_methods.py``) create them; the engine applies them; GatingML export
turns them into FlowKit gates. They carry no data and pickle cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["EllipseGate", "Gate", "PolygonGate", "RangeGate", "bound", "gate_from_dict"]


def bound(value) -> float | None:
    """A range gate's bound as a float, or None when it is open (stored as NaN; None or NaN read)."""
    if value is None:
        return None
    value = float(value)
    return None if np.isnan(value) else value


@dataclass(frozen=True)
class RangeGate:
    """Axis-aligned box; a ``None`` bound is open. One dimension makes a 1-D threshold gate.

    ``to_dict()`` writes an open bound as NaN (h5py/h5ad cannot store None, and the lists stay
    float arrays); :func:`gate_from_dict` reads NaN or None back as open.
    """

    dims: tuple[str, ...]
    low: tuple[float | None, ...]
    high: tuple[float | None, ...]
    kind: str = field(default="range", init=False)

    def apply(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X).reshape(len(X), len(self.dims))  # also zero events
        mask = np.ones(len(X), dtype=bool)
        for j, (lo, hi) in enumerate(zip(self.low, self.high, strict=True)):
            if lo is not None:
                mask &= X[:, j] >= lo
            if hi is not None:
                mask &= X[:, j] < hi
        return mask

    def to_dict(self) -> dict:
        nan = float("nan")
        return {
            "kind": self.kind,
            "dims": list(self.dims),
            "low": [nan if v is None else float(v) for v in self.low],
            "high": [nan if v is None else float(v) for v in self.high],
        }


@dataclass(frozen=True)
class PolygonGate:
    """Closed polygon in two dimensions (even-odd rule, as GatingML 2.0)."""

    dims: tuple[str, str]
    vertices: tuple[tuple[float, float], ...]
    kind: str = field(default="polygon", init=False)

    def apply(self, X: np.ndarray) -> np.ndarray:
        x, y = np.asarray(X[:, 0], dtype=float), np.asarray(X[:, 1], dtype=float)
        v = np.asarray(self.vertices, dtype=float)
        inside = np.zeros(len(x), dtype=bool)
        for (x1, y1), (x2, y2) in zip(v, np.roll(v, -1, axis=0), strict=True):
            if y1 == y2:
                continue
            crosses = (y1 <= y) != (y2 <= y)
            x_at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            inside ^= crosses & (x < x_at)
        return inside

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "dims": list(self.dims),
            "vertices": [list(p) for p in self.vertices],
        }


@dataclass(frozen=True)
class EllipseGate:
    """Ellipse ``(x - mean)' inv(cov) (x - mean) <= distance_square`` (the GatingML 2.0 ellipsoid)."""

    dims: tuple[str, str]
    mean: tuple[float, float]
    covariance: tuple[tuple[float, float], tuple[float, float]]
    distance_square: float
    kind: str = field(default="ellipse", init=False)

    def apply(self, X: np.ndarray) -> np.ndarray:
        d = np.asarray(X, dtype=float)[:, :2] - np.asarray(self.mean)
        inv = np.linalg.inv(np.asarray(self.covariance, dtype=float))
        return np.einsum("ij,jk,ik->i", d, inv, d) <= self.distance_square

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "dims": list(self.dims),
            "mean": list(self.mean),
            "covariance": [list(r) for r in self.covariance],
            "distance_square": self.distance_square,
        }


Gate = RangeGate | PolygonGate | EllipseGate


def gate_from_dict(d: dict) -> Gate:
    """Rebuild a gate from its ``to_dict()`` form (read back from JSON, YAML or an .h5ad file).

    Lists may be numpy arrays (h5ad gives them back so) and an open range bound None or NaN.
    """
    kind = str(d["kind"])
    dims = tuple(str(v) for v in d["dims"])

    def points(rows) -> tuple:
        return tuple(tuple(float(v) for v in row) for row in rows)

    if kind == "range":
        return RangeGate(dims, tuple(map(bound, d["low"])), tuple(map(bound, d["high"])))
    if kind == "polygon":
        return PolygonGate(dims, points(d["vertices"]))
    if kind == "ellipse":
        mean = tuple(float(v) for v in d["mean"])
        return EllipseGate(dims, mean, points(d["covariance"]), float(d["distance_square"]))
    raise ValueError(f"unknown gate kind {kind!r}")
