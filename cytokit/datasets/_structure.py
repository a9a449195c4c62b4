"""Population structure drawn per trial seed: marker levels, spreads, overlaps and subset counts.

The classic simulator (``realism="classic"``) gives every population fixed marker levels, so every seed
is the same blood with other fractions. Here the structure itself is drawn from the trial's seed, within
ranges taken from the literature, so that a held-out seed is a held-out structure:

``"drawn"``
    Levels, spreads and fractions drawn per seed; populations still fairly distinct (a lab with a good
    panel and fresh cells).
``"overlap"``
    ``drawn`` plus the overlap of real blood: dimmer FOXP3 on Tregs, a FOXP3lo population of activated
    conventional T cells (Miyara et al., Immunity 2009, fraction III) with CD25, and a CD25 smear over
    memory CD4 T cells.
``"real"``
    Continua instead of blobs, as in real PBMC stained without FOXP3 in mind: CD25 a smear across memory
    CD4, CD127 unimodal with a low shoulder, Tregs 2-5 % of CD4 in the CD25hi CD127lo corner with no 1-D
    valley in either marker alone (the situation of the HIPC/Lyoplate CD25hi CD127lo gate).

Sources of the ranges (cited where used): Seddiki et al., J Exp Med 2006 (CD127lo Tregs 6.35 +/- 0.26 % of
CD4 in healthy donors; CD127 inversely correlates with FOXP3); Liu et al., J Exp Med 2006 (CD127lo Tregs);
Baecher-Allan et al., J Immunol 2006 (HLA-DR+ Tregs, about a third of CD4+CD25hi cells);
Vukmanovic-Stejic et al., J Clin Invest 2006 (Tregs proliferate more than Tconv, Ki67+ ~5-20 %);
Thornton et al., J Immunol 2010 and Akimova et al., Clin Immunol 2011 (Helios+ 60-90 % of FOXP3+);
Miyara et al., Immunity 2009 (CD45RA+ resting, CD45RA- activated Tregs, FOXP3lo non-Tregs);
Triplett et al., J Immunol 2012 (CD25int memory CD4); Klatzmann & Abbas, Nat Rev Immunol 2015 and
Rosenzwajg et al., Ann Rheum Dis 2019 (ld-IL2: Tregs x1.5-3 at day 8, Ki67+ and CD25 up on Tregs, Teff
unchanged); Morita et al., Immunity 2011 and He et al., Immunity 2013 (cTfh ~5-15 % of memory CD4, PD-1hi
activated cTfh); Acosta-Rodriguez et al., Nat Immunol 2007 (Th1 CXCR3+CCR6-, Th17 CCR6+CCR4+, Th2
CCR4+CXCR3-CCR6-); He et al., Nat Med 2016 (SLE ld-IL2: Tregs up, cTfh and Th17 down, Th1/Th2 flat).
Levels are log10 antigen units of the simulator (unspecific staining at 1.3, intracellular 1.9).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from cytokit.datasets import _biology as bio

REALISMS = ("classic", "drawn", "overlap", "real")
HELPER_SUBSETS = ("Tfh", "Th1", "Th2", "Th17", "Th1_17", "other")
HELPER_MARKERS = ("CXCR5", "PD-1", "CXCR3", "CCR6", "CCR4")


@dataclass
class Structure:
    """The drawn biology of one trial: phenotype specs, patient ranges and ld-IL2 effect sizes."""

    realism: str
    phenotypes: dict[str, dict[str, tuple]]
    ranges: dict[str, tuple[float, float]]
    effects: dict[str, float]
    subsets: dict[str, list[tuple[float, dict[str, float]]]] = field(default_factory=dict)
    helper_levels: dict[str, tuple[float, float]] = field(default_factory=dict)
    helper_effects: dict[str, float] = field(default_factory=dict)
    schedule: str = "transreg"

    def effect_curve(self, day: float) -> float:
        """ld-IL2 effect over days: TRANSREG's single course, or the SLE trial's on/off courses."""
        if self.schedule == "sle":
            return sle_effect(day)
        return bio.treatment_effect(day)

    def draw_patient(self, rng: np.random.Generator) -> bio.Patient:
        """A patient within this trial's ranges (same fields as the classic patient)."""
        u = rng.uniform
        r = self.ranges
        patient = bio.draw_patient(rng)  # classic fractions, then this structure's ranges
        patient.treg_pct = u(*r["treg_pct"])
        patient.act_pct = u(*r["act_pct"])
        patient.tconv_naive = u(*r["tconv_naive"])
        patient.treg_memory = u(*r["treg_memory"])
        patient.treg_fold = u(*r["treg_fold"])
        patient.treg_ki67 = u(*r["treg_ki67"])
        patient.treg_hladr = u(*r["treg_hladr"])
        if self.helper_levels:
            # shares of Th1, Th2, Th17, Th1/17 and unpolarised among CXCR5- memory (the first weight
            # is drawn and unused: cTfh is drawn directly below)
            w = rng.dirichlet([6.0, 4.0, 4.0, 3.0, 1.5, 3.5])
            tfh = u(0.06, 0.16)  # cTfh % of memory CD4 (Morita 2011: ~10-15 % of memory CD4)
            rest = w[1:] / w[1:].sum() * (1 - tfh)
            patient.helper = dict(zip(HELPER_SUBSETS, [tfh, *rest], strict=True))
            patient.helper["pd1hi"] = u(0.15, 0.35)  # PD-1hi % of cTfh (He 2013)
        return patient

    def helper_state(self, patient: bio.Patient, e: float, rng: np.random.Generator) -> dict:
        """Helper-subset fractions of one blood draw: cTfh and Th17 down with ld-IL2, Th1/Th2 flat."""
        h = dict(patient.helper or {})
        pd1 = h.pop("pd1hi") * max(1.0 - self.helper_effects.get("pd1hi", 0.0) * e, 0.1)
        for subset in h:  # day-to-day variation of every subset
            h[subset] *= float(np.exp(rng.normal(0, 0.04)))
        for subset in ("Tfh", "Th17"):  # what ld-IL2 removes goes to the unpolarised rest, so
            lost = h[subset] * min(self.helper_effects.get(subset, 0.0) * e, 0.9)
            h[subset] -= lost  # Th1 and Th2 (% of memory) stay flat, as in He et al. 2016
            h["other"] += lost
        total = sum(h.values())
        return {"helper": {k: v / total for k, v in h.items()}, "tfh_pd1hi": float(pd1)}


