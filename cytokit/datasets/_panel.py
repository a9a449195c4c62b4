"""The simulated instrument and panel: detectors, fluorochromes, spillover, channel and stain names.

One :class:`Panel` is drawn per trial (a lab designs its panel once): which fluorochrome carries each marker,
how the detectors are named, how each marker is spelled in ``$PnS``, and the instrument's spillover, derived
from a small spectral model (laser excitation x emission collected in each detector's band pass).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.special import erf

MARKERS = (
    "CD3",
    "CD4",
    "CD8",
    "CD25",
    "CD127",
    "FOXP3",
    "CD45RA",
    "Ki67",
    "HLA-DR",
    "Helios",
    "CD56",
    "Viability",
)
OPTIONAL_MARKERS = ("Helios", "CD56", "HLA-DR", "Ki67", "CD45RA", "CD127")
HELPER_MARKERS = ("CXCR5", "PD-1", "CXCR3", "CCR6", "CCR4")
#: markers of each panel kind: the Treg panel; a surface panel without FOXP3 (CD25hi CD127lo Tregs,
#: the HIPC/Lyoplate definition); the Treg panel plus the helper-subset markers of the SLE trial
PANEL_KINDS = {
    "treg": MARKERS,
    "surface": ("CD3", "CD4", "CD8", "CD25", "CD127", "CD45RA", "Viability"),
    "sle": MARKERS + HELPER_MARKERS,
}
SCATTER = ("FSC-A", "FSC-H", "SSC-A")
SCATTER_WIDE = ("FSC-A", "FSC-H", "FSC-W", "SSC-A", "SSC-H", "SSC-W")  # as BD instruments record

# detector: (laser nm, band centre nm, band width nm); BD-style names of a Symphony/Fortessa
DETECTORS = {
    "BUV395": (355, 379, 28),
    "BUV496": (355, 515, 30),
    "BUV737": (355, 735, 30),
    "BUV805": (355, 820, 60),
    "BV421": (405, 450, 50),
    "BV510": (405, 525, 50),
    "BV605": (405, 610, 20),
    "BV650": (405, 670, 30),
    "BV711": (405, 710, 50),
    "BV786": (405, 780, 60),
    "FITC": (488, 530, 30),
    "PerCP-Cy5-5": (488, 695, 40),
    "PE": (561, 586, 15),
    "PE-CF594": (561, 610, 20),
    "PE-Cy5": (561, 670, 30),
    "PE-Cy7": (561, 780, 60),
    "APC": (640, 670, 30),
    "Alexa Fluor 700": (640, 730, 45),
    "APC-Cy7": (640, 780, 60),
}
LASERS = (355, 405, 488, 561, 640)
# Attune NxT (plate cytometer) detector names of the detectors above that it has (405/488/561/637 nm);
# its files carry no $PnS, so a panel YAML maps channels to markers
ATTUNE = {
    "BV421": "VL1",
    "BV510": "VL2",
    "BV605": "VL3",
    "BV711": "VL4",
    "FITC": "BL1",
    "PerCP-Cy5-5": "BL3",
    "PE": "YL1",
    "PE-CF594": "YL2",
    "PE-Cy5": "YL3",
    "PE-Cy7": "YL4",
    "APC": "RL1",
    "Alexa Fluor 700": "RL2",
    "APC-Cy7": "RL3",
}


class Fluor(NamedTuple):
    """A fluorochrome: its detector, relative brightness, emission, excitation and stain spellings."""

    detector: str
    brightness: float
    peak: float  # emission peak (nm)
    sd: float  # emission sd (nm) on the blue side; the red tail is longer
    excitation: dict[int, float]  # relative excitation by laser (nm)
    donor: str | None  # tandem dyes: the donor whose own emission leaks
    names: tuple[str, ...]  # spellings used in stain names


_F = {
    "BUV395": Fluor("BUV395", 0.35, 395, 12, {355: 1.0, 405: 0.04}, None, ("BUV395",)),
    "BUV496": Fluor("BUV496", 0.45, 500, 16, {355: 1.0, 405: 0.05}, None, ("BUV496",)),
    "BUV737": Fluor(
        "BUV737", 0.5, 737, 18, {355: 1.0, 405: 0.03, 640: 0.03}, "BUV395", ("BUV737",)
    ),
    "BUV805": Fluor("BUV805", 0.3, 805, 20, {355: 1.0, 405: 0.03}, "BUV395", ("BUV805",)),
    "BV421": Fluor("BV421", 0.9, 421, 12, {405: 1.0, 355: 0.3}, None, ("BV421", "BV 421")),
    "eF450": Fluor(
        "BV421", 0.45, 450, 14, {405: 1.0, 355: 0.2}, None, ("eF450", "eFluor 450", "e450")
    ),
    "V450": Fluor("BV421", 0.35, 448, 14, {405: 1.0, 355: 0.2}, None, ("V450",)),
    "BV510": Fluor("BV510", 0.45, 510, 16, {405: 1.0, 355: 0.15}, None, ("BV510", "V500")),
    "BV605": Fluor("BV605", 0.65, 603, 12, {405: 1.0, 355: 0.25, 488: 0.05}, "BV421", ("BV605",)),
    "BV650": Fluor("BV650", 0.55, 645, 13, {405: 1.0, 355: 0.25, 640: 0.06}, "BV421", ("BV650",)),
    "BV711": Fluor("BV711", 0.55, 711, 14, {405: 1.0, 355: 0.25, 640: 0.04}, "BV421", ("BV711",)),
    "BV786": Fluor("BV786", 0.4, 786, 18, {405: 1.0, 355: 0.25, 640: 0.02}, "BV421", ("BV786",)),
    "FITC": Fluor("FITC", 0.3, 520, 14, {488: 1.0, 405: 0.03}, None, ("FITC",)),
    "AF488": Fluor(
        "FITC",
        0.38,
        519,
        14,
        {488: 1.0, 405: 0.02},
        None,
        ("AF488", "Alexa Fluor 488", "A488"),
    ),
    "BB515": Fluor("FITC", 0.7, 515, 14, {488: 1.0, 405: 0.03}, None, ("BB515",)),
    "PerCP-Cy5.5": Fluor(
        "PerCP-Cy5-5",
        0.3,
        695,
        16,
        {488: 1.0, 561: 0.15, 405: 0.08},
        None,
        ("PerCP-Cy5.5", "PerCP-Cy5-5", "PerCPCy55", "PerCP Cy5.5"),
    ),
    "PE": Fluor("PE", 1.0, 578, 10, {561: 1.0, 488: 0.1}, None, ("PE",)),
    "PE-CF594": Fluor(
        "PE-CF594",
        0.7,
        612,
        12,
        {561: 1.0, 488: 0.05},
        "PE",
        ("PE-CF594", "PE-Dazzle594"),
    ),
    "PE-Cy5": Fluor(
        "PE-Cy5", 0.8, 667, 12, {561: 1.0, 640: 0.35, 488: 0.05}, "PE", ("PE-Cy5", "PECy5")
    ),
    "PE-Cy7": Fluor(
        "PE-Cy7", 0.6, 780, 18, {561: 1.0, 640: 0.03, 488: 0.05}, "PE", ("PE-Cy7", "PECy7")
    ),
    "APC": Fluor("APC", 0.8, 660, 12, {640: 1.0, 561: 0.08}, None, ("APC",)),
    "AF647": Fluor(
        "APC",
        0.8,
        668,
        12,
        {640: 1.0, 561: 0.06},
        None,
        ("AF647", "Alexa Fluor 647", "A647"),
    ),
    "AF700": Fluor("Alexa Fluor 700", 0.2, 719, 12, {640: 1.0, 561: 0.02}, None, ("AF700", "A700")),
    "APC-H7": Fluor(
        "APC-Cy7",
        0.3,
        785,
        18,
        {640: 1.0, 561: 0.04},
        "APC",
        ("APC-H7", "APCH7", "APC-Cy7"),
    ),
    "APC-Cy7": Fluor("APC-Cy7", 0.3, 785, 18, {640: 1.0, 561: 0.05}, "APC", ("APC-Cy7", "APCCy7")),
}

# realistic reagent choices per marker (what vendors sell and panels use)
CANDIDATES = {
    "CD3": ("BUV395", "BV786", "AF700", "PerCP-Cy5.5", "BUV496", "APC-H7", "BV510"),
    "CD4": ("APC-H7", "BUV737", "BV605", "PerCP-Cy5.5", "BUV496", "AF700", "BV510"),
    "CD8": ("BV650", "BUV805", "PerCP-Cy5.5", "BV510", "AF700", "APC-H7", "BV786"),
    "CD25": ("PE", "BV421", "PE-Cy7", "APC", "BB515", "PE-Cy5"),
    "CD127": ("BV421", "PE-Cy7", "BV786", "FITC", "PE-CF594", "BV711", "AF647"),
    "FOXP3": ("AF647", "PE", "eF450", "AF488", "PE-CF594", "PE-Cy7", "BV421"),
    "CD45RA": ("BV605", "BV711", "FITC", "PE-CF594", "BUV737", "APC-H7", "PerCP-Cy5.5", "BV650"),
    "Ki67": ("AF488", "BV711", "PE-Cy7", "PE", "BV786", "AF700", "PerCP-Cy5.5", "FITC"),
    "HLA-DR": ("BV650", "PerCP-Cy5.5", "BV786", "BUV805", "BV605", "APC-H7", "PE-Cy5"),
    "Helios": ("FITC", "PE", "eF450", "AF647", "PE-Cy7", "AF488"),
    "CD56": ("BV711", "PE-CF594", "BUV737", "PE-Cy5", "BV605", "AF700", "BUV395"),
    "Viability": ("BV510", "APC-Cy7", "PerCP-Cy5.5", "BV605", "BUV395", "BUV496"),
    "CXCR5": ("BV421", "PE", "AF488", "BB515", "PE-CF594", "APC"),
    "PD-1": ("BV605", "PE-Cy7", "BV711", "APC", "PE", "BV786", "BUV737"),
    "CXCR3": ("BV711", "PE-Cy5", "APC", "AF488", "BUV395", "PE-CF594", "BV650"),
    "CCR6": ("BV605", "PE", "BV786", "BV421", "BUV737", "BV650", "PE-Cy7"),
    "CCR4": ("PE-Cy7", "BV421", "APC", "PE-Cy5", "BUV805", "BV510", "AF647"),
}
# the dye a viability stain is named after, by the detector it lands in
_VIABILITY_DYES = {
    "BV510": ("Aqua", "Zombie Aqua", "FVS510"),
    "APC-Cy7": ("FVS780", "Zombie NIR", "eF780"),
    "PerCP-Cy5-5": ("7-AAD", "7AAD"),
    "BV605": ("FVS575V",),
    "BUV395": ("FVS440UV",),
    "BUV496": ("Zombie UV", "LIVE/DEAD Blue"),
}
SPELLINGS = {
    "CD3": ("CD3", "CD3", "cd3", "CD3e", "hCD3"),
    "CD4": ("CD4", "CD4", "cd4", "hCD4"),
    "CD8": ("CD8", "CD8", "CD8a", "cd8"),
    "CD25": ("CD25", "CD25", "CD25 (IL-2Ra)", "IL2RA", "cd25"),
    "CD127": ("CD127", "CD127", "CD127 (IL-7Ra)", "IL7RA", "cd127"),
    "FOXP3": ("FoxP3", "FOXP3", "Foxp3", "FOXP-3"),
    "CD45RA": ("CD45RA", "CD45RA", "CD45 RA", "CD45Ra", "cd45ra"),
    "Ki67": ("Ki67", "Ki-67", "KI67", "ki67", "Ki 67"),
    "HLA-DR": ("HLA-DR", "HLA-DR", "HLADR", "HLA DR"),
    "Helios": ("Helios", "HELIOS", "Helios (IKZF2)", "IKZF2"),
    "CD56": ("CD56", "CD56", "CD56 (NCAM)", "NCAM1", "cd56"),
    "CXCR5": ("CXCR5", "CXCR5", "CD185", "CXCR5 (CD185)", "cxcr5"),
    "PD-1": ("PD-1", "PD1", "CD279", "PD-1 (CD279)"),
    "CXCR3": ("CXCR3", "CXCR3", "CD183", "CXCR3 (CD183)"),
    "CCR6": ("CCR6", "CCR6", "CD196", "CCR6 (CD196)"),
    "CCR4": ("CCR4", "CCR4", "CD194", "CCR4 (CD194)"),
}
_VIABILITY_TEMPLATES = (
    "L/D {d} - Viability",
    "Live Dead",
    "LIVE/DEAD {d}",
    "Viability",
    "{d}",
    "Live/Dead {d}",
    "Viability Dye {d}",
)
_TEMPLATES = (
    "{m} {f}",
    "{f} - {m}",
    "{m}",
    "{m}-{f}",
    "{m} ({f})",
    "{f} {m}",
    "{m}_{f}",
    "{m} {f} {c}",  # with the antibody clone, as vendors' panel sheets write them
    "{m} ({c}) {f}",
)
# antibody clones sold for each marker (appear in stains next to the marker)
CLONES = {
    "CD3": ("UCHT1", "SK7", "OKT3", "HIT3a"),
    "CD4": ("SK3", "RPA-T4", "OKT4"),
    "CD8": ("SK1", "RPA-T8"),
    "CD25": ("M-A251", "2A3", "BC96"),
    "CD127": ("A019D5", "HIL-7R-M21"),
    "FOXP3": ("259D/C7", "PCH101", "236A/E7"),
    "CD45RA": ("HI100",),
    "Ki67": ("B56", "SolA15"),
    "HLA-DR": ("L243", "G46-6"),
    "Helios": ("22F6",),
    "CD56": ("NCAM16.2", "B159", "HCD56"),
    "CXCR5": ("J252D4", "RF8B2"),
    "PD-1": ("EH12.2H7", "MIH4"),
    "CXCR3": ("G025H7", "1C6"),
    "CCR6": ("G034E3", "11A9"),
    "CCR4": ("L291H4", "1G1"),
}
_PLAIN = {"Viability": ("Viability", "LiveDead", "Live_Dead", "LD")}
NAMING_STYLES = ("bd", "beckman", "plain")  # styles whose files name their markers ($PnS or $PnN)
# plate cytometers whose files name no marker: a panel YAML maps the channels (written with the trial)
UNNAMED_STYLES = ("attune",)
CYTOMETERS = {
    "bd": ("LSRFortessa", "FACSymphony A5", "LSR II", "FACSymphony A3"),
    "beckman": ("CytoFLEX LX", "CytoFLEX S"),
    "plain": ("Exported", "FlowJo export"),
    "attune": ("Attune NxT", "Attune NxT Flow Cytometer"),
}


@dataclass
class Panel:
    """A trial's panel on its instrument (drawn once per trial by :func:`draw_panel`)."""

    markers: list[str]  # fluorescence markers in channel order
    fluors: list[str]
    detectors: list[str]  # BD detector of each marker (for the spectral model)
    channels: list[str]  # $PnN of each fluorescence marker
    stains: list[str]  # $PnS of each fluorescence marker ("" for none)
    brightness: np.ndarray  # per marker, signal per unit antigen
    spill: np.ndarray  # true spillover (rows source fluor, columns detector), diagonal 1
    naming: str
    cytometer: str
    time_name: str


