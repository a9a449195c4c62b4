"""Panels and marker-name recognition: from a file's ``$PnS``/``$PnN`` spellings to canonical marker names.

Recognition is token-based, never substring search: a name is split into lower-case alphanumeric tokens,
fluorochrome/detector tokens (``PE``, ``APC-H7``, ``BV605``, ``FL1``) and filler words (``-A``, ``anti``,
``hi``) are set aside, and runs of adjacent remaining tokens are joined and looked up as whole keys. So
``"APCCy7 - CD4"``, ``"CD4 APC-H7"`` and ``"cd4"`` are CD4, while ``"CD45"``, ``"CD45 RA"`` and ``"CD40"``
are never CD4, and ``"HLA DR"``/``"Ki-67"`` join into ``HLA-DR``/``Ki67``. A panel (YAML in ``panels/``)
adds or overrides names, aliases, usual channels and roles; a built-in table knows common human markers.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from . import _keys as K
from ._logging import logger
from ._resources import resolve_definition
from .errors import CytokitError, MarkerError, PanelError

__all__ = [
    "ROLES",
    "Marker",
    "Panel",
    "canonical_marker",
    "find_var",
    "load_panel",
    "resolve_markers",
]


ROLES = ("scatter", "time", "viability", "lineage", "functional")

# fmt: off
# name: (role, aliases). Aliases are compared after squashing (lower case, alphanumerics only).
_BUILTIN: dict[str, tuple[str, tuple[str, ...]]] = {
    "CD3": ("lineage", ("CD3e", "CD3 epsilon", "Leu4")),
    "CD4": ("lineage", ("Leu3a",)),
    "CD8": ("lineage", ("CD8a", "CD8 alpha", "Leu2a")),
    "CD25": ("lineage", ("IL2R", "IL2RA", "IL-2Ra", "IL-2R alpha", "Tac")),
    "CD127": ("lineage", ("IL7R", "IL7RA", "IL-7Ra", "IL-7R alpha")),
    "FOXP3": ("lineage", ("Fox P3", "Scurfin")),
    "CD45RA": ("functional", ()),
    "Ki67": ("functional", ("MKI67",)),
    "HLA-DR": ("functional", ("HLA DR", "HLADR", "MHC-DR")),
    "Helios": ("functional", ("IKZF2",)),
    "CD56": ("lineage", ("NCAM", "NCAM1", "Leu19")),
    "Viability": (
        "viability",
        (
            "Viab", "Via", "Live", "Dead", "Live Dead", "LD", "Live Dead Fixable", "Fixable Viability",
            "Viability Dye", "FVD", "Zombie", "Aqua", "7-AAD", "7AAD", "DAPI", "PI", "Propidium Iodide",
            "SYTOX", "TO-PRO-3", "DRAQ7", "Ghost Dye", "LiveDead", "L D", "DCM", "Dead Cell",
            "Cisplatin", "Cis Pt", "CisPt",  # mass cytometry viability (Fienberg 2012, Cytometry A 81:467)
        ),
    ),
    # mass cytometry: the iridium DNA intercalator's two isotopes (cells, singlets)
    "DNA1": ("", ("DNA 1", "Ir191 DNA", "Intercalator 191", "Ir Intercalator 191")),
    "DNA2": ("", ("DNA 2", "Ir193 DNA", "Intercalator 193", "Ir Intercalator 193")),
    # lineage and functional markers common in T/NK/B immunomonitoring panels
    "CD45": ("lineage", ("PTPRC", "LCA")),
    "CD45RO": ("functional", ()),
    "CD14": ("lineage", ()),
    "CD16": ("lineage", ("FcgRIII",)),
    "CD19": ("lineage", ()),
    "CD20": ("lineage", ("MS4A1",)),
    "CD11c": ("lineage", ()),
    "CD123": ("lineage", ("IL3RA",)),
    # "yd" is how gamma-delta is typed without Greek letters; mouse panels stain the beta chain for
    # alpha-beta T cells ("TCRb", "TCR beta")
    "TCRgd": ("lineage", ("TCR gamma delta", "gdTCR", "TCR gd", "gd TCR", "TCRyd", "TCR yd", "ydTCR")),
    "TCRab": ("lineage", ("TCR alpha beta", "abTCR", "TCR ab", "TCRb", "TCR beta", "TCRbeta")),
    "CCR7": ("functional", ("CD197",)),
    "CD62L": ("functional", ("L-selectin", "SELL")),
    "CD27": ("functional", ()),
    "CD28": ("functional", ()),
    "CD38": ("functional", ()),
    "CD39": ("functional", ("ENTPD1",)),
    "CD57": ("functional", ()),
    "CD69": ("functional", ()),
    "CD95": ("functional", ("Fas",)),
    "CD161": ("functional", ()),
    "PD-1": ("functional", ("PD1", "CD279", "PDCD1")),
    "CTLA-4": ("functional", ("CTLA4", "CD152")),
    "ICOS": ("functional", ("CD278",)),
    "GITR": ("functional", ("CD357", "TNFRSF18")),
    "OX40": ("functional", ("CD134",)),
    "LAG-3": ("functional", ("LAG3", "CD223")),
    "TIM-3": ("functional", ("TIM3", "CD366", "HAVCR2")),
    "TIGIT": ("functional", ()),
    "CXCR3": ("functional", ("CD183",)),
    "CXCR5": ("functional", ("CD185",)),
    "CCR4": ("functional", ("CD194",)),
    "CCR6": ("functional", ("CD196",)),
    "Tbet": ("functional", ("T-bet", "TBX21")),
    "GATA3": ("functional", ()),
    "RORgt": ("functional", ("ROR gamma t", "RORC")),
    "IFNg": ("functional", ("IFN gamma", "IFNG", "IFN-g", "Interferon gamma")),
    "IL-17A": ("functional", ("IL17", "IL17A", "IL-17")),
    "IL-4": ("functional", ("IL4",)),
    "IL-2": ("functional", ("IL2",)),
    "IL-10": ("functional", ("IL10",)),
    "TNF": ("functional", ("TNFa", "TNF alpha")),
    "Granzyme B": ("functional", ("GzmB", "GranzymeB", "GRZB")),
    "Perforin": ("functional", ("PRF1",)),
    "pSTAT5": ("functional", ("STAT5", "p-STAT5")),
    # mouse lineage markers (NK1.1 is written "NK1.1", "NK1-1", "NK1/1" or "NK1 1" by acquisition
    # software that drops the dot: all squash to "nk11")
    "NK1.1": ("lineage", ("NK11", "CD161c", "Klrb1c")),
    "CD49b": ("lineage", ("DX5", "ITGA2")),
    "B220": ("lineage", ("CD45R",)),
    "CD11b": ("lineage", ("ITGAM", "Mac-1", "Mac1")),
    "F4/80": ("lineage", ("F480", "EMR1", "ADGRE1")),
    "Ly6G": ("lineage", ("Ly-6G",)),
    "Ly6C": ("lineage", ("Ly-6C",)),
    "MHCII": ("lineage", ("MHC II", "MHC class II", "I-A/I-E", "IA-IE", "IAIE")),
}

_EMPTY = {"", "-", "--", "?", "x", "empty", "blank", "none", "na", "n/a", "nan", "null", "unused", "<na>"}

# fluorochromes, dyes and detectors, as squashed keys (multi-token ones are joined before lookup)
_FLUOR_KEYS = {
    "fitc", "pe", "apc", "percp", "ecd", "amcyan", "gfp", "egfp", "yfp", "rfp", "mcherry", "tdtomato",
    "cy5", "cy55", "cy7", "pecy5", "pecy55", "pecy7", "percpcy55", "percpcy5", "percpef710", "percpefluor710",
    "apccy7", "apch7", "apcr700", "apcfire750", "apcfire810", "apcef780", "apcefluor780", "apcvio770",
    "apcalexafluor750", "apcvio", "pevio770", "pevio615", "pedazzle594", "pecf594", "petexasred", "petxred",
    "petxredyg", "texasred", "txred", "pacificblue", "pacificorange", "pb", "po", "kromeorange", "ko",
    "cascadeblue", "pecy5.5", "vioblue", "viogreen", "viobright", "fitcvio", "alexafluor", "alexa", "qdot",
    "brilliantviolet", "brilliantultraviolet", "brilliantblue", "horizon", "superbright", "efluor", "ef",
    "biotin", "streptavidin", "sav", "bv", "buv", "spark", "sparknir", "sparkblue", "nir", "ir", "uv",
}
_FLUOR_RE = re.compile(
    r"^(?:"
    r"(?:bv|buv|bb|bux|bup|sb|rb|ry|nfb|nfr|nfy|nfv|nf|af|alexa|alexafluor|a|ef|efluor|e|dy|dylight|atto|cf"
    r"|spark|sparkblue|sparkviolet|sparkyg|sparkred|sparkuv|sparknir|cfluor|qdot|qd|vio|pe|apc|percp|pecf"
    r"|pedazzle|apcr|apcfire|pefire|pevio|apcvio|kiravia|realblue|realyellow|rb|ry|nova|novafluor|ibright)"
    r"\d{3}(?:uv|v|nc)?"
    r"|(?:uv|v|b|r|y|g|yg|bl|rl|vl|yl)[3-8]\d\d"  # detector by wavelength (B530, V450)
    r"|(?:fl|uv|v|b|r|y|g|yg|bl|rl|vl|yl|ch|channel|fluor)\d{1,2}"  # detector by number (FL1, BL1, V2)
    r"|\d{2,3}(?:la|ce|pr|nd|sm|eu|gd|tb|dy|ho|er|tm|yb|lu|in|cd|pt|ir|y|bi|rh|ba|cs|pd|sn|i)"  # isotope
    r"|(?:la|ce|pr|nd|sm|eu|gd|tb|dy|ho|er|tm|yb|lu|in|cd|pt|ir|y|bi|rh|ba|cs|pd|sn|i)\d{2,3}d[id]"
    r"|(?:pe|apc|percp)?cy\d(?:\d)?"
    r")$"
)
# tokens that carry no marker information on their own (pulse shape, species, qualifiers, colours)
_NEUTRAL = {
    "a", "h", "w", "area", "height", "width", "int", "peak", "comp", "fjcomp", "lin", "log", "anti", "human",
    "hu", "mouse", "ms", "rat", "clone", "mab", "ab", "ig", "igg", "igg1", "igg2a", "igg2b", "isotype", "hi",
    "lo", "high", "low", "dim", "bright", "pos", "neg", "positive", "negative", "total", "surface",
    "intracellular", "ic", "stain", "conjugate", "red", "blue", "violet", "green", "yellow", "orange",
    "far", "near", "sec", "s", "hdr", "fixable", "dye", "reagent", "unstained", "control",
}
# a mass-cytometry channel that is only an iridium isotope is the DNA intercalator: Ir191 and Ir193 carry
# no antibody (Ornatsky et al. 2010, J Immunol Methods 361:1); by convention named DNA1/DNA2
_IRIDIUM = {"ir191": "DNA1", "191ir": "DNA1", "ir191di": "DNA1", "ir193": "DNA2", "193ir": "DNA2",
            "ir193di": "DNA2"}
# a stain that is only one of these dyes names the viability channel ("eF780", "Aqua")
_VIABILITY_ONLY_DYES = {"ef780", "efluor780", "ef506", "efluor506", "ef455uv", "efluor455uv", "ef450uv"}

# fmt: on

_SCATTER_RE = re.compile(
    r"^(?P<kind>fsc|fs|forwardscatter|fwdscatter|forward|ssc|ss|sidescatter|side|sscb|vssc|violetssc)"
    r"(?P<pulse>a|area|int|integral|h|height|peak|w|width|tof)?(?:lin|log)?$"
)
_TIME_KEYS = {"time", "hdrt", "clock", "timems", "timeticks", "timelsw", "timemsw"}
_CD_RE = re.compile(
    r"^(?:h|hu)?cd(?P<num>\d{1,3})(?P<suffix>ra|ro|rb|rc|[a-z])?(?:hi|lo|dim|bright|bri|pos|neg|high|low)?$"
)
_VIABILITY_RE = re.compile(r"^(?:fvs|fvd|lda|ld|zombie|ghost)\d{3}(?:uv|v)?$")
_GREEK = str.maketrans(
    {"α": "a", "β": "b", "γ": "g", "δ": "d", "κ": "k", "λ": "l", "ε": "e", "µ": "u"}
)
_SPLIT = re.compile(r"[^0-9A-Za-z.]+|(?<!\d)\.|\.(?!\d)")  # "Cy5.5" keeps its dot, "sec." does not


def _squash(text: str) -> str:
    """Lower-case alphanumerics only: the key that names and aliases are compared on."""
    return "".join(_tokens(text))


def _tokens(text: str, *, keep_case: bool = False) -> list[str]:
    norm = unicodedata.normalize("NFKC", str(text)).translate(_GREEK)
    norm = unicodedata.normalize("NFKD", norm).encode("ascii", "ignore").decode()
    parts = [p.replace(".", "") for p in _SPLIT.split(norm) if p and p.replace(".", "")]
    return parts if keep_case else [p.lower() for p in parts]


@dataclass(frozen=True)
class Marker:
    """One marker of a panel: canonical name, role, spellings it is recognised by, usual channels."""

    name: str
    role: str = ""
    aliases: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Panel:
    """A named set of markers (loaded from a YAML file with :func:`load_panel`)."""

    name: str
    markers: tuple[Marker, ...]
    description: str = ""
    path: Path | None = None
    _index: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)
    _channels: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for m in self.markers:
            for key in (_squash(m.name), *(_squash(a) for a in m.aliases)):
                other = self._index.setdefault(key, m.name)
                if key and other != m.name:
                    raise PanelError(
                        f"spelling {key!r} is claimed by both {other!r} and {m.name!r}", self.path
                    )
            for ch in m.channels:
                self._channels.setdefault(_squash(ch), m.name)

    @property
    def names(self) -> list[str]:
        """Canonical marker names, in panel order."""
        return [m.name for m in self.markers]

    def role(self, name: str) -> str:
        """Role of marker ``name`` ("" if the panel does not have it)."""
        return next((m.role for m in self.markers if m.name == name), "")

    def lookup(self, key: str) -> str | None:
        """Canonical name for a squashed spelling, or None."""
        return self._index.get(key)

    def on_channel(self, channel: str) -> str | None:
        """Marker the panel says is usually on ``channel`` ($PnN), or None."""
        return self._channels.get(_squash(channel))


def _builtin_panel() -> Panel:
    markers = tuple(Marker(name, role, aliases) for name, (role, aliases) in _BUILTIN.items())
    return Panel("builtin", markers, "markers cytokit recognises without a panel")


_BUILTIN_PANEL = _builtin_panel()


# --------------------------------------------------------------------------------------------- loading
def load_panel(name_or_path: str | Path | Panel) -> Panel:
    """Load a panel: a shipped name (``"ldil2_treg"``) or a path to a YAML file.

    Raises :class:`~cytokit.errors.PanelError` with a one-line message on a missing file, bad YAML or a
    definition that does not follow the schema (see ``panels/ldil2_treg.yaml``).
    """
    if isinstance(name_or_path, Panel):
        return name_or_path
    try:
        path = resolve_definition("panels", name_or_path)
    except PanelError:
        raise
    except CytokitError as err:
        raise PanelError(err.message) from None
    return _load_panel_file(path.resolve(), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _load_panel_file(path: Path, _mtime: int) -> Panel:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or "syntax error"
        raise PanelError(f"invalid YAML: {problem}{where}", path) from None
    except (OSError, UnicodeDecodeError) as err:
        raise PanelError(f"cannot read panel: {err}", path) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("markers"), list) or not doc["markers"]:
        raise PanelError("a panel is a mapping with a non-empty 'markers' list", path)
    markers = tuple(_parse_marker(entry, i, path) for i, entry in enumerate(doc["markers"]))
    names = [m.name for m in markers]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise PanelError(f"marker {dup!r} is defined twice", path)
    return Panel(
        str(doc.get("name") or path.stem), markers, str(doc.get("description") or ""), path
    )


def _parse_marker(entry: Any, i: int, path: Path) -> Marker:
    if (
        not isinstance(entry, dict)
        or not isinstance(entry.get("name"), str)
        or not entry["name"].strip()
    ):
        raise PanelError(f"markers[{i}] needs a 'name' (text)", path)
    name = entry["name"].strip()
    unknown = set(entry) - {"name", "aliases", "channel", "channels", "role", "description"}
    if unknown:
        raise PanelError(f"marker {name!r}: unknown field(s) {sorted(unknown)}", path)
    role = str(entry.get("role") or "")
    if role and role not in ROLES:
        raise PanelError(f"marker {name!r}: role {role!r} is not one of {', '.join(ROLES)}", path)
    aliases = _str_list(entry.get("aliases"), f"marker {name!r}: aliases", path)
    channels = _str_list(entry.get("channels"), f"marker {name!r}: channels", path)
    channels += _str_list(entry.get("channel"), f"marker {name!r}: channel", path)
    return Marker(name, role, tuple(aliases), tuple(channels))


def _str_list(value: Any, what: str, path: Path) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, int, float)):
        return [str(value)]
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return [str(v) for v in value]
    raise PanelError(f"{what} must be text or a list of text", path)


# ----------------------------------------------------------------------------------------- recognition
def _fluor_mask(tokens: list[str]) -> list[bool]:
    """Mark tokens that belong to a fluorochrome/detector name (leftmost-longest runs of up to 4)."""
    mask = [False] * len(tokens)
    i = 0
    while i < len(tokens):
        for n in range(min(4, len(tokens) - i), 0, -1):
            key = "".join(tokens[i : i + n])
            if key in _FLUOR_KEYS or _FLUOR_RE.match(key):
                mask[i : i + n] = [True] * n
                i += n
                break
        else:
            i += 1
    return mask


def _pattern_name(key: str) -> str | None:
    """Names recognised by pattern rather than by table: scatter, time, any CD number, viability dyes."""
    if key in _TIME_KEYS:
        return "Time"
    m = _SCATTER_RE.match(key)
    if m:
        kind = m["kind"]
        base = (
            "SSC-B"
            if kind in {"sscb", "vssc", "violetssc"}
            else "FSC"
            if kind.startswith("f")
            else "SSC"
        )
        pulse = m["pulse"] or "a"
        suffix = (
            "H"
            if pulse in {"h", "height", "peak"}
            else "W"
            if pulse in {"w", "width", "tof"}
            else "A"
        )
        return f"{base}-{suffix}"
    m = _CD_RE.match(key)
    if m:
        suffix = m["suffix"] or ""
        suffix = suffix.upper() if len(suffix) > 1 or suffix == "l" else suffix
        return f"CD{int(m['num'])}{suffix}"
    if _VIABILITY_RE.match(key):
        return "Viability"
    return None


def _lookup(key: str, panel: Panel | None) -> str | None:
    if panel is not None:
        found = panel.lookup(key)
        if found:
            return found
    found = _BUILTIN_PANEL.lookup(key)
    if found is None:
        found = _pattern_name(key)
        if found is not None:  # a pattern result may itself be an alias ("CD8a", "CD3e")
            found = _BUILTIN_PANEL.lookup(_squash(found)) or found
    if found is not None and panel is not None:  # the panel's spelling of a known marker wins
        found = panel.lookup(_squash(found)) or found
    return found


def _pulse_suffix(pair: list[str]) -> bool:
    """A CD number and a separate single letter ("CD4-A", "CD25 (M-A251)") is not "CD4a"/"CD25m"."""
    return len(pair[1]) == 1 and re.fullmatch(r"(?:h|hu)?cd\d+", pair[0]) is not None


def _recognise(text: str, panel: Panel | None) -> tuple[str | None, list[str]]:
    """Canonical name found in ``text`` (or None) and the tokens left once fluorochromes are set aside."""
    if str(text).strip().lower() in _EMPTY:
        return None, []
    tokens = _tokens(text)
    fluor = _fluor_mask(tokens)
    max_n = 6
    for i in range(len(tokens)):
        for n in range(min(max_n, len(tokens) - i), 0, -1):
            if any(fluor[i : i + n]) or (n > 1 and _pulse_suffix(tokens[i + n - 2 : i + n])):
                continue
            found = _lookup("".join(tokens[i : i + n]), panel)
            if found:
                return found, []
    for tok in (
        t for t, f in zip(tokens, fluor, strict=True) if not f
    ):  # glued: "CD25PE", "PECD25"
        for cut in range(2, len(tok) - 1):
            head, tail = tok[:cut], tok[cut:]
            for marker, dye in ((head, tail), (tail, head)):
                if dye in _FLUOR_KEYS or _FLUOR_RE.match(dye):
                    found = _lookup(marker, panel)
                    if found:
                        return found, []
    rest = [t for t, f in zip(tokens, fluor, strict=True) if not f and t not in _NEUTRAL]
    if not rest and any(t in _VIABILITY_ONLY_DYES for t in tokens):
        return _lookup("viability", panel), []
    if not rest and len(tokens) == 1 and tokens[0] in _IRIDIUM:
        return _IRIDIUM[tokens[0]], []
    return None, rest


def canonical_marker(text: str, panel: Panel | str | Path | None = None) -> str | None:
    """Canonical marker name in a stain or channel name, or None.

    Case-insensitive and token-based: fluorochrome tokens are ignored (``"Foxp3 AF647"``, ``"APCCy7 - CD4"``),
    spellings are joined (``"HLA DR"``, ``"Ki-67"``, ``"CD45 RA"``), aliases are known (``"IL7R"`` is
    CD127), and different markers are never confused (``"CD45"`` is not CD4, ``"CD33"`` is not CD3).
    Scatter and time channels give ``"FSC-A"``, ``"SSC-H"``, ``"Time"``... Blank names give None.

    >>> canonical_marker("CD127 (IL-7Ra) BV421"), canonical_marker("L/D Aqua - Viability")
    ('CD127', 'Viability')
    """
    if panel is not None:
        panel = load_panel(panel)
    return _recognise(text, panel)[0]


def _role(name: str, panel: Panel | None) -> str:
    if name in {"Time"}:
        return "time"
    if re.match(r"^(FSC|SSC|SSC-B)-[AHW]$", name):
        return "scatter"
    return (panel.role(name) if panel is not None else "") or _BUILTIN_PANEL.role(name)


def _fallback(text: str, channel: str, rest: list[str]) -> str:
    """An unrecognised stain's own words (fluorochromes removed), kept as the marker name."""
    if not rest or _squash(text) == _squash(channel) or not any(c.isalpha() for c in "".join(rest)):
        return ""
    original = _tokens(text, keep_case=True)
    kept = [o for o, t in zip(original, _tokens(text), strict=True) if t in rest]
    return " ".join(kept)


