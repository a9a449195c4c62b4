"""The simulated acquisition: cells -> scatter pulses, detector signals, noise, drift and the time channel.

What an instrument adds to the biology, per file: detector gains that drift between acquisition days
(and, under strong drift, offsets and a slow trend within the run), spillover of every fluorochrome into
the other detectors, autofluorescence, photon-counting noise proportional to the signal plus electronic
noise around a subtracted baseline (so negatives appear and spread grows after compensation), saturation
at the top of the range, and occasionally a clog or burst where flow rate and intensities shift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cytokit.datasets._panel import DETECTORS, Panel

TOP = 262143.0
DRIFTS = ("none", "mild", "strong")
# autofluorescence of a lymphocyte in each detector (instrument units at nominal gain)
_AF = {355: 160.0, 405: 140.0, 488: 110.0, 561: 45.0, 640: 18.0}


@dataclass
class Instrument:
    """Per-trial detector properties (photon statistics, electronic noise, scatter gains)."""

    photon: np.ndarray  # units per photoelectron, per fluorescence detector
    electronic: np.ndarray  # sd of electronic noise
    af: np.ndarray  # autofluorescence of a lymphocyte per detector
    fsc_gain: float
    ssc_gain: float
    height_ratio: float  # FSC-H / FSC-A of single cells
    rate: float  # events per second
    timestep: float


def draw_instrument(rng: np.random.Generator, panel: Panel) -> Instrument:
    """Draw a trial's instrument within realistic ranges."""
    n = len(panel.markers)
    lasers = np.array([DETECTORS[d][0] for d in panel.detectors])
    few_photons = np.isin(lasers, (640, 355))  # red and UV detectors count fewer photons
    af = np.array([_AF[int(las)] for las in lasers]) * np.exp(rng.normal(0, 0.25, n))
    wavelength = np.array([DETECTORS[d][1] for d in panel.detectors])
    af *= np.where(wavelength > 700, 0.35, 1.0)
    return Instrument(
        photon=rng.uniform(1.5, 5.0, n) * np.where(few_photons, 1.8, 1.0),
        electronic=rng.uniform(12, 35, n),
        af=af,
        fsc_gain=rng.uniform(0.75, 1.3),
        ssc_gain=rng.uniform(0.7, 1.35),
        height_ratio=rng.uniform(0.74, 0.9),
        rate=rng.uniform(1500, 6000),
        timestep=float(rng.choice([0.01, 0.01, 0.001])),
    )


def draw_gains(
    rng: np.random.Generator, n: int, drift: str
) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-detector gains and baseline offsets of one acquisition, and the within-run gain trend."""
    if drift not in DRIFTS:
        raise ValueError(f"drift must be one of {DRIFTS}, got {drift!r}")
    if drift == "none":
        return np.ones(n), np.zeros(n), 0.0
    if drift == "mild":
        return rng.uniform(0.85, 1.15, n), np.zeros(n), 0.0
    gains = np.exp(rng.uniform(np.log(0.6), np.log(1.6), n))
    offsets = rng.normal(0, 60, n) * (rng.random(n) < 0.5)
    return gains, offsets, float(rng.uniform(-0.12, 0.12))


def acquisition_times(
    rng: np.random.Generator, n: int, inst: Instrument
) -> tuple[np.ndarray, np.ndarray]:
    """Time channel (in $TIMESTEP units) and the events inside an anomaly (clog, burst) segment."""
    gaps = rng.exponential(1.0 / inst.rate, n)
    anomaly = np.zeros(n, dtype=bool)
    if n > 100 and rng.random() < 0.4:
        length = int(n * rng.uniform(0.02, 0.07))
        start = int(rng.integers(n // 10, n - length))
        anomaly[start : start + length] = True
        factor = rng.uniform(0.15, 0.4) if rng.random() < 0.5 else rng.uniform(2.5, 5.0)
        gaps[anomaly] /= factor  # clog: slow trickle (factor < 1); burst: fast (factor > 1)
        if rng.random() < 0.5:  # an acquisition pause before the segment
            gaps[start] += rng.uniform(1.0, 4.0)
    seconds = rng.uniform(0.05, 2.0) + np.cumsum(gaps)
    return np.floor(seconds / inst.timestep), anomaly  # clock ticks of $TIMESTEP seconds


def detect(
    rng: np.random.Generator,
    signal: np.ndarray,
    af_scale: np.ndarray,
    inst: Instrument,
    spill: np.ndarray,
    gains: np.ndarray,
    offsets: np.ndarray,
    trend: np.ndarray,
) -> np.ndarray:
    """Fluorochrome signals (n x markers) -> baseline-subtracted detector values (n x detectors)."""
    n, m = signal.shape
    af = af_scale[:, None] * inst.af[None, :] * np.exp(rng.normal(0, 0.25, (n, m)))
    light = signal @ spill + af
    gain = gains[None, :] * trend[:, None]
    mean = light * gain
    sd = np.sqrt(
        inst.photon[None, :] * gain * np.maximum(mean, 0.0) + inst.electronic[None, :] ** 2
    )
    out = mean + sd * rng.standard_normal((n, m)) + offsets[None, :]
    return np.minimum(out, TOP)


def scatter(rng: np.random.Generator, pulses: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Scatter pulses (n x parameters) with gains and small detector noise, clipped to the range."""
    out = pulses * gains[None, :]
    out = out + rng.standard_normal(out.shape) * np.sqrt(20.0 * np.maximum(out, 0) + 200.0**2)
    return np.clip(out, 0.0, TOP)
