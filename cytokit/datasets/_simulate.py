"""Simulated samples and trials: cells from :mod:`._biology`, acquired by :mod:`._instrument`, on a
panel from :mod:`._panel`; per-event truth labels and the readouts computed from them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cytokit.datasets import _biology as bio
from cytokit.datasets import _instrument as ins
from cytokit.datasets._cells import LIVE_CELLS, draw_cells
from cytokit.datasets._panel import (
    HELPER_MARKERS,
    SCATTER,
    SCATTER_WIDE,
    Panel,
    draw_panel,
    spillover_frame,
    stain_names,
)
from cytokit.datasets._structure import Structure, draw_structure
from cytokit.io._write import write_fcs

logger = logging.getLogger("cytokit")


@dataclass
class SimulatedSample:
    """One simulated FCS file in memory, with its truth.

    ``events`` are float32 as the instrument records them (uncompensated unless ``compensated``);
    ``labels`` index ``label_names`` per event; ``states`` hold per-event latent marker states
    (``Ki67``, ``HLA-DR``, ``Helios``, ``CD45RA``) and ``anomaly`` (event acquired in a clog/burst).
    """

    events: np.ndarray
    channels: list[str]
    stains: list[str]
    spillover: pd.DataFrame | None
    labels: np.ndarray
    label_names: tuple[str, ...]
    states: dict[str, np.ndarray]
    truth: dict[str, float]
    keywords: dict[str, str] = field(default_factory=dict)
    markers: dict[str, str] = field(default_factory=dict)  # channel -> canonical marker
    ranges: list[float] | None = None  # $PnR per channel (default: 18-bit flow ranges)

    def write(self, path: str | Path, *, datatype: str = "F", byteorder: str = "<") -> Path:
        """Write the sample as an FCS 3.1 file.

        Integer data (``datatype="I"``) are scaled to 16 bits (negatives clip to 0, as on older
        instruments); the time channel keeps its ticks, coarsened (and ``$TIMESTEP`` with it) to fit.
        """
        events, keywords = self.events, dict(self.keywords)
        top = float(events[:, -1].max(initial=0)) + 1  # a long run's time ticks may pass 262144
        ranges = [262144] * (len(self.channels) - 1) + [
            max(262144, 2 ** int(np.ceil(np.log2(top))))
        ]
        if self.ranges is not None:  # a mass cytometer's counts: $PnR near the largest count
            ranges = list(self.ranges)
        if datatype == "I":
            events = np.clip(events * (65536 / 262144), 0, 65535)
            time = self.events[:, -1].astype(float)
            coarse = max(1.0, float(np.ceil(time.max(initial=0) / 65535)))
            events[:, -1] = np.floor(time / coarse)
            if "$TIMESTEP" in keywords:
                keywords["$TIMESTEP"] = repr(float(keywords["$TIMESTEP"]) * coarse)
            ranges = [65536] * len(self.channels)
        return write_fcs(
            path,
            events,
            self.channels,
            self.stains,
            keywords=keywords,
            spillover=self.spillover,
            datatype=datatype,
            byteorder=byteorder,
            ranges=ranges,
        )


#: truth.csv columns named as the readouts of ``summary.csv`` (cytokit.readouts.READOUTS)
TRUTH_READOUTS = (
    "cd4_count",
    "treg_count",
    "teff_count",
    "treg_pct_cd4",
    "teff_pct_cd4",
    "treg_teff_ratio",
    "treg_cd127lo_pct_cd4",
    "treg_ki67_pct",
    "teff_ki67_pct",
    "treg_hladr_pct",
    "teff_hladr_pct",
    "treg_cd45raneg_pct",
    "treg_helios_pct",
    "nk_cd56bright_pct_nk",
)


def control_marker(control: str | None) -> str | None:
    """The marker a control well leaves unstained (``"isotype:CD25"`` -> ``"CD25"``), or None."""
    if not control:
        return None
    kind, _, marker = str(control).partition(":")
    if kind.lower() not in CONTROL_KINDS or not marker:
        raise ValueError(f"control must be one of {CONTROL_KINDS} ':' a marker, got {control!r}")
    return marker


CONTROL_KINDS = ("isotype", "unstained", "fmo")
# markers without which the Treg population cannot be found (a control of one has no Tregs)
_TREG_DEFINING = ("CD25", "FOXP3")


#: truth.csv columns of the helper-subset readouts (SLE design; the contract's summary.csv names;
#: memory = CD4 CD45RA- not Treg). ``th1_17_pct_mem`` and ``memory_count`` are extra truth columns.
HELPER_TRUTH_READOUTS = (
    "tfh_pct_cd4",
    "tfh_pd1hi_pct_tfh",
    "th1_pct_mem",
    "th2_pct_mem",
    "th17_pct_mem",
    "th17_treg_ratio",
)


def truth_readouts(
    labels: np.ndarray, states: dict[str, np.ndarray], control: str | None = None
) -> dict[str, float]:
    """Readouts from per-event truth with the contract's definitions (CD4, Treg, Teff; 0-100 %).

    Every readout key that ``summary.csv`` also has carries exactly the name of
    :data:`cytokit.readouts.READOUTS` (listed in :data:`TRUTH_READOUTS`), so truth and results join on
    column names: ``treg_pct_cd4``, ``teff_pct_cd4``, ``treg_teff_ratio``, ``treg_cd127lo_pct_cd4``
    (CD25hi CD127lo surface Tregs: Tregs not in a CD127hi component), ``treg_ki67_pct``,
    ``teff_ki67_pct``, ``treg_hladr_pct``, ``teff_hladr_pct``, ``treg_helios_pct``,
    ``treg_cd45raneg_pct`` (Tregs outside the CD45RA+ component) and ``nk_cd56bright_pct_nk``.
    Activation readouts are the latent positive states of the events (never a gate), and a readout
    whose marker is not on the panel is absent. Extra keys (not readouts): ``n_events``,
    ``live_singlet_count``, ``cd8_count``, ``nk_count``, ``teff_helios_pct``, ``teff_cd45raneg_pct``,
    ``anomaly_events``.
    """
    names = np.asarray(bio.LABELS)
    lab = names[labels]
    cd4 = np.isin(lab, bio.CD4_LABELS)
    treg = np.isin(lab, bio.TREG_LABELS)
    if (
        control_marker(control) in _TREG_DEFINING
    ):  # a CD25 (or FOXP3) control well: no Tregs to find
        treg = np.zeros_like(treg)
    teff = cd4 & ~treg
    nk = np.isin(lab, bio.NK_LABELS)

    def pct(mask: np.ndarray, of: np.ndarray) -> float:
        return float(100.0 * mask[of].mean()) if of.any() else float("nan")

    out = {
        "n_events": int(labels.size),
        "live_singlet_count": int(np.isin(lab, LIVE_CELLS).sum()),
        "cd4_count": int(cd4.sum()),
        "treg_count": int(treg.sum()),
        "teff_count": int(teff.sum()),
        "treg_pct_cd4": pct(treg, cd4),
        "teff_pct_cd4": pct(teff, cd4),
        "treg_teff_ratio": float(treg.sum() / teff.sum()) if teff.any() else float("nan"),
        "cd8_count": int((lab == "CD8_T").sum()),
        "nk_count": int(nk.sum()),
        "nk_cd56bright_pct_nk": pct(lab == "NK_CD56bright", nk),
    }
    surface = treg & ~states.get("CD127hi", np.zeros(labels.size, bool))
    out["treg_cd127lo_pct_cd4"] = pct(surface, cd4)
    for state, key in (("Ki67", "ki67"), ("HLA-DR", "hladr"), ("Helios", "helios")):
        if state in states:
            out[f"treg_{key}_pct"] = pct(states[state], treg)
            out[f"teff_{key}_pct"] = pct(states[state], teff)
    if "CD45RA" in states:  # CD45RA- (memory/activated) = not in the CD45RA+ component
        out["treg_cd45raneg_pct"] = pct(~states["CD45RA"], treg)
        out["teff_cd45raneg_pct"] = pct(~states["CD45RA"], teff)
    if "Tfh" in states:  # helper subsets (SLE design); memory = CD4 CD45RA- not Treg
        memory = teff & ~states["CD45RA"] if "CD45RA" in states else teff
        out["memory_count"] = int(memory.sum())
        out["tfh_pct_cd4"] = pct(states["Tfh"] & memory, cd4)
        out["tfh_pd1hi_pct_tfh"] = pct(states["Tfh_PD1hi"] & memory, states["Tfh"] & memory)
        out["th1_pct_mem"] = pct(states["Th1"], memory)
        out["th2_pct_mem"] = pct(states["Th2"], memory)
        out["th17_pct_mem"] = pct(states["Th17"], memory)
        out["th1_17_pct_mem"] = pct(states["Th1_17"], memory)
        th17 = int((states["Th17"] & memory).sum())
        out["th17_treg_ratio"] = float(th17 / treg.sum()) if treg.any() else float("nan")
    out["anomaly_events"] = int(states["anomaly"].sum()) if "anomaly" in states else 0
    return out


def stream(
    seed: int, purpose: int, patient: int = 0, day: float | None = None
) -> np.random.Generator:
    """The random stream of one purpose (0 trial, 1 patient, 2 sample, 3 event count, 4 metadata).

    Streams are keyed by (seed, purpose, patient, day) so a file does not depend on which other files
    are made; days are keyed in tenths, negative days (screening visits) included.
    """
    key = [int(seed) & 0xFFFFFFFF, purpose, int(patient)]
    if day is not None:
        key.append(round(float(day) * 10) & 0xFFFFFFFF)
    return np.random.default_rng(key)


@dataclass
class Trial:
    """What stays fixed across a trial's files: panel, instrument and the options of the run."""

    seed: int
    panel: Panel
    instrument: ins.Instrument
    drift: str = "mild"
    compensated: bool = False
    respell: float = 0.1
    extra_scatter: bool = False
    structure: Structure | None = None  # None: the classic fixed population structure
    exported_from: str | None = None


