"""Logicle (Parks/Moore biexponential display scale) in numpy, on the FlowKit/flowutils 0..1 scale.

No per-value root search: the inverse B(y), cheap and exact, is solved once at table nodes spaced 1/512
of an octave apart (Halley's method in float64), and each value reads its node straight off its own
float bits (exponent and top mantissa bits give the node, the rest the linear position to the next).
B is smooth on that grid, so linear interpolation agrees with flowutils to ~1e-7 in transformed units;
1M events per channel cost a dozen integer/float passes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq

__all__ = ["M_DEFAULT", "W_DEFAULT", "logicle", "logicle_inverse"]

M_DEFAULT = 4.5  # decades of the display (FlowJo / FlowKit default)
W_DEFAULT = 0.5  # linearisation width (decades) when nothing better is known
_K = 9  # log2 of table nodes per octave


@dataclass(frozen=True)
class _Biex:
    """Constants of the logicle biexponential B(y) = a e^(by) - c e^(-dy) - f (Moore & Parks 2012)."""

    a: float
    b: float
    c: float
    d: float
    f: float
    x1: float
    x_taylor: float
    taylor: tuple[float, ...]


@functools.lru_cache(maxsize=256)
def _biex(T: float, W: float, M: float, A: float) -> _Biex:
    if not (T > 0 and M > 0 and 0 <= W <= M / 2 and -W <= A <= M - 2 * W):
        raise ValueError(f"invalid logicle parameters T={T}, W={W}, M={M}, A={A}")
    w, x2 = W / (M + A), A / (M + A)
    x1, x0 = x2 + w, x2 + 2 * w
    b = (M + A) * math.log(10.0)
    d = b if w == 0 else _solve_d(b, w)
    c_a = math.exp(x0 * (b + d))
    mf_a = math.exp(b * x1) - c_a / math.exp(d * x1)
    a = T / ((math.exp(b) - mf_a) - c_a / math.exp(d))
    c, f = c_a * a, -mf_a * a
    pos, neg, taylor = a * math.exp(b * x1), -c / math.exp(d * x1), []
    for i in range(16):  # Taylor series of B around x1 (data zero), free of cancellation
        pos, neg = pos * b / (i + 1), neg * -d / (i + 1)
        taylor.append(pos + neg)
    taylor[1] = 0.0  # exactly zero by the logicle condition
    return _Biex(a, b, c, d, f, x1, x1 + w / 4, tuple(taylor))


def _solve_d(b: float, w: float) -> float:
    """Root of 2 (ln d - ln b) + w (b + d) = 0 on (0, b]."""
    return brentq(
        lambda d: 2 * (math.log(d) - math.log(b)) + w * (b + d),
        b * 1e-300,
        b,
        xtol=1e-300,
        rtol=1e-15,
    )


def _biex_eval(y: np.ndarray, p: _Biex) -> np.ndarray:
    """B(y) for float64 ``y`` (odd about x1; Taylor series near x1)."""
    negative = y < p.x1
    s = np.where(negative, 2 * p.x1 - y, y)
    out = p.a * np.exp(p.b * s) + p.f - p.c * np.exp(-p.d * s)
    near = s < p.x_taylor
    if near.any():
        x = s[near] - p.x1
        acc = p.taylor[-1] * x
        for coef in p.taylor[-2:1:-1]:
            acc = (acc + coef) * x
        out[near] = (acc * x + p.taylor[0]) * x
    return np.where(negative, -out, out)


def _logicle_exact(
    v: np.ndarray, p: _Biex, y: np.ndarray | None = None, steps: int = 50
) -> np.ndarray:
    """Logicle of non-negative float64 ``v`` by Halley's method (from ``y`` or a log/linear guess)."""
    if y is None:
        y = np.where(v < p.f, p.x1 + v / p.taylor[0], np.log(np.maximum(v, 1e-300) / p.a) / p.b)
    for _ in range(steps):
        ae, ce = p.a * np.exp(p.b * y), p.c * np.exp(-p.d * y)
        r = ae - ce + p.f
        near = y < p.x_taylor
        if near.any():
            r[near] = _biex_eval(y[near], p)
        r -= v
        dy = p.b * ae + p.d * ce
        ddy = p.b * p.b * ae - p.d * p.d * ce
        delta = r / (dy * (1 - r * ddy / (2 * dy * dy)))
        y = y - delta
        if np.all(np.abs(delta) <= 1e-15 * np.maximum(1.0, np.abs(y))):
            break
    return y


@dataclass(frozen=True)
class _Table:
    """Logicle - x1 at float nodes 2**-_K octave apart, k columns concatenated (column i from base[i])."""

    start: np.ndarray  # value at each node minus the difference to the next (see _lookup)
    dz: np.ndarray  # difference to the next node
    base: np.ndarray  # per column: add to (float bits >> shift) to get the node index
    lower: np.ndarray  # per column: first node; |x| below it reads as that node (zero, to ~1e-9)
    limit: np.ndarray  # per column: float bits of |x| past the last node (rare: solved exactly)
    x1: np.ndarray  # per column: transformed zero
    biexes: tuple[_Biex, ...]
    shift: int


