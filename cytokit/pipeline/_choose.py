"""The default gating strategy of a run, chosen from the markers each file carries.

Without ``--strategy``: FOXP3 present -> ``treg`` (CD25+FOXP3+ Tregs); CD25 and CD127 without FOXP3 ->
``treg_surface`` (CD25hi CD127lo, the HIPC/Lyoplate surface Treg definition used when FOXP3 is not
stained); a mass-cytometry file (DNA intercalator channels, no scatter) -> ``treg_cytof``. Only the
files' TEXT segments are read, so the choice costs nothing next to the run.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .._resources import shipped

__all__ = ["choose_strategy", "file_markers"]

logger = logging.getLogger("cytokit")

DEFAULT = "treg"
SURFACE = "treg_surface"
CYTOF = "treg_cytof"


def file_markers(path: str | Path, panel=None) -> set[str] | None:
    """Canonical markers of an FCS file's parameters (TEXT only, no DATA read); None if unreadable."""
    from .. import panels
    from ..errors import CytokitError

    path = Path(path)
    try:
        channels, stains = _names(path)
        markers, _ = panels.resolve_markers(channels, stains, panel=panel)
    except (CytokitError, OSError, ValueError):
        return None  # the per-sample task reports the file's problem
    return {m for m in markers if m}


def _names(path: Path) -> tuple[list[str], list[str]]:
    """``$PnN`` and ``$PnS`` of the first data set, from HEADER and TEXT only."""
    import os

    from ..io import _fcs, parse_fcs

    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            _, hdr = _fcs._read_header(fh, 0, size, path)
            kw, _ = _fcs._read_text(fh, 0, size, hdr, path)
        n = _fcs._int(kw.get("$PAR", "0")) or 0
        channels, stains, _ = _fcs._names(kw, n, [])
    except (AttributeError, TypeError):  # the reader's internals changed: read the whole file
        fcs = parse_fcs(path)
        channels, stains = list(fcs.channels), list(fcs.stains)
    return channels, stains


def choose_strategy(markers: set[str] | None) -> tuple[str, str]:
    """Shipped strategy name for a file with ``markers``, and why (one phrase for logs and the report)."""
    if markers is None:
        return DEFAULT, "file unreadable: default"
    if "FOXP3" in markers and _mass_cytometry(markers) and CYTOF in shipped("gating"):
        return CYTOF, "FOXP3 in a mass-cytometry panel (DNA channels, no scatter)"
    if "FOXP3" in markers:
        return DEFAULT, "FOXP3 in the panel"
    if {"CD25", "CD127"} <= markers:
        if SURFACE in shipped("gating"):
            return SURFACE, "CD25 and CD127 without FOXP3"
        return DEFAULT, f"CD25 and CD127 without FOXP3, but no shipped {SURFACE!r} strategy"
    return DEFAULT, "no FOXP3 and no CD25+CD127 pair: default"


def _mass_cytometry(markers: set[str]) -> bool:
    """DNA intercalator channels and no light scatter: a mass cytometer's file."""
    scatter = any(m.upper().startswith(("FSC", "SSC")) for m in markers)
    return not scatter and bool({"DNA1", "DNA2"} & markers)
