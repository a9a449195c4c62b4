"""Plotting: matplotlib figures of gating, trial readouts and embeddings; each function returns a Figure.

Submodules load on first use: a batch worker drawing only the gating path never imports matplotlib.
"""

import importlib

__all__ = [
    "abundance_change",
    "activation",
    "cluster_heatmap",
    "gate_cluster_agreement",
    "gating_panels",
    "gating_path",
    "gating_path_png",
    "helper_subsets",
    "paired_boxes",
    "strategy_diagram",
    "trial_trajectories",
    "umap",
]

_WHERE = {
    "abundance_change": "._clusters",
    "cluster_heatmap": "._clusters",
    "umap": "._embedding",
    "gating_panels": "._gating",
    "gating_path": "._gating",
    "gating_path_png": "._gating",
    "strategy_diagram": "._gating",
    "activation": "._trial",
    "gate_cluster_agreement": "._trial",
    "helper_subsets": "._trial",
    "paired_boxes": "._trial",
    "trial_trajectories": "._trial",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module 'cytokit.pl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