def _build_table(biexes: list[_Biex], tops: list[float], ftype) -> _Table:
    """Nodes from ~T * 2**-40 to T * 2**12: exact (Halley) where logicle bends, linear in x below that.
    Data never need a pass to find their range first."""
    itype, mant = (np.int32, 23) if ftype == np.float32 else (np.int64, 52)
    shift = mant - _K
    z0s, dzs, base, lower, limit = [], [], [], [], []
    offset = 0
    for p, top in zip(biexes, tops, strict=True):
        # logicle is linear (to 1e-9) up to where the cubic Taylor term matters, and x1 below lo
        linear_to = p.taylor[0] * (1e-9 * p.taylor[0] / max(abs(p.taylor[2]), 1e-300)) ** (1 / 3)
        bounds = (
            min(top * 2.0**-40, 1e-9 * p.taylor[0]),
            min(top * 2.0**-20, linear_to),
            top * 2.0**12,
        )
        lo, mid, hi = (int(np.array(v, dtype=ftype).view(itype)) >> shift for v in bounds)
        v = (np.arange(lo, hi + 1, dtype=np.int64) << shift).astype(itype).view(ftype)
        v = v.astype(np.float64)
        z = v / p.taylor[0]
        exact = v[mid - lo :]
        grid = np.linspace(p.x1, float(_logicle_exact(exact[-1:], p)[0]), 4097)
        guess = np.interp(exact, _biex_eval(grid, p), grid)
        z[mid - lo :] = _logicle_exact(exact, p, guess, steps=2) - p.x1
        z0s.append(z[:-1])
        dzs.append(np.diff(z))
        base.append(offset - lo)
        lower.append(offset)
        limit.append(hi << shift)
        offset += len(z) - 1
    z0, dz = np.concatenate(z0s), np.concatenate(dzs)
    return _Table(
        (z0 - dz).astype(ftype),
        dz.astype(ftype),
        np.array(base, dtype=np.intp),
        np.array(lower, dtype=np.intp),
        np.array(limit, dtype=itype),
        np.array([p.x1 for p in biexes], dtype=ftype),
        tuple(biexes),
        shift,
    )


def _lookup(x: np.ndarray, table: _Table) -> np.ndarray:
    """Logicle of the columns of 2-D ``x`` (same float type as the table), read off the float bits.

    The top bits of |x| (exponent and first _K mantissa bits) index the node; the remaining bits, moved
    to the top of the mantissa of 1.0, give 1 + the linear position to the next node. Values past the
    table (> 4096 T) are solved exactly; NaN stays NaN.
    """
    ftype = table.dz.dtype.type
    itype, one = (np.int32, 0x3F800000) if ftype == np.float32 else (np.int64, 0x3FF0000000000000)
    bits = x.view(itype) & itype(np.iinfo(itype).max)  # |x| as an integer: sign bit cleared
    outside = None
    if bits.max() >= table.limit.min():  # one flat max: cheap, and NaN/inf bits are the largest
        outside = bits >= table.limit
        np.minimum(bits, table.limit - 1, out=bits)
    idx = (bits >> table.shift).astype(np.intp)
    idx += table.base
    np.maximum(idx, table.lower, out=idx)
    bits &= (1 << table.shift) - 1  # below the first node the fraction is meaningless but harmless
    bits <<= _K
    bits |= one
    z = np.take(table.dz, idx)
    z *= bits.view(ftype)  # 1 + fraction
    z += np.take(table.start, idx)
    np.copysign(z, x, out=z)
    z += table.x1
    if outside is not None:
        _fix_outside(z, x, outside, table)
    return z


def _fix_outside(z: np.ndarray, x: np.ndarray, outside: np.ndarray, table: _Table) -> None:
    """Exact values where |x| is past the table: Halley for finite ones, NaN/±inf kept."""
    for k, p in enumerate(table.biexes):
        rows = np.flatnonzero(outside[:, k])
        if not len(rows):
            continue
        v = x[rows, k].astype(np.float64)
        out = np.where(np.isnan(v), np.nan, np.sign(v) * np.inf)
        finite = np.isfinite(v)
        out[finite] = np.sign(v[finite]) * (_logicle_exact(np.abs(v[finite]), p) - p.x1) + p.x1
        z[rows, k] = out


def _max_abs(x: np.ndarray) -> float:
    """Largest finite |x| (0 for none)."""
    x = np.abs(np.asarray(x, dtype=np.float64))
    return float(x[np.isfinite(x)].max(initial=0.0))


def logicle(
    x: Any, T: float, W: float = W_DEFAULT, M: float = M_DEFAULT, A: float = 0.0
) -> np.ndarray:
    """Logicle transform on the FlowKit/flowutils scale (``T`` maps to 1, zero to ``W / (M + A)``).

    Parameters follow GatingML 2.0: ``T`` top of scale, ``W`` linearisation width in decades, ``M``
    decades of the display, ``A`` extra negative decades. float32 input gives float32 output.
    """
    arr = np.asarray(x)
    arr = arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float64)
    flat = arr.reshape(-1, 1)
    table = _build_table(
        [_biex(float(T), float(W), float(M), float(A))], [float(T)], flat.dtype.type
    )
    return _lookup(flat, table).reshape(arr.shape)


def logicle_inverse(
    y: Any, T: float, W: float = W_DEFAULT, M: float = M_DEFAULT, A: float = 0.0
) -> np.ndarray:
    """Inverse of :func:`logicle`: transformed values back to data values (float64)."""
    y = np.asarray(y, dtype=np.float64)
    p = _biex(float(T), float(W), float(M), float(A))
    return _biex_eval(y.ravel(), p).reshape(y.shape)
