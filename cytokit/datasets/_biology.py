"""The simulated blood: cell populations of cryopreserved PBMC, their phenotypes, and the ld-IL2 effect.

Each event is drawn from one population (its truth label). Marker abundance is log-normal per population
(positive fraction, log10 mean, log10 sd); states that the readouts count (Ki67+, HLA-DR+, Helios+,
CD45RA+) are the latent positive component of that mixture, so truth never depends on a gate.
Treatment (:func:`sample_state`) expands and activates Tregs and CD56bright NK cells, not Teff.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from cytokit.datasets._structure import Structure

LABELS = (
    "debris",
    "doublet",
    "dead",
    "granulocyte",
    "monocyte",
    "B",
    "NK_CD56dim",
    "NK_CD56bright",
    "CD8_T",
    "DN_T",
    "DP_T",
    "CD4_naive",
    "CD4_memory",
    "CD4_activated",
    "Treg_naive",
    "Treg_memory",
)
CD4_LABELS = ("CD4_naive", "CD4_memory", "CD4_activated", "Treg_naive", "Treg_memory")
TREG_LABELS = ("Treg_naive", "Treg_memory")
TEFF_LABELS = ("CD4_naive", "CD4_memory", "CD4_activated")
NK_LABELS = ("NK_CD56dim", "NK_CD56bright")
STATES = ("Ki67", "HLA-DR", "Helios", "CD45RA")  # per-event latent states stored as truth flags

NEG = (1.3, 0.35)  # log10 mean / sd of unspecific staining of marker-negative cells
NEG_INTRA = (1.9, 0.3)  # higher after fixation/permeabilisation (intranuclear stains)
INTRACELLULAR = ("FOXP3", "Ki67", "Helios")


def treatment_effect(day: float) -> float:
    """Shape of the ld-IL2 response over days since first dose: 0 at baseline, 1 at day 8, fading."""
    d = max(float(day), 0.0) / 8.0
    return float(d * np.exp(1.0 - d))


@dataclass
class Patient:
    """A patient's baseline blood and how strongly they respond."""

    fractions: dict[str, float]  # debris, doublet, dead, granulocyte, monocyte, lymph (of events)
    lymph: dict[str, float]  # T, B, NK (of lymphocytes)
    t_split: dict[str, float]  # CD4, CD8, DN, DP (of T)
    treg_pct: float  # Treg % of CD4 at baseline
    act_pct: float  # activated Tconv % of CD4
    tconv_naive: float  # naive fraction of resting Tconv
    treg_memory: float  # CD45RA- fraction of Tregs at baseline
    nk_bright: float  # CD56bright fraction of NK at baseline
    treg_fold: float  # peak Treg expansion (x baseline)
    nk_fold: float  # peak CD56bright expansion
    activation: float  # patient's Treg activation strength (0.6-1.4)
    enrolled: int = 0  # day of the trial's calendar the patient started treatment
    treg_ki67: float = 0.045  # Ki67+ fraction of Tregs at baseline
    treg_hladr: float = 0.15  # HLA-DR+ fraction of memory Tregs at baseline
    helper: dict[str, float] | None = None  # helper-subset fractions of memory Tconv (SLE design)


def draw_patient(rng: np.random.Generator, structure: Structure | None = None) -> Patient:
    """Draw a patient's baseline immunophenotype and ld-IL2 responsiveness within realistic ranges.

    Without a ``structure`` the ranges are the classic fixed ones; with one, the trial's drawn ranges.
    """
    if structure is not None:
        return structure.draw_patient(rng)
    u = rng.uniform
    return Patient(
        fractions={
            "debris": u(0.03, 0.10),
            "doublet": u(0.03, 0.08),
            "dead": u(0.04, 0.14),
            "granulocyte": u(0.01, 0.06),
            "monocyte": u(0.10, 0.22),
        },
        lymph={"T": u(0.55, 0.75), "B": u(0.06, 0.15), "NK": u(0.07, 0.18)},
        t_split={
            "CD4": u(0.55, 0.72),
            "CD8": u(0.22, 0.38),
            "DN": u(0.02, 0.06),
            "DP": u(0.005, 0.02),
        },
        treg_pct=u(4.0, 9.0),
        act_pct=u(1.5, 4.0),
        tconv_naive=u(0.35, 0.55),
        treg_memory=u(0.45, 0.65),
        nk_bright=u(0.05, 0.12),
        treg_fold=u(1.4, 3.0),
        nk_fold=u(1.5, 3.0),
        activation=u(0.6, 1.4),
        enrolled=int(rng.integers(0, 300)),
    )


