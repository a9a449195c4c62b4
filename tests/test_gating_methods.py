"""Placement methods on synthetic arrays, including the hard cases openCyto gets wrong."""

from __future__ import annotations

import numpy as np
import pytest

from cytokit.errors import GatingError
from cytokit.gating import (
    EllipseGate,
    PolygonGate,
    density_valley,
    otsu_threshold,
    scatter_mixture,
    singlet_band,
    tail_threshold,
    time_anomalies,
)
from cytokit.gating._methods import _comb_polygon, smooth_density


def rng(seed=0):
    return np.random.default_rng(seed)


def bimodal(n=20000, frac=0.2, mu=(0.2, 0.6), sd=(0.05, 0.06), seed=0):
    r = rng(seed)
    k = int(n * frac)
    return np.r_[r.normal(mu[0], sd[0], n - k), r.normal(mu[1], sd[1], k)]


def test_smooth_density_integrates_to_one():
    grid, dens, bw = smooth_density(bimodal())
    assert np.isclose(dens.sum() * (grid[1] - grid[0]), 1.0, rtol=1e-3)
    assert bw > 0


@pytest.mark.parametrize("frac", [0.05, 0.3, 0.7, 0.95])
def test_valley_lies_between_the_modes_whatever_their_sizes(frac):
    p = density_valley(bimodal(frac=frac))
    assert p.status == "ok"
    assert 0.3 < p.value < 0.5


def test_valley_drifted_intensities_follow_the_data():
    for shift in (-0.1, 0.0, 0.15):
        p = density_valley(bimodal(mu=(0.2 + shift, 0.6 + shift)))
        assert abs(p.value - (0.4 + shift)) < 0.06


def test_no_valley_falls_back_to_tail_on_the_right_side():
    x = rng(1).normal(0.3, 0.05, 20000)
    high = density_valley(x, side="high", fallback="tail", k=3)
    assert high.status == "fallback" and "no valley" in high.message
    assert 0.42 < high.value < 0.48  # mode + 3 SD, never a dip inside the peak
    # the single peak is the gated population: cut on its other side
    low = density_valley(x, side="high", fallback="tail_main", k=3)
    assert 0.12 < low.value < 0.18
    with pytest.raises(GatingError, match="no valley"):
        density_valley(x, fallback="none")
    assert abs(density_valley(x, fallback="otsu").value - 0.3) < 0.1


def test_tiny_positive_population_is_caught_by_tail():
    r = rng(2)
    x = np.r_[r.normal(0.2, 0.04, 19900), r.normal(0.65, 0.05, 100)]  # 0.5 % positives
    p = density_valley(x, side="high")
    assert 0.3 < p.value < 0.55
    assert ((x >= p.value)[-100:]).mean() > 0.95 and ((x >= p.value)[:-100]).mean() < 0.01


def test_shoulder_of_dim_positives_is_not_split_inside_the_negative_peak():
    r = rng(3)
    x = np.r_[r.normal(0.2, 0.04, 18000), r.normal(0.34, 0.05, 2000)]  # shoulder, no clear valley
    p = density_valley(x, side="high")
    assert p.value > 0.25  # never inside the negative peak (openCyto #95/#218 failure)


def test_three_peaks_pair_rules():
    r = rng(4)
    x = np.r_[r.normal(0.1, 0.03, 3000), r.normal(0.4, 0.04, 12000), r.normal(0.7, 0.04, 5000)]
    assert 0.15 < density_valley(x, pair="below_main").value < 0.3
    assert 0.5 < density_valley(x, pair="above_main").value < 0.65
    with pytest.raises(GatingError):
        density_valley(x, pair="sideways")


def test_prior_restricts_the_search_and_is_the_fallback():
    r = rng(5)
    x = np.r_[r.normal(0.1, 0.03, 3000), r.normal(0.4, 0.04, 12000), r.normal(0.7, 0.04, 5000)]
    near = density_valley(x, prior=0.58, window=0.1)
    assert 0.5 < near.value < 0.65 and near.status == "ok"
    flat = rng(6).normal(0.3, 0.05, 10000)
    p = density_valley(flat, prior=0.5, window=0.05)
    assert p.status == "fallback" and p.value == 0.5


def test_tail_threshold_ignores_the_positive_side_spread():
    r = rng(7)
    neg = r.normal(0.2, 0.03, 18000)
    x = np.r_[neg, r.uniform(0.25, 0.8, 2000)]
    p = tail_threshold(x, k=3, side="high")
    assert abs(p.details["sd"] - 0.03) < 0.005 and abs(p.value - 0.29) < 0.02
    low = tail_threshold(-x, k=3, side="low")
    assert abs(low.value + 0.29) < 0.02
    gated = tail_threshold(x, k=3, side="low", peak="gated")
    assert abs(gated.value - 0.29) < 0.02


