"""Helpers shared by the tools: marker selection, the event matrix, cluster label ordering."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys as K
from ..errors import CytokitError, MarkerError
from ..panels import find_var

logger = logging.getLogger("cytokit")

#: var roles clustered by default; scatter, time and viability describe acquisition, not phenotype.
CLUSTER_ROLES = ("lineage", "functional")
_EXCLUDED_ROLES = ("scatter", "time", "viability")
_EXCLUDED_PREFIXES = ("FSC", "SSC", "TIME", "VIAB", "LIVE", "DEAD", "LD", "EVENT")


def sample_file(adata: AnnData) -> str | None:
    """The FCS file named in ``uns["sample_info"]``, for error messages (None for pooled data)."""
    info = adata.uns.get(K.SAMPLE_INFO)
    return info.get("file") if isinstance(info, dict) else None


def default_markers(adata: AnnData) -> list[str]:
    """Lineage and functional markers of ``adata`` (var ``role``), in var order.

    Without roles (no panel resolved), every parameter except scatter, time and viability-like names.
    """
    var = adata.var
    if K.ROLE in var.columns and var[K.ROLE].astype(str).isin(CLUSTER_ROLES).any():
        chosen = var.index[var[K.ROLE].astype(str).isin(CLUSTER_ROLES)]
    else:
        roles = var[K.ROLE].astype(str) if K.ROLE in var.columns else pd.Series("", index=var.index)
        names = var.index.str.upper().str.replace(r"[^A-Z0-9]", "", regex=True)
        excluded = roles.isin(_EXCLUDED_ROLES).to_numpy() | names.str.startswith(_EXCLUDED_PREFIXES)
        chosen = var.index[~excluded]
    if len(chosen) == 0:
        raise MarkerError("no lineage or functional markers to cluster on", sample_file(adata))
    return [str(v) for v in chosen]


def resolve(adata: AnnData, markers: Sequence[str] | str | None) -> list[str]:
    """var names of ``markers`` (marker names, falling back to channel names); defaults when None."""
    if markers is None:
        return default_markers(adata)
    if isinstance(markers, str):
        markers = [markers]
    names = [find_var(adata, m) for m in markers]
    if len(set(names)) != len(names):
        raise MarkerError(
            f"markers name the same parameter twice: {list(markers)}", sample_file(adata)
        )
    return names


def matrix(adata: AnnData, names: Sequence[str]) -> np.ndarray:
    """Dense float32 events x markers matrix of ``names`` (C-contiguous), non-finite values set to 0."""
    idx = adata.var_names.get_indexer(list(names))
    X = adata.X[:, idx]
    X = np.ascontiguousarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float32)
    bad = ~np.isfinite(X)
    if bad.any():
        logger.warning("%d non-finite values set to 0 before clustering", int(bad.sum()))
        X[bad] = 0.0
    return X


def renumber_by_size(labels: np.ndarray, n_labels: int) -> tuple[pd.Categorical, np.ndarray]:
    """Cluster labels ``0..n_labels-1`` renamed "1".."k" by decreasing number of events.

    Returns the categorical of the events and, for each old label, its new name ("" when it has no event).
    Ties keep the order of the old labels, so the result is deterministic.
    """
    labels = np.asarray(labels, dtype=np.intp)
    counts = np.bincount(labels, minlength=n_labels)
    order = np.argsort(-counts, kind="stable")
    order = order[counts[order] > 0]
    rank = np.full(n_labels, -1, dtype=np.intp)
    rank[order] = np.arange(len(order))
    names = [str(i + 1) for i in range(len(order))]
    new_names = np.array([names[r] if r >= 0 else "" for r in rank], dtype=object)
    return pd.Categorical.from_codes(rank[labels], categories=names), new_names


def check_events(X: np.ndarray, minimum: int, what: str, adata: AnnData) -> None:
    """Raise a one-line :class:`CytokitError` when there are too few events for ``what``."""
    if X.shape[0] < minimum:
        raise CytokitError(
            f"{what} needs at least {minimum} events, got {X.shape[0]}", sample_file(adata)
        )