def sample_state(
    patient: Patient, day: float, rng: np.random.Generator, structure: Structure | None = None
) -> dict[str, float]:
    """Population fractions and activation of one blood draw (treatment effect plus day-to-day noise)."""
    fx = CLASSIC_EFFECTS if structure is None else structure.effects
    shape = treatment_effect if structure is None else structure.effect_curve
    e = shape(day) * float(np.exp(rng.normal(0, 0.12))) if day > 0 else 0.0
    noise = lambda: float(np.exp(rng.normal(0, 0.06)))  # noqa: E731
    treg = patient.treg_pct * (1 + (patient.treg_fold - 1) * e) * noise()
    act = patient.act_pct * noise()  # Teff are NOT activated by ld-IL2
    a = e * patient.activation
    out = {
        "effect": e,
        "treg_pct": min(treg, 30.0),
        "act_pct": act,
        "treg_memory": min(patient.treg_memory + (0.9 - patient.treg_memory) * 0.5 * a, 0.92),
        "nk_bright": min(patient.nk_bright * (1 + (patient.nk_fold - 1) * e) * noise(), 0.5),
        "treg_ki67": min(patient.treg_ki67 + fx["ki67_gain"] * a, 0.6) * noise(),
        "treg_hladr": min(patient.treg_hladr + fx["hladr_gain"] * a, 0.6) * noise(),
        "treg_cd25_shift": fx["cd25_shift"] * a,
        "treg_foxp3_shift": fx["foxp3_shift"] * a,
        "nk_ki67": 0.06 + 0.2 * e,
    }
    if patient.helper is not None and structure is not None:
        out.update(structure.helper_state(patient, e, rng))
    return out


# ld-IL2 effect sizes of the classic structure (Treg Ki67+ and HLA-DR+ gain at full effect, CD25 and
# FOXP3 shifts on Tregs in log10 units)
CLASSIC_EFFECTS = {"ki67_gain": 0.28, "hladr_gain": 0.2, "cd25_shift": 0.22, "foxp3_shift": 0.07}


def event_fractions(
    patient: Patient, state: dict[str, float], rng: np.random.Generator
) -> dict[str, float]:
    """Fraction of events in each truth label (doublets included), summing to 1."""
    f = {k: v * float(np.exp(rng.normal(0, 0.1))) for k, v in patient.fractions.items()}
    if rng.random() < 0.1:  # a poorly thawed vial now and then: many dead cells and debris
        f["dead"] *= rng.uniform(2.0, 3.0)
        f["debris"] *= rng.uniform(1.5, 2.0)
    lymph_total = 1.0 - sum(f.values())
    lym = {k: v * float(np.exp(rng.normal(0, 0.06))) for k, v in patient.lymph.items()}
    s = sum(lym.values())
    t = {k: v / sum(patient.t_split.values()) for k, v in patient.t_split.items()}
    T, nk = lymph_total * lym["T"] / s, lymph_total * lym["NK"] / s
    cd4 = T * t["CD4"]
    treg, act = state["treg_pct"] / 100, state["act_pct"] / 100
    tconv = cd4 * (1 - treg - act)
    out = dict(f)
    out.update(
        B=lymph_total * lym["B"] / s,
        NK_CD56dim=nk * (1 - state["nk_bright"]),
        NK_CD56bright=nk * state["nk_bright"],
        CD8_T=T * t["CD8"],
        DN_T=T * t["DN"],
        DP_T=T * t["DP"],
        CD4_naive=tconv * patient.tconv_naive,
        CD4_memory=tconv * (1 - patient.tconv_naive),
        CD4_activated=cd4 * act,
        Treg_naive=cd4 * treg * (1 - state["treg_memory"]),
        Treg_memory=cd4 * treg * state["treg_memory"],
    )
    total = sum(out.values())
    return {k: out[k] / total for k in LABELS}