def test_otsu_splits_two_classes():
    assert 0.3 < otsu_threshold(bimodal(frac=0.5)).value < 0.5


def test_too_few_events_raise():
    with pytest.raises(GatingError, match="too few events"):
        density_valley(np.array([0.1, 0.2, np.nan]))


def test_singlet_band_excludes_doublets_and_survives_offset():
    r = rng(8)
    area = r.normal(0.4, 0.08, 10000)
    for offset in (0.0, 0.05):
        height = 0.02 + 0.8 * area + offset + r.normal(0, 0.008, 10000)
        a = area.copy()
        a[:800] = area[:800] * 1.9  # doublets: area doubles, height does not
        p = singlet_band(a, height)
        assert isinstance(p.value, PolygonGate) and len(p.value.vertices) == 4
        inside = p.value.apply(np.c_[a, height])
        assert inside[:800].mean() < 0.02 and inside[800:].mean() > 0.98


def test_scatter_mixture_picks_lymphocytes_by_position():
    r = rng(9)
    lym = r.multivariate_normal([0.3, 0.1], [[0.002, 0.0003], [0.0003, 0.0006]], 6000)
    mono = r.multivariate_normal([0.5, 0.3], [[0.004, 0], [0, 0.003]], 1500)
    gran = r.multivariate_normal([0.6, 0.65], [[0.004, 0], [0, 0.008]], 1000)
    X = np.r_[mono, lym, gran]  # order must not matter
    p = scatter_mixture(X, seed=1, shape="ellipse")
    assert isinstance(p.value, EllipseGate)
    m = p.value.apply(X)
    assert m[1500:7500].mean() > 0.95 and m[:1500].mean() < 0.05 and m[7500:].mean() < 0.01


def test_scatter_mixture_merges_a_split_lymphocyte_cloud():
    r = rng(10)
    lym = np.r_[
        r.normal([0.3, 0.1], [0.03, 0.02], (3000, 2)),
        r.normal([0.34, 0.11], [0.03, 0.02], (3000, 2)),
    ]
    mono = r.normal([0.55, 0.35], [0.04, 0.05], (1500, 2))
    p = scatter_mixture(np.r_[lym, mono], n_components=4)
    m = p.value.apply(np.r_[lym, mono])
    assert m[:6000].mean() > 0.93 and m[6000:].mean() < 0.05


def test_time_anomalies_cut_the_clog_only():
    r = rng(11)
    t = np.sort(r.uniform(0, 100, 40000))
    y = r.normal(0.4, 0.05, 40000)
    clog = (t > 50) & (t < 54)
    y[clog] += 0.08  # shifted intensities during a clog
    keep = np.ones(len(t), dtype=bool)
    keep[(t > 70) & (t < 72) & (r.random(len(t)) < 0.8)] = False  # a flow-rate drop
    t, y, clog = t[keep], y[keep], clog[keep]
    p = time_anomalies(t, y)
    inside = p.value.apply(np.c_[t, y])
    assert inside[clog].mean() < 0.1
    assert inside[(t > 70.5) & (t < 71.5)].mean() == 0
    assert inside[(t < 45) | (t > 80)].mean() > 0.99


def test_time_anomalies_keep_a_clean_file_whole():
    r = rng(12)
    t, y = np.sort(r.uniform(0, 1, 30000)), r.normal(0.4, 0.05, 30000)
    p = time_anomalies(t, y)
    assert p.value.apply(np.c_[t, y]).all()
    assert p.details["fraction_removed"] == 0


def test_time_qc_takes_a_long_pause_for_no_anomaly_and_still_cuts_a_burst():
    # acquisition paused for 60 % of the run (events at 0-40 s and 160-200 s), as in a file exported
    # from a gate of a paused run; the bins of the pause are empty and used to set the median rate,
    # so every bin with events looked too fast and the whole file fell back to "all kept", warned
    r = rng(15)
    t = np.sort(np.r_[r.uniform(0, 40, 3000), r.uniform(160, 200, 3000), r.uniform(20, 22, 900)])
    y = r.normal(0.4, 0.05, len(t))
    burst = (t > 20) & (t < 22)
    p = time_anomalies(t, y)
    assert p.status == "ok"
    inside = p.value.apply(np.c_[t, y])
    assert inside[(t < 10) | (t > 30)].mean() > 0.99  # beyond the time bin of the burst
    assert inside[burst].mean() < 0.2


def test_comb_polygon_is_union_of_segments():
    poly = PolygonGate(("t", "y"), _comb_polygon([(0, 1), (2, 3), (4, 5)], -1.0, 2.0))
    t = np.linspace(0.03, 4.93, 99)  # no point exactly on an edge
    inside = poly.apply(np.c_[t, np.full_like(t, 0.5)])
    expected = ((t > 0) & (t < 1)) | ((t > 2) & (t < 3)) | ((t > 4) & (t < 5))
    assert (inside == expected).all()


