"""Figures: each function returns a Figure that draws; gates drawn as placed; no save/show side effects."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from test_readouts import make_gated

from cytokit import pl, readouts, stats
from cytokit.pl._gating import _draw_plot, gate_outline


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    return buf.getvalue()


@pytest.fixture(scope="module")
def trial():
    rows = []
    for p in range(5):
        for k, (tp, day) in enumerate([("D0", 0), ("D8", 8), ("D29", 29)]):
            adata = make_gated(n=800, seed=10 * p + k, treg_shift=0.1 * k)
            rows.append(
                {
                    "sample": f"P{p}_{tp}",
                    "patient": f"P{p}",
                    "timepoint": tp,
                    "day": day,
                    **readouts.sample_readouts(adata),
                }
            )
    summary = readouts.add_baseline_change(pd.DataFrame(rows))
    return summary, stats.paired_tests(summary)


def test_gating_path_draws_every_gate_with_percent_of_parent():
    adata = make_gated(n=1500)
    adata.uns["gating"]["gates"]["Treg"]["status"] = "fallback"
    panels = pl.gating_panels(adata, max_points=500)  # drawn from 500 events, counted on all
    titles = [p["title"] for p in panels]
    drawable = [g for g in adata.uns["gating"]["gates"].values() if g["gate"]]  # not boolean ones
    assert len(titles) == len(drawable) and not any(t.startswith("Teff:") for t in titles)
    assert any(t.startswith("cells: ") and t.endswith(" of all") for t in titles)
    pops = adata.obsm["populations"]
    expected = 100 * pops["Treg"].sum() / pops["CD4"].sum()
    assert f"Treg: {expected:.1f}% of CD4 [fallback]" in titles
    assert {p["gate"]["kind"] for p in panels} == {"range", "polygon", "ellipse"}
    assert sum(int(p["counts"].sum()) for p in panels if p["title"].startswith("cells:")) <= 500
    png = pl.gating_path_png(adata, max_points=500)
    assert png[:4] == b"\x89PNG"
    assert _png(pl.gating_path(adata))[:4] == b"\x89PNG"  # the notebook face: a Figure


def test_gating_path_ellipse_outline_matches_gate():
    adata = make_gated(n=500)
    panel = next(p for p in pl.gating_panels(adata) if p["gate"]["kind"] == "ellipse")
    (outline,) = gate_outline(panel["gate"], panel["xlim"], panel["ylim"])
    # covariance diag(0.05, 0.03), distance_square 4: semi-axes 2*sqrt(0.05) and 2*sqrt(0.03)
    d = outline - [0.5, 0.3]
    assert (d[:, 0] ** 2 / 0.05 + d[:, 1] ** 2 / 0.03) == pytest.approx(4.0)
    assert np.ptp(outline, axis=0) == pytest.approx(
        [4 * np.sqrt(0.05), 4 * np.sqrt(0.03)], rel=1e-3
    )


def test_gating_path_draws_data_and_gate_where_they_are():
    """The densest pixel and the gate line land at their data coordinates (y up, x right)."""
    rng = np.random.default_rng(0)
    adata = make_gated(n=4000)
    j = {m: i for i, m in enumerate(adata.var_names)}
    adata.X[:, j["CD4"]] = rng.normal(0.7, 0.01, adata.n_obs)
    adata.X[:, j["CD8"]] = rng.normal(0.2, 0.01, adata.n_obs)
    adata.obsm["populations"]["CD3"] = True
    panels = {p["title"].split(":")[0]: p for p in pl.gating_panels(adata)}
    cd4 = panels["CD4"]
    image = _draw_plot(cd4)
    h, w = image.shape[:2]
    (x0, x1), (y0, y1) = cd4["xlim"], cd4["ylim"]
    lum = image.astype(float).sum(axis=2)
    dense = np.argwhere(lum == lum[2:-2, 2:-2].min())  # darkest inner pixel: the densest bin
    row, col = dense.mean(axis=0)
    assert col / w * (x1 - x0) + x0 == pytest.approx(0.7, abs=0.03)
    assert y1 - row / h * (y1 - y0) == pytest.approx(0.2, abs=0.03)
    cd3 = panels["CD3"]  # 1-D: threshold 0.4, the red line at its column
    image = _draw_plot(cd3).astype(int)
    red = (image[..., 0] > 180) & (image[..., 1] < 80) & (image[..., 2] < 80)
    cols = np.flatnonzero(red.any(axis=0))
    (x0, x1) = cd3["xlim"]
    assert cols.size and cols.mean() / image.shape[1] * (x1 - x0) + x0 == pytest.approx(
        0.4, abs=0.02
    )


def test_strategy_diagram_from_list_and_table():
    adata = make_gated(n=400)
    fig = pl.strategy_diagram(adata.uns["gating"]["populations"])
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert {"cells", "Treg", "Teff_Ki67pos"} <= texts
    table = readouts.population_table(adata)
    fig = pl.strategy_diagram(table)
    assert any(t.get_text().startswith("Treg\n") for t in fig.axes[0].texts)
    _png(fig)


def test_trial_figures(trial):
    summary, table = trial
    fig = pl.trial_trajectories(summary, "treg_pct_cd4")
    assert len(fig.axes[0].lines) == summary["patient"].nunique() + 1  # patients + median
    fig = pl.paired_boxes(summary, table, "treg_pct_cd4")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == 2 and all(t.startswith("p") and "n=5" in t for t in texts)
    fig = pl.activation(summary)
    assert len(fig.axes) == 4
    _assert_treg_expansion_line(fig, summary)
    for f in (fig, pl.trial_trajectories(summary, "nk_cd56bright_pct_lymph")):
        assert _png(f)[:4] == b"\x89PNG"


def test_trial_figures_without_day(trial):
    summary, _ = trial
    no_day = summary.drop(
        columns=[c for c in summary if c == "day" or c.endswith("_fold_vs_baseline")]
    )
    fig = pl.trial_trajectories(no_day, "treg_pct_cd4")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["D0", "D8", "D29"]
    fig = pl.activation(no_day)  # fold changes computed from the readouts when absent
    _assert_treg_expansion_line(fig, summary)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["D0", "D8", "D29"]
    assert _png(fig)[:4] == b"\x89PNG"


def _assert_treg_expansion_line(fig, summary):
    """The first panel's Treg line is the patients' median Treg fold per timepoint (above 1 here:
    the fixture raises FOXP3 with each timepoint), starting at 1 at baseline."""
    line = fig.axes[0].lines[0]
    y = np.asarray(line.get_ydata(), dtype=float)
    base = summary.set_index(["patient", "timepoint"])["treg_pct_cd4"]
    for k, tp in enumerate(["D0", "D8", "D29"]):
        folds = [base[(p, tp)] / base[(p, "D0")] for p in summary["patient"].unique()]
        assert y[k] == pytest.approx(np.median(folds)), tp
    assert y[0] == pytest.approx(1.0) and min(y[1], y[2]) > 1.1, y