_T = {"CD3": (1, 4.2, 0.15), "CD127": (0.85, 3.25, 0.2), "Helios": (0.06, 2.9, 0.2)}
_NAIVE_RA = (0.97, 3.9, 0.15)
_MEMORY_RA = (0.05, 3.1, 0.3)
# marker: (positive fraction, log10 mean, log10 sd) per live population at baseline; markers not
# listed are negative (unspecific staining only). sample_state() moves the ld-IL2-sensitive ones.
_PHENOTYPES = {
    "granulocyte": {"CD4": (0.3, 2.4, 0.3), "CD45RA": (0.2, 2.6, 0.3), "CD25": (0.2, 2.3, 0.3)},
    "monocyte": {
        "CD4": (0.95, 3.3, 0.2),
        "HLA-DR": (0.97, 3.9, 0.25),
        "CD45RA": (0.5, 3.0, 0.3),
        "CD25": (0.3, 2.4, 0.3),
        "CD56": (0.05, 3.0, 0.3),
    },
    "B": {
        "HLA-DR": (1, 4.1, 0.2),
        "CD45RA": (0.98, 4.0, 0.15),
        "CD25": (0.2, 2.6, 0.3),
        "Ki67": (0.02, 3.2, 0.25),
    },
    "NK_CD56dim": {
        "CD56": (1, 3.4, 0.22),
        "CD8": (0.35, 3.5, 0.3),
        "CD45RA": (0.95, 3.8, 0.2),
        "Helios": (0.85, 2.9, 0.2),
        "Ki67": (0.06, 3.2, 0.25),
        "HLA-DR": (0.08, 2.9, 0.3),
    },
    "NK_CD56bright": {
        "CD56": (1, 4.15, 0.15),
        "CD25": (0.7, 2.9, 0.25),
        "CD127": (0.8, 2.9, 0.25),
        "CD45RA": (0.9, 3.6, 0.2),
        "Helios": (0.9, 3.0, 0.2),
        "Ki67": (0.12, 3.2, 0.25),
    },
    "CD8_T": {
        **_T,
        "CD8": (1, 4.4, 0.15),
        "CD45RA": (0.6, 3.9, 0.2),
        "CD127": (0.8, 3.2, 0.2),
        "CD25": (0.1, 2.5, 0.3),
        "Ki67": (0.03, 3.2, 0.25),
        "HLA-DR": (0.08, 3.0, 0.3),
        "CD56": (0.08, 3.2, 0.3),
        "Helios": (0.1, 2.9, 0.2),
    },
    "DN_T": {
        **_T,
        "CD8": (0.3, 3.0, 0.3),
        "CD45RA": (0.5, 3.7, 0.2),
        "CD56": (0.1, 3.2, 0.3),
        "Helios": (0.3, 2.9, 0.2),
    },
    "DP_T": {**_T, "CD4": (1, 3.95, 0.15), "CD8": (1, 4.0, 0.2), "CD45RA": (0.4, 3.7, 0.2)},
    "CD4_naive": {
        **_T,
        "CD4": (1, 4.15, 0.12),
        "CD45RA": _NAIVE_RA,
        "CD127": (1, 3.4, 0.15),
        "CD25": (0.35, 2.5, 0.25),
        "Ki67": (0.01, 3.2, 0.25),
    },
    "CD4_memory": {
        **_T,
        "CD4": (1, 4.15, 0.12),
        "CD45RA": _MEMORY_RA,
        "CD127": (1, 3.3, 0.2),
        "CD25": (0.75, 2.8, 0.3),
        "Ki67": (0.04, 3.2, 0.25),
        "HLA-DR": (0.06, 3.0, 0.3),
    },
    "CD4_activated": {
        **_T,
        "CD4": (1, 4.1, 0.14),
        "CD45RA": _MEMORY_RA,
        "CD127": (1, 2.9, 0.25),
        "CD25": (1, 3.3, 0.3),
        "FOXP3": (0.35, 2.7, 0.22),
        "Ki67": (0.6, 3.3, 0.25),
        "HLA-DR": (0.6, 3.1, 0.3),
        "Helios": (0.1, 2.9, 0.2),
    },
    "Treg_naive": {
        **_T,
        "CD4": (1, 4.1, 0.12),
        "CD45RA": (1, 3.7, 0.15),
        "CD127": (0.9, 2.3, 0.3),
        "CD25": (1, 3.35, 0.22),
        "FOXP3": (1, 3.2, 0.2),
        "Helios": (0.9, 3.2, 0.2),
        "Ki67": (0.02, 3.3, 0.25),
        "HLA-DR": (0.02, 3.0, 0.3),
    },
    "Treg_memory": {
        **_T,
        "CD4": (1, 4.1, 0.12),
        "CD45RA": _MEMORY_RA,
        "CD127": (0.9, 2.3, 0.3),
        "CD25": (1, 3.6, 0.25),
        "FOXP3": (1, 3.38, 0.2),
        "Helios": (0.75, 3.2, 0.2),
        "Ki67": (0.06, 3.3, 0.25),
        "HLA-DR": (0.15, 3.1, 0.3),
    },
}


