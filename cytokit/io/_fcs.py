"""FCS 2.0/3.0/3.1/3.2 reader: a small numpy parser (:func:`parse_fcs`) and the AnnData face (:func:`read_fcs`).

Values are scaled as FlowKit's ``Sample`` does by default ($PnE log amplification, $PnG gain, time x
$TIMESTEP), so numbers agree with FlowKit and FlowJo. Every offset and size in a file is checked against
the file before anything is allocated; any problem comes out as a one-line :class:`~cytokit.errors.FCSError`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .. import _keys as K
from ..errors import FCSError

if TYPE_CHECKING:  # pragma: no cover
    from anndata import AnnData

logger = logging.getLogger("cytokit")

__all__ = ["FCSFile", "parse_fcs", "read_fcs"]

_HEADER_LEN = 58
_CHUNK_BYTES = 1 << 24  # DATA is decoded in pieces of ~16 MB: bounded temporaries on any file size
_SPILL_KEYS = ("$SPILLOVER", "$SPILL", "SPILL", "SPILLOVER")


@dataclass(repr=False)
class FCSFile:
    """One data set of an FCS file: keywords, parameter names and the scaled event matrix.

    ``data`` is float32, events x parameters, scaled as FlowKit does by default. ``keywords`` keys are
    upper-cased with any ``$`` kept; ``spillover`` is indexed by ``$PnN`` names.
    """

    path: Path
    version: str
    keywords: dict[str, str]
    channels: list[str]
    stains: list[str]
    ranges: list[float]
    data: np.ndarray
    spillover: pd.DataFrame | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def n_events(self) -> int:
        """Number of events (rows of ``data``)."""
        return int(self.data.shape[0])

    def __repr__(self) -> str:
        return (
            f"FCSFile({self.path.name!r}, FCS{self.version}, {self.n_events} events x "
            f"{len(self.channels)} parameters)"
        )


def parse_fcs(path: str | os.PathLike, *, data_set: int = 0) -> FCSFile:
    """Read one data set of an FCS file into an :class:`FCSFile`.

    Parameters
    ----------
    path
        The FCS file.
    data_set
        0-based index of the data set in a multi-data-set file ($NEXTDATA chain).

    Raises
    ------
    FCSError
        The file is not FCS, is truncated, or its HEADER/TEXT cannot describe its DATA.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return _parse(fh, path, data_set)
    except FCSError:
        raise
    except MemoryError:
        raise FCSError("not enough memory to read the DATA segment", path) from None
    except OSError as err:
        raise FCSError(f"cannot read file ({err.strerror or err})", path) from None
    except Exception as err:  # garbage in must never escape as anything but FCSError
        msg = " ".join(f"{type(err).__name__}: {err}".split())[:200]
        raise FCSError(f"unreadable FCS file ({msg})", path) from err


def _event_names(n: int) -> pd.Index:
    """``"0".."n-1"`` as obs_names; building a million of them is a visible share of reading a file."""
    try:
        import pyarrow as pa  # pandas' optional engine: ~3x faster int -> str than Python

        return pd.Index(pa.array(np.arange(n)).cast(pa.string()).to_numpy(zero_copy_only=False))
    except ImportError:
        return pd.Index([str(i) for i in range(n)])


def _names_known_unique(ad):
    """Skip anndata's check that obs/var names are unique: event numbers and ``_unique`` var names
    are unique by construction, and hashing a million names was half of reading a 1M-event file."""
    try:
        return ad.settings.override(check_uniqueness=False)
    except Exception:  # an anndata without the setting: keep its check
        return contextlib.nullcontext()