def sle_effect(day: float) -> float:
    """SLE trial schedule (He et al. 2016): 1 MIU every other day for 2 weeks, 2 weeks off, x3 courses.

    The effect builds up over each course (days 0-14, 28-42, 56-70) and fades in the off weeks, with a
    residual that grows with each course; 0 at baseline.
    """
    d = max(float(day), 0.0)
    if d <= 0:
        return 0.0
    course, within = divmod(d, 28.0)
    course = min(course, 2.0)
    residual = 0.25 * course
    if within <= 14.0:
        return float(min(1.0, residual + (1 - residual) * (1 - np.exp(-within / 4.0))))
    peak = residual + (1 - residual) * (1 - np.exp(-14.0 / 4.0))
    return float(residual + 0.25 + (peak - residual - 0.25) * np.exp(-(within - 14.0) / 5.0))


def draw_structure(
    rng: np.random.Generator, realism: str, *, helpers: bool = False, schedule: str = "transreg"
) -> Structure | None:
    """Draw a trial's population structure; None for ``"classic"`` (the fixed structure)."""
    if realism not in REALISMS:
        raise ValueError(f"realism must be one of {REALISMS}, got {realism!r}")
    if realism == "classic" and not helpers:
        return None
    u = rng.uniform
    ph = copy.deepcopy(bio._PHENOTYPES)
    overlap, real = realism in ("overlap", "real"), realism == "real"
    t_labels = ("CD8_T", "DN_T", "DP_T", *bio.CD4_LABELS)

    # lineage: CD3 and CD4 levels, CD127 on Tconv (Liu 2006: CD127 high on most Tconv)
    cd3, cd4 = u(3.95, 4.35), u(3.95, 4.25)
    cd127, cd127_sd = u(3.2, 3.5), u(0.15, 0.25)
    for label in t_labels:
        ph[label]["CD3"] = (1, cd3, u(0.12, 0.18))
    for label in bio.CD4_LABELS:
        ph[label]["CD4"] = (1, cd4 - u(0, 0.08), u(0.1, 0.15))
    ph["CD4_naive"]["CD127"] = (1, cd127 + u(0.0, 0.12), cd127_sd)
    ph["CD4_memory"]["CD127"] = (1, cd127 - u(0.0, 0.12), cd127_sd + u(0, 0.05))
    ph["CD4_naive"]["CD45RA"] = (u(0.94, 0.99), u(3.7, 4.0), u(0.12, 0.18))

    # Tregs: CD127lo (Seddiki 2006), CD25hi; distance from Tconv drawn; a few CD127+ Tregs in real blood
    if real:
        d127, cd25_treg, fox_treg = u(0.95, 1.15), u(3.4, 3.65), u(2.7, 3.0)
    elif overlap:
        d127, cd25_treg, fox_treg = u(0.6, 0.9), u(3.2, 3.5), u(2.65, 2.95)
    else:
        d127, cd25_treg, fox_treg = u(0.8, 1.2), u(3.3, 3.7), u(3.05, 3.4)
    cd127hi = u(0.03, 0.1) if overlap else 0.0  # CD127+ FOXP3+ cells (Seddiki 2006: a minority)
    lo = (cd127 - d127, u(0.21, 0.27) if real else u(0.22, 0.32))
    for label, ra in (("Treg_naive", (1, u(3.55, 3.85), 0.15)), ("Treg_memory", None)):
        ph[label]["CD127"] = (cd127hi, cd127 - 0.1, cd127_sd, *lo)
        ph[label]["CD25"] = (
            1,
            cd25_treg - (u(0.1, 0.3) if label == "Treg_naive" else 0),
            u(0.18, 0.28),
        )
        ph[label]["FOXP3"] = (
            1,
            fox_treg - (u(0.05, 0.2) if label == "Treg_naive" else 0),
            u(0.17, 0.27),
        )
        ph[label]["Helios"] = (u(0.6, 0.9), u(2.9, 3.3), u(0.15, 0.25))  # Thornton 2010
        if ra:
            ph[label]["CD45RA"] = ra
    # Ki67 and HLA-DR: positives are a distinct but overlapping population above the negatives
    ki67_mu, ki67_sd = u(3.1, 3.5), u(0.2, 0.3)
    dr_mu, dr_sd = u(2.95, 3.35), u(0.22, 0.3)  # Tregs: HLA-DR dim-to-bright (Baecher-Allan 2006)
    for label in bio.CD4_LABELS:
        frac = ph[label].get("Ki67", (0.0,))[0]
        ph[label]["Ki67"] = (frac, ki67_mu, ki67_sd)
    ph["CD4_naive"]["Ki67"] = (u(0.005, 0.02), ki67_mu, ki67_sd)
    ph["CD4_memory"]["Ki67"] = (u(0.02, 0.06), ki67_mu, ki67_sd)  # Tconv: ~2-5 % Ki67+
    ph["CD4_memory"]["HLA-DR"] = (u(0.03, 0.08), dr_mu + u(0, 0.2), dr_sd)
    ph["Treg_naive"]["HLA-DR"] = (u(0.01, 0.04), dr_mu, dr_sd)
    ph["Treg_memory"]["HLA-DR"] = (0.2, dr_mu, dr_sd)  # fraction set per blood draw
    ph["CD4_naive"]["Helios"] = ph["CD4_memory"]["Helios"] = (u(0.02, 0.08), u(2.8, 3.1), 0.2)

    # activated Tconv: CD25+, CD127 lower, Ki67/HLA-DR+; with overlap, FOXP3lo (Miyara 2009 fr. III)
    gap = u(0.15, 0.35) if overlap else u(0.3, 0.6)  # how far they sit below Tregs on CD25
    act = ph["CD4_activated"]
    act["CD25"] = (1, cd25_treg - gap - (0.2 if real else 0.0), u(0.25, 0.35))
    act["CD127"] = (1, cd127 - (u(0.15, 0.3) if real else u(0.3, 0.55)), u(0.2, 0.3))
    fox_gap = u(0.2, 0.4) if overlap else u(0.45, 0.7)
    act["FOXP3"] = (u(0.3, 0.5) if overlap else u(0.1, 0.35), fox_treg - fox_gap, u(0.2, 0.28))
    act["Ki67"] = (u(0.4, 0.7), ki67_mu, ki67_sd)
    act["HLA-DR"] = (u(0.4, 0.7), dr_mu + u(0, 0.2), dr_sd)

    # CD25 on resting Tconv: dim on naive, a smear over memory (Triplett 2012) with overlap
    if overlap:
        neg = (u(2.0, 2.3), u(0.3, 0.4))
        ph["CD4_memory"]["CD25"] = (u(0.4, 0.7), u(2.6, 2.9), u(0.3, 0.4), *neg)
        ph["CD4_naive"]["CD25"] = (u(0.2, 0.45), u(2.3, 2.6), 0.3, neg[0] - 0.2, 0.3)
    else:
        ph["CD4_memory"]["CD25"] = (u(0.5, 0.85), u(2.6, 2.9), u(0.25, 0.35))
        ph["CD4_naive"]["CD25"] = (u(0.2, 0.45), u(2.4, 2.6), 0.25)

    # memory Tconv split into 1-3 subsets (central/effector memory...) with their own CD127/CD25
    n_sub = int(rng.integers(1, 4))
    weights = rng.dirichlet(np.full(n_sub, 3.0))
    low = -0.15 if real else -0.25  # real: subsets overlap on CD127 (one peak with a low shoulder)
    shifts = [{"CD127": u(low, 0.1), "CD25": u(-0.2, 0.15)} for _ in range(n_sub)]
    if real:  # effector-memory CD4: CD127int-lo and CD25lo, a low CD127 shoulder, not a second peak
        em = u(0.15, 0.3)
        weights = np.append(weights * (1 - em), em)
        shifts.append({"CD127": -u(0.35, 0.55), "CD25": -u(0.3, 0.45)})
    subsets = (
        {"CD4_memory": list(zip(weights.tolist(), shifts, strict=True))} if len(shifts) > 1 else {}
    )

    if real:  # Tregs 2-5 % of CD4 in the hidden expert's data (issue 7), 2.7-3.5 % gated by hand
        ranges = {"treg_pct": (2.2, 4.6), "act_pct": (2.0, 5.0)}
    else:  # Tregs 2-10 % of CD4 (Seddiki 2006: 6.35 +/- 0.26 %), a trial-level range within it
        low = u(3.0, 5.5)
        ranges = {"treg_pct": (low, min(low + u(2.5, 4.5), 10.0)), "act_pct": (1.5, 4.0)}
    ranges.update(
        tconv_naive=(u(0.3, 0.4), u(0.45, 0.6)),
        treg_memory=(u(0.45, 0.55), u(0.65, 0.8)),  # CD45RA- Tregs (Miyara 2009)
        treg_fold=(u(1.3, 1.6), u(2.2, 3.0)),  # ld-IL2 day 8 (Rosenzwajg 2019)
        treg_ki67=(u(0.04, 0.08), u(0.1, 0.2)),  # Vukmanovic-Stejic 2006
        treg_hladr=(u(0.15, 0.22), u(0.28, 0.4)),  # Baecher-Allan 2006 (of memory Tregs)
    )
    effects = {
        "ki67_gain": u(0.2, 0.4),
        "hladr_gain": u(0.1, 0.25),
        "cd25_shift": u(0.12, 0.3),
        "foxp3_shift": u(0.03, 0.1),
    }
    out = Structure(realism, ph, ranges, effects, subsets, schedule=schedule)
    if helpers:  # helper-subset markers elsewhere: B cells CXCR5+CCR6+, Tregs CCR4+, CD8 CXCR3+
        for label, marks in {
            "B": {"CXCR5": (1, u(3.4, 3.7), 0.2), "CCR6": (0.9, u(2.9, 3.2), 0.25)},
            "CD8_T": {"CXCR3": (u(0.3, 0.5), u(2.8, 3.1), 0.25), "PD-1": (u(0.1, 0.3), 2.8, 0.3)},
            "NK_CD56dim": {"CXCR3": (u(0.1, 0.3), u(2.7, 3.0), 0.25)},
            "NK_CD56bright": {"CXCR3": (u(0.5, 0.8), u(2.8, 3.1), 0.25)},
            "Treg_memory": {
                "CCR4": (u(0.7, 0.9), u(3.0, 3.3), 0.25),
                "CCR6": (u(0.2, 0.4), u(2.8, 3.1), 0.25),
                "CXCR3": (u(0.1, 0.25), u(2.8, 3.1), 0.25),
                "CXCR5": (u(0.05, 0.15), u(2.8, 3.1), 0.25),
                "PD-1": (u(0.1, 0.3), u(2.7, 3.0), 0.3),
            },
            "Treg_naive": {"CCR4": (u(0.3, 0.5), u(2.8, 3.1), 0.25)},
        }.items():
            ph[label].update(marks)
        out.helper_levels = {m: (u(3.2, 3.6), u(0.25, 0.32)) for m in HELPER_MARKERS}
        # PD-1hi cTfh: a bright population above the cTfh's own PD-1int peak (He et al. 2013)
        pd1 = out.helper_levels["PD-1"][0]
        out.helper_levels["PD-1"] = (pd1, u(0.18, 0.24))
        out.helper_levels["PD-1hi"] = (pd1 + u(0.7, 1.0), 0.18)
        # He et al. 2016: cTfh and Th17 down, Th1/Th2 flat; relative drop at full effect
        out.helper_effects = {"Tfh": u(0.3, 0.5), "Th17": u(0.3, 0.5), "pd1hi": u(0.2, 0.4)}
    return out


