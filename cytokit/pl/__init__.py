"""Plotting: matplotlib figures of gating, trial readouts and embeddings; each function returns a Figure."""

from ._embedding import umap
from ._gating import gating_path, strategy_diagram
from ._trial import (
    activation,
    gate_cluster_agreement,
    helper_subsets,
    paired_boxes,
    trial_trajectories,
)

__all__ = [
    "activation",
    "gate_cluster_agreement",
    "gating_path",
    "helper_subsets",
    "paired_boxes",
    "strategy_diagram",
    "trial_trajectories",
    "umap",
]