def read_fcs(path: str | os.PathLike, *, panel=None, data_set: int = 0) -> AnnData:
    """Read an FCS file as AnnData: events x parameters, markers recognised from $PnS/$PnN.

    Parameters
    ----------
    path
        The FCS file.
    panel
        A panel object, the name of a shipped panel or a YAML path; ``None`` recognises markers from
        the file's own names.
    data_set
        0-based data set of a multi-data-set file.

    Returns
    -------
    AnnData
        ``X`` float32 scaled as FlowKit does; ``obs["event"]``; ``var`` columns channel, marker, stain,
        range, role; ``uns["fcs"]``, ``uns["spillover"]`` (when the file has one), ``uns["sample_info"]``.

    Raises
    ------
    FCSError
        The file cannot be read (see :func:`parse_fcs`).
    """
    import anndata as ad

    from .. import panels

    fcs = parse_fcs(path, data_set=data_set)
    if isinstance(panel, (str, os.PathLike)) and hasattr(panels, "load_panel"):
        panel = panels.load_panel(panel)
    markers, roles = panels.resolve_markers(list(fcs.channels), list(fcs.stains), panel=panel)
    markers = [m or "" for m in markers]
    names = _unique([m or c for m, c in zip(markers, fcs.channels, strict=True)])
    var = pd.DataFrame(
        {
            K.CHANNEL: fcs.channels,
            K.MARKER: markers,
            K.STAIN: fcs.stains,
            K.RANGE: np.asarray(fcs.ranges, dtype=float),
            K.ROLE: [r or "" for r in roles],
        },
        index=pd.Index(names),
    )
    events = np.arange(fcs.n_events)
    obs = pd.DataFrame({K.EVENT: events}, index=_event_names(fcs.n_events))
    with _names_known_unique(ad):
        adata = ad.AnnData(X=fcs.data, obs=obs, var=var)
    adata.uns[K.FCS] = dict(fcs.keywords)
    if fcs.spillover is not None:
        adata.uns[K.SPILLOVER] = fcs.spillover
    adata.uns[K.SAMPLE_INFO] = {
        "file": str(fcs.path),
        "sample": fcs.path.stem,
        "version": fcs.version,
        "n_events_header": fcs.n_events,
        "warnings": list(fcs.warnings),
    }
    return adata


# ---------------------------------------------------------------------------------------------------
# HEADER and TEXT


def _parse(fh, path: Path, data_set: int) -> FCSFile:
    size = os.fstat(fh.fileno()).st_size
    base, warns = 0, []
    if data_set < 0:
        raise FCSError(f"data_set must be >= 0, got {data_set}", path)
    for index in range(data_set + 1):
        version, hdr = _read_header(fh, base, size, path)
        kw, text_warns = _read_text(fh, base, size, hdr, path)
        if index < data_set:
            nxt = _int(kw.get("$NEXTDATA", "0"))
            if not nxt or nxt <= 0 or base + nxt + _HEADER_LEN > size:
                raise FCSError(f"has no data set {data_set} (only {index + 1})", path)
            base += nxt
    warns += text_warns
    if data_set == 0 and _int(kw.get("$NEXTDATA", "0")):
        warns.append("file holds more than one data set; read the first")
    par, tot, layout, order = _describe(kw, path, warns)
    channels, stains, ranges = _names(kw, par, warns)
    start, end, tot = _locate_data(kw, hdr, base, size, tot, layout, version, path, warns)
    # values beyond float32 become inf; counted below rather than raising numpy warnings
    with np.errstate(over="ignore", invalid="ignore"):
        data = _read_data(fh, start, end, tot, layout, order, kw, path)
        _scale(data, kw, channels, ranges, warns)
    if data.size and not (np.isfinite(data.min()) and np.isfinite(data.max())):  # no temporaries
        warns.append("some event values are not finite (NaN or beyond float32)")
    spill = _spillover(kw, channels, stains, warns)
    for w in warns:
        logger.debug("%s: %s", path.name, w)
    return FCSFile(path, version, kw, channels, stains, ranges, data, spill, warns)


def _read_header(fh, base: int, size: int, path: Path) -> tuple[str, dict]:
    fh.seek(base)
    raw = fh.read(_HEADER_LEN)
    if len(raw) < 42 or not raw.startswith(b"FCS"):
        raise FCSError("not an FCS file (no FCS HEADER)", path)
    version = raw[3:6].decode("ascii", "replace").strip()
    if not re.fullmatch(r"[1-4]\.\d", version):
        raise FCSError(f"unknown FCS version {version!r}", path)
    fields = [raw[10 + 8 * i : 18 + 8 * i] for i in range(6)]
    vals = [_int(f.decode("ascii", "replace")) for f in fields]
    names = ("text_start", "text_end", "data_start", "data_end", "analysis_start", "analysis_end")
    hdr = dict(zip(names, vals, strict=True))
    ts, te = hdr["text_start"], hdr["text_end"]
    if ts is None or te is None or ts < _HEADER_LEN or te <= ts or base + te >= size:
        raise FCSError(f"HEADER TEXT offsets {ts}..{te} lie outside the file", path)
    return version, hdr