def _assign_fluors(
    rng: np.random.Generator, markers: list[str], allowed: set[str] | None = None
) -> dict[str, str]:
    """Give every marker a fluorochrome from its candidates, one fluorochrome per detector."""
    for _ in range(200):
        used: set[str] = set()
        out: dict[str, str] = {}
        for m in rng.permutation(markers):
            options = [
                f
                for f in CANDIDATES[m]
                if _F[f].detector not in used and (allowed is None or _F[f].detector in allowed)
            ]
            if not options:
                break
            out[str(m)] = options[rng.integers(len(options))]
            used.add(_F[out[str(m)]].detector)
        else:
            return out
    raise RuntimeError("could not assign fluorochromes to the panel")  # pragma: no cover


def _emission(f: str, centre: float, width: float, peak_shift: float) -> float:
    """Fraction of a skewed-Gaussian emission (long red tail) collected in a band pass."""
    peak, sd = _F[f].peak + peak_shift, _F[f].sd
    lo, hi = centre - width / 2, centre + width / 2

    def cdf(x: float, s: float) -> float:
        return 0.5 * (1 + erf((x - peak) / (s * np.sqrt(2))))

    left, right = sd, sd * 2.2  # red tail
    wl, wr = left / (left + right), right / (left + right)
    part = 0.0
    if lo < peak:
        part += wl * 2 * (cdf(min(hi, peak), left) - cdf(lo, left))
    if hi > peak:
        part += wr * 2 * (cdf(hi, right) - cdf(max(lo, peak), right))
    # broad shoulder: real emission spectra reach far into neighbouring bands
    broad = 0.5 * (
        erf((hi - peak - 25) / (55 * np.sqrt(2))) - erf((lo - peak - 25) / (55 * np.sqrt(2)))
    )
    return max(0.88 * part + 0.12 * broad, 0.0)


