"""Consistency of placements across a patient's samples: the consensus prior and the jump rule.

:func:`consensus_prior` takes the median placement of several samples' ``uns["gating"]`` (passed as
``prior=`` to :func:`~cytokit.gating.gate`); :func:`placement_jumps` flags thresholds placed far from
where the patient's other samples place them, each expressed against the landmark (median, robust
spread) of the events it was placed on; :func:`prior_thresholds` / :func:`prior_gates` read a prior
for the engine.
"""

from __future__ import annotations

import numpy as np

from . import _methods as M
from ._gates import bound, gate_from_dict

__all__ = ["consensus_prior", "placement_jumps", "prior_gates", "prior_thresholds"]


def _landmark(x: np.ndarray) -> dict:
    """Where the fitted events sit on a dim: median and robust spread (normal-consistent MAD). A
    threshold expressed against them does not move when the instrument shifts or stretches a channel,
    so samples of a patient recorded on different days can be compared like with like. Also their
    quantiles every 0.5 % (``quantiles``): how many events lie between two thresholds, to half a point."""
    x = x[np.isfinite(x)]
    med = float(np.median(x))
    quantiles = np.quantile(x, np.linspace(0.0, 1.0, 201)).tolist() if len(x) else []
    return {"median": med, "spread": float(M._robust_sd(x)), "quantiles": quantiles}


#: a threshold that moved less than this % of the events it was placed on (1 point: the tolerance of
#: the finest readout, Treg % of CD4, issue #11) changed no gate that matters, however far it moved in
#: SDs: a valley threshold may sit anywhere in an empty gap between two well separated peaks (the CD8
#: bound of CD4 moved 5 SDs of the CD8- peak across an empty gap, the CD4 % the same)
MIN_JUMP_SHARE_PCT = 1.0


def _share_between(mark: dict, a: float, b: float) -> float | None:
    """% of the events of a landmark (its percentiles) between thresholds ``a`` and ``b``, or None."""
    q = np.asarray(mark.get("quantiles") or [], dtype=float)
    if len(q) < 2 or not np.isfinite(q).all():
        return None
    cdf = np.linspace(0.0, 100.0, len(q))
    lo, hi = sorted((a, b))
    return float(np.interp(hi, q, cdf) - np.interp(lo, q, cdf))


def consensus_prior(gatings: list[dict]) -> dict:
    """Median placement over several samples' ``uns["gating"]`` (e.g. one patient's timepoints).

    Range-gate thresholds and ellipse parameters are medians over the samples whose gate was placed
    (``ok`` or ``fallback``); polygons with the same number of vertices are averaged vertex-wise by
    median. The result can be passed as ``prior=`` to :func:`gate`.
    """
    by_gate: dict[str, list[dict]] = {}
    for g in gatings:
        for gid, rec in (g or {}).get("gates", {}).items():
            if rec.get("status") in ("ok", "fallback") and rec.get("gate"):
                by_gate.setdefault(gid, []).append(rec["gate"])
    out = {}
    for gid, gates in by_gate.items():
        merged = _median_gate(gates)
        if merged is not None:
            out[gid] = {"gate": merged, "status": "ok", "n_samples": len(gates)}
    return {"strategy": "consensus", "gates": out}


def placement_jumps(gating: dict, others: list[dict], *, max_z: float = 3.0) -> list[str]:
    """Thresholds of ``gating`` placed far from where the same patient's ``others`` place them, compared
    like with like: a placement to review (a gate on the wrong valley, a lost population).

    Each threshold is expressed against the events it was placed on, in robust SDs from their median
    (``details[dim]["landmark"]``), so a channel that drifts or stretches between files (instrument
    drift) does not move it, while a valley chosen between the wrong peaks moves it by several SDs.
    A jump is a difference of more than ``max_z`` from the median of the others (the 3-sigma limit of
    a Shewhart control chart), unless fewer than :data:`MIN_JUMP_SHARE_PCT` of the sample's events lie
    between its threshold and where the others' placement falls on it (the landmark's percentiles): a
    threshold that crossed an empty gap changed no population. Left out: thresholds the strategy says move with treatment
    (``moves: <why>``, e.g. CD56bright NK expanding under IL-2), tails (a tail is k SDs from its peak
    by construction: its position follows biology such as CD25 rising on Tregs under IL-2, and its
    own doubt is its status), reference thresholds (a quantile gating a subset's estimated share, which
    treatment changes), thresholds reused from another gate, time QC, and placements that are
    not ``ok`` (they are reported as fallbacks already).
    """
    if not others:
        return []
    reference: dict[tuple[str, str], list[float]] = {}
    for other in others:
        for key, (z, *_) in _relative_thresholds(other, statuses=("ok", "fallback")).items():
            reference.setdefault(key, []).append(z)
    messages = []
    for (gid, dim), (z, value, mark) in _relative_thresholds(gating, statuses=("ok",)).items():
        ref = reference.get((gid, dim))
        if not ref:
            continue
        dz = z - float(np.median(ref))
        if abs(dz) <= max_z:
            continue
        # where the others' placement falls on this sample's events, and how many events lie between
        moved = _share_between(mark, value, mark["median"] + float(np.median(ref)) * mark["spread"])
        if moved is not None and moved < MIN_JUMP_SHARE_PCT:
            continue
        between = f" ({moved:.1f}% of its events between)" if moved is not None else ""
        messages.append(
            f"{gid}: {dim} threshold {value:.3f} is {abs(dz):.1f} robust SDs of its population "
            f"from where the patient's other samples place it{between}"
        )
    return messages