DESIGNS = ("transreg", "sle")


def draw_trial(
    seed: int = 0,
    *,
    naming: str = "bd",
    missing: tuple[str, ...] = (),
    drift: str = "mild",
    compensated: bool = False,
    respell: float = 0.1,
    extra_scatter: bool = False,
    realism: str = "classic",
    panel: str = "treg",
    exported_from: str | None = None,
    design: str = "transreg",
) -> Trial:
    """Draw a trial's panel, instrument and (unless ``realism="classic"``) population structure.

    Same seed, same trial. The structure is drawn from its own stream, so the panel and instrument of a
    seed are the same whatever the realism.
    """
    if drift not in ins.DRIFTS:
        raise ValueError(f"drift must be one of {ins.DRIFTS}, got {drift!r}")
    if design not in DESIGNS:
        raise ValueError(f"design must be one of {DESIGNS}, got {design!r}")
    if exported_from not in (None, "CD4"):
        raise ValueError(f"exported_from must be None or 'CD4', got {exported_from!r}")
    rng = stream(seed, 0)
    kind = "sle" if design == "sle" and panel == "treg" else panel
    drawn = draw_panel(rng, naming=naming, missing=tuple(missing), kind=kind)
    inst = ins.draw_instrument(rng, drawn)
    if compensated and naming != "plain" and rng.random() < 0.5:  # FlowJo-style compensated export
        drawn.channels = [f"Comp-{c}" for c in drawn.channels]
    helpers = any(m in drawn.markers for m in HELPER_MARKERS)
    if helpers and realism == "classic":
        realism = "drawn"  # the classic structure has no helper subsets
    structure = draw_structure(stream(seed, 5), realism, helpers=helpers, schedule=design)
    if structure is not None:  # panel design puts graded antigens on bright reagents (Mahnke &
        # Roederer, Clin Lab Med 2007): no functional or helper marker on a dim fluorochrome
        graded = np.isin(drawn.markers, ("Ki67", "HLA-DR", "Helios", *HELPER_MARKERS))
        drawn.brightness = np.where(graded, np.maximum(drawn.brightness, 0.5), drawn.brightness)
    return Trial(
        int(seed),
        drawn,
        inst,
        drift,
        compensated,
        respell,
        extra_scatter,
        structure,
        exported_from,
    )