def test_time_qc_refuses_to_remove_most_events():
    r = rng(13)
    t = np.r_[r.uniform(0, 1, 500), r.uniform(1, 100, 500)]  # odd clock: half the events in 1 %
    p = time_anomalies(np.sort(t), r.normal(0.4, 0.05, 1000))
    assert p.status == "fallback" and "all kept" in p.message
    assert p.value.apply(np.c_[np.sort(t), np.full(1000, 0.4)]).all()


def test_peaks_match_scipy_find_peaks():
    signal = pytest.importorskip("scipy.signal")
    from cytokit.gating._methods import _peaks

    r = rng(14)
    for _ in range(50):
        x = np.r_[
            r.normal(0.2, 0.05, 3000), r.normal(r.uniform(0.3, 0.8), 0.05, r.integers(10, 2000))
        ]
        _, dens, _ = smooth_density(x, adjust=r.uniform(0.3, 1.5))
        for prom in (0.005, 0.03):
            ref, _ = signal.find_peaks(np.r_[0.0, dens, 0.0], prominence=prom * dens.max())
            assert np.array_equal(_peaks(dens, prom), ref - 1)


def test_mixture_window_brackets_the_small_positive_population():
    from cytokit.gating import mixture_window

    r = rng(15)
    neg = r.normal([0.3, 0.2], [0.1, 0.04], (5000, 2))
    act = r.normal([0.5, 0.27], [0.05, 0.04], (500, 2))  # CD25+ FOXP3-low: not the positives
    pos = r.normal([0.6, 0.55], [0.05, 0.04], (400, 2))
    p = mixture_window(np.r_[neg, act, pos])
    lo, hi = p.value
    assert 0.18 < lo < 0.32 and 0.5 < hi < 0.6
    v = density_valley(np.r_[neg, act, pos][:, 1], search=p.value, fallback="midpoint")
    assert 0.33 < v.value < 0.48


def _treg_like(seed: int, helper_shift: float):
    """FOXP3 of CD4 cells: a big negative peak with a tail, dim and bright positives; the helper
    (CD127) is lower on the positives by ``helper_shift``."""
    r = rng(seed)
    neg = np.c_[r.normal(0.18, 0.06, 6000), r.normal(0.5, 0.04, 6000)]
    dim = np.c_[r.normal(0.38, 0.035, 200), r.normal(0.5 - helper_shift, 0.04, 200)]
    bright = np.c_[r.normal(0.5, 0.04, 300), r.normal(0.5 - helper_shift, 0.04, 300)]
    return np.r_[neg, dim, bright], len(dim) + len(bright)


def test_helper_threshold_recovers_dim_positives_a_valley_misses():
    from cytokit.gating._methods_2d import helper_threshold

    X, truth = _treg_like(21, helper_shift=0.25)
    start = density_valley(X[:, 0], search=(0.2, 0.48), min_prominence=0.01).value
    p = helper_threshold(X[:, 0], X[:, 1], start)
    assert p.details["helper_used"]
    assert abs(p.details["n_positive"] - truth) < 0.05 * truth  # the axis valley counts right
    err_start = abs((X[:, 0] >= start).sum() - truth)
    err_helper = abs((X[:, 0] >= p.value).sum() - truth)
    assert err_helper < 0.6 * err_start  # the threshold moves toward that count
    # ... and stays between the negative peak and the dim positives
    assert 0.18 + 0.06 < p.value < 0.38


def test_helper_threshold_without_information_stays_near_the_start():
    from cytokit.gating._methods_2d import helper_threshold

    X, _ = _treg_like(22, helper_shift=0.0)
    start = 0.38
    p = helper_threshold(X[:, 0], X[:, 1], start)
    # a helper unrelated to the populations cannot move the count by more than noise
    moved = abs((X[:, 0] >= p.value).sum() - (X[:, 0] >= start).sum())
    assert moved < 0.25 * (X[:, 0] >= start).sum()
    few = helper_threshold(X[:5, 0], X[:5, 1], start)
    assert few.value == start and not few.details["helper_used"]


def test_midpoint_fallback_never_cuts_through_the_main_peak():
    # one FOXP3 peak with a dim 6 % shoulder and a guide window that a mixture put on the peak itself
    # (it split the negatives in two): the middle of that window would call half the cells positive
    rng = np.random.default_rng(5)
    neg = rng.normal(0.28, 0.05, 9400)
    pos = rng.normal(0.45, 0.06, 600)
    x = np.concatenate([neg, pos])
    res = density_valley(x, side="high", search=(0.279, 0.292), fallback="midpoint")
    assert res.status == "fallback"
    gated = float(np.mean(x >= res.value))
    assert res.value > 0.28 + 0.05  # beyond the negatives' own spread
    assert gated < 0.15, gated  # the midpoint (0.285) would have gated ~45 %
    assert "inside the main peak" in res.message