def _spillover(rng: np.random.Generator, fluors: list[str], detectors: list[str]) -> np.ndarray:
    """Spillover of each fluorochrome into each used detector, relative to its own detector."""
    n = len(fluors)
    raw = np.zeros((n, n))
    for i, f in enumerate(fluors):
        shift = rng.normal(0, 3)  # lot-to-lot and filter differences
        donor = _F[f].donor
        leak = rng.uniform(0.02, 0.08) if donor else 0.0
        excitation = {las: e * np.exp(rng.normal(0, 0.3)) for las, e in _F[f].excitation.items()}
        for j, d in enumerate(detectors):
            laser, centre, width = DETECTORS[d]
            exc = excitation.get(laser, 0.0)
            em = _emission(f, centre, width, shift)
            if donor:  # a tandem leaks some of its donor's own emission
                em = (1 - leak) * em + leak * _emission(donor, centre, width, 0.0)
            raw[i, j] = exc * em
    spill = raw / np.diag(raw)[:, None]
    spill = np.where(spill < 0.002, 0.0, np.minimum(spill, rng.uniform(0.22, 0.3)))
    np.fill_diagonal(spill, 1.0)
    return spill


def _stain(rng: np.random.Generator, marker: str, fluor: str, detector: str, template: str) -> str:
    fl = _F[fluor].names[rng.integers(len(_F[fluor].names))]
    if marker == "Viability":
        dyes = _VIABILITY_DYES[detector]
        dye = dyes[rng.integers(len(dyes))]
        return _VIABILITY_TEMPLATES[rng.integers(len(_VIABILITY_TEMPLATES))].format(d=dye)
    spellings, clones = SPELLINGS[marker], CLONES[marker]
    m, c = spellings[rng.integers(len(spellings))], clones[rng.integers(len(clones))]
    return template.format(m=m, f=fl, c=c)


