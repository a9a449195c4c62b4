"""Thresholds of a marker inside the population being split (the ``split`` method).

Used for the functional markers of Treg and Teff (Ki67, HLA-DR, Helios, CD127lo, CD45RA) and for the
chemokine receptors of the helper subsets (CXCR5, CXCR3, CCR6, CCR4 on memory CD4, with naive CD4 as
the negative reference).

Ki67+ and HLA-DR+ % of Treg and of Teff are the trials' activation readouts. A tail placed on the negative
peak of the parent (CD4) is blind to where the subset's positives are: on simulated and real data the
Tregs' HLA-DR+ cells sit just above their negatives (a clear gap inside the Tregs) while the CD4 tail cut
through them. :func:`split_threshold` therefore looks at the subset itself first:

1. **subset valley**: where the subset (e.g. Treg) is bimodal on the marker, the density minimum
   between its two peaks (openCyto's ``mindensity`` on the subset), kept only when it is a real valley:
   at least ``min_depth`` below the lower of its two peaks, beyond the reference's negative peak, and
   with events on both sides. A valley that gates more than :data:`DISAGREE_PP` points fewer than the
   reference tail lies beyond the negatives with positives on both sides (dim and bright HLA-DR+
   Tregs) and is not used; so is a valley beyond the reference tail that gates less than half as much
   (a dip inside a sparse, broad positive population, :func:`_valley_inside_positives`).
2. **negative reference excess** where there is no valley and the strategy names a population that
   lacks the marker (``reference:``; naive CD4 T cells for HLA-DR, which resting naive T cells do not
   express): dim positives that form a shoulder inside the negatives' spread are counted as the subset's
   excess over that population's shape (:func:`reference_threshold`, the ``reference`` method); a tail
   misses every positive inside the negative spread (HLA-DR dim-to-bright on Tregs: 22 % called, 35 %
   true). Where the subset has a shallow dip of its own and the positives hold at least
   :data:`MINOR_SHARE` of it, the cut is the mixture boundary, else the fitted share
   (``details["excess_cut"]``, see :func:`_negative_excess`). Where the reference's negatives spread
   more than ``1 + 1/k`` times as wide as the subset's, its shape does not model them and the count is
   the subset's excess over its own negative peak mirrored (``excess_cut = "own peak"``).
3. **subset peak boundary** where there is no valley but the subset's own main peak lies clearly beyond
   the reference's negative peak (outside the central 90 % of the negatives): the subset is then mostly
   positive (Helios+ Tregs, CD127lo Tregs) and its negatives a shoulder. The cut is the point as many
   SDs from either peak (the equal-density boundary of two Gaussians with those spreads, equal
   weights); a tail placed ``k`` SDs beyond the negatives cut through the positives whenever they sit
   less than ``k`` SDs away (Helios+ Tregs 38 % called for 70 % true, CD127lo Tregs 3 % of CD4 for 8 %).
   The count is then the share of a two-Gaussian mixture fitted to the subset, its negative component
   fixed at the reference's negative peak (``details["boundary_cut"] = "mixture share"``; see
   :func:`_fixed_negative_mixture`): the boundary alone called Helios+ Tregs 3 points low.
4. **reference tail** otherwise: ``k`` SDs above the negative peak of the reference population (the
   parent, e.g. CD4; openCyto's ``tailgate``). The SD is measured on the side of the peak that faces
   the threshold, from its half-maximum width (``HWHM / sqrt(2 ln 2)`` for a Gaussian): on logicle
   data the side of a negative peak facing zero is stretched by the scale's linear region, so a spread
   mirrored from it put the cut far into the positives (Ki67+ Teff, a shoulder without a valley,
   counted 1.1 % instead of 4.6 %), and a small positive population never reaches half the peak's
   height, so it cannot inflate the spread.

A valley between a big negative peak and a *small* positive one lies inside the small one (the density
minimum of a two-component mixture moves toward the minor component), so the count misses the
positives' lower tail: Ki67+ Teff, 3-6 % of Teff, were undercounted by about a point. When the valley
gates fewer than :data:`MINOR_SHARE` of the subset but at least :data:`MIN_COMPONENT` events, the count
is corrected with the two components' shapes: the positives' peak and the spread of their upper half
(which the negatives do not reach) give the share of them below the valley, the reference tail's
Gaussian gives the negatives above it; the threshold is then the quantile of the subset that gates the
corrected count, so gate and count agree (as the ``reference`` method does).

**Unlike negative reference (spillover spreading).** The negative reference stands for the subset's
negatives only when its cells spread like theirs on this marker. After compensation a cell's spread in a
channel grows with its signal in the channels that spill into it (spillover spreading: Roederer,
Cytometry 2001; Nguyen et al., Cytometry A 2013), so naive cells, bright on CD45RA, can be much wider on
a neighbouring channel's HLA-DR than memory cells: the subset then mixes tight (memory) and wide (naive)
negatives, and the excess over the naive shape, the subset's valley and the parent's tail all misplace
the cut (56.8 % HLA-DR+ Teff called for 5.4 %, 44.8 % HLA-DR+ Tregs for 23 %). Where the strategy names
the subset's cells unlike the reference (``stratum``: its CD45RA- memory cells) and the reference's
negatives spread more than ``1 + 1/k`` times as wide as the rest of ``within`` (the memory-like cells;
spread = RMS below the median, where positives are nearly absent), each part of the subset is counted
against the negatives it spreads like: the stratum above its own valley where it is bimodal, else as its
excess over its own negative peak mirrored from the side away from the positives
(:func:`~cytokit.gating._methods.reference_threshold` with ``reference=None``); the subset's other cells
(like the reference) beyond the reference's ``k``-SD tail (a few naive-phenotype Tregs carry HLA-DR).
The threshold is the quantile of the subset that gates the sum (``details["rule"] = "stratum excess"``).
``1 + 1/k``: a reference that much wider moves a ``k``-SD tail by more than one SD of the memory cells'
negatives.

**A subset of both kinds.** Below that spread ratio the excess rule counts the subset against the
reference alone, rescaled to the subset's lower half. But the subset (Teff) holds naive-like cells
that spread like the reference and memory cells that spread narrower, and the rescaled reference is
then too wide for the one and too narrow for the other: the naive-like cells' upper flank counted as
positives (HLA-DR+ Teff 9.7 % called for 6.0 % at a ratio of 1.26, 2.5-3.7 points high on most
samples of a simulated trial whose naive cells spread 1.2-1.3 times as wide). The subset's negatives
are therefore modelled as the mixture they are: the reference's own shape for its share of cells
outside the stratum, and for the stratum's share the reference moved to the stratum's median and
scaled to its spread below the median (``details["negative_model"]``). Both stand for the stratum's
negatives only while its positives are few, so this holds while fewer than :data:`MINOR_SHARE` of
the stratum lie beyond the reference's ``k``-SD tail (HLA-DR+ Tregs, a fifth to a half of the
memory Tregs, keep the reference alone: modelled as a mixture they were undercounted by 2-8 points).

**Unlike strata (``strata``).** The same spreading (or a marker's unspecific staining that differs
between naive and memory cells) can shift the parent's negatives: Ki67 on naive CD4 cells sat 0.07
logicle units (over one SD) above the memory cells', so the CD4 peak's half width, and with it the
tail, was that of two peaks side by side (Ki67+ Teff 1.9 % called for 4.5 %). Where the strategy names a
gate on ``within`` (``strata``: CD4 CD45RA-) and its two parts' negative peaks lie more than one SD
apart or spread more than ``1 + 1/k`` times apart, each part of the subset is placed by these rules
against its own part of ``within`` and the two counts are summed (``details["rule"] = "strata"``).

Both candidates are always computed; the record names the rule used and how far apart the two rules'
counts lie, so a reviewer sees where the choice mattered.

With ``reference_rule="valley"`` (CD45RA: the reference holds naive and memory cells, and either may be
its taller peak) the rules are the subset's own valley, else the reference's valley.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import _keys as K
from ._methods import (
    MIN_EVENTS,
    Placement,
    _finite,
    _peaks,
    _side_sign,
    _valley_between,
    smooth_density,
)
from ._thresholds import _METHOD_KW

if TYPE_CHECKING:
    from anndata import AnnData

    from ._strategy import Strategy

__all__ = ["DISAGREE_PP", "patient_thresholds", "split_threshold", "upper_tail"]

#: counts (percentage points of the subset) by the two rules further apart than this are flagged: the
#: worst error the trial readouts tolerate (issue #8: Treg Ki67+ / HLA-DR+ % within 5 points), so a
#: larger gap means the choice of rule decides whether the readout is usable; a review flag, not a gate
DISAGREE_PP = 5.0
#: the overlap correction applies to a positive component below this share of the subset (chosen on
#: development seeds 41-43 / 51-52, measured on unseen ones in benchmarks/gating_accuracy.py), and the
#: negative-reference excess cuts a component below it at its fitted share, not at the boundary ...
MINOR_SHARE = 10.0
#: ... holding at least this many events: a peak and a half-spread of fewer events are noise (Treg
#: Ki67+ at baseline, ~40 events, got worse with it)
MIN_COMPONENT = 200
#: a dip at least this deep (fraction of the lower peak; split_threshold's default ``min_depth``) shows the
#: positives form a mode of their own: the negative-reference excess is then cut at the mixture boundary
DIP_DEPTH = 0.1
#: the subset's main peak is its positives when it lies beyond this many SDs of the reference's negative
#: peak: outside the central 90 % of the negatives (the one-sided 5 % point of a normal distribution)
OUTSIDE_NEGATIVES = 1.645


def _half_width_sd(x: np.ndarray, sign: int) -> tuple[float, float]:
    """(mode, SD) of the main peak of ``x``, the SD from its half-maximum width on the ``sign`` side."""
    grid, dens, _ = smooth_density(x)
    i = int(np.argmax(dens))
    half = dens[i] / 2.0
    steps = dens[i:] if sign > 0 else dens[: i + 1][::-1]
    below = np.flatnonzero(steps < half)
    j = i + sign * (int(below[0]) if len(below) else len(steps) - 1)
    sd = max(abs(float(grid[j] - grid[i])) / np.sqrt(2 * np.log(2)), float(grid[1] - grid[0]))
    return float(grid[i]), sd


def upper_tail(x: np.ndarray, *, k: float = 3.0, side: str = "high") -> Placement:
    """``k`` SDs beyond the main peak toward ``side``, the SD from the half-maximum width on that side."""
    x = _finite(x)
    sign = _side_sign(side)
    mode, sd = _half_width_sd(x, sign)
    return Placement(mode + sign * k * sd, "ok", "", {"mode": mode, "sd": sd, "k": k})


def _share(x: np.ndarray, t: float, sign: int) -> float:
    """% of ``x`` on the positive side of ``t``."""
    return float(100.0 * np.mean(x >= t if sign > 0 else x < t))


def _subset_peak_boundary(x: np.ndarray, own: tuple[float, float], neg_mode: float, neg_sd: float,
                          sign: int, *, mostly_positive: bool = False):  # fmt: skip
    """(threshold, details) between the reference's negative peak and the subset's own main peak
    (``own``: mode and SD, from :func:`_half_width_sd`) when that peak lies outside the negatives
    (:data:`OUTSIDE_NEGATIVES`: the subset is mostly positive), else None. The cut lies as many SDs from
    either peak (the negatives' SD on the side facing the subset, the subset's on its far side, which
    the negatives' shoulder does not widen).

    ``mostly_positive``: the strategy knows the subset is mostly positive (CD127lo among FOXP3+
    Tregs), so a main peak on the positive side of the negatives' is taken for the positives even
    within the negatives' spread, when the mixture agrees (its positive component holds most of the
    subset): where the two overlap (CD127 on Tregs 1-1.6 SDs below conventional cells) the tail rule
    called 0.2 % CD127lo of CD4 for 15 %."""
    if len(x) < MIN_EVENTS:
        return None
    mode, sd = own
    gap = (mode - neg_mode) * sign
    within_negatives = gap <= OUTSIDE_NEGATIVES * neg_sd
    if gap <= 0 or (within_negatives and not mostly_positive):
        return None
    outside = 0.0 if within_negatives else OUTSIDE_NEGATIVES * neg_sd
    value = neg_mode + sign * gap * neg_sd / (neg_sd + sd)
    info = {"subset_mode": mode, "subset_sd": sd, "boundary_threshold": float(value)}
    fit = _fixed_negative_mixture(x * sign, neg_mode * sign, neg_sd, (value - neg_mode) * sign)
    if fit is not None:
        share, mu, spread = fit
        # the fitted positive component must lie outside the negatives, as the subset's peak does
        # (on their positive side and holding most of the subset, where the strategy vouches for it)
        if (mu - neg_mode * sign) > outside and (share > 0.5 or not within_negatives):
            value = float(np.quantile(x * sign, 1.0 - share)) * sign
            info.update(boundary_cut="mixture share", mixture_share_pct=100.0 * share,
                        mixture_positive_mean=mu * sign, mixture_positive_sd=spread)  # fmt: skip
            return value, info
    return None if within_negatives else (value, info)


def _fixed_negative_mixture(xs: np.ndarray, neg_mode: float, neg_sd: float, gap: float,
                            max_iter: int = 300):  # fmt: skip
    """(positive share, mean, SD) of one Gaussian beside a fixed negative Gaussian (``neg_mode``,
    ``neg_sd``: the reference's negative peak, as the tail rule measures it), fitted by EM on ``xs``
    (positives above), or None when the fit does not converge to a positive component.

    Where the subset is mostly positive without a valley, the two components overlap: a cut between
    the peaks counts the negatives above it and drops the positives below it, and with a large positive
    component these do not cancel (Helios+ Tregs, 80 %, were called 3 points low on average, up to 8).
    The fitted share counts each component whole (a per-event mixture model as flowClust fits: Lo et
    al., Cytometry A 2008); the negatives' shape is taken from the reference, where they are the main
    peak, so the fit only has to find the positives. The start is the boundary split (``gap`` from the
    negatives' mode)."""
    hi = xs[xs >= neg_mode + gap]
    if len(hi) < MIN_COMPONENT or len(xs) - len(hi) < MIN_EVENTS:
        return None
    w, mu, sd = len(hi) / len(xs), float(np.mean(hi)), max(float(np.std(hi)), 1e-6)
    norm_neg = np.exp(-0.5 * ((xs - neg_mode) / neg_sd) ** 2) / neg_sd
    for _ in range(max_iter):
        f_pos = w * np.exp(-0.5 * ((xs - mu) / sd) ** 2) / sd
        resp = f_pos / np.maximum(f_pos + (1.0 - w) * norm_neg, 1e-300)
        n_pos = float(resp.sum())
        if n_pos < MIN_COMPONENT:
            return None
        new_w = n_pos / len(xs)
        mu = float(np.sum(resp * xs) / n_pos)
        sd = max(float(np.sqrt(np.sum(resp * (xs - mu) ** 2) / n_pos)), 1e-6)
        done = abs(new_w - w) < 1e-6
        w = new_w
        if done:
            return w, mu, sd
    return None


def _subset_valley(
    x: np.ndarray, ref_mode: float, sign: int, *, min_prominence: float, min_depth: float
) -> tuple[float, float] | None:
    """(threshold, depth) of the deepest real valley of ``x`` beyond ``ref_mode``, or None."""
    grid, dens, _ = smooth_density(x)
    peaks = _peaks(dens, min_prominence)
    best = None
    min_side = max(
        MIN_EVENTS, int(0.005 * len(x))
    )  # a "population" of a handful of events is noise
    for i, a in enumerate(peaks):
        for b in peaks[i + 1 :]:
            v = _valley_between(grid, dens, a, b)
            depth = 1.0 - dens[v] / min(dens[a], dens[b])
            t = float(grid[v])
            if depth < min_depth or (t - ref_mode) * sign <= 0:
                continue
            n_high = int(np.sum(x >= t))
            if min(n_high, len(x) - n_high) < min_side:
                continue
            score = min(dens[a], dens[b]) * depth  # a deep valley between two sizeable peaks
            if best is None or score > best[0]:
                best = (score, t, float(depth))
    return None if best is None else (best[1], best[2])


def split_threshold(
    x: np.ndarray,
    reference: np.ndarray,
    *,
    side: str = "high",
    k: float = 3.0,
    min_prominence: float = 0.01,
    min_depth: float = 0.1,
    negative: np.ndarray | None = None,
    reference_rule: str = "tail",
    stratum: np.ndarray | None = None,
    others: np.ndarray | None = None,
    strata: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    mostly_positive: bool = False,
    minority: bool = False,
) -> Placement:
    """Threshold of a functional marker on a subset ``x`` (Treg or Teff events), see the module doc.

    Parameters
    ----------
    x
        The marker on the events of the population being split.
    reference
        The marker on the reference population whose negative peak gives the tail (the parent, CD4).
    side
        Where the positives lie (``"high"``: Ki67+; ``"low"``).
    k
        SDs of the reference's negative peak for the tail rule (3 keeps about 0.1 % of a Gaussian
        negative peak above the cut, as the strategy's other tail gates).
    min_prominence, min_depth
        A peak must reach ``min_prominence`` of the highest; a valley must lie at least ``min_depth``
        (fraction) below the lower of its two peaks.
    negative
        The marker on a population that lacks it (e.g. naive CD4 T cells for HLA-DR): without a valley,
        the subset's excess over that population's shape is counted (needs :data:`MIN_COMPONENT` events).
    reference_rule
        ``"tail"`` (the reference has one negative peak: Ki67, HLA-DR, Helios, CD127) or ``"valley"``
        (the reference holds both populations, e.g. CD45RA+ naive and CD45RA- memory CD4 T cells, and
        either may be the taller: a tail of its main peak means nothing). With ``"valley"`` the subset's
        own valley is used where it has one, else the reference's valley (Otsu without one): naive
        Tregs sit lower on CD45RA than naive Tconv, so the CD4 valley cut into them (CD45RA- % of Treg
        3-7 points high on every simulated sample).
    stratum, others
        With ``negative``: the marker on the subset's events unlike the negative reference (its CD45RA-
        memory cells, when the reference is naive CD4) and on the events of ``within`` outside the
        reference (memory-like cells). Where the reference's negatives spread wider than ``others``'
        (spillover spreading, see the module doc), the count is the stratum's own excess.
    strata
        Without ``negative``: the marker on the subset's events inside and outside a gate on ``within``
        (e.g. CD4 CD45RA-) and on ``within``'s events inside and outside it. Where the two parts of
        ``within`` have unlike negative peaks (modes more than one SD apart, or spreads more than
        ``1 + 1/k`` times apart: either moves a ``k``-SD tail by more than one SD), each part of the
        subset is placed against its own part of ``within`` and the counts are summed (see the module doc).
    mostly_positive
        The subset is known to be mostly positive (CD127lo among FOXP3+ Tregs: Liu et al. and Seddiki
        et al., J Exp Med 2006): without a valley, a main peak on the positive side of the reference's
        negative peak is taken for the positives even within the negatives' spread (rule 3).
    minority
        The positives are known to be a minority of the subset (cycling Ki67+ cells), so its main
        peak is its negatives wherever it sits and rule 3 is not used: Tregs whose Ki67-negative cells
        sit higher and spread twice as wide as CD4's (spillover spreading) had their main peak 1.8 of
        CD4's SDs up, and rule 3 called 78.7 % Ki67+ Tregs for 35.1 %.

    Returns
    -------
    A :class:`Placement` with ``details["rule"]`` (``"subset valley"``, ``"negative reference
    excess"``, ``"subset peak boundary"``, ``"reference tail"``; with ``reference_rule="valley"``
    ``"subset valley"`` or ``"reference valley"``; ``"stratum excess"``, ``"strata"``), the candidates'
    thresholds and positive % of ``x``, and ``details["disagree"]`` when the rule used and the reference rule differ by more than
    :data:`DISAGREE_PP` points.
    """
    x, reference = _finite(x), _finite(reference)
    sign = _side_sign(side)
    if reference_rule == "valley":
        return _split_on_valleys(x, reference, sign, min_prominence, min_depth)
    if reference_rule != "tail":
        raise ValueError(f"reference_rule must be 'tail' or 'valley', got {reference_rule!r}")
    tail = upper_tail(reference, k=k, side=side)
    valley = _subset_valley(
        x, tail.details["mode"], sign, min_prominence=min_prominence, min_depth=min_depth
    )

    def pct(t: float) -> float:
        return _share(x, t, sign)

    details = {
        "tail_threshold": float(tail.value),
        "tail_pct": pct(tail.value),
        "reference_mode": tail.details["mode"],
        "reference_sd": tail.details["sd"],
        "n_subset": len(x),
    }
    if negative is None and strata is not None:
        kw = {"side": side, "k": k, "min_prominence": min_prominence, "min_depth": min_depth,
              "minority": minority}  # fmt: skip
        value = _split_by_strata(x, strata, sign, kw, details)
        if value is not None:
            message = _disagreement(details, pct(value), "strata")
            return Placement(value, "ok", message, details)
    if negative is not None and stratum is not None and others is not None:
        strat = _stratum_excess(x, _finite(negative), stratum, others, sign, k, details,
                                min_prominence=min_prominence, min_depth=min_depth)  # fmt: skip
        if strat is not None:
            message = _disagreement(details, pct(strat), "stratum excess")
            return Placement(strat, "ok", message, details)
    if valley is not None and _valley_inside_positives(
        x, valley[0], pct(valley[0]), tail, details, min_prominence
    ):
        # the valley lies beyond the negatives' tail with many events between: it splits dim from
        # bright positives (HLA-DR dim-to-bright on Tregs: 22.9 % called for 38.4 % true), not the
        # negatives from the positives
        details["valley_inside_positives"] = float(valley[0])
        valley = None
    if valley is None:
        own = _half_width_sd(x, sign)  # the subset's main peak (mode, SD on its far side)
        if negative is not None and len(negative) >= MIN_COMPONENT:
            dip = _subset_valley(x, tail.details["mode"], sign, min_prominence=min_prominence,
                                 min_depth=DIP_DEPTH) is not None  # fmt: skip
            neg_ref = _subset_negatives(_finite(negative), stratum, len(x), sign, k, details)
            value, cut = _negative_excess(x, neg_ref, side, dip=dip, k=k)
            if not _cuts_its_negative_peak(own[0], value, tail, sign):
                details.update(rule="negative reference excess", excess_pct=pct(value), **cut)
                details["negative_reference_n"] = len(negative)
                message = _disagreement(details, details["excess_pct"], "negative reference excess")
                return Placement(value, "ok", message, details)
            details["excess_rejected"] = {"threshold": float(value), "pct": pct(value)}
        peak = None  # rule 3 is not for a subset whose positives are known to be a minority
        if not minority:
            peak = _subset_peak_boundary(x, own, tail.details["mode"], tail.details["sd"], sign,
                                         mostly_positive=mostly_positive)  # fmt: skip
        if peak is not None:
            value, info = peak
            details.update(rule="subset peak boundary", **info)
            message = _disagreement(details, pct(value), "subset peak boundary")
            return Placement(float(value), "ok", message, details)
        details["rule"] = "reference tail"
        return Placement(float(tail.value), "ok", "", details)
    value, depth = valley
    details.update(rule="subset valley", valley_threshold=value, valley_pct=pct(value))
    details["valley_depth"] = depth
    corrected = _overlap_corrected(x, value, sign, tail.details["mode"], tail.details["sd"])
    if corrected is not None:
        value, details["overlap_correction"] = corrected
    message = _disagreement(details, pct(value), "subset valley")
    return Placement(value, "ok", message, details)


def _subset_negatives(negative, stratum, n_x: int, sign: int, k: float, details: dict):
    """The negative shape the subset's excess is counted over: ``negative`` (the reference), or where
    the subset holds cells unlike it (``stratum``) that the stratum rule left to this one (spreads
    within ``1 + 1/k`` of each other), the subset's own mixture of the two kinds (see the module doc).
    Records ``details["negative_model"]``."""
    if stratum is None or details.get("negative_spread_ratio", np.inf) > 1.0 + 1.0 / k:
        return negative
    stratum = _finite_or_empty(stratum)
    if len(stratum) < MIN_COMPONENT or len(stratum) >= n_x:
        return negative
    side = "high" if sign > 0 else "low"
    beyond = _share(stratum, upper_tail(negative, k=k, side=side).value, sign)
    if beyond >= MINOR_SHARE:  # its median and low side no longer stand for its negatives'
        details["negative_model"] = {"mixture": False, "stratum_beyond_tail_pct": beyond}
        return negative
    centre = float(np.median(negative))
    scale = _low_spread(stratum * sign) / max(_low_spread(negative * sign), 1e-12)
    unlike = float(np.median(stratum)) + (negative - centre) * scale
    # the two parts in the subset's proportions, as evenly spaced quantiles of each (no random draw)
    total = 2 * len(negative)
    n_like = round(total * (n_x - len(stratum)) / n_x)
    details["negative_model"] = {"mixture": True, "like_reference_share": n_like / total,
                                 "stratum_scale": scale, "stratum_beyond_tail_pct": beyond}  # fmt: skip
    return np.r_[_evenly(negative, n_like), _evenly(unlike, total - n_like)]


def _evenly(v: np.ndarray, n: int) -> np.ndarray:
    """``n`` evenly spaced quantiles of ``v`` (a deterministic stand-in for a draw of ``n``)."""
    return np.quantile(v, (np.arange(n) + 0.5) / n) if n > 0 else np.empty(0)


def _low_spread(x: np.ndarray) -> float:
    """RMS distance below the median: the spread of a negative peak on the side where positives are
    (nearly) absent (pass ``x * sign`` so that the positives lie above)."""
    m = float(np.median(x))
    low = x[x < m] - m
    return float(np.sqrt(np.mean(low**2))) if len(low) else 0.0


def _stratum_excess(x, negative, stratum, others, sign: int, k: float, details: dict, *,
                    min_prominence: float, min_depth: float):  # fmt: skip
    """Threshold on ``x`` gating the stratum's own count plus the count of the subset's other cells
    against the negative reference, when that reference spreads unlike the stratum's cells (see the
    module doc), else None; records the spread ratio in ``details``. ``stratum`` is a part of the
    events of ``x`` (the same draw), so its count is a count of ``x``.

    The stratum's count: above its own valley where it is bimodal (a valley of ``min_depth`` that is not
    inside the positives, judged against the tail of ``others``' negative peak, and corrected for a
    minor component's overlap, as the subset's valley rule does), else its excess over its own
    negative peak mirrored. The mirror models the negatives as symmetric, so a stratum whose negatives lean toward the positives (a few
    naive-like cells spread by CD45RA's spillover that the CD45RA gate kept) had that lean counted as
    positives though its positives formed a separate mode (HLA-DR+ Teff 9.8 % called for 4.9 %, HLA-DR+
    Tregs 15.3 % for 10.6 %). The subset's other cells are like the reference (naive), so they are
    counted beyond the reference's own tail (``k`` SDs of its negative peak, :func:`upper_tail`): a few
    of them carry the marker (naive-phenotype HLA-DR+ Tregs), and taking them as all negative undercut
    HLA-DR+ Tregs by 2-3 points on most simulated samples."""
    from ._methods import reference_threshold

    stratum, others = _finite_or_empty(stratum), _finite_or_empty(others)
    if min(len(stratum), len(others)) < MIN_COMPONENT or len(negative) < MIN_COMPONENT:
        return None
    ratio = _low_spread(negative * sign) / max(_low_spread(others * sign), 1e-12)
    details["negative_spread_ratio"] = ratio
    if ratio <= 1.0 + 1.0 / k:
        return None
    # the stratum's main peak must be its negatives (within the memory-like cells' negative peak):
    # a mirror of a positive main peak models the positives as negatives
    mode, sd = _half_width_sd(others, sign)
    own_mode = _half_width_sd(stratum, sign)[0]
    if abs(own_mode - mode) > OUTSIDE_NEGATIVES * sd:
        details["stratum_rejected"] = "the stratum's main peak lies outside the negatives"
        return None
    side = "high" if sign > 0 else "low"
    # the tail of the memory-like cells' negative peak, which the stratum's negatives spread like
    like = upper_tail(others, k=k, side=side)
    valley = _subset_valley(stratum, own_mode, sign, min_prominence=min_prominence,
                            min_depth=min_depth)  # fmt: skip
    if valley is not None:
        # the same check as the subset's valley, against that tail: a dip between two bumps of a
        # sparse positive plateau gated 1.2 % HLA-DR+ Tregs for 9.9 %
        check = {"tail_pct": _share(stratum, like.value, sign)}
        t_pct = _share(stratum, valley[0], sign)
        if _valley_inside_positives(stratum, valley[0], t_pct, like, check, min_prominence):
            details["stratum_valley_inside_positives"] = valley[0]
            valley = None
    if valley is not None:
        share = _share(stratum, valley[0], sign) / 100.0
        details["stratum_valley"] = valley[0]
        # a minor positive component's lower tail below the valley, as for the subset's valley
        corrected = _overlap_corrected(stratum, valley[0], sign, like.details["mode"],
                                       like.details["sd"])  # fmt: skip
        if corrected is not None:
            share = _share(stratum, corrected[0], sign) / 100.0
            details["stratum_overlap_correction"] = corrected[1]
    else:
        share = float(reference_threshold(stratum, None, side=side).details["positive_fraction"])
    # the subset's cells outside the stratum (x minus the stratum) beyond the reference's tail
    tail = upper_tail(negative, k=k, side=side).value
    n_like = max(_share(x, tail, sign) * len(x) - _share(stratum, tail, sign) * len(stratum), 0.0)
    n_like /= 100.0
    n_pos = float(np.clip(share * len(stratum) + n_like, 0.0, len(x)))
    pos_pct = 100.0 * n_pos / len(x)
    value = float(np.quantile(x * sign, 1.0 - n_pos / len(x))) * sign
    details.update(rule="stratum excess", stratum_n=len(stratum), stratum_share_pct=100.0 * share,
                   stratum_pct=pos_pct, like_reference_pct=100.0 * n_like / len(x),
                   like_reference_tail=float(tail))  # fmt: skip
    return value


def _split_by_strata(x, strata, sign: int, kw: dict, details: dict):
    """Threshold on ``x`` gating the sum of each stratum's count, each placed against its own part of
    the reference, when the reference's two parts have unlike negative peaks; else None."""
    x_in, x_out, ref_in, ref_out = (_finite_or_empty(a) for a in strata)
    if min(len(x_in), len(x_out), len(ref_in), len(ref_out)) < MIN_COMPONENT:
        return None
    # modes from the density peak; spreads on the side away from the positives (RMS beyond the median,
    # as the stratum-excess check measures them: a half width on a few hundred events is noisy)
    mode_a, mode_b = _half_width_sd(ref_in, sign)[0], _half_width_sd(ref_out, sign)[0]
    sd_a, sd_b = _low_spread(ref_in * sign), _low_spread(ref_out * sign)
    wide, narrow = max(sd_a, sd_b), max(min(sd_a, sd_b), 1e-12)
    shift, ratio = abs(mode_a - mode_b) / wide, wide / narrow
    details.update(strata_shift_sd=shift, strata_spread_ratio=ratio)
    if shift <= 1.0 and ratio <= 1.0 + 1.0 / kw["k"]:
        return None
    n_pos, rules = 0, []
    for part, ref in ((x_in, ref_in), (x_out, ref_out)):
        res = split_threshold(part, ref, **kw)
        n_pos += int(np.sum(part >= res.value if sign > 0 else part < res.value))
        rules.append(res.details["rule"])
    details.update(rule="strata", strata_rules=rules, strata_pct=100.0 * n_pos / len(x))
    return float(np.quantile(x * sign, 1.0 - n_pos / len(x))) * sign


def _finite_or_empty(a) -> np.ndarray:
    a = np.asarray(a, dtype=float).ravel()
    return a[np.isfinite(a)]


def _cuts_its_negative_peak(mode: float, value: float, tail: Placement, sign: int) -> bool:
    """Whether an excess cut lies on the wrong side of the subset's own main peak (``mode``) while that
    peak is the negatives (within the central 90 % of the reference's negative peak): the excess then
    counted most of the negatives, because the negative reference sits lower than the subset's
    negatives (naive CD4 HLA-DR half a negative SD below memory T cells': 56.8 % HLA-DR+ Teff called for
    5.4 %)."""
    inside = abs(mode - tail.details["mode"]) <= OUTSIDE_NEGATIVES * tail.details["sd"]
    return bool(inside and (value - mode) * sign < 0)


def _valley_inside_positives(
    x: np.ndarray, t: float, t_pct: float, tail: Placement, details: dict, min_prominence: float
) -> bool:
    """Whether a subset valley at ``t`` (gating ``t_pct`` %) splits positives rather than cutting the
    negatives' edge: it gates :data:`DISAGREE_PP` points fewer than the reference tail, or it lies beyond
    that tail and gates less than half as much. Beyond the tail (``k`` SDs of the negative peak) lie
    about 0.1 % of the negatives, so what the tail gates is positives; a valley that drops more of them
    than it keeps lies inside a sparse, broad positive population (a noise dip of its plateau: HLA-DR+
    Teff, 5 % of 7,000, 1.6 % called), which an absolute gap of points never flags.

    Not when the events between the tail and the valley are the negatives' own skewed tail: the subset
    is still denser at the tail than at any point beyond the valley (it has not reached the positives'
    level), and no peak lies between its main peak and the valley (Teff Ki67 negatives on logicle,
    right-skewed: 5 % of them beyond a 3-SD tail, 8.5 % called for 3.4 % by the tail)."""
    if not _inside_rule(t, t_pct, tail, details):
        return False
    if _negatives_tail_reaches(x, t, tail, min_prominence):
        details["valley_past_skewed_negatives"] = float(t)
        return False
    return True


def _inside_rule(t: float, t_pct: float, tail: Placement, details: dict) -> bool:
    if t_pct < details["tail_pct"] - DISAGREE_PP:
        return True
    beyond = (t - tail.value) * np.sign(tail.value - tail.details["mode"]) > 0
    return bool(beyond and t_pct < 0.5 * details["tail_pct"])


def _negatives_tail_reaches(
    x: np.ndarray, t: float, tail: Placement, min_prominence: float
) -> bool:
    """Whether the subset's density falls without a peak from its main peak, past the reference tail,
    down to the valley at ``t``, and is higher at the tail than anywhere beyond the valley."""
    grid, dens, _ = smooth_density(x)
    sign = 1.0 if tail.value >= tail.details["mode"] else -1.0
    main = int(np.argmax(dens))
    valley = int(np.argmin(np.abs(grid - t)))
    at_tail = float(np.interp(tail.value, grid, dens))
    if (valley - main) * sign <= 0 or (grid[main] - tail.value) * sign >= 0:
        return False
    lo, hi = sorted((main, valley))
    falls = not any(lo < p < hi for p in _peaks(dens, min_prominence))
    beyond = dens[valley + 1 :] if sign > 0 else dens[:valley]
    return falls and len(beyond) > 0 and at_tail > float(beyond.max())


def _negative_excess(
    x: np.ndarray, negative: np.ndarray, side: str, *, dip: bool, k: float = 3.0
) -> tuple[float, dict]:
    """(threshold, details) of the excess of ``x`` over the negative reference's shape.

    By default the fitted share is gated (the quantile of ``x`` holding that many events). When the
    subset has a dip of its own (``dip``: a valley of :data:`DIP_DEPTH`, too shallow to cut at) and the
    positive component holds at least :data:`MINOR_SHARE` of it, the positives form a mode of their own
    and the cut is the mixture boundary (where the fitted positive density reaches the negatives'): the
    share counts the whole fitted Gaussian, and when the positives are broad (HLA-DR dim-to-bright
    Tregs, spread over 0.1-0.2 logicle units) its lower tail reaches into the negatives' peak and takes in
    every place where their shape differs slightly from the reference's (13 % HLA-DR+ Tregs above a
    shallow gap: 23 % called at the share, 13 % at the boundary). Without a dip the positives are a
    shoulder inside the negatives' spread and only the share counts them (a boundary misses their lower
    part: 24 % called for 35 %); a minor component's density never reaches the negatives' where the two
    overlap, so a boundary would miss its lower tail too (HLA-DR+ Teff, ~5 %).

    Where the reference's negatives spread more than ``1 + 1/k`` times as wide as the subset's (RMS
    below the median, where positives are nearly absent; the stratum rule's ratio), the reference's
    shape does not model the subset's negatives: rescaled about its median to the subset's lower half it
    was still too narrow on the positive side (a long low tail widens a lower-half RMS), and the
    subset's own negatives' upper flank was counted as positives (HLA-DR+ Tregs 18.9 % called for 11.6
    %, on 896 Tregs whose negatives are half as wide as naive CD4's). The count is then the subset's
    excess over its own negative peak mirrored from the side away from the positives, as the stratum
    rule counts its stratum (``details["excess_cut"] = "own peak"``)."""
    from ._methods import reference_threshold

    sign = _side_sign(side)
    ratio = _low_spread(negative * sign) / max(_low_spread(x * sign), 1e-12)
    if ratio > 1.0 + 1.0 / k:
        own = reference_threshold(x, None, side=side)
        info = {"excess_cut": "own peak", "reference_spread_ratio": ratio,
                "excess_share_pct": 100.0 * float(own.details["positive_fraction"])}  # fmt: skip
        return float(own.value), info
    excess = reference_threshold(x, negative, side=side)
    share = 100.0 * float(excess.details["positive_fraction"])
    info = {"excess_share_pct": share, "excess_cut": "fitted share"}
    if dip and "boundary" in excess.details and share >= MINOR_SHARE:
        info.update(excess_cut="mixture boundary", excess_share_threshold=float(excess.value))
        return float(excess.details["boundary"]), info
    return float(excess.value), info


def _split_on_valleys(
    x, reference, sign: int, min_prominence: float, min_depth: float
) -> Placement:
    """The subset's own valley, else the reference's (both populations in it); Otsu without either."""
    from ._methods import density_valley

    side = "high" if sign > 0 else "low"
    ref = density_valley(reference, side=side, fallback="otsu")
    valley = _subset_valley(x, -np.inf * sign, sign, min_prominence=min_prominence,
                            min_depth=min_depth)  # fmt: skip
    details = {"reference_threshold": float(ref.value), "reference_status": ref.status,
               "tail_pct": _share(x, ref.value, sign), "n_subset": len(x)}  # fmt: skip
    if valley is None:
        details["rule"] = "reference valley"
        return Placement(float(ref.value), ref.status, ref.message, details)
    value, depth = valley
    details.update(rule="subset valley", valley_threshold=value, valley_depth=depth)
    message = _disagreement(details, _share(x, value, sign), "subset valley")
    return Placement(value, "ok", message, details)


def _disagreement(details: dict, used_pct: float, rule: str) -> str:
    """Record how far the rule used and the reference rule are apart; a message past DISAGREE_PP."""
    gap = abs(used_pct - details["tail_pct"])
    details["rules_differ_pp"] = gap
    if gap <= DISAGREE_PP:
        return ""
    details["disagree"] = True
    return (
        f"{rule} and reference rule disagree by {gap:.1f} points "
        f"({used_pct:.1f}% vs {details['tail_pct']:.1f}%); {rule} used"
    )


def _overlap_corrected(x, t: float, sign: int, neg_mode: float, neg_sd: float):
    """(threshold, details) gating the overlap-corrected positive count, or None (see the module doc)."""
    from scipy.special import ndtr  # standard normal CDF

    xs, t, neg_mode = x * sign, t * sign, neg_mode * sign  # positives above
    hi = xs[xs >= t]
    if len(hi) < MIN_COMPONENT or 100.0 * len(hi) / len(xs) >= MINOR_SHARE:
        return None
    grid, dens, _ = smooth_density(hi)
    peak = float(grid[np.argmax(dens)])
    upper = hi[hi > peak] - peak
    if len(upper) < MIN_EVENTS:
        return None
    spread = float(np.sqrt(np.mean(upper**2)))
    above = float(1.0 - ndtr((t - peak) / spread))  # share of the positives above the valley
    if above < 0.5:  # the valley is not below the positives' peak: no component to correct
        return None
    neg_cdf = float(ndtr((t - neg_mode) / neg_sd))
    negatives_above = float(np.sum(xs < t)) * (1.0 - neg_cdf) / max(neg_cdf, 1e-9)
    n_pos = float(np.clip((len(hi) - negatives_above) / above, 0.0, len(xs)))
    value = float(np.quantile(xs, 1.0 - n_pos / len(xs))) * sign
    info = {"positives_pct": 100.0 * n_pos / len(xs), "share_above_valley": above,
            "negatives_above": negatives_above, "valley": t * sign}  # fmt: skip
    return value, info


def patient_thresholds(
    adatas: Sequence[AnnData], strategy: str | Path | Strategy = "treg", *, per_sample: int = 5000
) -> dict[tuple[str, str], dict]:
    """Functional-marker thresholds placed once on a patient's pooled samples (all timepoints).

    The negative peak of Ki67 / HLA-DR / Helios on CD4 T cells is a property of the patient and the
    stain, while the positive fraction changes with treatment: pooling the timepoints gives each
    placement more events and the same cut at every timepoint. For every ``split`` gate of the strategy,
    up to ``per_sample`` events of the subset and of its reference (``within``) are taken from each gated
    sample (equal weight per timepoint) and :func:`split_threshold` is run on the pool. Instrument drift
    between the files moves the negative peak from one file to the next and a pooled cut cannot follow
    it: on simulated trials with strong drift this lost to per-sample placement (see
    ``benchmarks/gating_accuracy.py --placement sample patient``).

    Returns ``{(gate_id, marker): {"value", "status": "patient", "note"}}`` for ``gate(thresholds=...)``.
    """
    from ..panels import find_var
    from ._strategy import GateSpec, load_strategy

    strat = load_strategy(strategy)
    out: dict[tuple[str, str], dict] = {}
    for spec in (n for n in strat.nodes if isinstance(n, GateSpec) and n.method == "split"):
        dim, p = spec.dims[0], spec.params
        within, negative = p.get("within", spec.parent), p.get("reference")
        pools: dict[str, list[np.ndarray]] = {spec.parent: [], within: [], negative: []}
        stratum, parts = p.get("stratum"), {"stratum": [], "others": []}
        for i, adata in enumerate(adatas):
            pops = adata.obsm.get(K.POPULATIONS)
            var = find_var(adata, dim, required=False)
            if pops is None or var is None or spec.parent not in pops or within not in pops:
                continue
            values = np.asarray(adata[:, var].X, dtype=float).ravel()
            rng = np.random.default_rng([strat.seed, i])
            for name in pools:
                if name is None or name not in pops:
                    continue
                idx = np.flatnonzero(np.asarray(pops[name], dtype=bool))
                if len(idx) > per_sample:
                    idx = rng.choice(idx, per_sample, replace=False)
                pools[name].append(values[idx])
                # the subset's cells in the stratum and within's cells outside the reference, from
                # the same draws (split_threshold counts the stratum as a part of the subset)
                if name == spec.parent and stratum in pops:
                    parts["stratum"].append(values[idx][np.asarray(pops[stratum], bool)[idx]])
                if name == within and negative in pops:
                    parts["others"].append(values[idx][~np.asarray(pops[negative], bool)[idx]])
        subset = pools[spec.parent]
        if not subset or sum(map(len, subset)) < MIN_EVENTS:
            continue
        # the strategy's own split parameters, as gate() uses them on each sample
        kw = {key: p[key] for key in _METHOD_KW["split"] if key in p}
        neg = np.concatenate(pools[negative]) if pools.get(negative) else None
        if neg is not None and len(parts["stratum"]) == len(subset) and parts["others"]:
            kw.update(
                stratum=np.concatenate(parts["stratum"]), others=np.concatenate(parts["others"])
            )
        res = split_threshold(
            np.concatenate(subset), np.concatenate(pools[within]), negative=neg, **kw
        )
        note = f"{res.details['rule']} on {len(subset)} pooled samples of the patient"
        out[(spec.id, dim)] = {"value": float(res.value), "status": "patient", "note": note}
    return out
