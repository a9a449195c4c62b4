"""How separable the simulated Tregs are: the best rectangular CD25+FOXP3+ gate placed knowing the truth.

Used by the tests and to report how hard a trial is: inside the true CD4 T cells, after compensation with
the file's spillover and an arcsinh transform, the (CD25, FOXP3) thresholds that misclassify the fewest
cells. An automated gate cannot beat this; the simulation must leave it a few tenths of a percent of CD4.
"""

from __future__ import annotations

import numpy as np

from cytokit.datasets import _biology as bio
from cytokit.datasets._simulate import SimulatedSample


def compensated(sim: SimulatedSample) -> np.ndarray:
    """The sample's events compensated with its own ``$SPILLOVER`` (as-is when it has none)."""
    out = sim.events.astype(float)
    if sim.spillover is None:
        return out
    idx = [sim.channels.index(c) for c in sim.spillover.columns]
    out[:, idx] = out[:, idx] @ np.linalg.inv(sim.spillover.to_numpy())
    return out


def oracle_treg_gate(
    sim: SimulatedSample, *, cofactor: float = 150.0, grid: int = 120
) -> dict[str, float]:
    """Best (CD25, FOXP3) rectangle on the true CD4 cells; its error against the truth, in % of CD4.

    Returns ``misclassified_pct`` (false + missed Tregs), ``treg_pct_error`` (gated minus true Treg %)
    and the thresholds (compensated, linear units).
    """
    names = np.asarray(sim.label_names)[sim.labels]
    cd4 = np.isin(names, bio.CD4_LABELS)
    treg = np.isin(names, bio.TREG_LABELS)[cd4]
    comp = compensated(sim)[cd4]
    marker_of = [sim.markers[c] for c in sim.channels]
    x = np.arcsinh(comp[:, marker_of.index("CD25")] / cofactor)
    y = np.arcsinh(comp[:, marker_of.index("FOXP3")] / cofactor)
    xs = np.quantile(x, np.linspace(0.3, 0.999, grid))
    ys = np.quantile(y, np.linspace(0.3, 0.999, grid))
    # errors for every pair of thresholds at once: cells above both thresholds vs true Tregs
    xi = np.searchsorted(xs, x, side="right")  # number of x thresholds below each cell
    yi = np.searchsorted(ys, y, side="right")
    pos = np.zeros((grid + 1, grid + 1))
    neg = np.zeros((grid + 1, grid + 1))
    np.add.at(pos, (xi[treg], yi[treg]), 1)
    np.add.at(neg, (xi[~treg], yi[~treg]), 1)
    # inside(i, j) = cells with xi > i and yi > j: reverse cumulative sums
    inside_pos = pos[::-1, ::-1].cumsum(0).cumsum(1)[::-1, ::-1]
    inside_neg = neg[::-1, ::-1].cumsum(0).cumsum(1)[::-1, ::-1]
    errors = (treg.sum() - inside_pos[1:, 1:]) + inside_neg[1:, 1:]
    i, j = np.unravel_index(np.argmin(errors), errors.shape)
    gated = inside_pos[i + 1, j + 1] + inside_neg[i + 1, j + 1]
    n = cd4.sum()
    return {
        "misclassified_pct": float(100 * errors[i, j] / n),
        "treg_pct_error": float(100 * (gated - treg.sum()) / n),
        "cd25_threshold": float(np.sinh(xs[i]) * cofactor),
        "foxp3_threshold": float(np.sinh(ys[j]) * cofactor),
    }
