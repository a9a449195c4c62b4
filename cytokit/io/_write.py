"""Write events as an FCS 3.1 file (HEADER, TEXT, DATA; no ANALYSIS segment).

The writer follows the FCS 3.1 standard (Spidlen et al., Cytometry A 2010): header offsets that do not fit
in eight digits are written as zeros and found in ``$BEGINDATA``/``$ENDDATA``, delimiters inside keys and
values are escaped by doubling, ``$BYTEORD`` is ``1,2,3,4`` or ``4,3,2,1``. Integer data are rounded and
clipped to each parameter's range, as an instrument's ADC would.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["write_fcs"]

logger = logging.getLogger("cytokit")

_DELIMITERS = ("/", "|", "\\", "*", "\x0c")  # first one no key or value starts or ends with
_HEADER_LEN = 58
_MAX_HEADER_OFFSET = 99_999_999
_DEFAULT_FLOAT_RANGE = 262144
# keywords the writer computes from the data; user keywords may not override them
_STRUCTURAL = {
    "$BEGINANALYSIS",
    "$ENDANALYSIS",
    "$BEGINDATA",
    "$ENDDATA",
    "$BEGINSTEXT",
    "$ENDSTEXT",
    "$BYTEORD",
    "$DATATYPE",
    "$MODE",
    "$NEXTDATA",
    "$PAR",
    "$TOT",
}


def write_fcs(
    path: str | Path,
    events: np.ndarray,
    channels: Sequence[str],
    stains: Sequence[str | None] | None = None,
    *,
    keywords: Mapping[str, object] | None = None,
    spillover: pd.DataFrame | None = None,
    datatype: str = "F",
    byteorder: str = "<",
    ranges: Sequence[float] | Mapping[str, float] | None = None,
    bits: int | None = None,
) -> Path:
    """Write an events x channels array as an FCS 3.1 file.

    Parameters
    ----------
    path
        Output file; its parent folder must exist.
    events
        Array of shape (n_events, n_channels), in the instrument's linear units.
    channels
        ``$PnN`` short names, one per column (unique, no commas).
    stains
        ``$PnS`` names (marker/stain); ``None`` or ``""`` leaves ``$PnS`` out for that parameter.
    keywords
        Extra TEXT keywords (``$CYT``, ``$DATE``, ``$TIMESTEP``, ``$PnV``, custom ones, ...). Keys are
        written upper-cased when they start with ``$``; structural keywords are always computed here.
    spillover
        Square DataFrame, rows = source channels, columns = detector channels (``$PnN`` names),
        written as ``$SPILLOVER`` ("n,names...,values" row by row).
    datatype
        ``"F"`` (float32), ``"D"`` (float64) or ``"I"`` (unsigned integers of ``bits`` bits).
    byteorder
        ``"<"`` little endian (``$BYTEORD 1,2,3,4``) or ``">"`` big endian (``4,3,2,1``).
    ranges
        ``$PnR`` per channel (sequence, or mapping by channel name). Defaults: 262144 for float data,
        ``2**bits`` for integer data. Integer data are rounded and clipped to ``[0, range - 1]``.
    bits
        Bits per integer value, 16 or 32 (default 16); ignored for float data.

    Returns
    -------
    The path written.
    """
    path = Path(path)
    data = np.asarray(events)
    channels = [str(c) for c in channels]
    _check_inputs(data, channels, datatype, byteorder)
    n_par = len(channels)
    dtype, bits = _dtype(datatype, byteorder, bits)
    rng = _ranges(ranges, channels, datatype, bits)
    if datatype == "I":
        data = np.clip(np.rint(data), 0, rng - 1)
    payload = np.ascontiguousarray(data, dtype=dtype).tobytes()

    text = {
        "$BYTEORD": "1,2,3,4" if byteorder == "<" else "4,3,2,1",
        "$DATATYPE": datatype,
        "$MODE": "L",
        "$NEXTDATA": "0",
        "$PAR": str(n_par),
        "$TOT": str(data.shape[0]),
        "$BEGINANALYSIS": "0",
        "$ENDANALYSIS": "0",
        "$BEGINSTEXT": "0",
        "$ENDSTEXT": "0",
    }
    stains = list(stains) if stains is not None else [None] * n_par
    if len(stains) != n_par:
        raise ValueError(f"{path.name}: {len(stains)} stains for {n_par} channels")
    for i, (name, stain) in enumerate(zip(channels, stains, strict=True), start=1):
        text[f"$P{i}N"] = name
        if stain:
            text[f"$P{i}S"] = str(stain)
        text[f"$P{i}B"] = str(bits)
        text[f"$P{i}E"] = "0,0"
        text[f"$P{i}R"] = _fmt_number(rng[i - 1])
    if spillover is not None:
        text["$SPILLOVER"] = _spillover_text(spillover, channels, path)
    for key, value in (keywords or {}).items():
        key = str(key).upper() if str(key).startswith("$") else str(key)
        if key in _STRUCTURAL or key in {"$BEGINDATA", "$ENDDATA"}:
            logger.debug(
                "write_fcs: keyword %s is computed by the writer; given value ignored", key
            )
            continue
        text.setdefault(key, str(value))
    _write_segments(path, text, payload)
    return path


def _check_inputs(data: np.ndarray, channels: list[str], datatype: str, byteorder: str) -> None:
    if data.ndim != 2:
        raise ValueError(f"events must be 2-D (events x channels), got shape {data.shape}")
    if data.shape[1] != len(channels):
        raise ValueError(f"events have {data.shape[1]} columns but {len(channels)} channels")
    if len(set(channels)) != len(channels):
        raise ValueError("channel names ($PnN) must be unique")
    if any("," in c or not c.strip() for c in channels):
        raise ValueError("channel names ($PnN) must be non-empty and contain no comma")
    if datatype not in {"F", "D", "I"}:
        raise ValueError(f"datatype must be 'F', 'D' or 'I', got {datatype!r}")
    if byteorder not in {"<", ">"}:
        raise ValueError(f"byteorder must be '<' or '>', got {byteorder!r}")
    if not np.issubdtype(data.dtype, np.number) or not np.all(np.isfinite(data)):
        raise ValueError("events must be finite numbers")


def _dtype(datatype: str, byteorder: str, bits: int | None) -> tuple[str, int]:
    if datatype == "F":
        return f"{byteorder}f4", 32
    if datatype == "D":
        return f"{byteorder}f8", 64
    bits = 16 if bits is None else int(bits)
    if bits not in (16, 32):
        raise ValueError(f"integer data must be 16 or 32 bits, got {bits}")
    return f"{byteorder}u{bits // 8}", bits


def _ranges(
    ranges: Sequence[float] | Mapping[str, float] | None,
    channels: list[str],
    datatype: str,
    bits: int,
) -> np.ndarray:
    default = float(2**bits) if datatype == "I" else float(_DEFAULT_FLOAT_RANGE)
    if ranges is None:
        out = np.full(len(channels), default)
    elif isinstance(ranges, Mapping):
        out = np.array([float(ranges.get(c, default)) for c in channels])
    else:
        out = np.asarray(ranges, dtype=float)
        if out.shape != (len(channels),):
            raise ValueError(f"{out.size} ranges for {len(channels)} channels")
    if np.any(out <= 0):
        raise ValueError("ranges ($PnR) must be positive")
    if datatype == "I" and np.any(out > 2**bits):
        raise ValueError(f"ranges ($PnR) exceed what {bits}-bit integers hold")
    return out


def _fmt_number(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _spillover_text(spill: pd.DataFrame, channels: list[str], path: Path) -> str:
    rows, cols = [str(c) for c in spill.index], [str(c) for c in spill.columns]
    if rows != cols:
        raise ValueError(f"{path.name}: spillover index and columns must name the same channels")
    unknown = [c for c in cols if c not in channels]
    if unknown:
        raise ValueError(f"{path.name}: spillover names channels not in the file: {unknown}")
    values = np.asarray(spill, dtype=float)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{path.name}: spillover values must be finite")
    numbers = ",".join(f"{v:.8g}" for v in values.ravel())
    return f"{len(cols)},{','.join(cols)},{numbers}"


def _delimiter(text: dict[str, str]) -> str:
    """A delimiter that no key or value starts or ends with (doubling cannot be read there)."""
    words = [w for kv in text.items() for w in kv]
    for d in _DELIMITERS:
        if not any(w.startswith(d) or w.endswith(d) for w in words):
            return d
    raise ValueError("no usable FCS delimiter: keys or values start or end with every candidate")


def _text_bytes(text: dict[str, str], delim: str) -> bytes:
    # FCS 3.1: a delimiter inside a key or value is written twice; empty values are not allowed
    def esc(s: str) -> str:
        return (s if s.strip() else " ").replace(delim, delim * 2)

    body = delim.join(f"{esc(k)}{delim}{esc(v)}" for k, v in text.items())
    return (delim + body + delim).encode("utf-8")


def _write_segments(path: Path, text: dict[str, str], payload: bytes) -> None:
    """Lay out HEADER, TEXT and DATA; $BEGINDATA/$ENDDATA depend on TEXT length, so iterate."""
    begin = end = 0
    delim = _delimiter(text)
    for _ in range(10):
        text["$BEGINDATA"], text["$ENDDATA"] = str(begin), str(end)
        raw = _text_bytes(text, delim)
        text_end = _HEADER_LEN + len(raw) - 1
        new_begin = text_end + 1
        new_end = new_begin + len(payload) - 1 if payload else new_begin
        if (new_begin, new_end) == (begin, end):
            break
        begin, end = new_begin, new_end
    else:  # pragma: no cover - the offsets grow monotonically and settle within a few rounds
        raise RuntimeError("FCS TEXT offsets did not settle")
    fits = end <= _MAX_HEADER_OFFSET
    offsets = [_HEADER_LEN, text_end, begin if fits else 0, end if fits else 0, 0, 0]
    header = "FCS3.1    " + "".join(f"{o:>8d}" for o in offsets)
    with open(path, "wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(raw)
        fh.write(payload)
        fh.write(b"00000000")  # CRC field; zeros = not computed (allowed by FCS 3.1)