# placements whose position follows biology by construction: a tail is k SDs from its peak; a
# reference threshold is the quantile that gates a subset's estimated share, so it moves with that share
# (ld-IL2 lowers cTfh and Th17); a split threshold is the subset's own valley or such an excess, the
# rule chosen by how many positives the sample has (Ki67+ Tregs at D8, Th1/17 at week 10: a CCR6 jump of
# 3.2 SDs warned a sample whose readouts were right); time QC follows each file's acquisition
_UNCHECKED = ("tail", "time_qc", "reference", "split")


def _relative_thresholds(gating: dict, *, statuses) -> dict[tuple[str, str], tuple]:
    """``{(gate, dim): (z, threshold, landmark)}``: range thresholds placed by the sample's own valley / Otsu
    (see :func:`placement_jumps`), z in robust SDs from the median of the events they were placed on."""
    out: dict[tuple[str, str], tuple] = {}
    for gid, rec in (gating or {}).get("gates", {}).items():
        g = rec.get("gate") or {}
        params = rec.get("params") or {}
        if g.get("kind") != "range" or rec.get("status") not in statuses or params.get("moves"):
            continue
        bounds = params.get("bounds", {})
        for dim, lo, hi in zip(map(str, g["dims"]), g["low"], g["high"], strict=True):
            lo, hi = bound(lo), bound(hi)
            value = lo if lo is not None else hi
            b = bounds.get(dim, params) if bounds else params
            method = b.get("method", rec.get("method")) if bounds else rec.get("method")
            det = (rec.get("details") or {}).get(dim, {})
            mark = det.get("landmark") if isinstance(det, dict) else None
            if value is None or not mark or method in _UNCHECKED or b.get("moves"):
                continue
            if b.get("from") or mark.get("spread", 0) <= 0:
                continue
            out[(str(gid), dim)] = ((value - mark["median"]) / mark["spread"], value, mark)
    return out


def _median_gate(gates: list[dict]) -> dict | None:
    kind = gates[0]["kind"]
    same = [g for g in gates if g["kind"] == kind and list(g["dims"]) == list(gates[0]["dims"])]
    if kind == "range":
        low = [_median_bound([g["low"][j] for g in same]) for j in range(len(same[0]["low"]))]
        high = [_median_bound([g["high"][j] for g in same]) for j in range(len(same[0]["high"]))]
        return {"kind": "range", "dims": list(same[0]["dims"]), "low": low, "high": high}
    if kind == "ellipse":
        return {
            "kind": "ellipse",
            "dims": list(same[0]["dims"]),
            "mean": np.median([g["mean"] for g in same], axis=0).tolist(),
            "covariance": np.median([g["covariance"] for g in same], axis=0).tolist(),
            "distance_square": float(np.median([g["distance_square"] for g in same])),
        }
    if kind == "polygon":
        n = len(same[0]["vertices"])
        same = [g for g in same if len(g["vertices"]) == n]
        verts = np.median([g["vertices"] for g in same], axis=0).tolist()
        return {"kind": "polygon", "dims": list(same[0]["dims"]), "vertices": verts}
    return None


def _median_bound(values: list) -> float:
    """Median of the bounds placed by more than half of the samples; NaN (open) otherwise."""
    vals = [v for v in map(bound, values) if v is not None]
    return float(np.median(vals)) if len(vals) * 2 > len(values) else float("nan")


def prior_thresholds(prior: dict | None) -> dict[tuple[str, str], float]:
    """``{(gate_id, dim): threshold}`` of the range gates of a prior placement."""
    out: dict[tuple[str, str], float] = {}
    for gid, rec in _prior_records(prior).items():
        g = rec.get("gate") or {}
        if g.get("kind") != "range":
            continue
        for dim, lo, hi in zip(g["dims"], g["low"], g["high"], strict=True):
            lo, hi = bound(lo), bound(hi)
            value = lo if lo is not None else hi
            if value is not None:
                out[(str(gid), str(dim))] = value
    return out


def prior_gates(prior: dict | None) -> dict:
    """Gate objects of a prior placement, used when a sample's own placement fails."""
    out = {}
    for gid, rec in _prior_records(prior).items():
        if rec.get("gate"):
            try:
                out[gid] = gate_from_dict(rec["gate"])
            except (KeyError, TypeError, ValueError):
                continue
    return out


def _prior_records(prior: dict | None) -> dict:
    if not prior:
        return {}
    return prior.get("gates", prior)