def _read_text(fh, base: int, size: int, hdr: dict, path: Path) -> tuple[dict[str, str], list[str]]:
    fh.seek(base + hdr["text_start"])
    raw = fh.read(hdr["text_end"] - hdr["text_start"] + 1)
    kw, warns = _parse_text(raw)
    if not kw:
        raise FCSError("TEXT segment holds no keywords", path)
    s0, s1 = _int(kw.get("$BEGINSTEXT", "0")), _int(kw.get("$ENDSTEXT", "0"))
    if s0 and s1 and s1 > s0:
        if base + s1 >= size:
            warns.append(f"supplemental TEXT {s0}..{s1} lies outside the file; ignored")
        else:
            fh.seek(base + s0)
            extra, extra_warns = _parse_text(fh.read(s1 - s0 + 1), delim=raw[:1])
            if extra:
                kw = {**extra, **kw}  # the primary TEXT wins on conflicts
                warns += extra_warns
            else:
                warns.append("supplemental TEXT is not keyword text; ignored")
    return kw, warns


def _parse_text(raw: bytes, delim: bytes | None = None) -> tuple[dict[str, str], list[str]]:
    """Keyword dict of a TEXT segment; doubled delimiters are escapes (or, failing that, empty values)."""
    if len(raw) < 2 or (delim is not None and raw[:1] != delim):
        return {}, []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    d = text[0]
    body = text[1:]
    body = body.rstrip("\x00 \t\r\n".replace(d, ""))
    if body.endswith(d):
        body = body[:-1]
    warns = []
    tokens = _split_escaped(body, d)
    if any(d in t for t in tokens[::2]):
        plain = body.split(d)  # doubled delimiters as empty values (flowCore's emptyValue reading)
        if len(plain) % 2 == 0 and all(t.strip() for t in plain[::2]):
            tokens = plain
            warns.append("TEXT has empty keyword values (doubled delimiters read as empty)")
    if len(tokens) % 2:
        if len(tokens[-1]) > 1:  # a lone last byte is a TEXT end offset one too far: common, silent
            warns.append("TEXT ends with a keyword without value; dropped")
        tokens = tokens[:-1]
    kw = {}
    for k, v in zip(tokens[::2], tokens[1::2], strict=True):
        k = k.strip().upper()
        if k:
            kw.setdefault(k, v)
    return kw, warns


