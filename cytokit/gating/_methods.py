"""Data-driven 1-D gate placement: pure functions over arrays (the ``skimage.filters.threshold_*`` shape).

Each function takes the events of one sample (already restricted to the parent population, usually a
subsample of it) and returns a :class:`Placement`: a threshold or a gate object, a status (``"ok"`` when
the method's own criterion was met, ``"fallback"`` when a weaker rule had to be used) and diagnostics.
Nothing here knows about AnnData or strategies; every number comes from the sample's own distribution.

Lessons from openCyto's ``mindensity``/``tailgate``/``singletGate``/``flowClust`` (and its failures:
cutting on the wrong side of a single peak, no valley, openCyto #95 #97 #218 #246) are built in: the
valley is searched only between two real peaks, the side of the positive population is explicit, and
with one peak the threshold comes from the spread of the negative peak instead of a random dip.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = np.r_[rng.normal(0.2, 0.05, 9000), rng.normal(0.7, 0.05, 1000)]
>>> p = density_valley(x)
>>> 0.35 < p.value < 0.55, p.status
(True, 'ok')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import GatingError
from ._gates import PolygonGate

__all__ = [
    "Placement",
    "density_valley",
    "otsu_threshold",
    "reference_threshold",
    "smooth_density",
    "tail_threshold",
    "time_anomalies",
]

MIN_EVENTS = 20  # fewer events than this cannot place any data-driven gate


@dataclass
class Placement:
    """Result of one placement: ``value`` (a float threshold or a gate), status and diagnostics."""

    value: Any
    status: str = "ok"
    message: str = ""
    details: dict = field(default_factory=dict)


def _finite(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if len(x) < MIN_EVENTS:
        raise GatingError(f"too few events to place a gate ({len(x)} < {MIN_EVENTS})")
    return x


def _robust_sd(x: np.ndarray) -> float:
    """Normal-consistent spread from the median absolute deviation, never zero."""
    mad = 1.4826 * float(np.median(np.abs(x - np.median(x))))
    return mad if mad > 0 else float(np.std(x)) or 1e-6


def smooth_density(
    x: np.ndarray,
    *,
    bandwidth: float | None = None,
    adjust: float = 1.0,
    nbins: int = 512,
    span=None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Histogram smoothed with a Gaussian kernel on a regular grid: ``(grid, density, bandwidth)``.

    A binned KDE: exact enough for gate placement and linear in the number of events. The default
    bandwidth is Silverman's rule on the robust spread, times ``adjust`` (openCyto's knob).
    """
    x = _finite(x)
    if bandwidth is None:
        iqr = np.subtract(*np.percentile(x, [75, 25]))
        spread = min(np.std(x), iqr / 1.349) or np.std(x) or 1e-3
        bandwidth = 0.9 * spread * len(x) ** -0.2
    bandwidth = float(bandwidth) * adjust
    lo, hi = span if span is not None else np.percentile(x, [0.1, 99.9])
    lo, hi = float(lo) - 3 * bandwidth, float(hi) + 3 * bandwidth
    hist, edges = np.histogram(x, bins=nbins, range=(lo, hi))
    width = edges[1] - edges[0]
    dens = _gaussian_smooth(hist.astype(float), max(bandwidth / width, 0.5))
    dens /= max(dens.sum() * width, 1e-12)
    return 0.5 * (edges[:-1] + edges[1:]), dens, bandwidth


def _gaussian_smooth(y: np.ndarray, sigma: float) -> np.ndarray:
    """Convolution with a Gaussian kernel, zero outside (scipy.ndimage's mode="constant")."""
    half = int(4 * sigma + 0.5)  # as scipy.ndimage.gaussian_filter1d (truncate=4)
    t = np.arange(-half, half + 1)
    kernel = np.exp(-0.5 * (t / sigma) ** 2)
    out = np.convolve(y, kernel / kernel.sum(), mode="full")
    return out[half : half + len(y)]


