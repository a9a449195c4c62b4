"""Data-driven 2-D gate placement: scatter regions (singlets, lymphocytes) and mixture models.

Pure functions over an ``(n, 2)`` array of one sample's events returning a :class:`Placement` whose
value is a gate object (:class:`PolygonGate`, :class:`EllipseGate`) or a search window; the 1-D
thresholds live in ``_methods.py``. Gaussian mixtures (scikit-learn's ``GaussianMixture``, via
:func:`_gmm_2d`) serve the scatter mixture and the guided FOXP3 valley.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from ..errors import GatingError
from ._gates import EllipseGate, PolygonGate
from ._methods import MIN_EVENTS, Placement, _gaussian_smooth, _robust_sd

__all__ = [
    "density_region",
    "helper_threshold",
    "mixture_window",
    "scatter_mixture",
    "singlet_band",
]


def singlet_band(
    area: np.ndarray,
    height: np.ndarray,
    *,
    k_low: float = 4.0,
    k_high: float = 6.0,
    dims=("FSC-A", "FSC-H"),
) -> Placement:
    """Singlets: a band around the main ridge of height vs area (openCyto's ``singletGate``).

    The ridge ``height = a + b * area`` is fitted to per-bin medians of the central events; the band keeps
    events whose relative residual lies within ``-k_low`` / ``+k_high`` robust SDs. Doublets sit below the
    ridge (twice the area, less than twice the height). Returned as a 4-vertex :class:`PolygonGate`.
    """
    area, height = np.asarray(area, float), np.asarray(height, float)
    ok = np.isfinite(area) & np.isfinite(height)
    area, height = area[ok], height[ok]
    if len(area) < MIN_EVENTS:
        raise GatingError(f"too few events to place a gate ({len(area)} < {MIN_EVENTS})")
    lo_a, hi_a = np.percentile(area, [5, 90])
    edges = np.linspace(lo_a, hi_a, 21)
    which = np.digitize(area, edges) - 1
    cx, cy = [], []
    for i in range(20):
        sel = which == i
        if sel.sum() >= 10:
            cx.append(np.median(area[sel]))
            cy.append(np.median(height[sel]))
    if len(cx) < 3:
        b, a = np.polyfit(area, height, 1)
    else:
        b, a = np.polyfit(cx, cy, 1)
    pred = a + b * area
    core = (pred > 0) & (area >= lo_a)
    rel = height[core] / pred[core] - 1
    centre = float(np.median(rel))
    sd = _robust_sd(rel[np.abs(rel - centre) < 5 * _robust_sd(rel)])
    f_lo, f_hi = 1 + centre - k_low * sd, 1 + centre + k_high * sd
    span = hi_a - lo_a
    x0, x1 = float(area.min() - 0.05 * span), float(area.max() + 0.05 * span)

    def line(xv, f):
        return float((a + b * xv) * f)

    verts = ((x0, line(x0, f_lo)), (x1, line(x1, f_lo)), (x1, line(x1, f_hi)), (x0, line(x0, f_hi)))
    details = {"slope": float(b), "intercept": float(a), "rel_sd": float(sd), "rel_centre": centre}
    status = "ok" if b > 0 else "fallback"
    msg = "" if b > 0 else "height does not rise with area; band is a guess"
    return Placement(PolygonGate(tuple(dims), verts), status, msg, details)


#: a scatter cloud is taken for dead cells when most of its events are on the dead side of the viability
#: dye's live/dead valley: "mostly" is a majority, no tuned level (a lymphocyte gate whose events are
#: mostly dead is not a lymphocyte gate whatever the sample)
MOSTLY_LIVE = 0.5


def scatter_mixture(
    X: np.ndarray,
    *,
    n_components: int | tuple[int, ...] = (2, 3, 4),
    select: str = "lowest_y",
    min_weight: float = 0.15,
    distance_square: float | None = None,
    shape: str = "density",
    dims=("FSC-A", "SSC-A"),
    seed: int = 0,
    live: np.ndarray | None = None,
    X_live: np.ndarray | None = None,
) -> Placement:
    """A scatter population (lymphocytes) as one component of a Gaussian mixture (flowClust's idea).

    The mixture (full covariances, EM) is fitted on the given events (a subsample); the number of components is chosen by BIC
    among ``n_components``. Among components holding at least ``min_weight`` of the events,
    ``select="densest_low"`` picks the most compact one (highest peak density) in the lower half of
    side scatter (lymphocytes: small, agranular, tight), ``"lowest_y"`` the one with the lowest mean
    side scatter, ``"largest"`` the heaviest. Overlapping components of the pick are merged into it.
    ``shape="density"`` (the default) returns the density hill around the picked component
    (:func:`density_region`) as a polygon: real scatter clouds are not ellipses, and on a real mouse
    sample with expert gates (FlowSOM's example file, ``benchmarks/real_expert_gates.py``) the ellipse
    lost 16 % of the expert's lymphocytes (mean F1 of six populations 0.90 against 0.97).
    ``shape="ellipse"`` gives the component's ellipse at ``distance_square`` (Mahalanobis radius
    squared); by default the largest radius, up to chi2(0.99, 2), at which the ellipse still holds
    mostly events of its own component.

    ``live`` (bool per row of ``X``: the event is on the live side of the viability dye's live/dead
    valley) guards against dead cells. In a poorly thawed sample dead cells can outnumber the
    lymphocytes and form the densest low-side-scatter cloud themselves (dead cells shrink: lower
    forward scatter, equal or higher side scatter, bright in the dye); the cloud picked above is
    then mostly dye-bright. When fewer than :data:`MOSTLY_LIVE` of the picked gate's events are
    live, the same rule is applied to the live events only (``X_live``, default ``X[live]``): the
    densest low-side-scatter cloud of the viable cells, which is the lymphocytes whatever the number
    of dead cells. That gate is used when it holds more live events than the first (status
    ``fallback``; ``details["viability"]`` records both clouds' live shares and why).
    """
    X = np.asarray(X, dtype=float)[:, :2]
    finite = np.isfinite(X).all(axis=1)
    X = X[finite]
    kw = dict(n_components=n_components, select=select, min_weight=min_weight,
              distance_square=distance_square, shape=shape, dims=dims, seed=seed)  # fmt: skip
    first = _scatter_pick(X, **kw)
    if live is None:
        return first
    live = np.asarray(live, dtype=bool)[finite]
    share = _live_share(first.value, X, live)
    check = {"live_pct": _pct(share), "dead_side_pct": _pct(1 - live.mean())}
    if share is None or share >= MOSTLY_LIVE:
        return Placement(first.value, first.status, first.message,
                         {**first.details, "viability": check})  # fmt: skip
    X_live = X[live] if X_live is None else np.asarray(X_live, dtype=float)[:, :2]
    X_live = X_live[np.isfinite(X_live).all(axis=1)]
    low = (
        f"low viability: {check['dead_side_pct']:.0f}% of the parent's events are viability-dye "
        f"bright; the densest low-side-scatter cloud is {100 * (1 - share):.0f}% dead cells"
    )
    try:
        alt = _scatter_pick(X_live, **kw)
    except GatingError as err:
        check["rule"] = f"no refit on the live events ({err.message})"
        return Placement(first.value, "fallback", f"{low}; {check['rule']}, that cloud kept",
                         {**first.details, "viability": check})  # fmt: skip
    alt_share = _live_share(alt.value, X, live)
    check.update(alt_live_pct=_pct(alt_share), first=_mixture_summary(first.details))
    if alt_share is None or alt_share <= share:
        check["rule"] = "the cloud picked among the live events is no more live: first cloud kept"
        return Placement(first.value, "fallback", f"{low}; {check['rule']}",
                         {**first.details, "viability": check})  # fmt: skip
    check["rule"] = "picked among the viability-dye negative events"
    message = (
        f"{low}; lymphocytes picked among the viability-dye negative events instead "
        f"({100 * alt_share:.0f}% live)"
    )
    return Placement(alt.value, "fallback", message, {**alt.details, "viability": check})


def _live_share(gate, X: np.ndarray, live: np.ndarray) -> float | None:
    """Share of the gate's events (of ``X``) that are live; None when it holds too few to say."""
    inside = gate.apply(X)
    if inside.sum() < MIN_EVENTS:
        return None
    return float(live[inside].mean())


def _pct(share: float | None) -> float | None:
    return None if share is None else round(100.0 * float(share), 2)


def _mixture_summary(details: dict) -> dict:
    """The first pick's mixture summary (weights, means, peak) kept in the record of a refit."""
    return {k: details[k] for k in ("weights", "means", "picked", "peak") if k in details}


def _scatter_pick(
    X: np.ndarray,
    *,
    n_components,
    select: str,
    min_weight: float,
    distance_square: float | None,
    shape: str,
    dims,
    seed: int,
) -> Placement:
    """:func:`scatter_mixture`'s pick on finite ``(n, 2)`` events, without the viability check."""
    if len(X) < 10 * MIN_EVENTS:
        raise GatingError(f"too few events for a scatter mixture ({len(X)})")
    ks = (n_components,) if isinstance(n_components, int) else tuple(n_components)
    fits = [_gmm_2d(X, n, seed=seed) for n in ks]
    gm = min(fits, key=lambda f: f["bic"])
    weights, means, covs = gm["weights"], gm["means"], gm["covs"]
    pick = _pick_component(weights, means, covs, select, min_weight)
    members = _same_population(means, covs, pick)
    own = np.isin(gm["labels"], members)
    mean, cov = X[own].mean(0), np.cov(X[own].T)
    if distance_square is None:
        # only components of higher side scatter (monocytes, granulocytes) limit the ellipse;
        # dead cells and debris below or beside it are removed by their own gates
        foreign = np.flatnonzero(means[:, 1] > means[pick, 1] + np.sqrt(covs[pick, 1, 1]))
        others = np.isin(gm["labels"], np.setdiff1d(foreign, members))
        distance_square = _ellipse_radius(X, ~others, mean, cov)
    details = {
        "n_components": len(weights),
        "weights": weights.round(4).tolist(),
        "means": means.round(4).tolist(),
        "picked": [int(m) for m in members],
    }
    if shape == "density":  # the density hill around the picked component, as a polygon
        region = density_region(X, start=tuple(means[pick]), dims=dims)
        return Placement(region.value, "ok", "", {**details, **region.details})
    gate = EllipseGate(
        tuple(dims),
        (float(mean[0]), float(mean[1])),
        ((float(cov[0, 0]), float(cov[0, 1])), (float(cov[1, 0]), float(cov[1, 1]))),
        float(distance_square),
    )
    return Placement(gate, "ok", "", details)


def density_region(
    X: np.ndarray,
    *,
    start: tuple[float, float] | None = None,
    level: float = 0.03,
    saddle: float = 0.3,
    n_rays: int = 64,
    nbins: int = 128,
    dims=("FSC-A", "SSC-A"),
) -> Placement:
    """The density hill around ``start`` as a polygon: rays stop at a low level or at a saddle.

    A smoothed 2-D histogram is climbed from ``start`` (e.g. a mixture component's mean) to its
    local density peak; along ``n_rays`` rays the boundary is where the density falls below
    ``level`` x the peak, or where it rises again by a factor ``1 + saddle`` above its running
    minimum (the valley toward a neighbouring population: dead cells, monocytes). Shape-free, so an
    elongated or skewed lymphocyte cloud is kept whole (a density-contour gate, flowDensity's idea).
    """
    X = np.asarray(X, dtype=float)[:, :2]
    X = X[np.isfinite(X).all(axis=1)]
    if len(X) < 10 * MIN_EVENTS:
        raise GatingError(f"too few events for a density region ({len(X)})")
    lo = np.percentile(X, 0.5, axis=0)
    hi = np.percentile(X, 99.5, axis=0)
    pad = 0.1 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    hist, _, _ = np.histogram2d(
        X[:, 0], X[:, 1], bins=nbins, range=[[lo[0], hi[0]], [lo[1], hi[1]]]
    )
    sig = max(1.0, 0.9 * nbins * len(X) ** (-1 / 6) / 6)  # ~Scott's rule on the padded span
    dens = np.apply_along_axis(_gaussian_smooth, 0, hist, sig)
    dens = np.apply_along_axis(_gaussian_smooth, 1, dens, sig)
    step = (hi - lo) / nbins
    if start is None:
        i, j = np.unravel_index(np.argmax(dens), dens.shape)
    else:
        i, j = np.clip(((np.asarray(start) - lo) / step).astype(int), 0, nbins - 1)
    i, j = _climb(dens, int(i), int(j))
    peak = dens[i, j]
    angles = np.linspace(0, 2 * np.pi, n_rays, endpoint=False)
    t = np.arange(1, 2 * nbins) * 0.5
    radii = np.empty(n_rays)
    for k, a in enumerate(angles):
        pi = np.clip(np.round(i + t * np.cos(a)).astype(int), 0, nbins - 1)
        pj = np.clip(np.round(j + t * np.sin(a)).astype(int), 0, nbins - 1)
        d = dens[pi, pj]
        run_min = np.minimum.accumulate(d)
        rise = (d > run_min * (1 + saddle)) & (d > run_min + 0.02 * peak)
        stop = (d < level * peak) | rise
        edge = (pi == 0) | (pi == nbins - 1) | (pj == 0) | (pj == nbins - 1)
        first = np.flatnonzero(stop | edge)
        end = first[0] if len(first) else len(t) - 1
        if d[end] > run_min[end] and end > 0:  # a saddle: stop at the valley bottom before it
            end = int(np.argmin(d[: end + 1]))
        radii[k] = t[end]
    radii = np.median(np.c_[np.roll(radii, 1), radii, np.roll(radii, -1)], axis=1)
    cx, cy = lo + (np.array([i, j]) + 0.5) * step
    vx = cx + radii * np.cos(angles) * step[0]
    vy = cy + radii * np.sin(angles) * step[1]
    verts = tuple((float(a), float(b)) for a, b in zip(vx, vy, strict=True))
    details = {"peak": [float(cx), float(cy)], "level": level, "smoothing_bins": float(sig)}
    return Placement(PolygonGate(tuple(dims), verts), "ok", "", details)


def _climb(dens: np.ndarray, i: int, j: int) -> tuple[int, int]:
    """Steepest ascent on a grid from (i, j) to a local maximum."""
    while True:
        window = dens[max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2]
        a, b = np.unravel_index(np.argmax(window), window.shape)
        ni, nj = max(i - 1, 0) + a, max(j - 1, 0) + b
        if (ni, nj) == (i, j) or dens[ni, nj] <= dens[i, j]:
            return i, j
        i, j = ni, nj


def mixture_window(
    X: np.ndarray,
    *,
    n_components: int | tuple[int, ...] = (2, 3, 4, 5, 6),
    axis: int = 1,
    seed: int = 0,
) -> Placement:
    """Where to look for a valley: the widest gap between Gaussian-mixture components along ``axis``.

    A 2-D mixture (e.g. CD25 x FOXP3 of CD4 cells) separates a small positive population from the
    bulk better than a 1-D histogram; the component means bounding the largest gap (in units of the
    pooled SD along ``axis``) give the interval in which the 1-D valley is searched, so a noise dip
    inside the negative peak or a positive tail can never be chosen. Returns ``(low, high)``.
    """
    X = np.asarray(X, dtype=float)[:, :2]
    X = X[np.isfinite(X).all(axis=1)]
    if len(X) < 10 * MIN_EVENTS:
        raise GatingError(f"too few events for a mixture ({len(X)})")
    # how many populations the sample shows is the data's: components chosen by BIC (Schwarz 1978)
    ks = (n_components,) if isinstance(n_components, int) else tuple(n_components)
    fit = min((_gmm_2d(X, k, seed=seed) for k in ks), key=lambda f: f["bic"])
    means = fit["means"][:, axis]
    order = np.argsort(means)
    sd = np.sqrt(np.average(fit["covs"][:, axis, axis], weights=fit["weights"]))
    gaps = np.diff(means[order]) / sd
    i = int(np.argmax(gaps))
    # the window ends at the weighted centre of the components above the gap, not at the lowest
    # of them: a small component of dim positives (naive Tregs, low FOXP3) or of the negatives'
    # tail can sit just above the gap, and the valley lies between it and the positive peak
    upper = order[i + 1 :]
    above = float(fit["weights"][upper].sum())
    top = float(np.average(means[upper], weights=fit["weights"][upper]))
    window = (float(means[order[i]]), max(float(means[order[i + 1]]), top))
    details = {"window": list(window), "gap_sd": float(gaps[i]), "weight_above": above,
               "n_components": len(means)}  # fmt: skip
    return Placement(window, "ok", "", details)


def _pick_component(weights, means, covs, select: str, min_weight: float) -> int:
    """Index of the target component: ``lowest_y``, ``densest_low`` or ``largest``."""
    big = np.flatnonzero(weights >= min_weight)
    if len(big) == 0:
        big = np.array([int(np.argmax(weights))])
    if select == "lowest_y":
        return int(big[np.argmin(means[big, 1])])
    if select == "largest":
        return int(big[np.argmax(weights[big])])
    if select == "densest_low":
        # lymphocytes: the most compact cloud (highest peak density) in the low-side-scatter half
        low = big[means[big, 1] <= np.median(means[:, 1])]
        low = low if len(low) else big
        peak = weights[low] / np.sqrt(np.linalg.det(covs[low]))
        return int(low[np.argmax(peak)])
    raise GatingError(f"unknown selection {select!r} for scatter_mixture")


def _same_population(means, covs, pick: int, radius2: float = 4.0) -> list[int]:
    """Components overlapping the picked one, transitively (a population the mixture split up)."""
    members = [pick]
    grew = True
    while grew:
        grew = False
        for j in range(len(means)):
            if j in members:
                continue
            for m in members:
                d = means[j] - means[m]
                if (
                    d @ np.linalg.solve(covs[m], d) <= radius2
                    or d @ np.linalg.solve(covs[j], d) <= radius2
                ):
                    members.append(j)
                    grew = True
                    break
    return members


def _gmm_2d(X: np.ndarray, k: int, *, seed: int = 0, max_iter: int = 100) -> dict:
    """Full-covariance Gaussian mixture by EM (scikit-learn's ``GaussianMixture``, k-means start).

    Returns weights, means, covariances, hard labels, log-likelihood and BIC. The covariance floor
    scales with the data's own spread (a millionth of its total variance), so it means the same on
    logicle, arcsinh or linear units.
    """
    from sklearn.mixture import GaussianMixture

    X = np.asarray(X, dtype=float)
    floor = 1e-6 * float(np.trace(np.atleast_2d(np.cov(X.T)))) or 1e-9
    gm = GaussianMixture(
        n_components=k, covariance_type="full", reg_covar=floor, max_iter=max_iter,
        random_state=seed,
    )  # fmt: skip
    gm.fit(X)
    return {
        "weights": gm.weights_,
        "means": gm.means_,
        "covs": gm.covariances_,
        "labels": gm.predict(X),
        "loglik": float(gm.score(X) * len(X)),
        "bic": float(gm.bic(X)),
        "n_iter": int(gm.n_iter_),
    }


def _ellipse_radius(X, own, mean, cov, purity: float = 0.9, cap: float = 9.21) -> float:
    """Largest Mahalanobis radius^2 (<= ``cap``) at which the ellipse shell is still ``purity`` pure."""
    d = X - mean
    m2 = np.einsum("ij,jk,ik->i", d, np.linalg.inv(cov), d)
    radii = np.linspace(1.0, cap, 40)
    chosen = radii[0]
    for r2_in, r2_out in pairwise(radii):
        shell = (m2 > r2_in) & (m2 <= r2_out)
        if shell.sum() >= 5 and own[shell].mean() < purity:
            break
        chosen = r2_out
    return float(chosen)


def helper_threshold(
    x: np.ndarray,
    helper: np.ndarray,
    start: float,
    *,
    side: str = "high",
    min_gain: float = 1.0,
    max_shift: float | None = None,
) -> Placement:
    """Refine a 1-D threshold with a helper marker that separates the same two populations.

    FOXP3+ cells are also CD127-low, so in (FOXP3, CD127) the two populations lie further apart
    than along FOXP3 alone, and dim positives (naive Tregs) that overlap the negatives' tail on
    FOXP3 are still told apart. The events are split at ``start``; the axis between the two
    populations' medians, scaled by their pooled robust spread (a robust Fisher discriminant), is
    searched for a density valley between them. When that axis separates better than ``x`` alone
    (Fisher ratio ``min_gain`` times higher), the threshold on ``x`` is the one that gates as many
    events as the valley does on the axis (errors both ways balance out in the count), moved at
    most ``max_shift`` (default: one robust SD of the events on the negative side of ``start``, so
    the helper refines the cut within the negative peak's own spread, in the data's own units);
    otherwise ``start`` is kept. The gate stays a plain threshold on ``x``.
    """
    from ._methods import _side_sign, density_valley

    sign = _side_sign(side)
    X = np.column_stack([np.asarray(x, float), np.asarray(helper, float)])
    X = X[np.isfinite(X).all(axis=1)]
    pos = (X[:, 0] - start) * sign >= 0
    keep = Placement(float(start), "ok", "", {"helper_used": False})
    if min(pos.sum(), (~pos).sum()) < MIN_EVENTS:
        return keep
    w, c0, c1, var = _diagonal_axis(X, pos)  # diagonal robust LDA direction
    z = X @ w
    z0, z1 = float(c0 @ w), float(c1 @ w)
    sep_1d = abs(c1[0] - c0[0]) / np.sqrt(var[0])
    sep_2d = (z1 - z0) / np.sqrt(0.5 * (_mad2(z[pos]) + _mad2(z[~pos])))
    details = {"helper_used": False, "separation": [float(sep_1d), float(sep_2d)]}
    if not sep_2d >= min_gain * sep_1d:
        return Placement(float(start), "ok", "", details)
    try:
        v = density_valley(z, search=(z0, z1), min_prominence=0.01, fallback="none")
    except GatingError:
        return Placement(float(start), "ok", "", details)
    n_pos = int((z >= v.value).sum())
    order = np.sort(X[:, 0])[::-sign]  # descending for side="high"
    t = float(order[min(max(n_pos, 1), len(order)) - 1])
    if max_shift is None:
        max_shift = float(np.sqrt(_mad2(X[~pos, :1])[0]))
    t = float(np.clip(t, start - max_shift, start + max_shift))
    details.update(helper_used=True, n_positive=n_pos, axis_valley=float(v.value))
    return Placement(t, "ok", "", details)


def _mad2(X: np.ndarray) -> np.ndarray:
    """Squared normal-consistent MAD per column, never zero."""
    mad = 1.4826 * np.median(np.abs(X - np.median(X, axis=0)), axis=0)
    return np.maximum(mad, 1e-6) ** 2


def _diagonal_axis(X: np.ndarray, pos: np.ndarray):
    """``(w, c0, c1, var)``: the robust diagonal discriminant between the events ``pos`` and the rest
    (the difference of their medians ``c1 - c0`` over their pooled squared MAD ``var``, per column)."""
    c1, c0 = np.median(X[pos], axis=0), np.median(X[~pos], axis=0)
    var = 0.5 * (_mad2(X[pos]) + _mad2(X[~pos]))
    return (c1 - c0) / var, c0, c1, var


def discriminant_count(X: np.ndarray, signs, **kw) -> tuple[int | None, dict]:
    """How many events belong to a population that differs from the bulk on several markers at once:
    the size of :func:`discriminant_split` (None when its axis has no valley)."""
    pos, details = discriminant_split(X, signs, **kw)
    return (None if pos is None else int(pos.sum())), details


def discriminant_split(
    X: np.ndarray,
    signs,
    *,
    start: float | None = None,
    n_components=(2, 3, 4, 5, 6),
    fit_events: int = 4000,
    iters: int = 3,
    k_tail: float = 3.5,
    seed: int = 0,
    membership: bool = False,
) -> tuple[np.ndarray | None, dict]:
    """Which events belong to a population that differs from the bulk on several markers at once.

    Tregs are FOXP3+ CD25+ CD127lo: in real blood FOXP3 alone often has no valley (dim FOXP3 on
    Tregs, FOXP3lo activated conventional cells), yet the three markers together separate them. The
    columns of ``X`` are the markers, ``signs`` +1 where the population is brighter than the bulk
    (FOXP3, CD25) and -1 where dimmer (CD127). A Gaussian mixture (components chosen by BIC) gives
    the first split: the components that lie beyond the widest gap of their summed, sign-corrected
    distance from the heaviest component (in its SDs). Then, a few times, the axis between the two
    groups' medians scaled by their pooled robust spread (a robust diagonal discriminant) is searched
    for a density valley between them and the split is redrawn there. Returns the events above that
    valley as a mask over the rows of ``X`` (None when the axis has no valley: the populations do not
    separate) and diagnostics
    (``tail_count``: the events beyond ``k_tail`` robust SDs of the bulk's peak on the mixture's
    axis, openCyto's tail rule, a cruder estimate for when no valley exists; ``mixture_count``: the
    mixture's own count of the components distinct from the bulk on the first marker). The first split
    tried is that of the components beyond the widest gap on the first marker alone (see
    :func:`_primary_components`), then that of the summed score; when neither finds a valley, the
    split at ``start`` on the first column is tried.

    With ``membership=True`` the details also hold ``details["membership"]`` (an array over the rows of
    ``X``, NaN where a marker is not finite; the caller takes it out before recording the details):
    each event's probability of belonging to the population by the mixture, the summed posterior of
    the components it takes for the population (those beyond the widest gap of the summed score or of
    the first marker). Summed over a gate's events it estimates
    how many of them belong to the bulk (:func:`gate_impurity`).
    """
    from ._methods import density_valley

    X = np.asarray(X, dtype=float)
    finite = np.isfinite(X).all(axis=1)
    X = X[finite]
    signs = np.asarray(signs, dtype=float)
    details: dict = {}
    if len(X) < 10 * MIN_EVENTS:
        return None, {"reason": f"too few events ({len(X)})"}
    rng = np.random.default_rng(seed)
    # the mixture is fitted on robustly standardised markers: its k-means start is not scale-free,
    # and a marker with a wide range (CD25) would otherwise decide the starting clusters alone
    S = (X - np.median(X, axis=0)) / np.sqrt(_mad2(X))
    sub = S if len(S) <= fit_events else S[rng.choice(len(S), fit_events, replace=False)]
    gm = _gmm_bic(sub, n_components, seed=seed)
    bulk = int(np.argmax(gm.weights_))
    sd = np.sqrt(np.diag(gm.covariances_[bulk]))
    z = ((gm.means_ - gm.means_[bulk]) / sd) * signs
    score = z.sum(axis=1)
    order = np.argsort(score)
    upper = order[int(np.argmax(np.diff(score[order]))) + 1 :]
    post = gm.predict_proba(S)
    inits = [post[:, upper].sum(axis=1) > 0.5]
    details["tail_count"] = _tail_count(X, inits[0], k_tail)
    # the population is defined by the first marker (FOXP3); the helpers only sharpen it. A summed
    # score lets a helper with a narrow bulk (CD25 on naive cells) pick CD25+ memory Tconv as the
    # population, so the components beyond the widest gap on the first marker alone (and on the
    # population's side of the bulk on every helper) seed the axis first
    own = _primary_components(z)
    if own is not None:
        inits.insert(0, post[:, own].sum(axis=1) > 0.5)
        if z[own, 0].min() >= PRIMARY_DISTINCT:
            details["mixture_count"] = round(float(post[:, own].sum()))
    # the mixture's own population: the components beyond the widest gap of the summed score or of the
    # first marker (either split may leave out a component of the population that the other keeps, e.g.
    # a wide one of CD25-dim naive Tregs straddling the axis valley)
    population = upper if own is None else np.union1d(upper, own)
    if start is not None:
        inits.append((X[:, 0] - start) * signs[0] >= 0)
    details.update(n_components=len(gm.weights_), component_scores=np.sort(score).round(2).tolist())
    for pos in inits:
        for _ in range(iters):
            if min(pos.sum(), (~pos).sum()) < MIN_EVENTS:
                break
            w, c0, c1, _ = _diagonal_axis(X, pos)
            z = X @ w
            try:
                v = density_valley(
                    z, search=(float(c0 @ w), float(c1 @ w)), min_prominence=0.01, fallback="none"
                ).value
            except GatingError:
                break
            pos = z >= v
        else:
            details.update(weights=[float(v) for v in w], axis_valley=float(v))
            out = np.zeros(len(finite), dtype=bool)
            out[finite] = pos
            if membership:
                details["membership"] = _membership(post, population, finite)
            return out, details
    details["reason"] = "no valley on the discriminant axis"
    if membership:
        details["membership"] = _membership(post, population, finite)
    return None, details


def _membership(post: np.ndarray, population, finite: np.ndarray) -> np.ndarray:
    """Each row's summed posterior of the ``population`` components (NaN where not ``finite``)."""
    prob = np.full(len(finite), np.nan)
    prob[finite] = post[:, population].sum(axis=1)
    return prob


def gate_impurity(membership: np.ndarray, gated: np.ndarray) -> float | None:
    """% of the ``gated`` events expected to lie outside the population, by their ``membership``
    probabilities (:func:`discriminant_split`): the mixture's estimate of how impure a gate is. A gate
    that keeps dim negatives (FOXP3lo activated Tconv in the Treg gate) while missing as many of its
    own events can hold the right count with the wrong cells, and the readouts of its subsets (Ki67+,
    Helios+ % of Treg) then mix in those cells. None with fewer than ``MIN_EVENTS`` gated events."""
    prob = np.asarray(membership, dtype=float)[np.asarray(gated, dtype=bool)]
    prob = prob[np.isfinite(prob)]
    if len(prob) < MIN_EVENTS:
        return None
    return float(100.0 * np.mean(1.0 - prob))


def discriminant_polygon(Y: np.ndarray, pos: np.ndarray, *, dims) -> tuple[PolygonGate, dict]:
    """The split ``pos`` of several markers drawn on two of them (``Y``): the half-plane beyond the
    robust diagonal discriminant between ``pos`` and the rest (as :func:`discriminant_split`), cut
    where it holds as many events as ``pos``, as a polygon clipped to the data's range widened by
    that range on every side. Tregs are FOXP3+ CD25+ along a diagonal (dim FOXP3 goes with high
    CD25, FOXP3lo activated Tconv sit at lower FOXP3 for their CD25): a rectangle of two thresholds
    cuts that diagonal at a corner, missing naive Tregs and keeping activated Tconv."""
    Y = np.asarray(Y, dtype=float)
    ok = np.isfinite(Y).all(axis=1)
    Y, pos = Y[ok], np.asarray(pos, dtype=bool)[ok]
    w = _diagonal_axis(Y, pos)[0]
    z = Y @ w
    n = int(pos.sum())
    t = float(np.sort(z)[::-1][max(n, 1) - 1])
    lo, hi = Y.min(axis=0), Y.max(axis=0)
    span = np.maximum(hi - lo, 1e-6)
    lo, hi = lo - span, hi + span
    box = [(lo[0], lo[1]), (hi[0], lo[1]), (hi[0], hi[1]), (lo[0], hi[1])]
    vertices = clip_half_plane(box, w, t)
    kept = (z >= t) & pos
    details = {"weights": w.round(6).tolist(), "axis_threshold": t, "n_split": n,
               "agreement": float(2 * kept.sum() / max((z >= t).sum() + n, 1))}  # fmt: skip
    poly = PolygonGate(tuple(dims), tuple((float(a), float(b)) for a, b in vertices))
    return poly, details


def clip_half_plane(polygon, w: np.ndarray, t: float) -> list[tuple[float, float]]:
    """The convex ``polygon`` cut to ``w . p >= t`` (one Sutherland-Hodgman pass)."""
    out = []
    for a, b in zip(polygon, polygon[1:] + polygon[:1], strict=True):
        fa, fb = float(np.dot(w, a)) - t, float(np.dot(w, b)) - t
        if fa >= 0:
            out.append(a)
        if (fa >= 0) != (fb >= 0):
            r = fa / (fa - fb)
            out.append((a[0] + r * (b[0] - a[0]), a[1] + r * (b[1] - a[1])))
    return out


#: a mixture component distinct from the bulk on the defining marker: its mean beyond this many of the
#: bulk's SDs (outside the bulk's central 95 %, the two-sided 5 % point of a normal distribution)
PRIMARY_DISTINCT = 1.96


def _primary_components(z: np.ndarray) -> np.ndarray | None:
    """Components beyond the widest gap of the sign-corrected first-marker z (``z``: components x
    markers, in the bulk's SDs) that also lie on the population's side of the bulk on every helper."""
    order = np.argsort(z[:, 0])
    if len(order) < 2:
        return None
    upper = order[int(np.argmax(np.diff(z[order, 0]))) + 1 :]
    upper = upper[(z[upper, 1:] > 0).all(axis=1)]
    return upper if len(upper) else None


def _tail_count(X: np.ndarray, pos: np.ndarray, k: float) -> int | None:
    """Events beyond ``k`` robust SDs of the bulk's peak on the discriminant axis of split ``pos``."""
    from ._methods import tail_threshold

    if min(pos.sum(), (~pos).sum()) < MIN_EVENTS:
        return None
    z = X @ _diagonal_axis(X, pos)[0]
    return int((z >= tail_threshold(z, k=k).value).sum())


def _gmm_bic(X: np.ndarray, ks, *, seed: int = 0):
    """The scikit-learn ``GaussianMixture`` (full covariances) with the lowest BIC among ``ks``."""
    from sklearn.mixture import GaussianMixture

    floor = 1e-6 * float(np.trace(np.atleast_2d(np.cov(X.T)))) or 1e-9
    fits = [
        GaussianMixture(k, covariance_type="full", reg_covar=floor, random_state=seed).fit(X)
        for k in ks
    ]
    return min(fits, key=lambda g: g.bic(X))