def _with(spec: tuple, frac: float | None = None, shift: float = 0.0) -> tuple:
    """A marker spec with another positive fraction and/or its positive mean shifted."""
    f, mu, *rest = spec
    return (f if frac is None else frac, mu + shift, *rest)


def phenotypes(
    state: dict[str, float], structure: Structure | None = None
) -> dict[str, dict[str, tuple]]:
    """Marker spec per live population for one blood draw.

    A spec is ``(positive fraction, log10 mean, log10 sd)``, optionally followed by the log10 mean and sd
    of the population's own negative (dim) component; without them the negative component is unspecific
    staining (:data:`NEG`, :data:`NEG_INTRA`).
    """
    base = _PHENOTYPES if structure is None else structure.phenotypes
    p = {label: dict(spec) for label, spec in base.items()}
    cd25, fox, ki67 = state["treg_cd25_shift"], state["treg_foxp3_shift"], state["treg_ki67"]
    for label in TREG_LABELS:
        for marker, shift in (("CD25", cd25), ("FOXP3", fox)):
            p[label][marker] = _with(p[label][marker], shift=shift)
    p["Treg_naive"]["Ki67"] = _with(p["Treg_naive"]["Ki67"], ki67 * 0.5)
    p["Treg_memory"]["Ki67"] = _with(p["Treg_memory"]["Ki67"], min(ki67 * 1.3, 0.8))
    p["Treg_memory"]["HLA-DR"] = _with(p["Treg_memory"]["HLA-DR"], state["treg_hladr"])
    p["NK_CD56dim"]["Ki67"] = _with(p["NK_CD56dim"]["Ki67"], state["nk_ki67"])
    p["NK_CD56bright"]["Ki67"] = _with(p["NK_CD56bright"]["Ki67"], min(2 * state["nk_ki67"], 0.8))
    return p


def draw_phenotype(
    rng: np.random.Generator,
    markers: list[str],
    spec: dict[str, tuple[float, float, float]],
    n: int,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Antigen abundance (n x markers, linear) and latent positive states for ``n`` cells of one population."""
    out = np.empty((n, len(markers)))
    states: dict[str, np.ndarray] = {}
    binding = rng.normal(0, 0.05, n)  # cell-level antibody-binding capacity, shared across markers
    for j, m in enumerate(markers):
        p, mu, sd, *own_neg = spec.get(m, (0.0, 0.0, 0.0))
        pos = rng.random(n) < p
        neg = tuple(own_neg) if own_neg else (NEG_INTRA if m in INTRACELLULAR else NEG)
        logv = np.where(pos, rng.normal(mu, sd, n), rng.normal(*neg, n)) + binding
        out[:, j] = 10.0**logv
        if m in STATES:
            states[m] = pos
        elif m == "CD127" and own_neg:  # a population with a CD127hi part: those are not CD127lo
            states["CD127hi"] = pos
    return out, states


def scatter_profile(label: str) -> tuple[float, float, float, float]:
    """FSC-A mean, log sd, SSC-A mean, log sd of a population at nominal scatter gains."""
    if label == "granulocyte":
        return 110_000, 0.10, 95_000, 0.2
    if label == "monocyte":
        return 100_000, 0.12, 45_000, 0.22
    if label == "CD4_activated":
        return 74_000, 0.12, 16_000, 0.2
    if label.startswith("NK"):
        return 64_000, 0.10, 19_000, 0.22
    return 61_000, 0.10, 14_000, 0.2


def autofluorescence(label: str) -> float:
    """Relative autofluorescence of a population (lymphocytes = 1)."""
    return {"granulocyte": 4.0, "monocyte": 2.5, "dead": 1.6, "debris": 0.6}.get(label, 1.0)