def _scatter(
    rng: np.random.Generator, trial: Trial, cells: dict, intensity: np.ndarray
) -> np.ndarray:
    """Scatter parameters: areas, heights (doublets: not doubled) and, optionally, widths (A/H)."""
    inst, sc, n = trial.instrument, cells["scatter"], len(cells["scatter"])
    ratio = inst.height_ratio * np.exp(rng.normal(0, 0.03, (n, 2)))
    height = np.where(np.isnan(cells["height"]), sc, cells["height"]) * ratio
    wobble = {"none": 0.0, "mild": 0.04, "strong": 0.12}[trial.drift]
    fg, sg = (
        inst.fsc_gain * np.exp(rng.normal(0, wobble)),
        inst.ssc_gain * np.exp(rng.normal(0, wobble)),
    )
    cols = np.column_stack([sc[:, 0], height[:, 0], sc[:, 1], height[:, 1]]) * intensity[:, None]
    area_h = ins.scatter(rng, cols, np.array([fg, fg, sg, sg]))
    if not trial.extra_scatter:
        return area_h[:, [0, 1, 2]]
    width = 65536 * 0.85 * area_h[:, [0, 2]] / np.maximum(area_h[:, [1, 3]], 1.0)
    width = np.clip(width * np.exp(rng.normal(0, 0.02, width.shape)), 0, ins.TOP)
    return np.column_stack(
        [area_h[:, 0], area_h[:, 1], width[:, 0], area_h[:, 2], area_h[:, 3], width[:, 1]]
    )


