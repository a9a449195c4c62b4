"""Display transforms on AnnData: logicle (FlowKit scale 0..1), arcsinh(x / cofactor), linear for scatter/time.

Parameters come from the file (T from $PnR, 10**decades for log-amplified channels, over $PnG) and from
the data (logicle W from the negative spread, Parks 2006); every var's parameters are recorded in
``uns["transform"]`` so values can be mapped back (:func:`inverse_transform`) or gates placed in raw units.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from anndata import AnnData

from .. import _keys as K
from .._logging import logger
from ..panels import canonical_marker, find_var
from ._compensate import _name, column_index
from ._logicle import (
    M_DEFAULT,
    W_DEFAULT,
    _biex,
    _build_table,
    _lookup,
    _max_abs,
    logicle,
    logicle_inverse,
)

__all__ = ["estimate_w", "inverse_transform", "pretransformed", "transform", "transform_values"]

W_RANGE = (0.25, 1.5)  # W estimated from the data is clamped here (decades)
COFACTOR_FLOW = 150.0  # arcsinh cofactor for fluorescence flow cytometry (CATALYST flow default)
COFACTOR_MASS = 5.0  # ... and for mass cytometry (Bendall 2011)
_MIN_NEGATIVES = 50  # fewer negative events than this: W falls back to W_DEFAULT
_ESTIMATE_EVENTS = 50_000  # W is estimated on at most this many evenly spaced events
_CHUNK = 65_536  # rows per block when transforming X in place (keeps the block in cache)
# Raw fluorescence of a stained sample reaches 10^3-10^5 on an 18-bit (262,144) scale; logicle, arcsinh
# or log decades written back into a file (flowCore ``write.FCS`` after ``transform``, FlowJo's
# "transformed" exports) stay below ~10. A file whose every fluorescence channel keeps 99.9 % of its
# events within this fraction of the declared range holds values already transformed.
PRETRANSFORMED_SHARE = 1e-3
# a mass-cytometry channel: an isotope, "Nd142Di" or "142Nd_CD19", of a metal in the mass window of the
# instrument (CyTOF/Helios: 75-209 Da, Fluidigm's specification); detector names such as "V450-A" or
# "R660-A" (a laser and a wavelength) are not isotopes
_MASS_RE = re.compile(
    r"^(?:(?P<m1>\d{2,3})(?P<e1>[A-Z][a-z]?)|(?P<e2>[A-Z][a-z]?)(?P<m2>\d{2,3})(?:Di|Dd)?)(?:$|[_ -])"
)
_MASS_METALS = {
    "Y", "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Te", "I", "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd", "Sm",
    "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au",
    "Hg", "Tl", "Pb", "Bi",
}  # fmt: skip
_MASS_WINDOW = (75, 209)


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
    if len(sample) == 0:
        return np.full(sample.shape[1], W_DEFAULT)
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
        FlowKit's 0..1 scale; mass-cytometry channels (ion counts) get arcsinh with cofactor 5, the
        field's standard. ``"arcsinh"``: ``arcsinh(x / cofactor)``.
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
    _spread_zero_counts(adata, X, params)
    _apply_blocks(X, params)
    adata.X = X
    for j, prm in params.items():
        done[str(adata.var_names[j])] = prm
    logger.info("transformed %d parameters (%s)", len(params), method)
    return adata if copy else None


def pretransformed(adata: AnnData) -> dict[str, float]:
    """``{var: top of scale}`` for fluorescence the file already holds on a transformed scale.

    Such values must be neither compensated (a spillover matrix mixes linear signals) nor transformed
    again (logicle of logicle squeezes every population into a sliver near zero). Evidence, per file:
    flowCore's ``FLOWCORE_$PnRMAX`` (the transformed range it wrote) far below ``$PnR``, or every
    fluorescence channel confined to :data:`PRETRANSFORMED_SHARE` of its declared range. The top of
    scale is ``FLOWCORE_$PnRMAX`` where given, else the next whole number above the largest value, so
    the values are scaled linearly to about 0..1 as a logicle transform would give.
    """
    kw, number = _keywords(adata)
    ranges = effective_ranges(adata)
    fluor = [
        j
        for j in range(adata.n_vars)
        if not linear_kind(adata.var.iloc[j], str(adata.var_names[j])) and np.isfinite(ranges[j])
    ]
    if not fluor or adata.n_obs == 0:
        return {}
    channels = list(adata.var[K.CHANNEL].astype(str) if K.CHANNEL in adata.var else adata.var_names)
    written = {}
    for j in fluor:
        n = number.get(str(channels[j]).strip())
        top = _number(kw.get(f"FLOWCORE_$P{n}RMAX")) if n is not None else None
        if top and 0 < top <= PRETRANSFORMED_SHARE * ranges[j]:
            written[j] = float(top)
    X = np.asarray(adata.X)
    sample = np.abs(np.asarray(X[:: max(1, len(X) // _ESTIMATE_EVENTS)][:, fluor], dtype=float))
    high = np.nanpercentile(sample, 99.9, axis=0)
    if np.all(high <= PRETRANSFORMED_SHARE * ranges[fluor]):
        top = float(math.ceil(np.nanmax(sample)))
        written = {j: written.get(j, top) for j in fluor}
    return {str(adata.var_names[j]): top for j, top in written.items()}


def _float_X(adata: AnnData) -> np.ndarray:
    X = adata.X
    if not isinstance(X, np.ndarray):
        raise TypeError("transform needs a dense adata.X")
    return X if X.dtype in (np.float32, np.float64) else X.astype(np.float32)


def _plan(adata, X, targets, method, cofactor, w, m) -> dict[int, dict[str, Any]]:
    """Parameters per target column, from var metadata and (for logicle W) the data."""
    sample = X[:: max(1, len(X) // _ESTIMATE_EVENTS)]  # evenly spaced rows for estimating W
    kinds = {j: linear_kind(adata.var.iloc[j], str(adata.var_names[j])) for j in targets}
    tops = _tops(adata, X, sample, kinds)
    already = pretransformed(adata)
    for j in targets:  # values the file holds transformed: scaled linearly, never transformed twice
        name = str(adata.var_names[j])
        if name in already:
            kinds[j], tops[j] = "pretransformed", already[name]
    if already:
        logger.warning(
            "%s: fluorescence already transformed in the file (%d channels): scaled linearly, "
            "not transformed again",
            _name(adata.uns.get(K.SAMPLE_INFO, {}).get("file")),
            len(already),
        )
    # ion counts of mass cytometry are arcsinh-transformed with cofactor 5 whatever the method:
    # logicle's width comes from a negative spread that Poisson counts do not have (Bendall 2011)
    mass = {j for j in targets if not kinds[j] and _is_mass(adata, j)}
    if mass and method == "logicle":
        logger.info("%d mass-cytometry channels: arcsinh, cofactor %g", len(mass), COFACTOR_MASS)
    fluor = [j for j in targets if not kinds[j] and j not in mass]
    widths = dict.fromkeys(fluor, w)
    if method == "logicle" and w is None and fluor:
        found = _estimate_ws(np.take(sample, fluor, axis=1), np.array([tops[j] for j in fluor]), m)
        widths = dict(zip(fluor, found.tolist(), strict=True))
    plan: dict[int, dict[str, Any]] = {}
    for j in targets:
        if kinds[j] == "pretransformed":
            plan[j] = {"kind": "linear", "T": tops[j], "A": 0.0, "pretransformed": True}
        elif kinds[j]:
            plan[j] = {"kind": "linear", "T": tops[j], "A": 0.0}
        elif method == "logicle" and j not in mass:
            width = min(float(widths[j]), m / 2)
            plan[j] = {"kind": "logicle", "T": tops[j], "W": width, "M": float(m), "A": 0.0}
        else:
            plan[j] = {"kind": "asinh", "cofactor": _cofactor(adata, j, cofactor)}
    return plan


def _tops(adata: AnnData, X: np.ndarray, sample: np.ndarray, kinds: dict[int, str]) -> dict:
    """Top of scale per column: the file's range; for time the run's last time; else the data max."""
    ranges = effective_ranges(adata)
    out = {}
    for j, kind in kinds.items():
        if kind == "time":  # $PnR x $TIMESTEP is the clock's limit, not the run's length
            top = _max_abs(np.append(sample[:, j], X[-1:, j]))
        else:
            top = ranges[j] if np.isfinite(ranges[j]) and ranges[j] > 0 else _max_abs(X[:, j])
        out[j] = float(top or 1.0)
    return out


def _cofactor(adata: AnnData, j: int, cofactor) -> float:
    var = adata.var.iloc[j]
    names = [str(adata.var_names[j]), str(var.get(K.MARKER, "")), str(var.get(K.CHANNEL, ""))]
    if isinstance(cofactor, Mapping):
        for name in names:
            if name in cofactor:
                return float(cofactor[name])
    elif cofactor is not None:
        return float(cofactor)
    return COFACTOR_MASS if _is_mass(adata, j) else COFACTOR_FLOW


#: a mass channel whose exact zeros are more than this share of its events gets them spread (below)
ZERO_SPIKE_SHARE = 0.05


def _spread_zero_counts(adata: AnnData, X: np.ndarray, plan: dict[int, dict[str, Any]]) -> None:
    """Zero ion counts of mass channels spread over [-1, 0), as the instrument's randomisation spreads
    every other count c over [c - 1, c) (Fluidigm CyTOF software; files written without it keep the
    zeros exact). A spike of exact zeros, most of a marker's negatives, has no width: tails and valleys
    placed from the negative peak's spread would then call every event with one ion positive. Seeded
    per channel, so the same file gives the same values."""
    for j, prm in plan.items():
        if prm.get("kind") != "asinh" or not _is_mass(adata, j):
            continue
        zeros = np.flatnonzero(X[:, j] == 0)
        if len(zeros) <= ZERO_SPIKE_SHARE * len(X):
            continue
        rng = np.random.default_rng([j, len(X)])
        X[zeros, j] = -rng.uniform(0.0, 1.0, len(zeros)).astype(X.dtype)
        prm["zeros_spread"] = True


def _is_mass(adata: AnnData, j: int) -> bool:
    """Whether column ``j`` is a mass-cytometry channel by its name (``"Nd142Di"``, ``"142Nd_CD19"``)."""
    var = adata.var.iloc[j]
    return is_mass_channel(str(var.get(K.CHANNEL, "")) or str(adata.var_names[j]))


def is_mass_channel(name: str) -> bool:
    """Whether a channel name is a mass-cytometry isotope (``"Nd142Di"``, ``"142Nd_CD19"``)."""
    m = _MASS_RE.match(name.strip())
    if m is None:
        return False
    metal, mass = m["e1"] or m["e2"], int(m["m1"] or m["m2"])
    return metal in _MASS_METALS and _MASS_WINDOW[0] <= mass <= _MASS_WINDOW[1]


def _apply_blocks(X: np.ndarray, plan: dict[int, dict[str, Any]]) -> None:
    """Transform columns in place in cache-sized row blocks, all logicle columns through one table."""
    kinds = {
        k: [j for j, p in plan.items() if p["kind"] == k] for k in ("logicle", "asinh", "linear")
    }
    logi, asinh, lin = kinds["logicle"], kinds["asinh"], kinds["linear"]
    table = None
    if logi:
        biexes = [_biex(plan[j]["T"], plan[j]["W"], plan[j]["M"], plan[j]["A"]) for j in logi]
        table = _build_table(biexes, [plan[j]["T"] for j in logi], X.dtype.type)
    cof = np.array([plan[j].get("cofactor", 1.0) for j in asinh], dtype=X.dtype)
    shift = np.array([plan[j].get("A", 0.0) for j in lin], dtype=X.dtype)
    scale = np.array([plan[j].get("T", 1.0) + plan[j].get("A", 0.0) for j in lin], dtype=X.dtype)
    where = {k: column_index(v) for k, v in kinds.items()}
    for start in range(0, len(X), _CHUNK):
        block = X[start : start + _CHUNK]
        if table is not None:
            block[:, where["logicle"]] = _lookup(np.take(block, logi, axis=1), table)
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


def _keywords(adata: AnnData) -> tuple[dict[str, str], dict[str, int]]:
    """The FCS keywords (keys upper-cased) and each channel's parameter number n ($PnN -> n)."""
    kw = {str(k).upper(): str(v) for k, v in adata.uns.get(K.FCS, {}).items()}
    number: dict[str, int] = {}
    for key, value in kw.items():
        m = re.fullmatch(r"\$P(\d+)N", key)
        if m:
            number.setdefault(value.strip(), int(m[1]))
    return kw, number


def effective_ranges(adata: AnnData) -> np.ndarray:
    """Top of scale per var in the units of X: $PnR, or 10**decades for $PnE log channels, over $PnG.

    The FCS keywords of ``uns["fcs"]`` are matched to vars by channel ($PnN); NaN where unknown.
    """
    kw, number = _keywords(adata)
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