def _peaks(dens: np.ndarray, min_prominence: float) -> np.ndarray:
    """Indices of peaks whose prominence is at least ``min_prominence`` of the highest point.

    Prominence as scipy.signal.find_peaks defines it: height above the higher of the two lowest
    points between the peak and the nearest higher ground on each side (the grid edges count as 0).
    """
    d = np.r_[0.0, dens, 0.0]
    rising = d[1:-1] > d[:-2]
    not_falling_next = d[1:-1] >= d[2:]
    cand = np.flatnonzero(rising & not_falling_next) + 1
    keep = []
    for i in cand:
        left = d[:i][::-1]
        higher = np.flatnonzero(left > d[i])
        left_min = left[: higher[0] if len(higher) else len(left)].min()
        right = d[i + 1 :]
        higher = np.flatnonzero(right > d[i])
        right_min = right[: higher[0] if len(higher) else len(right)].min()
        if d[i] - max(left_min, right_min) >= min_prominence * dens.max():
            keep.append(i - 1)
    return np.asarray(keep, dtype=int)


def _side_sign(side: str) -> int:
    if side not in ("high", "low"):
        raise GatingError(f"side must be 'high' or 'low', not {side!r}")
    return 1 if side == "high" else -1


def tail_threshold(
    x: np.ndarray,
    *,
    k: float = 3.0,
    side: str = "high",
    peak: str = "outside",
    mode: float | None = None,
    adjust: float = 1.0,
) -> Placement:
    """Threshold ``k`` robust SDs from the main peak, for dim/rare positives (openCyto's tailgate).

    ``side`` is where the gated events lie relative to the threshold. ``peak="outside"``: the main peak
    is the negative population and the threshold lies beyond it toward ``side`` (Ki67+ among CD4).
    ``peak="gated"``: the main peak is the gated population and the threshold lies on its other side
    (live cells below the viability-dye bright dead cells). The spread is measured on the half of the
    peak that faces away from the threshold (mirrored), so the other population cannot inflate it.

    The rule assumes the main peak is the population it names; when the data say otherwise the status
    is ``"fallback"`` (a guess) with the reason: fewer than 10 events on the mirrored half (spread
    from the whole sample), or, for ``peak="outside"``, a main peak holding under a quarter of the
    events with most events beyond the threshold (the main peak is then not the negative population
    but a bump on a smear), for ``peak="gated"``, most events cut away.
    """
    x = _finite(x)
    sign = _side_sign(side)
    if peak not in ("outside", "gated"):
        raise GatingError(f"peak must be 'outside' or 'gated', not {peak!r}")
    direction = sign if peak == "outside" else -sign
    if mode is None:
        grid, dens, _ = smooth_density(x, adjust=adjust)
        mode = float(grid[np.argmax(dens)])
    far = x[(x - mode) * direction <= 0] - mode
    sd = float(np.sqrt(np.mean(far**2))) if len(far) >= 10 else _robust_sd(x)
    value = mode + direction * k * sd
    gated = float(np.mean((x - value) * sign >= 0))
    share = min(2 * len(far) / len(x), 1.0)  # the main peak's events, its mirrored half twice
    details = {"mode": mode, "sd": sd, "k": k, "gated_fraction": gated, "peak_share": share}
    if len(far) < 10:
        return Placement(value, "fallback", "tail: main peak has no spread; guessed", details)
    if peak == "outside" and share < 0.25 and gated > 0.5:
        message = (
            f"tail: the main peak holds only {100 * share:.0f}% of events and {100 * gated:.0f}% "
            "lie beyond its tail; a guess"
        )
        return Placement(value, "fallback", message, details)
    if peak == "gated" and gated < 0.5:
        message = f"tail: only {100 * gated:.0f}% of events kept around the main peak; a guess"
        return Placement(value, "fallback", message, details)
    return Placement(value, "ok", "", details)