def _acquire(
    rng: np.random.Generator, trial: Trial, cells: dict
) -> tuple[np.ndarray, pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Cells -> recorded events (float32), the file's spillover, the anomaly mask, the detector gains
    and each event's expected stain signal (antigen x brightness x gain, no noise: what a mass
    cytometer counts ions of)."""
    panel, inst = trial.panel, trial.instrument
    n, m = cells["antigen"].shape
    time, anomaly = ins.acquisition_times(
        rng, n, inst
    )  # before gains: truth must not depend on drift
    gains, offsets, slope = ins.draw_gains(rng, m, trial.drift)
    span = max(float(time[-1] - time[0]), 1e-9) if n else 1.0
    intensity = np.ones(n)
    if anomaly.any():  # the core stream wobbles: intensities shift during a clog or burst
        intensity[anomaly] = (
            rng.uniform(0.6, 0.85) if rng.random() < 0.7 else rng.uniform(1.15, 1.3)
        )
    trend = (1 + slope * ((time - time[0]) / span - 0.5)) * intensity if n else intensity
    # staining varies from tube to tube (titre, incubation); intranuclear stains most
    intra = np.isin(panel.markers, bio.INTRACELLULAR)
    staining = np.exp(rng.normal(0, np.where(intra, 0.12, 0.06)))
    stained = cells["antigen"] * (panel.brightness * staining)
    fl = ins.detect(
        rng,
        stained,
        cells["af"],
        inst,
        panel.spill,
        gains,
        offsets,
        trend,
    )
    scat = _scatter(rng, trial, cells, intensity)
    # the spillover measured that day: true spectra seen through that day's gains, estimated with error
    eff = panel.spill * gains[None, :] / gains[:, None]
    est = eff * np.where(np.eye(m, dtype=bool), 1.0, np.exp(rng.normal(0, 0.03, (m, m))))
    if trial.compensated:
        fl = fl @ np.linalg.inv(est)
    events = np.column_stack([scat, fl, time]).astype(np.float32)
    return events, est, anomaly, gains, stained * gains[None, :] * trend[:, None]


def _keywords(
    rng: np.random.Generator,
    trial: Trial,
    sample: str,
    day: float,
    n: int,
    gains: np.ndarray,
    *,
    first: int = 4,
    enrolled: int = 0,
) -> dict[str, str]:
    """Instrument and acquisition keywords of one file ($CYT, $DATE, $TIMESTEP, $PnV, ...)."""
    start = pd.Timestamp("2024-01-08") + pd.Timedelta(days=enrolled + int(day))
    hour, minute = int(rng.integers(8, 17)), int(rng.integers(0, 60))
    minutes = max(1, int(n / trial.instrument.rate / 60) + 1)
    kw = {
        "$CYT": trial.panel.cytometer,
        "$DATE": start.strftime("%d-%b-%Y").upper(),
        "$BTIM": f"{hour:02d}:{minute:02d}:{int(rng.integers(0, 60)):02d}",
        "$ETIM": f"{hour + (minute + minutes) // 60:02d}:{(minute + minutes) % 60:02d}:{int(rng.integers(0, 60)):02d}",
        "$FIL": f"{sample}.fcs",
        "$SRC": sample,
        "$TIMESTEP": repr(trial.instrument.timestep),
        "TUBE NAME": rng.choice(["Treg panel", "Tube_001", "TREG", "Specimen_001"]),
        "EXPERIMENT NAME": f"LDIL2-{trial.seed:03d}",
        "$OP": rng.choice(["Operator 1", "AB", "core facility"]),
    }
    offset = first  # fluorescence parameters follow the scatter ones
    base = np.round(rng.uniform(420, 680, len(gains)) * gains ** (1 / 7))
    for j, v in enumerate(base):
        kw[f"$P{offset + j}V"] = str(int(v))
    return kw


def simulate_from(
    trial: Trial,
    patient: bio.Patient,
    *,
    day: float,
    n_events: int,
    sample: str,
    rng: np.random.Generator,
    control: str | None = None,
    platform: str = "flow",
) -> SimulatedSample:
    """One file of ``patient`` at ``day`` on ``trial``'s instrument (the building block of a trial).

    ``control`` makes it a control well of that blood: ``"isotype:CD25"`` (CD25 antibody replaced by an
    isotype: unspecific binding only), ``"unstained:CD25"`` or ``"FMO:Ki67"`` (no antibody for that
    marker: autofluorescence and spillover only). Its truth says the marker-positive population is
    absent (states False; for CD25 or FOXP3, no Tregs).
    """
    if platform not in ("flow", "mass"):
        raise ValueError(f"platform must be 'flow' or 'mass', got {platform!r}")
    marker = control_marker(control)
    if marker is not None and marker not in trial.panel.markers:
        raise ValueError(f"control {control!r}: {marker} is not on the panel {trial.panel.markers}")
    structure = trial.structure
    state = bio.sample_state(patient, day, rng, structure)
    cells = draw_cells(
        rng, trial.panel, patient, state, int(n_events), structure, trial.exported_from
    )
    if marker is not None:
        _unstain(rng, trial.panel, cells, control, marker)
    events, spill, anomaly, gains, expected = _acquire(rng, trial, cells)
    states = {**cells["states"], "anomaly": anomaly}
    panel = trial.panel
    scatter = list(SCATTER_WIDE if trial.extra_scatter else SCATTER)
    channels = [*scatter, *panel.channels, panel.time_name]
    stains = [""] * len(scatter) + [*stain_names(rng, panel, p_change=trial.respell), ""]
    sample = SimulatedSample(
        events=events,
        channels=channels,
        stains=stains,
        spillover=None if trial.compensated else spillover_frame(spill, panel.channels),
        labels=cells["labels"],
        label_names=bio.LABELS,
        states=states,
        truth=truth_readouts(cells["labels"], states, control),
        keywords=_keywords(
            rng,
            trial,
            sample,
            day,
            int(n_events),
            gains,
            first=len(scatter) + 1,
            enrolled=patient.enrolled,
        ),
        markers=dict(zip(channels, [*scatter, *panel.markers, "Time"], strict=True)),
    )
    if platform == "mass":
        from ._mass import to_mass_cytometry

        sample = to_mass_cytometry(sample, expected, rng)
    return sample


def _unstain(
    rng: np.random.Generator, panel: Panel, cells: dict, control: str, marker: str
) -> None:
    """Turn stained cells into a control well of ``marker`` (in place)."""
    j = panel.markers.index(marker)
    n = cells["antigen"].shape[0]
    if control.lower().startswith("isotype"):  # same fluorochrome, no specific binding
        neg = bio.NEG_INTRA if marker in bio.INTRACELLULAR else bio.NEG
        cells["antigen"][:, j] = 10.0 ** rng.normal(*neg, n)
    else:  # unstained / FMO: nothing bound in that channel
        cells["antigen"][:, j] = 0.0
    if marker in cells["states"]:
        cells["states"][marker] = np.zeros(n, bool)
    if marker == "CD127" and "CD127hi" in cells["states"]:
        cells["states"]["CD127hi"] = np.zeros(n, bool)


def simulate_sample(
    n_events: int = 20_000,
    *,
    seed: int = 0,
    patient: int = 0,
    day: float = 0,
    drift: str = "mild",
    naming: str = "bd",
    missing: tuple[str, ...] = (),
    compensated: bool = False,
    extra_scatter: bool = False,
    respell: float = 0.1,
    realism: str = "classic",
    panel: str = "treg",
    exported_from: str | None = None,
    design: str = "transreg",
    control: str | None = None,
    platform: str = "flow",
) -> SimulatedSample:
    """Simulate one FCS file of a ld-IL2 trial in memory.

    Parameters
    ----------
    n_events
        Events in the file (debris, doublets and dead cells included).
    seed
        Seed of the trial (panel, instrument); ``patient`` and ``day`` pick the blood draw within it, so
        ``simulate_sample(seed=s, patient=p, day=d)`` is the matching file of ``simulate_trial(seed=s)``
        drawn with the same event count.
    day
        Days since the first ld-IL2 dose (0 = baseline; the response peaks near day 8).
    drift
        Instrument drift between files: ``"none"``, ``"mild"`` (gains x0.85-1.15) or ``"strong"``
        (x0.6-1.6, baseline offsets, a gain trend within the run).
    naming
        Channel names: ``"bd"`` (``"PE-Cy7-A"``), ``"beckman"`` (``"FL5-A"``) or ``"plain"`` (marker names,
        no ``$PnS``).
    missing
        Optional markers left out of the panel, e.g. ``("Helios", "CD56")``.
    compensated
        Write compensated events and no ``$SPILLOVER``, as software exports do (half of such trials
        name channels FlowJo's way, ``"Comp-PE-A"``).
    extra_scatter
        Also record FSC-W, SSC-H and SSC-W (BD order: FSC-A, FSC-H, FSC-W, SSC-A, SSC-H, SSC-W).
    respell
        Chance that this file spells a stain differently from the trial's panel (another template).
    realism
        Population structure: ``"classic"`` (fixed levels; what ``sample_data/`` is), ``"drawn"``
        (levels, spreads, overlaps and subsets drawn per seed within literature ranges), ``"overlap"``
        (drawn, with real-blood overlap: dimmer FOXP3 on Tregs, FOXP3lo CD25+ activated Tconv, a CD25
        smear) or ``"real"`` (continua: no 1-D valley on CD25 or CD127, Tregs 2-5 % of CD4 in the
        CD25hi CD127lo corner). See :mod:`cytokit.datasets._structure`.
    panel
        ``"treg"`` (the 12-colour Treg panel), ``"surface"`` (CD3, CD4, CD8, CD25, CD127, CD45RA and
        viability: no FOXP3) or ``"sle"`` (the Treg panel plus CXCR5, PD-1, CXCR3, CCR6, CCR4).
    exported_from
        ``"CD4"``: the file was exported from a CD3+CD4+ gate; every event is a CD4 T cell.
    design
        ``"transreg"`` (one ld-IL2 course, response peaking near day 8) or ``"sle"`` (the SLE trial:
        three 2-week courses, helper-subset markers on the panel, cTfh and Th17 falling under ld-IL2;
        the classic structure has no helper subsets, so ``realism="classic"`` is drawn there).
    control
        Make the file a control well: ``"isotype:CD25"``, ``"unstained:CD25"``, ``"FMO:Ki67"``...
    platform
        ``"flow"``, or ``"mass"``: the same cells as a mass cytometer records them (ion counts, DNA
        intercalator, Event_length, CD45, no scatter; :mod:`cytokit.datasets._mass`), same truth.
    """
    trial = draw_trial(
        seed,
        naming=naming,
        missing=missing,
        drift=drift,
        compensated=compensated,
        respell=respell,
        extra_scatter=extra_scatter,
        realism=realism,
        panel=panel,
        exported_from=exported_from,
        design=design,
    )
    pat = bio.draw_patient(stream(seed, 1, patient), trial.structure)
    rng = stream(seed, 2, patient, day)
    name = f"P{patient + 1:02d}_D{day:g}"
    if control:
        rng = stream(seed, 6, patient, day)  # another well of the same blood
        name += "_" + control.replace(":", "-")
    return simulate_from(
        trial, pat, day=day, n_events=n_events, sample=name, rng=rng, control=control,
        platform=platform,
    )  # fmt: skip