def resolve_markers(
    channels: Sequence[str], stains: Sequence[str | None], panel: Panel | str | Path | None = None
) -> tuple[list[str], list[str]]:
    """Canonical marker name ("" if unknown) and role ("" if unknown) for each parameter.

    ``$PnS`` (stain) is read first, ``$PnN`` (channel) second; with a panel, its names and aliases win
    over the built-in table and its usual channels name parameters whose stain says nothing. A stain
    that names no known marker keeps its own words (fluorochromes removed). A marker found twice is kept
    on the first parameter only (the second gets "", with a warning).
    """
    if panel is not None:
        panel = load_panel(panel)
    channels = [str(c) for c in channels]
    stains = [
        "" if s is None else str(s)
        for s in (stains if stains is not None else [""] * len(channels))
    ]
    if len(stains) != len(channels):
        raise ValueError(f"{len(channels)} channels but {len(stains)} stains")
    markers: list[str] = []
    leftovers: list[list[str]] = []
    for channel, stain in zip(channels, stains, strict=True):
        found, rest = _recognise(stain, panel)
        if found is None:
            found = _recognise(channel, panel)[0]
        markers.append(found or "")
        leftovers.append(rest)
    named = set(markers)
    fallback: set[int] = set()
    for i, (channel, stain, rest) in enumerate(zip(channels, stains, leftovers, strict=True)):
        if markers[i]:
            continue
        usual = panel.on_channel(channel) if panel is not None and not rest else None
        if usual and usual not in named:
            markers[i] = usual
            named.add(usual)
        else:
            markers[i] = _fallback(stain, channel, rest)
            fallback.add(i)
    markers = _dedupe(markers, channels)
    roles = ["" if i in fallback or not m else _role(m, panel) for i, m in enumerate(markers)]
    return markers, roles