def otsu_threshold(x: np.ndarray, *, nbins: int = 256) -> Placement:
    """Otsu's threshold (maximum between-class variance), the last-resort 1-D split."""
    x = _finite(x)
    hist, edges = np.histogram(x, bins=nbins, range=tuple(np.percentile(x, [0.1, 99.9])))
    centers = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers) / np.maximum(w0, 1)
    m1 = (np.sum(hist * centers) - np.cumsum(hist * centers)) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return Placement(float(centers[np.argmax(between[:-1])]), "ok", "", {"method": "otsu"})


def reference_threshold(
    x: np.ndarray, reference: np.ndarray | None, *, side: str = "high", max_iter: int = 200
) -> Placement:
    """Threshold that gates the part of ``x`` in excess of a negative ``reference`` population.

    For positives that form a shoulder or a continuum rather than a second peak (CXCR5, CXCR3, CCR6 on
    memory CD4 T cells) neither a valley nor a tail k SDs above the negative peak counts them: the tail
    misses every positive inside the negative's spread. The sample's own negative reference (e.g. naive
    CD4 T cells, which lack these receptors: Morita et al., Immunity 2011) gives the shape of the
    negative population, so ``x`` is modelled as a two-part mixture: the reference's density (binned
    kernel estimate, rescaled about its median to the spread of the lower half of ``x``, where
    positives are nearly absent) for its negatives and one Gaussian for its positives, weights and
    Gaussian fitted by EM. The start is Overton's subtraction anchored at the reference median (Overton, Cytometry 1988):
    negatives put half their events on each side of it, so ``2 * F_x(median)`` are negative. The
    threshold is the quantile of ``x`` that gates exactly the fitted positive share, so gate and count
    agree. ``details["boundary"]`` (when the fit is kept) is the mixture boundary instead: the first
    point above the reference median where the fitted positive density reaches the negatives'.

    ``reference=None`` takes the main peak of ``x`` itself, mirrored about its mode from the side
    away from the positives: for a bright subset of a positive population (PD-1hi among PD-1+ cTfh),
    where no population carries the dim level alone.
    """
    x = _finite(x)
    sign = _side_sign(side)
    if reference is None:
        grid, dens, _ = smooth_density(x)
        mode = float(grid[np.argmax(dens)])
        low = x[(x - mode) * sign <= 0]
        reference = np.r_[low, 2 * mode - low]
    ref = _finite(reference)
    xs, rs = x * sign, ref * sign  # work with the positives above
    m = float(np.median(rs))
    start = 1.0 - min(2.0 * float(np.mean(xs < m)), 1.0)
    # the negatives of x may be wider or narrower than the reference's (compensation spread from other
    # markers differs between populations): scale the reference about its median by the ratio of the
    # two lower halves' spreads, where positives are (almost) absent
    below_x, below_r = xs[xs < m] - m, rs[rs < m] - m
    scale = 1.0
    if len(below_x) >= MIN_EVENTS and len(below_r) >= MIN_EVENTS:
        scale = float(np.sqrt(np.mean(below_x**2) / max(np.mean(below_r**2), 1e-12)))
    rs = m + (rs - m) * scale
    grid, f_neg, _ = smooth_density(rs, span=(min(xs.min(), rs.min()), max(xs.max(), rs.max())))
    width = grid[1] - grid[0]
    counts, _ = np.histogram(xs, bins=len(grid), range=(grid[0] - width / 2, grid[-1] + width / 2))
    counts = counts.astype(float)
    w = min(max(start, 0.02), 0.98)
    upper = xs[xs > np.quantile(xs, 1.0 - w)]
    mu, sd = float(np.mean(upper)), max(float(np.std(upper)), width)
    for _ in range(max_iter):
        f_pos = np.exp(-0.5 * ((grid - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))
        mix = w * f_pos + (1 - w) * f_neg
        resp = np.divide(w * f_pos, mix, out=np.zeros_like(mix), where=mix > 0)
        n_pos = float(np.sum(counts * resp))
        new_w = n_pos / counts.sum()
        if n_pos < 1:
            w = 0.0
            break
        mu = float(np.sum(counts * resp * grid) / n_pos)
        sd = max(float(np.sqrt(np.sum(counts * resp * (grid - mu) ** 2) / n_pos)), width)
        done = abs(new_w - w) < 1e-6
        w = new_w
        if done:
            break
    neg_sd = float(np.sqrt(np.mean((rs[rs < m] - m) ** 2))) if np.any(rs < m) else width
    rejected, boundary = {}, {}
    if w > 0 and mu - m < neg_sd:
        # the "positive" Gaussian sits inside the negatives (within one of their SDs of the median):
        # it models where the negatives' shape differs from the reference's, not positives (HLA-DR on
        # 452 Tregs: 49 % called for 12 % true); Overton's subtraction alone is the estimate
        rejected = {"em_fraction": w, "em_mean": mu * sign}
        w = start
    elif w > 0:
        # the mixture boundary: the first point above the reference median where the fitted positive
        # density reaches the negative one (posterior 1/2); recorded for callers that cut there
        f_pos = np.exp(-0.5 * ((grid - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))
        crossing = np.flatnonzero((grid > m) & (w * f_pos >= (1 - w) * f_neg))
        if len(crossing):
            boundary = {"boundary": float(grid[crossing[0]]) * sign}
    details = {
        **boundary,
        **rejected,
        "reference_median": m * sign,
        "n_reference": len(ref),
        "overton_fraction": start,
        "negative_scale": scale,
        "positive_fraction": w,
        "positive_mean": mu * sign,
        "positive_sd": sd,
    }
    if w * len(x) < 1:  # nothing in excess of the reference: the reference's own upper tail
        tail = tail_threshold(ref, side=side, peak="outside")
        return Placement(float(tail.value), "ok", "no excess over the reference", details)
    value = float(np.quantile(xs, 1.0 - w)) * sign
    return Placement(value, "ok", "", details)


def _valley_between(grid, dens, a: int, b: int) -> int:
    """Index of the lowest density between grid indices ``a < b`` (middle of a flat bottom)."""
    seg = dens[a : b + 1]
    low = np.flatnonzero(seg <= seg.min() * 1.0001 + 1e-300)
    return a + int(low[len(low) // 2])


def density_valley(
    x: np.ndarray,
    *,
    side: str = "high",
    min_prominence: float = 0.03,
    adjust: float = 1.0,
    pair: str = "top2",
    search: tuple[float, float] | None = None,
    prior: float | None = None,
    window: float = 0.08,
    fallback: str = "tail",
    k: float = 3.0,
) -> Placement:
    """Threshold at the density minimum between the two main peaks (openCyto's ``mindensity``).

    Parameters
    ----------
    x
        Values of one dimension (transformed units).
    side
        Where the gated (positive) population lies: ``"high"`` (>= threshold) or ``"low"``.
    min_prominence
        Peaks less prominent than this fraction of the highest are noise.
    adjust
        Bandwidth multiplier of the density estimate.
    pair
        Which peaks the valley separates: ``"top2"`` (any two main peaks), ``"below_main"`` /
        ``"above_main"`` (the highest peak and a peak below / above it, e.g. debris below the cells).
    search
        Only consider valleys inside this interval.
    prior
        A previous placement (e.g. the patient's consensus): the valley is searched within
        ``prior +/- window`` and the prior itself is the fallback.
    fallback
        With no valley: ``"tail"`` (the main peak is outside the gate: cut ``k`` robust SDs beyond it,
        toward ``side``), ``"tail_main"`` (the main peak is the gated population: cut ``k`` robust SDs
        from it on the other side), ``"otsu"``, ``"midpoint"`` (middle of ``search``) or ``"none"``
        (raise :class:`GatingError`).
    """
    x = _finite(x)
    grid, dens, bw = smooth_density(x, adjust=adjust)
    if prior is not None:
        search = (prior - window, prior + window)
    peaks = _peaks(dens, min_prominence)
    details: dict = {"bandwidth": bw, "peaks": grid[peaks].round(4).tolist()}
    if search is not None:
        details["search"] = [float(v) for v in search]
    if len(peaks) >= 2:
        top = peaks[np.argsort(dens[peaks])[::-1]]
        if pair not in ("top2", "below_main", "above_main"):
            raise GatingError(f"unknown peak pair rule {pair!r}")
        candidates = []
        for i, p in enumerate(top):
            for q in top[i + 1 :]:
                if pair != "top2" and (p != top[0] or (q < p) != (pair == "below_main")):
                    continue
                a, b = sorted((p, q))
                v = _valley_between(grid, dens, a, b)
                if search is None or search[0] <= grid[v] <= search[1]:
                    # depth of the valley relative to the lower of its two peaks
                    depth = 1 - dens[v] / min(dens[a], dens[b])
                    candidates.append((min(dens[a], dens[b]) * depth, v, a, b))
        if candidates:
            _, v, a, b = max(candidates)
            details.update(valley_depth=float(1 - dens[v] / min(dens[a], dens[b])))
            return Placement(float(grid[v]), "ok", "", details)
    if prior is not None:
        inside = (grid >= search[0]) & (grid <= search[1])
        if inside.any():
            local = np.flatnonzero(inside)
            v = local[np.argmin(dens[local])]
            if 0 < v < len(grid) - 1 and dens[v] < dens[local[0]] and dens[v] < dens[local[-1]]:
                return Placement(float(grid[v]), "ok", "valley near the prior", details)
        return Placement(float(prior), "fallback", "no valley near the prior; prior used", details)
    return _fallback(x, grid, dens, side, fallback, k, adjust, details)


def _fallback(x, grid, dens, side, fallback, k, adjust, details) -> Placement:
    message = f"no valley between two peaks; {fallback} threshold used"
    if fallback == "midpoint" and details.get("search"):
        mid, mode = float(np.mean(details["search"])), float(grid[np.argmax(dens)])
        tail = tail_threshold(x, k=k, side=side, peak="outside", mode=mode, adjust=adjust)
        if (mid - mode) * _side_sign(side) >= tail.details["sd"]:
            return Placement(mid, "fallback", message, details)
        # the guided window lies inside the main (negative) peak: its middle would cut that peak in
        # half (a mixture that split one peak), so cut beyond the peak's own spread instead
        message = (
            f"no valley; the guided window lies inside the main peak ({mode:.3f} +- "
            f"{tail.details['sd']:.3f}): tail threshold used"
        )
        details.update(tail.details)
        return Placement(float(tail.value), "fallback", message, details)
    if fallback == "otsu":
        p = otsu_threshold(x)
    elif fallback in ("tail", "tail_main"):
        mode = float(grid[np.argmax(dens)])
        peak = "outside" if fallback == "tail" else "gated"
        p = tail_threshold(x, k=k, side=side, peak=peak, mode=mode, adjust=adjust)
        if p.message:
            message = f"{message}; {p.message}"
    else:
        raise GatingError("no valley between two peaks")
    details.update(p.details)
    return Placement(float(p.value), "fallback", message, details)


def fallback_check(placement: Placement, *, side: str = "high") -> tuple[bool, str]:
    """Is a fallback's result what the rule meant to keep? ``(passes, reason)``.

    For a ``tail_main`` fallback of :func:`density_valley` (the main peak is the gated population,
    e.g. cells above debris) the check fails when a peak lies beyond the main peak toward ``side``:
    the tallest peak was then the population to remove (debris, dead cells) and it was kept. For a
    tail beyond the main peak it fails when most events were gated. Other fallbacks (midpoint, Otsu,
    prior) have no check and fail.
    """
    d = placement.details
    sign = _side_sign(side)
    if "mode" not in d or "k" not in d:
        return False, "no check for this fallback"
    mode, peaks = float(d["mode"]), [float(p) for p in d.get("peaks", [])]
    gated = float(d.get("gated_fraction", 0.0))
    beyond = [p for p in peaks if (p - mode) * sign > 2 * float(d.get("sd", 0.0))]
    if (float(placement.value) - mode) * sign < 0:  # tail_main: the main peak is kept
        if beyond:
            return False, f"a peak at {beyond[0]:.3f} lies beyond the kept main peak {mode:.3f}"
        return True, f"the kept main peak ({mode:.3f}) is the outermost peak"
    if gated > 0.5:
        return False, f"{100 * gated:.0f}% of events gated beyond the main peak"
    return True, f"{100 * gated:.0f}% of events beyond the main peak's tail"


def time_anomalies(
    time: np.ndarray,
    signal: np.ndarray | None = None,
    *,
    n_bins: int | None = None,
    k: float = 5.0,
    dims=("Time", "FSC-A"),
    max_signal_events: int = 100_000,
    max_removed: float = 0.3,
) -> Placement:
    """Acquisition QC: drop time bins whose event rate or median signal is anomalous (flowAI/PeacoQC idea).

    Events are binned over Time; a bin is anomalous when its count or its median ``signal`` lies more
    than ``k`` robust SDs from the median bin (the SD has a Poisson / standard-error floor, so a clean
    file is never cut for noise). The kept time is exported as one polygon over (Time, ``dims[1]``): the
    good segments as full-height bars joined by a strip below all the data, so it is a plain GatingML
    polygon. When more than ``max_removed`` of the events would go, the time channel is not behaving
    like an acquisition clock (or the file is mostly a clog): every event is kept, status ``fallback``.
    """
    t = np.asarray(time, dtype=float)
    if len(t) < MIN_EVENTS:
        raise GatingError(f"too few events for time QC ({len(t)})")
    y = np.zeros_like(t) if signal is None else np.asarray(signal, dtype=float)
    n_bins = n_bins or int(np.clip(len(t) // 400, 10, 200))
    t0, t1 = float(np.min(t)), float(np.max(t))
    if t1 <= t0:
        raise GatingError("time channel is constant")
    edges = np.linspace(t0, t1, n_bins + 1)
    which = np.minimum(((t - t0) * (n_bins / (t1 - t0))).astype(np.int64), n_bins - 1)
    counts = np.bincount(which, minlength=n_bins).astype(float)
    # each bin's count against the rate of the run over the time it was acquiring: a pause (the
    # operator's, or a file exported from a gate of a paused run) holds no events to remove, and
    # the bins it empties must not set the median rate (they flagged every other bin as too fast)
    active = np.diff(_live_time(t, edges))
    live = active > 0
    rate = counts[live] / active[live]
    med_rate = float(np.median(rate))
    expected = med_rate * active
    spread = _robust_sd(rate) * active  # bins differ by more than Poisson noise on a real run
    floor = np.sqrt(np.maximum(expected, 1.0))
    z_rate = np.where(live, (counts - expected) / np.maximum(spread, floor), 0.0)
    bad = np.abs(z_rate) > k
    rate_bad = float(counts[bad].sum() / counts.sum())
    if signal is not None:
        step = max(1, len(t) // max_signal_events)  # medians need far fewer events than rates
        w, ys = which[::step], y[::step]
        order = np.lexsort((ys, w))  # grouped by bin, sorted within: medians by index
        sub_counts = np.bincount(w, minlength=n_bins)
        starts = np.r_[0, np.cumsum(sub_counts)[:-1]]
        lo_i = starts + np.maximum(sub_counts - 1, 0) // 2
        hi_i = starts + sub_counts // 2
        ys_sorted = ys[order]
        lo_i, hi_i = np.minimum(lo_i, len(ys) - 1), np.minimum(hi_i, len(ys) - 1)
        meds = 0.5 * (ys_sorted[lo_i] + ys_sorted[hi_i])
        meds = np.where(sub_counts > 0, meds, np.nan)
        valid = np.isfinite(meds)
        # the standard error of each bin's own median (a bin cut short by a pause has fewer events)
        se = 1.2533 * _robust_sd(ys) / np.sqrt(np.maximum(sub_counts, 1.0))
        scale = np.maximum(_robust_sd(meds[valid]), se)
        z_sig = np.where(valid, (meds - np.nanmedian(meds)) / scale, 0.0)
        bad |= np.abs(z_sig) > k
    frac = float(counts[bad].sum() / counts.sum())
    status, message = "ok", ""
    if frac > max_removed:
        status = "fallback"
        message = f"time QC would remove {100 * frac:.0f}% of events; all kept"
        bad[:] = False
    ymin, ymax = float(np.min(y)) - 1.0, float(np.max(y)) + 1.0
    eps = 1e-6 * (t1 - t0)
    lo_edges, hi_edges = edges[:-1].copy(), edges[1:].copy()
    lo_edges[0], hi_edges[-1] = t0 - eps, t1 + eps
    segments = _good_segments(~bad, lo_edges, hi_edges)
    if not segments:
        raise GatingError("every time bin is anomalous")
    gate = PolygonGate(tuple(dims), _comb_polygon(segments, ymin, ymax))
    removed = float(counts[bad].sum() / counts.sum())
    details = {
        "n_bins": n_bins,
        "bad_bins": np.flatnonzero(bad).tolist(),
        "fraction_removed": removed,
        "rate_anomalous": rate_bad,
    }
    if status == "fallback":  # keeping every event is harmless when the flow rate was steady
        passed = rate_bad == 0
        reason = ("steady event rate: only the signal trends over the run" if passed
                  else f"{100 * rate_bad:.0f}% of events in bins of anomalous event rate")  # fmt: skip
        details["check"] = {"passed": passed, "reason": reason}
    return Placement(gate, status, message, details)


#: an inter-event gap this many times the run's median gap is a pause: a steady flow's gaps are
#: exponential (Poisson arrivals), so one this long comes with probability 2**-50 per event
PAUSE_GAPS = 50.0


def _live_time(t: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Acquisition time elapsed up to each of ``at`` with the pauses taken out (gaps between events
    longer than :data:`PAUSE_GAPS` median gaps). The median is of the positive gaps: a clock coarser
    than the event rate stamps many events alike."""
    ts = t if bool(np.all(t[1:] >= t[:-1])) else np.sort(t)  # acquisition order is time order
    gaps = np.diff(ts)
    positive = gaps[gaps > 0]
    if not len(positive):
        return np.asarray(at, dtype=float) - float(at[0])
    long = np.flatnonzero(gaps > PAUSE_GAPS * float(np.median(positive)))
    starts, ends = ts[long], ts[long + 1]
    # live time is piecewise linear in clock time: slope 1 outside the pauses, flat inside them
    knots = np.r_[ts[0], np.column_stack([starts, ends]).ravel(), ts[-1]]
    lost = np.r_[0.0, np.column_stack([np.zeros_like(starts), ends - starts]).ravel(), 0.0]
    live_at_knots = knots - knots[0] - np.cumsum(lost)
    return np.interp(at, knots, live_at_knots)


def _good_segments(good: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> list[tuple[float, float]]:
    segs: list[tuple[float, float]] = []
    for i in np.flatnonzero(good):
        if segs and segs[-1][1] == lo[i]:
            segs[-1] = (segs[-1][0], float(hi[i]))
        else:
            segs.append((float(lo[i]), float(hi[i])))
    return segs


def _comb_polygon(segments, ymin: float, ymax: float) -> tuple[tuple[float, float], ...]:
    """Union of full-height bars over ``segments`` joined by a strip below ``ymin + 0.5``."""
    strip = ymin + 0.5
    verts = [(segments[0][0], ymin), (segments[0][0], ymax)]
    for i, (a, b) in enumerate(segments):
        if i:
            verts += [(a, strip), (a, ymax)]
        verts += [(b, ymax)]
        if i < len(segments) - 1:
            verts += [(b, strip)]
    verts += [(segments[-1][1], ymin)]
    return tuple((float(px), float(py)) for px, py in verts)
