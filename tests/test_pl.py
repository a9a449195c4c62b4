"""Figures: each function returns a Figure that draws; gates drawn as placed; no save/show side effects."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse, Polygon, Rectangle
from test_readouts import make_gated

from cytokit import pl, readouts, stats


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
    fig = pl.gating_path(adata, max_points=500)
    axes = [ax for ax in fig.axes if ax.get_title()]
    titles = [ax.get_title() for ax in axes]
    drawable = [g for g in adata.uns["gating"]["gates"].values() if g["gate"]]  # not boolean ones
    assert len(titles) == len(drawable) and not any(t.startswith("Teff:") for t in titles)
    assert any(t.startswith("cells: ") and t.endswith(" of all") for t in titles)
    pops = adata.obsm["populations"]
    expected = 100 * pops["Treg"].sum() / pops["CD4"].sum()
    assert f"Treg: {expected:.1f}% of CD4 [fallback]" in titles
    patches = [type(p) for ax in axes for p in ax.patches]
    assert Polygon in patches and Ellipse in patches and Rectangle in patches
    assert _png(fig)[:4] == b"\x89PNG"


def test_gating_path_ellipse_matches_gate():
    adata = make_gated(n=500)
    fig = pl.gating_path(adata)
    ell = next(p for ax in fig.axes for p in ax.patches if isinstance(p, Ellipse))
    # covariance diag(0.05, 0.03), distance_square 4: semi-axes 2*sqrt(0.05) and 2*sqrt(0.03)
    assert sorted([ell.width, ell.height]) == pytest.approx(
        sorted([4 * np.sqrt(0.05), 4 * np.sqrt(0.03)])
    )
    assert tuple(ell.center) == pytest.approx((0.5, 0.3))


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
    for f in (fig, pl.trial_trajectories(summary, "nk_cd56bright_pct_lymph")):
        assert _png(f)[:4] == b"\x89PNG"


def test_trial_figures_without_day(trial):
    summary, _ = trial
    no_day = summary.drop(
        columns=[c for c in summary if c == "day" or c.endswith("_fold_vs_baseline")]
    )
    fig = pl.trial_trajectories(no_day, "treg_pct_cd4")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["D0", "D8", "D29"]
    _png(pl.activation(no_day))
