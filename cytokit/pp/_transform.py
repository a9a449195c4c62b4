"""Display transforms: logicle (Parks/Moore, FlowKit/flowutils scale 0..1), arcsinh(x / cofactor), linear.

Logicle is evaluated in numpy without a per-value root search. The inverse (the biexponential B, cheap and
exact) is tabulated at nodes spaced 1/1024 of an octave apart, read directly off each value's float bits
(exponent and top mantissa bits give the node, the rest the linear position between nodes). Node values
come from a Halley solve in float64; between nodes B is smooth enough that linear interpolation is exact to
~1e-7 in transformed units, so 1M events per channel cost a few integer/float passes.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from anndata import AnnData
from scipy.optimize import brentq

from .. import _keys as K
from .._logging import logger
from ..panels import canonical_marker, find_var
from ._compensate import column_index

__all__ = ["inverse_transform", "logicle", "logicle_inverse", "transform", "transform_values"]

M_DEFAULT = 4.5  # decades of the display (FlowJo / FlowKit default)
W_DEFAULT = 0.5  # linearisation width when the data have too few negatives to estimate it
W_RANGE = (0.25, 1.5)  # W estimated from the data is clamped here (decades)
COFACTOR_FLOW = (
    150.0  # arcsinh cofactor for fluorescence flow cytometry (CATALYST / cytofkit flow default)
)
COFACTOR_MASS = 5.0  # ... and for mass cytometry (Bendall 2011)
_MIN_NEGATIVES = 50  # fewer negative events than this: W falls back to W_DEFAULT
_ESTIMATE_EVENTS = 100_000  # W is estimated on at most this many evenly spaced events
_CHUNK = 65_536  # rows per block when transforming X in place (keeps the block in cache)
_K = 9  # log2 of nodes per octave of the logicle table
_MASS_RE = re.compile(r"^(?:\d{2,3}[A-Z][a-z]?|[A-Z][a-z]?\d{2,3}(?:Di|Dd)?)(?:$|[_ -])")


# ------------------------------------------------------------------------------------------ logicle
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

    z0: np.ndarray  # value at each node
    dz: np.ndarray  # difference to the next node
    base: np.ndarray  # per column: index of the node of float bits 0
    x1: np.ndarray  # per column: transformed zero
    shift: int


def _build_table(biexes: list[_Biex], tops: list[float], vmaxes: list[float], ftype) -> _Table:
    """Every float node from 0 up to just past vmax: exact from T * 2**-20 up, linear below (where
    logicle is linear to ~1e-8), so no index ever needs clipping."""
    itype, mant = (np.int32, 23) if ftype == np.float32 else (np.int64, 52)
    shift = mant - _K
    z0s, dzs, base = [], [], []
    offset = 0
    for p, top, vmax in zip(biexes, tops, vmaxes, strict=True):
        lo = int(np.array(top * 2.0**-20, dtype=ftype).view(itype)) >> shift
        vmax = max(vmax if np.isfinite(vmax) else top, top * 2.0**-19)
        hi = (int(np.array(vmax, dtype=ftype).view(itype)) >> shift) + 2
        v = (
            (np.arange(0, hi + 1, dtype=np.int64) << shift)
            .astype(itype)
            .view(ftype)
            .astype(np.float64)
        )
        z = v / p.taylor[0]
        y_top = float(_logicle_exact(v[-1:], p)[0])
        grid = np.linspace(p.x1, y_top, 4097)
        guess = np.interp(v[lo:], _biex_eval(grid, p), grid)
        z[lo:] = _logicle_exact(v[lo:], p, guess, steps=2) - p.x1
        z0s.append(z[:-1])
        dzs.append(np.diff(z))
        base.append(offset)
        offset += len(z) - 1
    return _Table(
        np.concatenate(z0s).astype(ftype),
        np.concatenate(dzs).astype(ftype),
        np.array(base, dtype=itype),
        np.array([p.x1 for p in biexes], dtype=ftype),
        shift,
    )


def _lookup(x: np.ndarray, table: _Table, *, finite: bool = True) -> np.ndarray:
    """Logicle of the columns of 2-D ``x`` (same float type as the table), read off the float bits.

    The top bits of |x| (exponent and first _K mantissa bits) index the node, the rest is the linear
    position to the next node. Non-finite values need ``finite=False``.
    """
    ftype = table.z0.dtype.type
    itype = np.int32 if ftype == np.float32 else np.int64
    bits = x.view(itype) & itype(np.iinfo(itype).max)  # |x| as an integer: clears the sign bit
    idx = bits >> table.shift
    idx += table.base
    if not finite:
        limit = np.append(table.base[1:], len(table.dz)) - 1
        np.minimum(idx, limit, out=idx)
    bits &= (1 << table.shift) - 1
    frac = bits.astype(ftype)
    frac *= ftype(1.0 / (1 << table.shift))
    z = table.dz[idx]
    z *= frac
    z += table.z0[idx]
    np.copysign(z, x, out=z)
    z += table.x1
    if not finite:
        _fix_nonfinite(z, x)
    return z


def _fix_nonfinite(out: np.ndarray, x: np.ndarray) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        out[bad] = np.where(np.isnan(x[bad]), np.nan, np.sign(x[bad]) * np.inf)


def _max_abs(x: np.ndarray) -> float:
    finite = np.abs(x[np.isfinite(x)]) if not np.isfinite(x).all() else np.abs(x)
    return float(finite.max(initial=0.0))


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
    p = _biex(float(T), float(W), float(M), float(A))
    table = _build_table([p], [float(T)], [_max_abs(flat)], flat.dtype.type)
    return _lookup(flat, table, finite=bool(np.isfinite(flat).all())).reshape(arr.shape)


def logicle_inverse(
    y: Any, T: float, W: float = W_DEFAULT, M: float = M_DEFAULT, A: float = 0.0
) -> np.ndarray:
    """Inverse of :func:`logicle`: transformed values back to data values (float64)."""
    y = np.asarray(y, dtype=np.float64)
    p = _biex(float(T), float(W), float(M), float(A))
    return _biex_eval(y.ravel(), p).reshape(y.shape)


def estimate_w(values: np.ndarray, T: float, M: float = M_DEFAULT) -> float:
    """Logicle width W from the data's negative spread (Parks et al. 2006, FlowJo's rule).

    ``r`` is the 5th percentile of the negative values; ``W = (M - log10(T / |r|)) / 2``, clamped to
    ``W_RANGE``. With fewer than 50 negative events, ``W_DEFAULT``.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    step = max(1, len(values) // _ESTIMATE_EVENTS)
    return float(_estimate_ws(values[::step], np.array([float(T)]), M)[0])


def _estimate_ws(sample: np.ndarray, tops: np.ndarray, M: float) -> np.ndarray:
    """:func:`estimate_w` for every column of ``sample`` at once (one sort, no per-column masks)."""
    ordered = np.sort(np.where(np.isnan(sample), np.inf, sample), axis=0)
    n_neg = (ordered < 0).sum(axis=0)
    pos = 0.05 * np.maximum(n_neg - 1, 0)  # np.percentile's linear rule on the negatives
    low = np.floor(pos).astype(int)
    high = np.minimum(low + 1, np.maximum(n_neg - 1, 0))
    cols = np.arange(sample.shape[1])
    r = ordered[low, cols] + (pos - low) * (ordered[high, cols] - ordered[low, cols])
    with np.errstate(divide="ignore", invalid="ignore"):
        w = (M - np.log10(tops / np.abs(r))) / 2
    w = np.clip(w, W_RANGE[0], min(W_RANGE[1], M / 2))
    return np.where((n_neg >= _MIN_NEGATIVES) & np.isfinite(w), w, W_DEFAULT)


# -------------------------------------------------------------------------------- parameter records
def transform_values(values: Any, params: Mapping[str, Any]) -> np.ndarray:
    """Apply one var's recorded transform (an entry of ``uns["transform"]``) to data values."""
    kind = params["kind"]
    values = np.asarray(values, dtype=np.float64)
    if kind == "logicle":
        return logicle(values, params["T"], params["W"], params["M"], params["A"])
    if kind == "asinh":
        return np.arcsinh(values / params["cofactor"])
    if kind == "linear":
        return (values + params["A"]) / (params["T"] + params["A"])
    raise ValueError(f"unknown transform kind {kind!r}")


def inverse_transform(values: Any, params: Mapping[str, Any]) -> np.ndarray:
    """Transformed values back to data values, given one var's entry of ``uns["transform"]``."""
    kind = params["kind"]
    values = np.asarray(values, dtype=np.float64)
    if kind == "logicle":
        return logicle_inverse(values, params["T"], params["W"], params["M"], params["A"])
    if kind == "asinh":
        return np.sinh(values) * params["cofactor"]
    if kind == "linear":
        return values * (params["T"] + params["A"]) - params["A"]
    raise ValueError(f"unknown transform kind {kind!r}")


# ------------------------------------------------------------------------------------------ AnnData
def transform(
    adata: AnnData,
    method: str = "logicle",
    *,
    cofactor: float | Mapping[str, float] | None = None,
    channels: Iterable[str] | None = None,
    w: float | None = None,
    m: float = M_DEFAULT,
    copy: bool = False,
) -> AnnData | None:
    """Transform fluorescence channels for display and gating; scatter and time are scaled linearly.

    Parameters
    ----------
    adata
        Events x parameters, as :func:`cytokit.read_fcs` gives (compensate first).
    method
        ``"logicle"``: T from ``$PnR`` (10**decades for log-amplified channels), W estimated per channel
        from its negative spread (:func:`estimate_w`) unless ``w`` is given, ``M=m``, ``A=0``; output on
        FlowKit's 0..1 scale. ``"arcsinh"``: ``arcsinh(x / cofactor)``.
    cofactor
        arcsinh cofactor, one number or ``{marker or channel: cofactor}``; default 150 for fluorescence
        flow cytometry and 5 for mass-cytometry channels (``"Nd142Di"``, ``"142Nd_CD19"``).
    channels
        Markers/channels to transform (default: all). Scatter becomes ``x / range`` and time
        ``x / last time`` (both ~0..1).
    copy
        Return a transformed copy instead of working in place.

    Each var's parameters go to ``uns["transform"][var_name]`` (see :func:`inverse_transform`); vars
    already listed there are left alone (with a warning), so a second call does not transform twice.
    """
    if method not in {"logicle", "arcsinh", "asinh"}:
        raise ValueError(f"method must be 'logicle' or 'arcsinh', got {method!r}")
    adata = adata.copy() if copy else adata
    done = adata.uns.setdefault(K.TRANSFORM, {})
    targets = var_positions(adata, channels)
    again = [adata.var_names[j] for j in targets if adata.var_names[j] in done]
    if again:
        logger.warning("already transformed, left as they are: %s", ", ".join(map(str, again)))
    targets = [j for j in targets if adata.var_names[j] not in done]
    if not targets:
        return adata if copy else None
    X = _float_X(adata)
    params = _plan(adata, X, targets, method, cofactor, w, m)
    _apply_blocks(X, params)
    adata.X = X
    for j, prm in params.items():
        done[str(adata.var_names[j])] = prm
    logger.info("transformed %d parameters (%s)", len(params), method)
    return adata if copy else None


def _float_X(adata: AnnData) -> np.ndarray:
    X = adata.X
    if not isinstance(X, np.ndarray):
        raise TypeError("transform needs a dense adata.X")
    return X if X.dtype in (np.float32, np.float64) else X.astype(np.float32)


def _plan(adata, X, targets, method, cofactor, w, m) -> dict[int, dict[str, Any]]:
    """Parameters per target column, from var metadata and (for logicle W) the data."""
    tops = effective_ranges(adata)
    sample = X[:: max(1, len(X) // _ESTIMATE_EVENTS)]  # evenly spaced rows for estimating W
    fluor = [j for j in targets if not linear_kind(adata.var.iloc[j], str(adata.var_names[j]))]
    widths = {}
    if method == "logicle" and w is None and fluor:
        top_f = np.array(
            [
                tops[j] if np.isfinite(tops[j]) and tops[j] > 0 else _max_abs(X[:, j]) or 1.0
                for j in fluor
            ]
        )
        widths = dict(
            zip(fluor, _estimate_ws(np.take(sample, fluor, axis=1), top_f, m).tolist(), strict=True)
        )
    plan: dict[int, dict[str, Any]] = {}
    for j in targets:
        kind = linear_kind(adata.var.iloc[j], str(adata.var_names[j]))
        col = X[:, j]
        top = tops[j]
        if kind == "time":  # $PnR x $TIMESTEP is the clock's limit, not the run's length
            top = _max_abs(col) or 1.0
        elif not (np.isfinite(top) and top > 0):
            top = _max_abs(col) or 1.0
        if kind:
            plan[j] = {"kind": "linear", "T": float(top), "A": 0.0}
        elif method == "logicle":
            width = float(w) if w is not None else widths[j]
            plan[j] = {
                "kind": "logicle",
                "T": float(top),
                "W": min(width, m / 2),
                "M": float(m),
                "A": 0.0,
            }
        else:
            plan[j] = {"kind": "asinh", "cofactor": _cofactor(adata, j, cofactor)}
    return plan


def _cofactor(adata: AnnData, j: int, cofactor) -> float:
    var = adata.var.iloc[j]
    names = [str(adata.var_names[j]), str(var.get(K.MARKER, "")), str(var.get(K.CHANNEL, ""))]
    if isinstance(cofactor, Mapping):
        for name in names:
            if name in cofactor:
                return float(cofactor[name])
    elif cofactor is not None:
        return float(cofactor)
    channel = names[2] or names[0]
    return COFACTOR_MASS if _MASS_RE.match(channel) else COFACTOR_FLOW


def _apply_blocks(X: np.ndarray, plan: dict[int, dict[str, Any]]) -> None:
    """Transform columns in place in cache-sized row blocks, all logicle columns through one table."""
    kinds = {
        k: [j for j, prm in plan.items() if prm["kind"] == k]
        for k in ("logicle", "asinh", "linear")
    }
    logi, asinh, lin = kinds["logicle"], kinds["asinh"], kinds["linear"]
    table, bad = None, False
    if logi:
        col_min, col_max = X.min(axis=0)[logi], X.max(axis=0)[logi]
        bad = not (np.isfinite(col_min).all() and np.isfinite(col_max).all())
        vmaxes = [
            _max_abs(X[:, j]) if bad else max(-float(lo), float(hi))
            for j, lo, hi in zip(logi, col_min, col_max, strict=True)
        ]
        biexes = [_biex(plan[j]["T"], plan[j]["W"], plan[j]["M"], plan[j]["A"]) for j in logi]
        table = _build_table(biexes, [plan[j]["T"] for j in logi], vmaxes, X.dtype.type)
    cof = np.array([plan[j].get("cofactor", 1.0) for j in asinh], dtype=X.dtype)
    shift = np.array([plan[j].get("A", 0.0) for j in lin], dtype=X.dtype)
    scale = np.array([plan[j].get("T", 1.0) + plan[j].get("A", 0.0) for j in lin], dtype=X.dtype)
    where = {k: column_index(v) for k, v in kinds.items()}
    for start in range(0, len(X), _CHUNK):
        block = X[start : start + _CHUNK]
        if table is not None:
            sub = np.take(block, logi, axis=1)
            block[:, where["logicle"]] = _lookup(sub, table, finite=not bad)
        if asinh:
            block[:, where["asinh"]] = np.arcsinh(np.take(block, asinh, axis=1) / cof)
        if lin:
            block[:, where["linear"]] = (np.take(block, lin, axis=1) + shift) / scale


# ----------------------------------------------------------------------------------- var metadata
_OTHER_LINEAR = re.compile(
    r"^(?:hdr[-_ ]|event|index$|original_?id|doublet|cell_?length|center$|offset$|residual$|width$|beads?$)",
    re.IGNORECASE,
)


def var_positions(adata: AnnData, names: Iterable[str] | None) -> list[int]:
    """Column positions of markers/channels ``names`` (all columns when None), in order, unique."""
    if names is None:
        return list(range(adata.n_vars))
    if isinstance(names, str):
        names = [names]
    where = {str(v): j for j, v in enumerate(adata.var_names)}
    return list(dict.fromkeys(where[find_var(adata, n)] for n in names))


def linear_kind(var: Any, name: str) -> str:
    """ "scatter", "time" or "other" for parameters scaled linearly, "" for fluorescence."""
    role = str(var.get(K.ROLE, "") or "")
    if role in {"scatter", "time"}:
        return role
    channel = str(var.get(K.CHANNEL, "") or name)
    for text in (channel, name):
        canon = canonical_marker(text)
        if canon == "Time":
            return "time"
        if canon and re.match(r"^(?:FSC|SSC|SSC-B)-[AHW]$", canon):
            return "scatter"
    return "other" if _OTHER_LINEAR.match(channel) else ""


def effective_ranges(adata: AnnData) -> np.ndarray:
    """Top of scale per var in the units of X: $PnR, or 10**decades for $PnE log channels, over $PnG.

    The FCS keywords of ``uns["fcs"]`` are matched to vars by channel ($PnN); NaN where unknown.
    """
    kw = {str(k).upper(): str(v) for k, v in adata.uns.get(K.FCS, {}).items()}
    number = {}
    for key, value in kw.items():
        m = re.fullmatch(r"\$P(\d+)N", key)
        if m:
            number.setdefault(value.strip(), int(m[1]))
    var = adata.var
    ranges = (
        var[K.RANGE].to_numpy(dtype=float)
        if K.RANGE in var.columns
        else np.full(adata.n_vars, np.nan)
    )
    channels = (
        var[K.CHANNEL].astype(str) if K.CHANNEL in var.columns else adata.var_names.astype(str)
    )
    out = ranges.copy()
    for j, channel in enumerate(channels):
        n = number.get(channel.strip())
        if n is None:
            continue
        decades, log0 = _pair(kw.get(f"$P{n}E"))
        gain = _number(kw.get(f"$P{n}G")) or 1.0
        if decades > 0:
            out[j] = 10.0**decades * (log0 if log0 > 0 else 1.0) / gain
        elif linear_kind(var.iloc[j], str(adata.var_names[j])) == "time":
            out[j] = ranges[j] * (_number(kw.get("$TIMESTEP")) or 1.0)
        else:
            out[j] = ranges[j] / gain
    return out


def _number(text: str | None) -> float | None:
    try:
        value = float(str(text).strip())
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _pair(text: str | None) -> tuple[float, float]:
    parts = str(text or "").split(",")
    if len(parts) != 2:
        return 0.0, 0.0
    try:
        decades, log0 = float(parts[0]), float(parts[1])
    except ValueError:
        return 0.0, 0.0
    return (decades, log0) if math.isfinite(decades) and math.isfinite(log0) else (0.0, 0.0)