def _split_escaped(body: str, d: str) -> list[str]:
    """Split at single delimiters; a run of k delimiters is k//2 literal ones plus a split if k is odd."""
    out, cur, i, n = [], [], 0, len(body)
    for m in re.finditer(re.escape(d) + "+", body):
        cur.append(body[i : m.start()])
        k = m.end() - m.start()
        cur.append(d * (k // 2))
        if k % 2:
            out.append("".join(cur))
            cur = []
        i = m.end()
    cur.append(body[i:n])
    out.append("".join(cur))
    return out


# ---------------------------------------------------------------------------------------------------
# DATA layout and location


@dataclass(frozen=True)
class _Param:
    kind: str  # "u" unsigned int, "f" float
    nbytes: int
    mask: int  # 0 = no mask


def _describe(kw: dict, path: Path, warns: list) -> tuple[int, int | None, list, list[int] | None]:
    """$PAR, $TOT and the per-parameter byte layout of one event."""
    par = _int(kw.get("$PAR", ""))
    if par is None or par < 1:
        raise FCSError(f"$PAR is missing or invalid ({kw.get('$PAR')!r})", path)
    if par > len(kw):
        raise FCSError(f"$PAR={par} but TEXT describes far fewer parameters", path)
    mode = kw.get("$MODE", "L").strip().upper() or "L"
    if mode != "L":
        raise FCSError(f"$MODE={mode} (histogram data) is not supported; only list mode", path)
    tot = _int(kw.get("$TOT", ""))
    if tot is not None and tot < 0:
        raise FCSError(f"$TOT={tot} is negative", path)
    dtype = kw.get("$DATATYPE", "").strip().upper()
    if dtype not in ("I", "F", "D", "A"):
        raise FCSError(f"$DATATYPE {dtype!r} is not I, F, D or A", path)
    if dtype == "A":
        return par, tot, [dtype], None
    layout = [_param(kw, n, dtype, path, warns) for n in range(1, par + 1)]
    return par, tot, layout, _byteorder(kw, path, warns)


def _param(kw: dict, n: int, dtype: str, path: Path, warns: list) -> _Param:
    kind = kw.get(f"$P{n}DATATYPE", dtype).strip().upper() or dtype  # FCS 3.2 per-parameter type
    bits = _int(kw.get(f"$P{n}B", ""))
    if kind in ("F", "D"):
        want = 32 if kind == "F" else 64
        if bits != want:
            warns.append(f"$P{n}B={kw.get(f'$P{n}B')} for ${kind} data; read as {want} bit")
        return _Param("f", want // 8, 0)
    if kind != "I":
        raise FCSError(f"$P{n}DATATYPE {kind!r} is not I, F or D", path)
    if bits is None or not 1 <= bits <= 64:
        raise FCSError(f"$P{n}B={kw.get(f'$P{n}B')!r} is not a bit width for integer data", path)
    if bits % 8:
        warns.append(
            f"$P{n}B={bits} is not a whole number of bytes; read as {8 * -(-bits // 8)} bit"
        )
    nbytes = -(-bits // 8)
    rng = _float(kw.get(f"$P{n}R", ""))
    mask = 0
    if rng is not None and 1 <= rng < 2.0**64:
        top = 1 << max(int(rng) - 1, 0).bit_length()  # next power of two, as FlowIO
        if (1 << (8 * nbytes)) > top:
            mask = top - 1
    return _Param("u", nbytes, mask)


def _byteorder(kw: dict, path: Path, warns: list) -> list[int]:
    raw = kw.get("$BYTEORD", "1,2,3,4").strip()
    try:
        order = [int(x) for x in re.split(r"[,\s]+", raw) if x]
    except ValueError:
        order = []
    if sorted(order) != list(range(1, len(order) + 1)) or not order:
        warns.append(f"$BYTEORD {raw!r} is not a byte permutation; read as little-endian")
        order = [1, 2, 3, 4]
    return order


def _locate_data(kw, hdr, base, size, tot, layout, version, path, warns) -> tuple[int, int, int]:
    """Absolute first and last DATA byte and the event count, checked against the file size."""
    avail = size - base
    usable, first = _data_offsets(kw, hdr, avail, version, path, warns)
    bpe = sum(p.nbytes for p in layout) if layout[0] != "A" else 0
    s, e = usable[0][1]
    if tot is None:
        tot = (min(e, avail - 1) - s + 1) // bpe if bpe else 0
        warns.append(f"$TOT missing or invalid; {tot} events from the DATA size")
    if layout[0] == "A":
        return base + s, base + min(e, avail - 1), tot
    need = tot * bpe
    # prefer offsets whose segment matches $TOT exactly (or is one byte long), then any that holds it
    for fits in (lambda n: n in (need, need + 1), lambda n: n >= need):
        for name, (s, e) in usable:
            if fits(e - s + 1) and s + need <= avail:
                if e - s + 1 > need + 1:
                    warns.append(f"DATA segment is {e - s + 1 - need} bytes longer than $TOT needs")
                if name != first:
                    warns.append(f"used the {name} DATA offsets, the ones consistent with $TOT")
                return base + s, base + s + need - 1, tot
    s, e = usable[0][1]
    have = max(min(e - s + 1, avail - s), 0)
    if have + 1 == need and s + need <= avail:  # $ENDDATA one short, the bytes are there
        warns.append("$ENDDATA is one byte short of what $TOT needs")
        return base + s, base + s + need - 1, tot
    msg = f"truncated DATA: $TOT={tot} x {bpe} bytes needs {need} bytes, segment has {have}"
    raise FCSError(msg, path)


def _data_offsets(kw, hdr, avail, version, path, warns) -> tuple[list, str]:
    """DATA (start, end) pairs from TEXT and HEADER that lie in the file, clear of TEXT; preferred first."""
    text = (_int(kw.get("$BEGINDATA", "")), _int(kw.get("$ENDDATA", "")))
    head = (hdr["data_start"], hdr["data_end"])
    pairs = [(n, c) for n, c in (("TEXT", text), ("HEADER", head)) if None not in c and c != (0, 0)]
    if version.startswith("2"):
        pairs.reverse()  # FCS 2.0 defines the offsets in the HEADER only
    if not pairs:
        raise FCSError("neither HEADER nor TEXT gives the DATA offsets", path)
    if len(pairs) == 2 and text != head:
        warns.append(
            f"HEADER and TEXT DATA offsets disagree ({head[0]}..{head[1]} vs {text[0]}..{text[1]})"
        )
    t0, t1 = hdr["text_start"], hdr["text_end"]
    usable = [
        (n, (s, e))
        for n, (s, e) in pairs
        if _HEADER_LEN <= s <= min(e + 1, avail) and not t0 <= s <= t1  # DATA cannot start in TEXT
    ]
    if not usable:
        s, e = pairs[0][1]
        if s > avail:
            raise FCSError(
                f"truncated file: DATA starts at byte {s} but the file has {avail}", path
            )
        raise FCSError(f"DATA offsets {s}..{e} are not a valid segment", path)
    return usable, pairs[0][0]


# ---------------------------------------------------------------------------------------------------
# DATA decoding and scaling


def _read_data(fh, start, end, tot, layout, order, kw, path) -> np.ndarray:
    if layout[0] == "A":
        return _read_ascii(fh, start, end, tot, kw, path)
    par, bpe = len(layout), sum(p.nbytes for p in layout)
    out = np.empty((tot, par), dtype=np.float32)
    fast = _fast_dtype(layout, order)
    if tot and fast == np.dtype(np.float32) and not any(p.mask for p in layout):
        # native float32 events (FCS 3.1 "F" on a little-endian machine): read straight into the
        # result, without a temporary buffer and a copy of it
        fh.seek(start)
        got = fh.readinto(memoryview(out).cast("B"))
        if got != out.nbytes:
            raise FCSError(f"truncated DATA: file ends inside event {got // bpe}", path)
        return out
    step = max(1, _CHUNK_BYTES // max(bpe, 8))  # column decoding widens values to 8 bytes
    fh.seek(start)
    for r0 in range(0, tot, step):
        n = min(step, tot - r0)
        buf = fh.read(n * bpe)
        if len(buf) != n * bpe:
            raise FCSError(f"truncated DATA: file ends inside event {r0 + len(buf) // bpe}", path)
        if fast is not None:
            arr = np.frombuffer(buf, dtype=fast).reshape(n, par)
            if any(p.mask for p in layout):
                full = (1 << (8 * layout[0].nbytes)) - 1
                arr = arr & np.array([p.mask or full for p in layout], dtype=fast)
            out[r0 : r0 + n] = arr
        else:
            _decode_columns(buf, n, layout, order, out[r0 : r0 + n])
    return out


def _fast_dtype(layout, order) -> np.dtype | None:
    """One numpy dtype for the whole event row, when all parameters share it and bytes are monotonic."""
    p = layout[0]
    same = all(q.kind == p.kind and q.nbytes == p.nbytes for q in layout)
    if not same or p.nbytes not in (1, 2, 4, 8):
        return None
    endian = _endian(order)
    return None if endian is None else np.dtype(f"{endian}{p.kind}{p.nbytes}")


def _endian(order: list[int]) -> str | None:
    if order == sorted(order):
        return "<"
    if order == sorted(order, reverse=True):
        return ">"
    return None


def _decode_columns(buf: bytes, n: int, layout, order, out: np.ndarray) -> None:
    """Decode mixed, odd-width or permuted-byte parameters into ``out``, a run of equal ones at a time."""
    raw = np.frombuffer(buf, dtype=np.uint8).reshape(n, -1)
    j = off = 0
    while j < len(layout):
        p = layout[j]
        k = j + 1
        while k < len(layout) and layout[k].kind == p.kind and layout[k].nbytes == p.nbytes:
            k += 1
        block = raw[:, off : off + (k - j) * p.nbytes].reshape(n, k - j, p.nbytes)
        off += (k - j) * p.nbytes
        width = 1 << (p.nbytes - 1).bit_length()  # 3 bytes are widened to 4, 5-7 to 8
        tmp = np.zeros((n, k - j, width), dtype=np.uint8)
        tmp[:, :, : p.nbytes] = block[:, :, _to_little(order, p.nbytes)]
        vals = tmp.view(f"<{p.kind}{width}")[:, :, 0]
        masks = [q.mask or (1 << (8 * width)) - 1 for q in layout[j:k]]
        if p.kind == "u" and any(q.mask for q in layout[j:k]):
            vals = vals & np.array(masks, dtype=vals.dtype)
        out[:, j:k] = vals
        j = k


def _to_little(order: list[int], nbytes: int) -> np.ndarray:
    """Column permutation that puts a parameter's file bytes in little-endian order."""
    endian = _endian(order)
    if endian == "<" or nbytes == 1:
        return np.arange(nbytes)
    if endian == ">" or len(order) != nbytes:
        return np.arange(nbytes)[::-1] if endian == ">" else np.arange(nbytes)
    perm = np.empty(nbytes, dtype=int)
    perm[np.asarray(order) - 1] = np.arange(nbytes)  # file byte i has significance order[i]
    return perm


def _read_ascii(fh, start, end, tot, kw, path) -> np.ndarray:
    par = _int(kw["$PAR"])
    widths = [_int(kw.get(f"$P{n}B", "")) for n in range(1, par + 1)]
    fh.seek(start)
    if all(w and w > 0 for w in widths):
        nbytes = tot * sum(widths)
        raw = fh.read(nbytes)
        if len(raw) < nbytes:
            raise FCSError(f"truncated DATA: ASCII data needs {nbytes} bytes", path)
        dt = np.dtype([(f"p{j}", f"S{w}") for j, w in enumerate(widths)])
        rec = np.frombuffer(raw, dtype=dt)
        return np.column_stack([rec[f"p{j}"].astype(np.float32) for j in range(par)]).reshape(
            tot, par
        )
    text = fh.read(end - start + 1).decode("latin-1")
    vals = np.array(re.split(r"[\s,]+", text.strip())[: tot * par], dtype=np.float32)
    if vals.size < tot * par:
        raise FCSError(
            f"truncated DATA: {vals.size} ASCII values for $TOT x $PAR = {tot * par}", path
        )
    return vals.reshape(tot, par)


def _scale(
    data: np.ndarray, kw: dict, channels: list[str], ranges: list[float], warns: list
) -> None:
    """In place, as FlowKit's default Sample: time x $TIMESTEP, then $PnE log, then divide by $PnG."""
    time_idx = None
    for j, name in enumerate(channels):
        if name.strip().lower() == "time":
            time_idx = j
    step = kw.get("$TIMESTEP")
    if time_idx is not None and step is not None:
        value = _float(step) if step.strip() else 1.0
        if value is None:
            warns.append(f"$TIMESTEP {step!r} is not a number; time left unscaled")
        elif value != 1.0:
            data[:, time_idx] = data[:, time_idx].astype(np.float64) * value
    for j in range(data.shape[1]):
        n = j + 1
        decades, log0 = _log_amp(kw.get(f"$P{n}E"), n, warns)
        gain = 1.0 if j == time_idx else _float(kw.get(f"$P{n}G", "1")) or 1.0
        gain = gain if np.isfinite(gain) else 1.0
        if decades <= 0 and gain == 1.0:
            continue
        col = data[:, j].astype(np.float64)
        if decades > 0:
            if not ranges[j] or not np.isfinite(ranges[j]):
                warns.append(f"$P{n}E is logarithmic but $P{n}R is missing; left linear")
            else:
                col *= decades / ranges[j]  # in place: one float64 column at a time
                np.power(10.0, col, out=col)
                col *= log0
        if gain != 1.0:
            col /= gain
        data[:, j] = col


def _log_amp(raw: str | None, n: int, warns: list) -> tuple[float, float]:
    if raw is None or not raw.strip():
        return 0.0, 0.0
    parts = [_float(x) for x in raw.split(",")]
    if len(parts) != 2 or None in parts:
        warns.append(f"$P{n}E {raw!r} is not 'f1,f2'; read as linear")
        return 0.0, 0.0
    decades, log0 = parts
    if not (np.isfinite(decades) and np.isfinite(log0)):
        warns.append(f"$P{n}E {raw!r} is not finite; read as linear")
        return 0.0, 0.0
    if decades > 0 and log0 == 0:
        log0 = 1.0  # the FCS standard's reading of an invalid f2 = 0, as FlowIO
    return decades, log0


# ---------------------------------------------------------------------------------------------------
# names and spillover


def _names(kw: dict, par: int, warns: list) -> tuple[list[str], list[str], list[float]]:
    channels, stains, ranges = [], [], []
    for n in range(1, par + 1):
        name = kw.get(f"$P{n}N", "").strip()
        if not name:
            warns.append(f"$P{n}N is missing or blank; named P{n}")
            name = f"P{n}"
        channels.append(name)
        stains.append(kw.get(f"$P{n}S", "").strip())
        rng = _float(kw.get(f"$P{n}R", ""))
        ranges.append(float("nan") if rng is None else rng)
    return channels, stains, ranges


def _spillover(
    kw: dict, channels: list[str], stains: list[str], warns: list
) -> pd.DataFrame | None:
    for key in _SPILL_KEYS:
        raw = kw.get(key, "").strip()
        if not raw or raw == "0":
            continue
        matrix = _parse_spill(raw, key, channels, stains, warns)
        if matrix is not None:
            return matrix
    return None


def _parse_spill(raw, key, channels, stains, warns) -> pd.DataFrame | None:
    tok = [t.strip() for t in raw.split(",")]
    n = _int(tok[0])
    if n is None or n < 1 or len(tok) < 1 + n + n * n:
        warns.append(f"{key} is malformed (expects n, n names, n*n values); ignored")
        return None
    vals = [_float(t) for t in tok[1 + n : 1 + n + n * n]]
    if None in vals or not np.all(np.isfinite(vals)):
        warns.append(f"{key} holds non-numeric values; ignored")
        return None
    names = [_map_channel(t, channels, stains) for t in tok[1 : 1 + n]]
    if None in names or len(set(names)) != n:
        bad = [t for t, m in zip(tok[1 : 1 + n], names, strict=True) if m is None]
        warns.append(
            f"{key} names channels not in the file ({', '.join(bad[:3]) or 'duplicates'}); ignored"
        )
        return None
    if len(tok) > 1 + n + n * n:
        warns.append(f"{key} has {len(tok) - 1 - n - n * n} extra values; ignored them")
    mat = np.asarray(vals, dtype=np.float64).reshape(n, n)
    return pd.DataFrame(mat, index=pd.Index(names), columns=pd.Index(names))


def _map_channel(name: str, channels: list[str], stains: list[str]) -> str | None:
    """$PnN for a spillover name given as $PnN, $PnS or a 1-based parameter index."""
    if name in channels:
        return name
    if name in stains and name:
        return channels[stains.index(name)]
    idx = _int(name)
    if idx is not None and 1 <= idx <= len(channels):
        return channels[idx - 1]
    low = name.lower()
    for labels in (channels, stains):
        for j, label in enumerate(labels):
            if label and label.lower() == low:
                return channels[j]
    return None


# ---------------------------------------------------------------------------------------------------
# small helpers


def _int(s) -> int | None:
    if s is None:
        return None
    s = str(s).strip()
    if not s:
        return None
    try:
        return int(s)
    except ValueError:
        f = _float(s)
        return int(f) if f is not None and np.isfinite(f) and f == int(f) else None


def _float(s) -> float | None:
    try:
        return float(str(s).strip())
    except (TypeError, ValueError):
        return None


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    taken = set(names)
    for name in names:
        if name in seen:
            k = seen[name]
            while f"{name}-{k}" in taken:
                k += 1
            seen[name] = k + 1
            name = f"{name}-{k}"
            taken.add(name)
        else:
            seen[name] = 1
        out.append(name)
    return out
