"""A tiny FCS byte builder for reader tests: any datatype, bit width, byte order, offsets and keywords."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TEXT_START = 256
_OFFSET_WIDTH = 12  # fixed-width $BEGINDATA/$ENDDATA so the TEXT length does not depend on them


def encode_events(values, kinds: Sequence[tuple[str, int]], byteord: str = "1,2,3,4") -> bytes:
    """DATA bytes of ``values`` (events x parameters); ``kinds`` is (``"u"``/``"f"``, bytes) per parameter."""
    values = np.asarray(values)
    order = [int(x) for x in byteord.split(",")]
    cols = []
    for j, (kind, nb) in enumerate(kinds):
        if kind == "f":
            le = np.ascontiguousarray(values[:, j], dtype=f"<f{nb}").view(np.uint8).reshape(-1, nb)
        else:
            le = (
                np.ascontiguousarray(values[:, j], dtype="<u8")
                .view(np.uint8)
                .reshape(-1, 8)[:, :nb]
            )
        if order == sorted(order):
            cols.append(le)
        elif order == sorted(order, reverse=True):
            cols.append(le[:, ::-1])
        else:  # file byte i has significance order[i]
            cols.append(le[:, [k - 1 for k in order]])
    return np.hstack(cols).tobytes() if cols else b""


def text_segment(keywords: dict[str, str], delim: str = "/") -> bytes:
    parts = [delim]
    for key, value in keywords.items():
        parts += [key.replace(delim, delim * 2), delim, str(value).replace(delim, delim * 2), delim]
    return "".join(parts).encode("latin-1")


def build_fcs(
    values,
    channels: Sequence[str],
    *,
    stains: Sequence[str] | None = None,
    datatype: str = "F",
    bits: Sequence[int] | None = None,
    ranges: Sequence[float] | None = None,
    byteord: str = "1,2,3,4",
    keywords: dict[str, str] | None = None,
    version: str = "3.1",
    delim: str = "/",
    header_data: str | tuple[int, int] = "match",
    text_data: tuple[int, int] | None = None,
    tot: int | None = None,
    nextdata: int = 0,
    stext: dict[str, str] | None = None,
) -> bytes:
    """Bytes of one FCS data set. ``header_data``: "match", "blank", "zero" or explicit (start, end)."""
    values = np.asarray(values)
    n, p = values.shape
    width = {"F": 32, "D": 64}.get(datatype, 16)
    bits = list(bits) if bits is not None else [width] * p
    ranges = list(ranges) if ranges is not None else [1024] * p
    kw = {"$BEGINANALYSIS": "0", "$ENDANALYSIS": "0", "$BEGINSTEXT": "0" * _OFFSET_WIDTH}
    kw |= {"$ENDSTEXT": "0" * _OFFSET_WIDTH, "$BEGINDATA": "0" * _OFFSET_WIDTH}
    kw |= {"$ENDDATA": "0" * _OFFSET_WIDTH, "$NEXTDATA": f"{nextdata:0{_OFFSET_WIDTH}d}"}
    kw |= {"$BYTEORD": byteord, "$DATATYPE": datatype, "$MODE": "L", "$PAR": str(p)}
    kw["$TOT"] = str(n if tot is None else tot)
    for j, name in enumerate(channels, start=1):
        kw[f"$P{j}N"] = name
        if stains is not None and stains[j - 1] is not None:
            kw[f"$P{j}S"] = stains[j - 1]
        kw[f"$P{j}B"] = str(bits[j - 1])
        kw[f"$P{j}E"] = "0,0"
        kw[f"$P{j}R"] = str(ranges[j - 1])
    kw |= keywords or {}
    if datatype == "A":
        data = "".join(" ".join(f"{v:g}" for v in row) + "\n" for row in values).encode()
        kw = {k: v for k, v in kw.items() if not (k.startswith("$P") and k.endswith("B"))}
        kw |= {f"$P{j}B": "*" for j in range(1, p + 1)}
    else:
        kinds = _kinds(kw, datatype, bits)
        data = encode_events(values, kinds, byteord)
    text = text_segment(kw, delim)
    sup = text_segment(stext, delim) if stext else b""
    t0, t1 = TEXT_START, TEXT_START + len(text) - 1
    s0 = t1 + 1
    d0 = s0 + len(sup)
    d1 = d0 + len(data) - 1
    fields = {"$BEGINDATA": d0, "$ENDDATA": d1}
    if sup:
        fields |= {"$BEGINSTEXT": s0, "$ENDSTEXT": s0 + len(sup) - 1}
    if text_data is not None:
        fields |= {"$BEGINDATA": text_data[0], "$ENDDATA": text_data[1]}
    for key, value in fields.items():
        kw[key] = f"{value:0{_OFFSET_WIDTH}d}"
    text = text_segment(kw, delim)
    assert len(text) == t1 - t0 + 1
    if header_data == "match":
        hd = (str(d0), str(d1))
    elif header_data == "blank":
        hd = ("", "")
    elif header_data == "zero":
        hd = ("0", "0")
    else:
        hd = (str(header_data[0]), str(header_data[1]))
    header = f"FCS{version}    ".encode() + b"".join(
        f"{v:>8}".encode() for v in (t0, t1, *hd, 0, 0)
    )
    return header.ljust(TEXT_START, b" ") + text + sup + data


def _kinds(kw: dict, datatype: str, bits: list[int]) -> list[tuple[str, int]]:
    out = []
    for j, b in enumerate(bits, start=1):
        kind = kw.get(f"$P{j}DATATYPE", datatype)
        out.append(("f", 4) if kind == "F" else ("f", 8) if kind == "D" else ("u", -(-b // 8)))
    return out
