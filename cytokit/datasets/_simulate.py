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
from cytokit.datasets._panel import Panel, draw_panel, spillover_frame, stain_names
from cytokit.io._write import write_fcs

logger = logging.getLogger("cytokit")

_LIVE_CELLS = tuple(lab for lab in bio.LABELS if lab not in ("debris", "doublet", "dead"))


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

    def write(self, path: str | Path, *, datatype: str = "F", byteorder: str = "<") -> Path:
        """Write the sample as an FCS 3.1 file (integer data are scaled to 16 bits)."""
        events, ranges = self.events, None
        if datatype == "I":
            events = np.clip(events * (65536 / 262144), 0, 65535)
            ranges = [65536] * len(self.channels)
        return write_fcs(
            path,
            events,
            self.channels,
            self.stains,
            keywords=self.keywords,
            spillover=self.spillover,
            datatype=datatype,
            byteorder=byteorder,
            ranges=ranges,
        )


def truth_readouts(labels: np.ndarray, states: dict[str, np.ndarray]) -> dict[str, float]:
    """Readouts from per-event truth with the contract's definitions (CD4, Treg, Teff; 0-100 %)."""
    names = np.asarray(bio.LABELS)
    lab = names[labels]
    cd4 = np.isin(lab, bio.CD4_LABELS)
    treg = np.isin(lab, bio.TREG_LABELS)
    teff = np.isin(lab, bio.TEFF_LABELS)
    nk = np.isin(lab, bio.NK_LABELS)

    def pct(mask: np.ndarray, of: np.ndarray) -> float:
        return float(100.0 * mask[of].mean()) if of.any() else float("nan")

    out = {
        "n_events": int(labels.size),
        "live_singlet_count": int(np.isin(lab, _LIVE_CELLS).sum()),
        "cd4_count": int(cd4.sum()),
        "treg_count": int(treg.sum()),
        "teff_count": int(teff.sum()),
        "treg_pct_cd4": pct(treg, cd4),
        "teff_pct_cd4": pct(teff, cd4),
        "treg_teff_ratio": float(treg.sum() / teff.sum()) if teff.any() else float("nan"),
        "cd8_count": int((lab == "CD8_T").sum()),
        "nk_count": int(nk.sum()),
        "nk_cd56bright_pct_nk": pct(lab == "NK_CD56bright", nk),
        "treg_cd45ra_neg_pct": pct(lab == "Treg_memory", treg),
    }
    for state, key in (("Ki67", "ki67"), ("HLA-DR", "hladr"), ("Helios", "helios")):
        if state in states:
            out[f"treg_{key}_pct"] = pct(states[state], treg)
            out[f"teff_{key}_pct"] = pct(states[state], teff)
    out["anomaly_events"] = int(states["anomaly"].sum()) if "anomaly" in states else 0
    return out