def _dedupe(markers: list[str], channels: Sequence[str]) -> list[str]:
    seen: dict[str, str] = {}
    out = []
    for marker, channel in zip(markers, channels, strict=True):
        if marker and marker in seen:
            logger.warning(
                "marker %s found on both %s and %s; keeping the first",
                marker,
                seen[marker],
                channel,
            )
            marker = ""
        elif marker:
            seen[marker] = str(channel)
        out.append(marker)
    return out


def find_var(adata: Any, name: str, *, required: bool = True) -> str | None:
    """The var name of marker ``name`` in ``adata``, falling back to channel ($PnN) and stain names.

    The one marker lookup of cytokit (gating, readouts, figures and clustering all use it), so a
    marker found for a gate is also found for its readout. In order: the var name itself; the
    ``marker`` column against the canonical spelling of ``name``; the ``channel`` and ``stain``
    columns (exact, then case-insensitive); then any var name, stain or channel whose recognised
    marker is the same (``"CD25 PE-Cy7"`` as stain of ``"PE-Cy7-A"`` is CD25). Raises
    :class:`~cytokit.errors.MarkerError` naming the sample file when nothing matches, or returns
    None with ``required=False``.
    """
    var = adata.var
    if name in var.index:
        return str(name)
    canon = _safe_canonical(name)
    for column, wanted in ((K.MARKER, canon), (K.CHANNEL, name), (K.STAIN, name)):
        if wanted and column in var.columns:
            hits = _matches(var[column].astype(str), wanted)
            if hits:
                return hits[0]
    if canon and canon in var.index:
        return canon
    hits = _matches(_index_series(var.index), name)
    if hits:  # var name with another case
        return hits[0]
    target = canon or name
    columns = [var[c].astype(str) for c in (K.STAIN, K.CHANNEL) if c in var.columns]
    for values in (var.index.astype(str), *columns):
        for vname, value in zip(var.index, values, strict=True):
            if value and _safe_canonical(value) == target:
                return str(vname)
    if not required:
        return None
    info = adata.uns.get(K.SAMPLE_INFO, {}) if hasattr(adata, "uns") else {}
    known = ", ".join(str(v) for v in var.index)
    raise MarkerError(f"marker or channel {name!r} not found (have: {known})", info.get("file"))


def _index_series(index) -> pd.Series:
    """An index as a Series of strings keyed by itself (what :func:`_matches` takes)."""
    return pd.Series([str(v) for v in index], index=index)


@functools.lru_cache(maxsize=4096)  # pure in ``text``; every gate of every sample asks again
def _safe_canonical(text: str) -> str | None:
    """Canonical marker of ``text``; a spelling the recogniser cannot parse is no match."""
    try:
        return canonical_marker(str(text))
    except Exception:  # an odd name is simply not a marker
        return None


def _matches(values: Iterable[str], wanted: str) -> list[str]:
    pairs = list(zip(values.index, values, strict=True))  # type: ignore[attr-defined]
    exact = [str(i) for i, v in pairs if v == wanted]
    if exact:
        return exact
    low = wanted.strip().lower()
    return [str(i) for i, v in pairs if v.strip().lower() == low and low]