def stain_names(rng: np.random.Generator, panel: Panel, *, p_change: float) -> list[str]:
    """The panel's stains, with each one re-spelled with probability ``p_change`` (another operator)."""
    out = list(panel.stains)
    if panel.naming in ("plain", "attune"):
        return out
    for i, m in enumerate(panel.markers):
        if rng.random() < p_change:
            template = _TEMPLATES[rng.integers(len(_TEMPLATES))]
            out[i] = _stain(rng, m, panel.fluors[i], panel.detectors[i], template)
    return out


def _plain_name(rng: np.random.Generator, marker: str) -> str:
    options = _PLAIN.get(marker) or tuple(
        s for s in SPELLINGS[marker] if " " not in s and "(" not in s
    )
    return options[rng.integers(len(options))]


def draw_panel(
    rng: np.random.Generator,
    *,
    naming: str = "bd",
    missing: tuple[str, ...] = (),
    kind: str = "treg",
) -> Panel:
    """Draw a trial's panel: fluorochromes, detector names, stain spellings and spillover.

    ``kind`` picks the markers (:data:`PANEL_KINDS`); ``naming="attune"`` names channels as an Attune NxT
    plate cytometer does (``BL1-H``, ``VL1-H``...) and writes no stain names ($PnS).
    """
    if naming not in NAMING_STYLES + UNNAMED_STYLES:
        raise ValueError(f"naming must be one of {NAMING_STYLES + UNNAMED_STYLES}, got {naming!r}")
    if kind not in PANEL_KINDS:
        raise ValueError(f"panel must be one of {tuple(PANEL_KINDS)}, got {kind!r}")
    optional = OPTIONAL_MARKERS if kind == "treg" else (*OPTIONAL_MARKERS, "FOXP3", *HELPER_MARKERS)
    bad = [m for m in missing if m not in optional]
    if bad:
        raise ValueError(f"only optional markers {optional} can be missing, got {bad}")
    markers = [m for m in PANEL_KINDS[kind] if m not in missing]
    if naming == "attune" and len(markers) > len(ATTUNE):
        raise ValueError(f"an Attune NxT has {len(ATTUNE)} detectors, the panel {len(markers)}")
    assign = _assign_fluors(rng, markers, set(ATTUNE) if naming == "attune" else None)
    # channel order: by laser, then wavelength, as instruments list their detectors
    order = sorted(markers, key=lambda m: DETECTORS[_F[assign[m]].detector][:2])
    fluors = [assign[m] for m in order]
    detectors = [_F[f].detector for f in fluors]
    brightness = np.array([_F[f].brightness for f in fluors]) * np.exp(
        rng.normal(0, 0.15, len(fluors))
    )
    template = _TEMPLATES[rng.integers(len(_TEMPLATES))]
    if naming == "bd":
        channels = [f"{d}-A" for d in detectors]
        stains = [
            _stain(rng, m, f, d, template) for m, f, d in zip(order, fluors, detectors, strict=True)
        ]
    elif naming == "beckman":
        channels = [f"FL{i}-A" for i in range(1, len(order) + 1)]
        stains = [
            _stain(rng, m, f, d, template) for m, f, d in zip(order, fluors, detectors, strict=True)
        ]
    elif naming == "attune":
        channels = [f"{ATTUNE[d]}-H" for d in detectors]
        stains = [""] * len(order)
    else:
        channels = [_plain_name(rng, m) for m in order]
        stains = [""] * len(order)
    cytometers = CYTOMETERS[naming]
    return Panel(
        markers=order,
        fluors=fluors,
        detectors=detectors,
        channels=channels,
        stains=stains,
        brightness=brightness,
        spill=_spillover(rng, fluors, detectors),
        naming=naming,
        cytometer=cytometers[rng.integers(len(cytometers))],
        time_name="Time" if naming != "beckman" or rng.random() < 0.5 else "TIME",
    )


def spillover_frame(spill: np.ndarray, channels: list[str]) -> pd.DataFrame:
    """Spillover as the DataFrame ``write_fcs`` takes (index = sources, columns = detectors)."""
    return pd.DataFrame(spill, index=list(channels), columns=list(channels))