def _draw_live(
    rng: np.random.Generator, panel: Panel, state: dict, label: str, n: int
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Antigen (n x markers), states and scatter (FSC-A, SSC-A) of ``n`` live cells of one population."""
    specs = bio.phenotypes(state)
    spec = dict(specs.get(label, {}))
    spec.setdefault("Viability", (1.0, 2.0, 0.3))  # fixable dyes stain live cells dimly
    antigen, states = bio.draw_phenotype(rng, panel.markers, spec, n)
    fsc, fsd, ssc, ssd = bio.scatter_profile(label)
    z1, z2 = rng.standard_normal(n), rng.standard_normal(n)
    fsc_a = fsc * np.exp(fsd * z1)
    ssc_a = ssc * np.exp(ssd * (0.4 * z1 + 0.92 * z2))
    return antigen, states, np.column_stack([fsc_a, ssc_a])


def _draw_cells(
    rng: np.random.Generator, panel: Panel, patient: bio.Patient, state: dict, n: int
) -> dict:
    """Every event's label, antigen, scatter area, autofluorescence scale and states, in random order."""
    fr = bio.event_fractions(patient, state, rng)
    counts = dict(zip(bio.LABELS, rng.multinomial(n, [fr[k] for k in bio.LABELS]), strict=True))
    live_p = np.array([fr[k] for k in _LIVE_CELLS])
    live_p /= live_p.sum()
    parts: list[dict] = []

    def add(label: str, antigen, states, sc, af) -> None:
        k = antigen.shape[0]
        parts.append(
            {
                "label": np.full(k, bio.LABELS.index(label)),
                "antigen": antigen,
                "scatter": sc,
                "af": af,
                "states": states,
            }
        )

    for label in _LIVE_CELLS:
        if counts[label]:
            a, s, sc = _draw_live(rng, panel, state, label, counts[label])
            add(label, a, s, sc, np.full(counts[label], bio.autofluorescence(label)))
    # dead cells: any live type, dim and lower-FSC, bright in the viability dye, sticky
    src = rng.choice(len(_LIVE_CELLS), size=counts["dead"], p=live_p)
    for i in np.unique(src):
        k = int((src == i).sum())
        a, _, sc = _draw_live(rng, panel, state, _LIVE_CELLS[i], k)
        a = a * 10 ** rng.normal(-0.25, 0.2, a.shape) + 10 ** rng.normal(2.1, 0.35, a.shape)
        a[:, panel.markers.index("Viability")] = 10 ** rng.normal(4.0, 0.3, k)
        sc = sc * np.array([0.62, 1.25]) * np.exp(rng.normal(0, 0.12, sc.shape))
        add("dead", a, {}, sc, np.full(k, bio.autofluorescence("dead")))
    # debris: small, dim, unspecific, some bright in the viability dye
    k = counts["debris"]
    a = 10 ** rng.normal(1.8, 0.5, (k, len(panel.markers)))
    dyed = rng.random(k) < 0.5
    a[dyed, panel.markers.index("Viability")] = 10 ** rng.normal(3.6, 0.4, dyed.sum())
    sc = np.column_stack([10 ** rng.normal(4.0, 0.22, k), 10 ** rng.normal(3.6, 0.35, k)])
    add("debris", a, {}, sc, rng.uniform(0.2, 1.2, k))
    # doublets: two live cells in one pulse (area adds, height does not)
    k = counts["doublet"]
    if k:
        pair = rng.choice(len(_LIVE_CELLS), size=(2, k), p=live_p)
        halves = []
        for side in range(2):
            a = np.empty((k, len(panel.markers)))
            sc = np.empty((k, 2))
            for i in np.unique(pair[side]):
                sel = pair[side] == i
                a[sel], _, sc[sel] = _draw_live(rng, panel, state, _LIVE_CELLS[i], int(sel.sum()))
            halves.append((a, sc))
        (a1, s1), (a2, s2) = halves
        dbl_h = np.maximum(s1[:, 0], s2[:, 0]) + rng.uniform(0, 0.35, k) * np.minimum(
            s1[:, 0], s2[:, 0]
        )
        parts.append(
            {
                "label": np.full(k, bio.LABELS.index("doublet")),
                "antigen": a1 + a2,
                "scatter": s1 + s2,
                "af": np.full(k, 2.0),
                "states": {},
                "height": dbl_h,
            }
        )
    return _concat_shuffled(rng, parts, n)


def _concat_shuffled(rng: np.random.Generator, parts: list[dict], n: int) -> dict:
    order = rng.permutation(n)
    labels = np.concatenate([p["label"] for p in parts])[order]
    antigen = np.concatenate([p["antigen"] for p in parts])[order]
    sc = np.concatenate([p["scatter"] for p in parts])[order]
    af = np.concatenate([p["af"] for p in parts])[order]
    height = np.concatenate([p.get("height", np.full(len(p["label"]), np.nan)) for p in parts])[
        order
    ]
    states = {}
    for key in bio.STATES:
        col = np.concatenate([p["states"].get(key, np.zeros(len(p["label"]), bool)) for p in parts])
        states[key] = col[order]
    return {
        "labels": labels.astype(np.uint8),
        "antigen": antigen,
        "scatter": sc,
        "af": af,
        "height": height,
        "states": states,
    }


@dataclass
class Trial:
    """What stays fixed across a trial's files: panel, instrument and the options of the run."""

    seed: int
    panel: Panel
    instrument: ins.Instrument
    drift: str = "mild"
    compensated: bool = False
    respell: float = 0.1


def draw_trial(
    seed: int = 0,
    *,
    naming: str = "bd",
    missing: tuple[str, ...] = (),
    drift: str = "mild",
    compensated: bool = False,
    respell: float = 0.1,
) -> Trial:
    """Draw a trial's panel and instrument from ``seed`` (same seed, same trial)."""
    if drift not in ins.DRIFTS:
        raise ValueError(f"drift must be one of {ins.DRIFTS}, got {drift!r}")
    rng = np.random.default_rng([int(seed), 0])
    panel = draw_panel(rng, naming=naming, missing=tuple(missing))
    return Trial(int(seed), panel, ins.draw_instrument(rng, panel), drift, compensated, respell)


def _acquire(
    rng: np.random.Generator, trial: Trial, cells: dict
) -> tuple[np.ndarray, pd.DataFrame, np.ndarray, np.ndarray]:
    """Cells -> recorded events (float32), the file's spillover, the anomaly mask and the detector gains."""
    panel, inst = trial.panel, trial.instrument
    n, m = cells["antigen"].shape
    gains, offsets, slope = ins.draw_gains(rng, m, trial.drift)
    time, anomaly = ins.acquisition_times(rng, n, inst)
    span = max(float(time[-1] - time[0]), 1e-9) if n else 1.0
    intensity = np.ones(n)
    if anomaly.any():  # the core stream wobbles: intensities shift during a clog or burst
        intensity[anomaly] = (
            rng.uniform(0.6, 0.85) if rng.random() < 0.7 else rng.uniform(1.15, 1.3)
        )
    trend = (1 + slope * ((time - time[0]) / span - 0.5)) * intensity if n else intensity
    fl = ins.detect(
        rng,
        cells["antigen"] * panel.brightness,
        cells["af"],
        inst,
        panel.spill,
        gains,
        offsets,
        trend,
    )
    sc = cells["scatter"]
    ratio = inst.height_ratio * np.exp(rng.normal(0, 0.03, n))
    fsc_h = np.where(np.isnan(cells["height"]), sc[:, 0], cells["height"]) * ratio
    wobble = {"none": 0.0, "mild": 0.04, "strong": 0.12}[trial.drift]
    sgain = (
        inst.fsc_gain * np.exp(rng.normal(0, wobble)),
        inst.ssc_gain * np.exp(rng.normal(0, wobble)),
    )
    scat = ins.scatter(rng, sc[:, 0] * intensity, fsc_h * intensity, sc[:, 1] * intensity, sgain)
    # the spillover measured that day: true spectra seen through that day's gains, estimated with error
    eff = panel.spill * gains[None, :] / gains[:, None]
    est = eff * np.where(np.eye(m, dtype=bool), 1.0, np.exp(rng.normal(0, 0.03, (m, m))))
    if trial.compensated:
        fl = fl @ np.linalg.inv(est)
    events = np.column_stack([scat, fl, time]).astype(np.float32)
    return events, est, anomaly, gains


def _keywords(
    rng: np.random.Generator, trial: Trial, sample: str, day: float, n: int, gains: np.ndarray
) -> dict[str, str]:
    start = pd.Timestamp("2024-01-08") + pd.Timedelta(days=int(rng.integers(0, 300)) + int(day))
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
        "CYTOKIT_SIMULATED": "1",
    }
    offset = 3 + 1  # scatter (3), then fluorescence from $P4
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
) -> SimulatedSample:
    """One file of ``patient`` at ``day`` on ``trial``'s instrument (the building block of a trial)."""
    state = bio.sample_state(patient, day, rng)
    cells = _draw_cells(rng, trial.panel, patient, state, int(n_events))
    events, spill, anomaly, gains = _acquire(rng, trial, cells)
    states = {**cells["states"], "anomaly": anomaly}
    panel = trial.panel
    channels = panel.all_channels
    stains = ["", "", "", *stain_names(rng, panel, p_change=trial.respell), ""]
    return SimulatedSample(
        events=events,
        channels=channels,
        stains=stains,
        spillover=None if trial.compensated else spillover_frame(spill, panel.channels),
        labels=cells["labels"],
        label_names=bio.LABELS,
        states=states,
        truth=truth_readouts(cells["labels"], states),
        keywords=_keywords(rng, trial, sample, day, int(n_events), gains),
        markers=dict(
            zip(channels, ["FSC-A", "FSC-H", "SSC-A", *panel.markers, "Time"], strict=True)
        ),
    )


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
        Write compensated events and no ``$SPILLOVER`` (as software exports do).
    """
    trial = draw_trial(seed, naming=naming, missing=missing, drift=drift, compensated=compensated)
    pat = bio.draw_patient(np.random.default_rng([int(seed), 1, int(patient)]))
    rng = np.random.default_rng([int(seed), 2, int(patient), round(float(day) * 10)])
    return simulate_from(
        trial, pat, day=day, n_events=n_events, sample=f"P{patient + 1:02d}_D{day:g}", rng=rng
    )
