"""1-D thresholds of the engine: method dispatch, the guide-window fallback, and count matching.

:func:`_count_matched` turns the count of a population found on several markers at once (the
FOXP3/CD25/CD127 discriminant of a ``helpers:`` bound) into the threshold on one marker that gates
as many events.
"""

from __future__ import annotations

import numpy as np

from ..errors import GatingError
from . import _methods as M

#: events the FOXP3/CD25/CD127 mixture of the discriminant count is fitted on (a component of a 2-5 %
#: population then holds 80-200 events) ...
DISCRIMINANT_FIT = 4000
#: ... and refitted on when neither FOXP3 nor that fit's discriminant axis has a valley
DISCRIMINANT_REFIT = 16000

_METHOD_KW = {
    "valley": {"side", "min_prominence", "adjust", "pair", "search", "window", "fallback", "k"},
    "tail": {"side", "k", "adjust", "peak"},
    "otsu": {"nbins"},
    "reference": {"side"},
    "split": {
        "side",
        "k",
        "min_prominence",
        "min_depth",
        "reference_rule",
        "mostly_positive",
        "minority",
    },
}


def _one_d(method: str, x: np.ndarray, kw: dict) -> M.Placement:
    if method == "valley":
        return M.density_valley(x, **kw)
    if method == "tail":
        return M.tail_threshold(x, **kw)
    if method == "otsu":
        return M.otsu_threshold(x, **kw)
    raise GatingError(f"unknown threshold method {method!r}")


def _valley_above_window(x: np.ndarray, kw: dict, res: M.Placement) -> M.Placement:
    """A guided valley search found nothing in its window: look for the valley between the main
    peak and a peak above the window's lower end (the positive peak beyond a component the mixture
    put in the gap); keep the guided fallback ``res`` when there is none."""
    low = float(kw["search"][0])
    try:
        alt = M.density_valley(
            x, **{**kw, "search": (low, float(np.max(x))), "pair": "above_main", "fallback": "none"}
        )
    except GatingError:
        return res
    return M.Placement(alt.value, "ok", "valley above the guide window", alt.details)


def _count_matched(x: np.ndarray, sign: int, n_pos: int, rules: list) -> float:
    """The threshold on ``x`` (positives toward ``sign``) whose gate holds ``n_pos`` events; with
    ``rules`` (other bounds placed within the positives), the count after those bounds too."""
    order = np.sort(x)[::-sign]  # most positive first
    top = float(order[min(max(n_pos, 1), len(order)) - 1])
    if not rules:
        return top
    # the other bounds only remove events: the first threshold (gating n_pos .. 2.5 n_pos events on
    # x) at which the gate counts n_pos within the count's own Poisson noise (sqrt n_pos); when none
    # does, the one whose count comes closest
    ks = np.unique(np.linspace(n_pos, min(len(order), int(2.5 * n_pos) + 1), 60).astype(int))
    best, best_err = top, np.inf
    for k in ks:
        t = float(order[max(k, 1) - 1])
        inside = (x - t) * sign >= 0
        keep = inside.copy()
        for col, method, kw, side in rules:
            if inside.sum() < M.MIN_EVENTS:
                break
            thr = float(_one_d(method, col[inside], kw).value)
            keep &= (col - thr) * M._side_sign(side) >= 0
        if abs(int(keep.sum()) - n_pos) <= np.sqrt(n_pos):
            return t
        if abs(int(keep.sum()) - n_pos) < best_err:
            best, best_err = t, abs(int(keep.sum()) - n_pos)
    return best