def helper_phenotype(
    rng: np.random.Generator,
    structure: Structure,
    state: dict,
    n: int,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Helper-subset assignment of ``n`` memory Tconv and their CXCR5/PD-1/CXCR3/CCR6/CCR4 log10 levels."""
    frac = state["helper"]
    names = list(frac)
    pick = rng.choice(len(names), size=n, p=np.array([frac[k] for k in names]))
    subset = {k: pick == i for i, k in enumerate(names)}
    pd1hi = subset["Tfh"] & (rng.random(n) < state["tfh_pd1hi"])
    lv = structure.helper_levels
    pos = {  # which subsets carry each marker (Morita 2011; Acosta-Rodriguez 2007)
        "CXCR5": subset["Tfh"],
        "PD-1": subset["Tfh"] & ~pd1hi,
        "CXCR3": subset["Th1"] | subset["Th1_17"] | (subset["Tfh"] & (rng.random(n) < 0.3)),
        "CCR6": subset["Th17"] | subset["Th1_17"] | (subset["Tfh"] & (rng.random(n) < 0.3)),
        "CCR4": subset["Th2"] | subset["Th17"] | (subset["Th1_17"] & (rng.random(n) < 0.3)),
    }
    levels = {}
    for m, mask in pos.items():
        mu, sd = lv[m]
        levels[m] = np.where(mask, rng.normal(mu, sd, n), rng.normal(*bio.NEG, n))
    levels["PD-1"] = np.where(pd1hi, rng.normal(*lv["PD-1hi"], n), levels["PD-1"])
    states = dict(subset)
    states["Tfh_PD1hi"] = pd1hi
    return levels, states
