"""Apply a gating strategy to one sample: place every gate from the sample's data, then label events.

``gate(adata, "treg")`` works on a compensated, transformed AnnData (see DEVELOPERS.md). Placement uses
a subsample of each parent population (``fit_events`` of the strategy); gates are then applied to all
events, vectorised. Results: ``obs[key_added]`` (deepest lineage population, every event has one),
``obsm["populations"]`` (bool DataFrame, one column per population) and ``uns["gating"]``.
"""

from __future__ import annotations

import functools
import logging
import time
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .. import _keys as K
from .._logging import timed
from .._threads import single_threaded
from ..errors import CytokitError, GatingError, MarkerError, StrategyError
from . import _methods as M
from . import _methods_2d as M2
from ._events import _columns, _eval, _polygon_mask
from ._functional import DISAGREE_PP, split_threshold
from ._gates import PolygonGate, RangeGate, gate_from_dict
from ._labels import population_labels
from ._methods_corner import corner_population
from ._overrides import OVERRIDE_STATUSES, normalise_gates, normalise_thresholds
from ._priors import _landmark, prior_gates, prior_thresholds
from ._records import _jsonable, _override_message, _record
from ._scales import _check_scales
from ._strategy import (
    ROOT,
    GateSpec,
    PopulationSpec,
    Strategy,
    load_strategy,
    population_columns,
)
from ._thresholds import (
    _METHOD_KW,
    DISCRIMINANT_FIT,
    DISCRIMINANT_REFIT,
    _count_matched,
    _one_d,
    _valley_above_window,
)

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["gate", "resolve_dims"]

logger = logging.getLogger("cytokit")

#: purity check of a gate counted by a discriminant (:meth:`_Run.purity_warnings`). A subset's % of the
#: gate (Ki67+ % of Treg) is off by up to the share of foreign events in it, so more than the error the
#: trial's activation readouts tolerate (5 points, issue #8; the split rules' ``DISAGREE_PP``) is a
#: QC warning ...
MAX_IMPURITY_PCT = DISAGREE_PP
#: ... and so is a gate whose % of its parent (Treg % of CD4) lies further from the mixture's own count
#: than twice the tolerance of that readout (1 point, issue #11): two estimates both within the
#: tolerance of the truth cannot be further apart, so at least one of them is off by more
MAX_COUNT_GAP_PP = 2 * 1.0
#: share of a normal population below one SD above its median (Phi(1)): the anchor of Overton's
#: subtraction in :meth:`_Run.excess_count`
ONE_SD_SHARE = 0.8413447460685429

_PLACEMENT_KEYS = {
    "refine",
    "dead_check",
    "warn",
    "routine",
    "moves",
    "within",
    "from",
    "method",
    "value",
    "fit_events",
    "max_shift",
    "guide",
    "guide_events",
    "helper",
    "helpers",
    "count_with",
    "reference",
    "negative_half",
}


def gate(
    adata: AnnData,
    strategy: str | Path | Strategy = "treg",
    *,
    prior: dict | None = None,
    start_at: str | None = None,
    thresholds: Mapping | None = None,
    gates: Mapping | None = None,
    key_added: str = K.POPULATION,
    copy: bool = False,
) -> AnnData | None:
    """Place and apply a gating strategy on one compensated, transformed sample.

    Parameters
    ----------
    adata
        Events x markers, ``X`` compensated and transformed (logicle 0..1, scatter/time linear).
    strategy
        Shipped name (``"treg"``), a YAML path, or a loaded :class:`Strategy`; a GatingML 2.0
        ``.xml`` or FlowJo ``.wsp`` file applies its fixed gates instead (``apply_gatingml``).
    prior
        Gate positions to stay consistent with (``uns["gating"]`` of another sample or
        :func:`consensus_prior` of a patient's samples): valleys are searched near the prior's
        thresholds, a failed placement falls back to the prior, and a large jump is warned about.
    start_at
        The file was exported from this population's gate (``"CD4"`` for a CD3+CD4+ export): every
        event belongs to it, the gates above it are not placed (status ``skipped``; time QC still
        runs), populations outside its branch (CD8, NK) are absent, and ``uns["gating"]["start_at"]``
        records it (the GatingML export says so too).
    thresholds
        Thresholds set from outside the sample's fit, ``{(gate_id, marker): value}`` or
        ``{(gate_id, marker): {"value": v, "status": "manual" | "control", "note": "..."}}`` (transformed
        units): a reviewer's correction (``manual``, the default) or a control well's reference
        (``control``). The gate's other bounds are placed as usual; its status becomes the override's.
    gates
        Whole gates set from outside, ``{gate_id: gate dict}`` or ``{gate_id: {"gate": {...}, "status",
        "note"}}`` (a fixed gate as :func:`gate_from_dict` reads it, dims by marker name). Overridden
        gates' descendants are placed on the corrected populations; nothing else changes.
    key_added
        ``obs`` column of the deepest lineage population.
    copy
        Return a gated copy instead of writing into ``adata``.

    Returns
    -------
    The gated copy when ``copy=True``, else ``None``.

    Raises
    ------
    MarkerError, GatingError
        A required gate could not be placed. ``obs``/``obsm``/``uns`` still hold every population
        placed before it and ``uns["gating"]["error"]`` the message (partial results); with
        ``copy=True`` the partly gated copy is ``err.adata``.
    """
    if isinstance(strategy, str | Path) and Path(strategy).suffix.lower() in (".xml", ".wsp"):
        from ._gatingml import (
            apply_gatingml,
        )  # fixed gates from GatingML / FlowJo ("bring your own")

        return apply_gatingml(adata, strategy, key_added=key_added, copy=copy)
    adata = adata.copy() if copy else adata
    start = time.perf_counter()
    strat = load_strategy(strategy)
    info = adata.uns.get(K.SAMPLE_INFO, {}) or {}
    path = info.get("file")
    if start_at is not None and start_at not in strat.names:
        message = f"start_at {start_at!r} is not a population of strategy {strat.name!r}"
        raise StrategyError(message, path)
    run = _Run(adata, strat, prior, path, start_at=start_at, thresholds=thresholds, gates=gates)
    try:
        with single_threaded():  # small fits: threads cost more than they save (see _threads)
            run.place_all()
    except CytokitError as err:  # keep what was placed (partial results), then fail as before
        _write_results(adata, run, key_added, error=err.message)
        err.adata = adata
        raise
    _write_results(adata, run, key_added)
    for w in run.warnings:
        logger.warning("%s: %s", Path(path).name if path else "sample", w)
    logger.info(timed(f"gated {adata.n_obs} events with strategy {strat.name!r}", start))
    return adata if copy else None


def _write_results(adata: AnnData, run: _Run, key_added: str, error: str | None = None) -> None:
    """obs labels, obsm populations and uns summary of the populations placed (all, or so far)."""
    adata.obs[key_added] = population_labels(run.strat.nodes, run.masks, run.n)
    present = [n.id for n in run.strat.nodes if n.id in run.masks]
    adata.obsm[K.POPULATIONS] = pd.DataFrame(
        {name: run.masks[name] for name in present}, index=adata.obs_names
    )
    adata.uns[K.GATING] = run.summary(present)
    if error is not None:
        adata.uns[K.GATING]["error"] = error


def resolve_dims(adata: AnnData, names) -> dict[str, int | None]:
    """Column index of each marker name, through the one lookup :func:`cytokit.panels.find_var`.

    A name may list alternatives, ``"SSC-A|SSC-H"``: the first one the sample has is used.
    """
    from ..panels import find_var

    out: dict[str, int | None] = {}
    for name in names:  # "FSC-A|FSC-H": the first alternative present
        found = (find_var(adata, alt.strip(), required=False) for alt in str(name).split("|"))
        var = next((v for v in found if v is not None), None)
        out[name] = None if var is None else int(adata.var_names.get_loc(var))
    return out


class _Run:
    """State of one sample's gating: masks, thresholds, statuses (one-shot, not public)."""

    def __init__(
        self,
        adata: AnnData,
        strat: Strategy,
        prior: dict | None,
        path,
        start_at=None,
        *,
        thresholds=None,
        gates=None,
    ):
        self.adata, self.strat, self.path = adata, strat, path
        self.start_at = start_at
        self.above, self.outside = _pregated_nodes(strat, start_at)
        self.n = adata.n_obs
        self.prior_thr = prior_thresholds(prior)
        self.prior_gates = prior_gates(prior)
        dims = {d for n in strat.nodes if isinstance(n, GateSpec) for d in n.dims}
        dims |= {m for n in strat.nodes if isinstance(n, GateSpec) for m in _helper_markers(n)}
        self.cols = resolve_dims(adata, sorted(dims))
        self.scales = _check_scales(adata, self.cols, path)
        self._col_cache: dict[int, np.ndarray] = {}
        self._root = np.ones(self.n, dtype=bool)
        self.masks: dict[str, np.ndarray] = {}
        self.thresholds: dict[tuple[str, str], float] = {}
        self.splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # discriminant splits (refine)
        # gate id -> (rows, membership probability, gate counted with the split, markers) of a
        # discriminant split whose count a gate took (``count_with``): that gate's purity check
        self.members: dict[str, tuple[np.ndarray, np.ndarray, str, str]] = {}
        # gate id -> (rows, membership, markers, impurity %) of a gate whose purity was measured
        self.purity: dict[str, tuple[np.ndarray, np.ndarray, str, float]] = {}
        # gate id -> its box (the source's threshold and the gate's own bounds) on those rows
        self.boxes: dict[str, np.ndarray] = {}
        self.records: dict[str, dict] = {}
        self.warnings: list[str] = []
        self.absent: set[str] = set()  # optional nodes skipped for markers the panel lacks
        self.missing_markers: dict[str, list[str]] = {}  # marker -> optional gates skipped for it
        self.thr_over, self.gate_over = self._overrides(thresholds, gates)

    @functools.cached_property
    def unnamed_hint(self) -> str:
        """:func:`_unnamed_hint` of the sample, found once: every gate whose marker is missing adds it."""
        return _unnamed_hint(self.adata)

    def _overrides(self, thresholds, gates) -> tuple[dict, dict]:
        """Outside placements keyed by (gate id, column) / gate id; unknown gates or markers raise."""
        specs = {n.id: n for n in self.strat.nodes if isinstance(n, GateSpec)}
        thr: dict[tuple[str, int], dict] = {}
        for (gid, marker), entry in normalise_thresholds(thresholds).items():
            spec = specs.get(gid)
            if spec is None:
                raise GatingError(
                    f"override: {gid!r} is not a gate of strategy {self.strat.name!r}"
                )
            j = resolve_dims(self.adata, [marker])[marker]
            own = {self.cols.get(d) for d in spec.dims} - {None}
            if j is None or j not in own:
                raise GatingError(
                    f"override: gate {gid!r} has no threshold on {marker!r} "
                    f"(its markers: {', '.join(spec.dims)})",
                    self.path,
                )
            thr[(gid, j)] = entry
        whole = normalise_gates(gates)
        for gid in whole:
            if gid not in specs:
                raise GatingError(
                    f"override: {gid!r} is not a gate of strategy {self.strat.name!r}"
                )
        return thr, whole

    # ---------------------------------------------------------------- data access
    def column(self, dim: str) -> np.ndarray:
        j = self.cols[dim]
        if not self._col_cache:  # contiguous columns: much faster to read than strides of X
            needed = sorted({c for c in self.cols.values() if c is not None})
            self._col_cache = dict(zip(needed, _columns(self.adata.X, needed), strict=True))
        return self._col_cache[j]

    def var(self, dim: str) -> str:
        """The sample's var_name for a strategy dim (gates are stored with var_names)."""
        return str(self.adata.var_names[self.cols[dim]])

    def dims_of(self, spec: GateSpec) -> list[str]:
        """The gate's dims present in the sample (optional range bounds may be missing)."""
        bounds = spec.params.get("bounds", {}) if spec.method == "range" else {}
        return [
            d
            for d in spec.dims
            if self.cols.get(d) is not None or not bounds.get(d, {}).get("optional")
        ]

    def mask(self, name: str) -> np.ndarray:
        if name == ROOT:
            return self._root
        if name not in self.masks:
            raise GatingError(f"population {name!r} is not available")
        return self.masks[name]

    def sample_idx(self, name: str, limit: int) -> np.ndarray:
        """Events of ``name`` to fit on: at most ``limit``, drawn at random over the whole acquisition."""
        return self.spread(np.flatnonzero(self.mask(name)), limit, key=name)

    def spread(self, idx: np.ndarray, limit: int, *, key: str) -> np.ndarray:
        """At most ``limit`` of ``idx``, a uniform random draw (never a prefix: a file's first events
        are its first seconds, and a file that drifts or clogs would be fitted on its start only).

        One random stream per ``key`` (the population or gate it serves): a subsample never depends on
        which gates were placed before, so an overridden gate leaves every other gate's fit as it was."""
        if limit and len(idx) > limit:
            rng = np.random.default_rng([self.strat.seed, zlib.crc32(key.encode())])
            idx = np.sort(rng.choice(idx, limit, replace=False))
        return idx

    # ---------------------------------------------------------------- placement
    def place_all(self) -> None:
        for node in self.strat.nodes:
            if node.id in self.outside or node.id in self.above:
                self.pregated(node)
            elif isinstance(node, GateSpec):
                self.place_gate(node)
            else:
                self.evaluate(node)
        self.purity_warnings()

    def pregated(self, node) -> None:
        """A node of a file exported from ``start_at``: above it every event passes (time QC still
        runs); nodes outside its branch are absent."""
        if node.id in self.outside:
            message = f"not placed: the file was exported from {self.start_at}"
            self.records[node.id] = _record(None, "", {}, "skipped", message)
            return
        is_time_qc = isinstance(node, GateSpec) and node.method == "time_qc"
        if is_time_qc and all(self.cols.get(d) is not None for d in node.dims):
            self.place_gate(node)
            return
        self.masks[node.id] = self.mask(node.parent).copy()
        message = f"pre-gated: the file was exported from {self.start_at}, every event passes"
        self.records[node.id] = _record(None, "", {}, "skipped", message)

    def fail(self, node, message: str, *, status: str, missing: list[str] = ()) -> None:
        """Handle a node that cannot be placed: raise if required, else skip/pass with a warning.

        An optional node skipped because the panel lacks its markers (``missing``), or because a
        population it needs was skipped that way, is about the panel, not the sample: it is recorded in
        ``uns["gating"]["missing_markers"]`` without a warning (a panel without helper-subset markers
        gates as before)."""
        if node.required:
            err = MarkerError if missing else GatingError
            raise err(f"gate {node.id!r}: {message}", self.path)
        parent_ok = node.parent == ROOT or node.parent in self.masks
        passes = getattr(node, "when_missing", "drop") == "pass" and parent_ok
        if passes:
            self.masks[node.id] = self.mask(node.parent).copy()
        self.records[node.id] = _record(None, "", {}, status, message)
        if missing or node.references() & self.absent:
            self.absent.add(node.id)
            for marker in missing:
                self.missing_markers.setdefault(marker, []).append(node.id)
            return
        self.warnings.append(
            f"{node.id} {status}: {message}" + ("; all parent events kept" if passes else "")
        )

    def place_gate(self, spec: GateSpec) -> None:
        if spec.parent != ROOT and spec.parent not in self.masks:
            self.fail(spec, f"parent {spec.parent!r} is not available", status="skipped")
            return
        missing = [d for d in self.dims_of(spec) if self.cols.get(d) is None]
        if missing:
            message = f"marker {', '.join(missing)} not found" + self.unnamed_hint
            self.fail(spec, message, status="skipped", missing=missing)
            return
        try:
            if spec.id in self.gate_over:
                g, status, message, details = self.outside_gate(spec)
            else:
                g, status, message, details = self.placement(spec)
        except GatingError as err:
            fallback = self.prior_gates.get(spec.id)
            if fallback is None:
                self.fail(spec, err.message, status="failed")
                return
            g, status, message, details = (
                fallback,
                "fallback",
                f"{err.message}; prior gate used",
                {},
            )
        self.masks[spec.id] = self.apply(g, self.mask(spec.parent))
        if status == "fallback":
            message = self.judge_fallback(spec, message, details)
        self.records[spec.id] = _record(g, spec.method, spec.params, status, message, details)
        for source, (idx, prob, target, markers) in self.members.items():
            if target == spec.id:
                self.check_purity(spec, g, source, idx, prob, markers)
        if spec.parent in self.purity and not spec.params.get("from"):
            self.check_subset(spec, g)

    def check_purity(self, spec: GateSpec, g, source: str, idx, prob, markers: str) -> None:
        """How many of the events of gate ``spec`` the mixture of the discriminant ``source`` (the gate
        whose count it took, ``count_with``) places outside the population
        (:func:`~cytokit.gating._methods_2d.gate_impurity`), and the population's % of the events
        counted by the gate and by the mixture, recorded in its details (the QC warning is decided
        once its subsets are placed, :meth:`purity_warnings`).

        The count of a gate can be right while its cells are not: FOXP3lo activated Tconv kept while
        as many dim-FOXP3 naive Tregs are missed leave Treg % of CD4 within 0.2 points while Helios+ %
        of Treg is 11 points low and CD45RA- % 6 points high (simulated trials, drawn structures), and
        no placement is a fallback.

        The same is measured for this gate's bounds on the events of the cut of ``source``
        (``cut_pct``: the FOXP3 threshold and the CD25 bound, the Treg box before the FOXP3 x CD127
        polygon): a gate drawn from the mixture agrees with it by construction, so its own impurity
        cannot show that the populations overlap on the defining marker; when the box and the mixture
        disagree, the gate's make-up rests on the mixture's model of the helpers, which no check here
        sees."""
        gated = self.masks[spec.id][idx]
        impurity = M2.gate_impurity(prob, gated)
        if impurity is None:
            return
        finite = np.isfinite(prob)
        cut = None
        if source in self.masks:
            # this gate ``g`` on the cut's events (the CD25 bound on FOXP3+: the Treg box before
            # the FOXP3 x CD127 polygon), judged by the same mixture
            box = self.apply(g, self.masks[source])[idx]
            cut = M2.gate_impurity(prob, box)
            self.boxes[spec.id] = box & finite
        self.records[spec.id]["details"]["impurity"] = {
            "pct": impurity,
            "cut_pct": cut,
            "from": source,
            "gate_pct": 100.0 * float(gated[finite].mean()),
            "mixture_pct": 100.0 * float(prob[finite].mean()),
        }
        self.purity[spec.id] = (idx, prob, markers, source)

    def check_subset(self, spec: GateSpec, g) -> None:
        """A subset of a gate whose purity was measured (Ki67+ of Treg): its % of the gate's events
        and its % of them weighted by the mixture's probability that they belong to the population
        (foreign events weigh nothing), recorded in its details. Subsets on a marker of the mixture
        are left out (the members of a CD127lo mixture are CD127lo by construction).

        The same two % on the gate's box (``box_pct``, ``box_members_pct``; the subset's gate ``g``
        applied to the box's events): where the populations overlap on the defining marker, how far
        leaving out the box's foreign events moves the subset's %, which the overlap's warning names
        (:meth:`purity_warnings`): the gate is drawn through that overlap, so the subset's readout
        depends on where it cuts by about as much."""
        idx, prob, markers, _ = self.purity[spec.parent]
        if {self.var(d) for d in self.dims_of(spec)} & set(markers.split("/")):
            return
        gated = self.masks[spec.parent][idx]
        p, sub = prob[gated], self.masks[spec.id][idx][gated]
        ok = np.isfinite(p)
        p, sub = p[ok], sub[ok]
        if len(p) < M.MIN_EVENTS or p.sum() <= 0:
            return
        raw, members = 100.0 * float(sub.mean()), 100.0 * float(p @ sub / p.sum())
        entry = {"pct": members, "gate_pct": raw}
        box = self.boxes.get(spec.parent)
        if box is not None and box.sum() >= M.MIN_EVENTS and prob[box].sum() > 0:
            rows = idx[box]  # the subset's gate on the box's events only (not the whole parent)
            only = np.zeros(self.n, dtype=bool)
            only[rows] = True
            inside = self.apply(g, only)[rows]
            entry["box_pct"] = 100.0 * float(inside.mean())
            entry["box_members_pct"] = 100.0 * float(prob[box] @ inside / prob[box].sum())
        self.records[spec.id]["details"]["members_pct"] = entry

    def purity_warnings(self) -> None:
        """One QC warning per gate whose purity check fails (:meth:`check_purity`): more than
        :data:`MAX_IMPURITY_PCT` of its events outside the population, or its % and the mixture's
        further apart than :data:`MAX_COUNT_GAP_PP`. Not when the gate or the discriminant it counted
        with is already a fallback or was set from outside (warned, or a reviewer's choice). The
        warning names the subset whose % moves most when the foreign events are left out.

        A gate that passes both is still warned when its box (the source's threshold and the gate's
        own bounds, before the polygon) holds more than :data:`MAX_IMPURITY_PCT` foreign events: the
        populations overlap on the defining marker and the gate's make-up rests on the mixture. The
        warning names the subset whose % of the box moves most without those events
        (:meth:`box_shift`). Tried and not kept (issue #11 item 8): that overlap as a note, or a
        warning only where the subset moves by more than :data:`MAX_IMPURITY_PCT`. On dev trials
        9812/9813/9954/7952 (overlap / real) the latter warned 102 / 84 samples instead of 157 / 122
        with precision 0.60 / 0.37 instead of 0.43 / 0.27, recall 0.88 / 0.94 instead of 0.97 / 1.00
        (Treg % off by more than 1 point or Ki67+/HLA-DR+ by more than 5); on unseen 9991/9992 it
        lowered recall (overlap 0.94 -> 0.72, real 0.65 -> 0.41) with no gain in precision on real,
        and on 9993/9994 raised overlap precision (every readout scored) from 0.74 to 0.89 at a
        recall of 0.89 (0.99). The overlap goes with wrong Helios+/CD45RA-/HLA-DR+ % of Treg on some
        trial structures and not on others (seed 9973, real: 43 of 48 samples warned, none wrong), and
        no per-sample measure here told them apart (``benchmarks/README.md``).
        """
        for gid, (_, _, markers, source) in self.purity.items():
            rec = self.records[gid]
            if rec["status"] != "ok" or self.records.get(source, {}).get("status") != "ok":
                continue
            imp = rec["details"]["impurity"]
            gap = imp["mixture_pct"] - imp["gate_pct"]
            cut = imp.get("cut_pct") or 0.0
            parent = self.strat.node(source).parent  # the events the mixture was fitted on
            parts = []
            if abs(gap) > MAX_COUNT_GAP_PP:
                parts.append(
                    f"{imp['gate_pct']:.1f}% of {parent} in the gate but {imp['mixture_pct']:.1f}% "
                    f"by the {markers} mixture: one of them is off by more than "
                    f"{MAX_COUNT_GAP_PP / 2:g} point"
                )
            if imp["pct"] > MAX_IMPURITY_PCT:
                shifts = [
                    (cid, r["details"]["members_pct"])
                    for cid, r in self.records.items()
                    if "members_pct" in r.get("details", {}) and self.strat.node(cid).parent == gid
                ]
                worst = max(shifts, key=lambda kv: abs(kv[1]["pct"] - kv[1]["gate_pct"]),
                            default=None)  # fmt: skip
                example = (
                    f" ({worst[0]}: {worst[1]['gate_pct']:.1f}% of the gate, "
                    f"{worst[1]['pct']:.1f}% of its likely members)"
                    if worst
                    else ""
                )
                parts.append(
                    f"the {markers} mixture puts {imp['pct']:.1f}% of its events outside the "
                    f"population, so its subsets' % may be off by as much{example}"
                )
            if cut > MAX_IMPURITY_PCT and imp["pct"] <= MAX_IMPURITY_PCT:
                dim = self.var(self.strat.node(source).dims[0])
                moved = self.box_shift(gid)
                example = (
                    f" ({moved[0]}: {moved[1]['box_pct']:.1f}% of the box, "
                    f"{moved[1]['box_members_pct']:.1f}% without its foreign events)"
                    if moved
                    else ""
                )
                parts.append(
                    f"the {markers} mixture puts {cut:.1f}% of the {source} events outside the "
                    f"population: the populations overlap on {dim}, so the gate's make-up rests on "
                    f"the mixture and its subsets' % may be off by as much{example}"
                )
            if parts:
                self.warnings.append(f"{gid}: {', and '.join(parts)}")

    def box_shift(self, gid: str) -> tuple[str, dict] | None:
        """The subset of gate ``gid`` whose % of the box moves most when the mixture's foreign events
        are left out (``members_pct`` of :meth:`check_subset`), or None."""
        moves = [
            (cid, r["details"]["members_pct"])
            for cid, r in self.records.items()
            if "box_pct" in r.get("details", {}).get("members_pct", {})
            and self.strat.node(cid).parent == gid
        ]
        return max(
            moves, key=lambda kv: abs(kv[1]["box_members_pct"] - kv[1]["box_pct"]), default=None
        )

    def judge_fallback(self, spec: GateSpec, message: str, details: dict) -> str:
        """A fallback is a QC warning (every gate's population feeds a readout or a parent of one)
        unless the strategy says why it is routine (``routine: <why>``) and a check of the result
        passes (e.g. the kept main peak is the outermost one: debris was not kept). The message of
        the record says which."""
        why = spec.params.get("routine") or ("" if spec.params.get("warn", True) else "routine")
        checks = [d["check"] for d in details.values() if isinstance(d, dict) and "check" in d]
        if isinstance(details.get("check"), dict) and "passed" in details["check"]:
            checks.append(details["check"])  # a 2-D method's own check
        failed = [c["reason"] for c in checks if not c["passed"]]
        if why and checks and not failed:
            reasons = "; ".join(c["reason"] for c in checks)
            return f"{message} (routine: {why}; check passed: {reasons})"
        if why and failed:
            message = f"{message}; check failed: {'; '.join(failed)}"
        self.warnings.append(f"{spec.id} fallback: {message}")
        return message

    def outside_gate(self, spec: GateSpec):
        """A whole gate set from outside (``gates=``): its dims resolved to the sample's var_names."""
        entry = self.gate_over[spec.id]
        fixed = dict(entry["gate"])
        cols = resolve_dims(self.adata, [str(d) for d in fixed["dims"]])
        missing = [d for d, j in cols.items() if j is None]
        if missing:
            raise GatingError(f"override of {spec.id!r}: marker {', '.join(missing)} not found")
        names = [str(self.adata.var_names[j]) for j in cols.values()]
        g = gate_from_dict({**fixed, "dims": names})
        if isinstance(g, RangeGate):  # gates that reuse this gate's thresholds (from:) follow it
            by_col = {j: d for d, j in self.cols.items() if j is not None}
            for j, lo, hi in zip(cols.values(), g.low, g.high, strict=True):
                value = lo if lo is not None else hi
                if value is not None and j in by_col:
                    self.thresholds[(spec.id, by_col[j])] = float(value)
        details = {"rule": entry["status"], "note": entry["note"]}
        return g, entry["status"], _override_message(entry), details

    def apply(self, g, parent: np.ndarray) -> np.ndarray:
        """``g`` applied to the parent's events (only those rows when the parent is small)."""
        cols = [self.by_var(v) for v in g.dims]
        # most events in the parent: gate the columns as they are (no copy); count_nonzero is 10x
        # cheaper than a mean over a million booleans
        whole = parent is self._root or 2 * np.count_nonzero(parent) > parent.size
        if isinstance(g, PolygonGate):  # same rule as PolygonGate.apply, faster on many events
            if whole:
                return _polygon_mask(g.vertices, cols[0], cols[1]) & parent

            def fn(X):
                return _polygon_mask(g.vertices, X[:, 0], X[:, 1])
        else:
            fn = g.apply
        if whole:
            return fn(np.column_stack(cols)) & parent
        idx = np.flatnonzero(parent)
        out = np.zeros(self.n, dtype=bool)
        out[idx] = fn(np.column_stack([c[idx] for c in cols]))
        return out

    def by_var(self, var_name: str) -> np.ndarray:
        """Column of a var_name (a gate's dims), through the strategy dim that resolved to it."""
        for dim, j in self.cols.items():
            if j is not None and str(self.adata.var_names[j]) == var_name:
                return self.column(dim)
        raise GatingError(f"marker {var_name} not found")

    def placement(self, spec: GateSpec):
        """The gate object for ``spec`` with its status, message and diagnostics."""
        p = spec.params
        limit = int(p.get("fit_events", self.strat.fit_events))
        if spec.method == "fixed":
            g = gate_from_dict({**spec.gate, "dims": [self.var(d) for d in spec.dims]})
            return g, "ok", "fixed", {}
        if spec.method in ("valley", "tail", "otsu", "reference", "split"):
            return self.range_gate(spec, {spec.dims[0]: {**p, "method": spec.method}})
        if spec.method == "range":
            return self.range_gate(spec, p["bounds"])
        idx = self.sample_idx(spec.parent, 0 if spec.method == "time_qc" else limit)
        if len(idx) < M.MIN_EVENTS:
            raise GatingError(f"only {len(idx)} events in {spec.parent!r}")
        cols = [self.column(d)[idx] for d in spec.dims]
        kw = {k: v for k, v in p.items() if k not in _PLACEMENT_KEYS}
        dims = tuple(self.var(d) for d in spec.dims)
        if spec.method == "singlets":
            res = M2.singlet_band(cols[0], cols[1], dims=dims, **kw)
        elif spec.method == "corner":  # a rare cloud in a corner of a continuum (CD25hi CD127lo)
            res = corner_population(np.column_stack(cols), dims=dims, seed=self.strat.seed, **kw)
        elif spec.method == "scatter_mixture":
            n_fit = int(p.get("fit_events", 2000))
            sub = self.spread(np.arange(len(idx)), n_fit, key=spec.id)
            XY = np.column_stack(cols)
            viability = self.viable(spec, idx)
            if viability is not None:  # the live events get their own draw (a mostly dead sample)
                live, check = viability
                alive = self.spread(np.flatnonzero(live), n_fit, key=f"{spec.id}/live")
                kw.update(live=live[sub], X_live=XY[alive])
            res = M2.scatter_mixture(XY[sub], dims=dims, seed=self.strat.seed, **kw)
            if viability is not None:
                res.details["viability"] = via = {**check, **res.details.get("viability", {})}
                dead_pct = via.get("dead_side_pct", 0.0)
                if res.status == "ok" and dead_pct > 100 * (1 - M2.MOSTLY_LIVE):
                    # the cloud is live, but the sample is mostly dead cells: a reviewer must know
                    # (a fallback's message already says so)
                    self.warnings.append(
                        f"{spec.id}: low viability: {dead_pct:.0f}% of the {spec.parent} events are "
                        f"dead cells (bright in {via['marker']}); the cloud picked is "
                        f"{via.get('live_pct', float('nan')):.0f}% live"
                    )
        else:  # time_qc
            res = M.time_anomalies(cols[0], cols[1] if len(cols) > 1 else None, dims=dims, **kw)
        return res.value, res.status, res.message, res.details

    def viable(self, spec: GateSpec, idx: np.ndarray) -> tuple[np.ndarray, dict] | None:
        """Which of the events ``idx`` of a scatter gate's parent are live, by the live/dead gate the
        strategy names (``dead_check: live``): its marker and valley rule placed on these events
        (every cell type, so both the live and the dead peak are there when the sample has many dead
        cells). ``None`` when the panel lacks the marker or the dye shows no live/dead valley (no dead
        peak: nothing to check). The name is checked when the strategy is loaded (``_schema``: a
        valley gate of the strategy)."""
        name = spec.params.get("dead_check")
        if not name:
            return None
        live_spec = self.strat.node(name)
        dim = live_spec.dims[0]
        if self.cols.get(dim) is None:
            return None
        b = live_spec.params
        x = self.column(dim)[idx]
        kw = {k: v for k, v in b.items() if k in _METHOD_KW["valley"]}
        try:  # a valley only: without a dead peak there is no dead cloud to mistake
            res = M.density_valley(x, **{**kw, "fallback": "none"})
        except GatingError:
            return None
        live = (x - float(res.value)) * M._side_sign(b.get("side", "low")) >= 0
        return live, {"gate": name, "marker": self.var(dim), "threshold": float(res.value)}

    def range_gate(self, spec: GateSpec, bounds: dict):
        lows, highs, statuses, messages, details = [], [], [], [], {}
        dims = self.dims_of(spec)
        for dim in dims:
            b = bounds[dim]
            value, status, message, det = self.threshold(spec, dim, b)
            self.thresholds[(spec.id, dim)] = value
            side = b.get("side", "high")
            lows.append(value if side == "high" else None)
            highs.append(value if side == "low" else None)
            statuses.append(status)
            if message:
                messages.append(f"{dim}: {message}")
            details[dim] = {"threshold": value, **det}
        # a value set from outside shows first (a reviewer must see it), then a fallback
        status = next(
            (s for s in ("manual", "control", "fallback", "patient") if s in statuses), "ok"
        )
        for dim in set(spec.dims) - set(dims):
            messages.append(f"optional {dim} not found, not used")
        g = RangeGate(tuple(self.var(d) for d in dims), tuple(lows), tuple(highs))
        refine = spec.params.get("refine")
        if refine in self.splits and len(dims) == 2 and "fallback" not in statuses:
            # the population counted on several markers at once (the discriminant of gate
            # ``refine``), drawn on this gate's two dims as a diagonal polygon in place of the box;
            # a threshold set from outside (a reviewer's, a control well's) still cuts it
            idx, pos = self.splits[refine]
            Y = np.column_stack([self.column(d)[idx] for d in dims])
            poly, info = M2.discriminant_polygon(Y, pos, dims=g.dims)
            vertices = list(poly.vertices)
            for j, st in enumerate(statuses):
                if st in OVERRIDE_STATUSES:
                    lo, hi = lows[j], highs[j]
                    w = np.eye(2)[j] * (1.0 if lo is not None else -1.0)
                    vertices = M2.clip_half_plane(vertices, w, lo if lo is not None else -hi)
            g = PolygonGate(g.dims, tuple(vertices))
            details["refined"] = {"from": refine, **info}
        return g, status, "; ".join(messages), details

    def threshold(self, spec: GateSpec, dim: str, b: dict) -> tuple[float, str, str, dict]:
        """One threshold on ``dim``: set from outside (override, control well), reused (``from``), fixed
        (``value``) or placed by a 1-D method."""
        over = self.thr_over.get((spec.id, self.cols[dim]))
        if over is not None:
            details = {"rule": over["status"], "note": over["note"]}
            return over["value"], over["status"], _override_message(over), details
        if b.get("from"):
            key = (b["from"], dim)
            if key not in self.thresholds:
                raise GatingError(f"no threshold on {dim} from gate {b['from']!r}")
            return self.thresholds[key], "ok", "", {"from": b["from"]}
        if b.get("value") is not None or b.get("method") == "fixed":
            return float(b["value"]), "ok", "", {}
        within = b.get("within", spec.parent)
        idx = self.sample_idx(within, int(b.get("fit_events", self.strat.fit_events)))
        if len(idx) < M.MIN_EVENTS:
            raise GatingError(f"only {len(idx)} events in {within!r} to place {dim}")
        x = self.column(dim)[idx]
        method = b.get("method", "valley")
        kw = {k: v for k, v in b.items() if k in _METHOD_KW.get(method, set())}
        prior = self.prior_thr.get((spec.id, self.var(dim)))
        guide = {}
        if b.get("guide") and method == "valley":
            if self.cols.get(b["guide"]) is None:
                raise GatingError(f"guide marker {b['guide']} not found")
            sub = self.spread(idx, int(b.get("guide_events", 4000)), key=f"{spec.id}/{dim}/guide")
            pair = np.column_stack([self.column(b["guide"])[sub], self.column(dim)[sub]])
            try:
                guide = M2.mixture_window(pair, seed=self.strat.seed).details
                kw["search"] = tuple(guide["window"])
            except GatingError as err:  # too few events for a 2-D mixture: the 1-D rule alone
                guide = {"skipped": err.message}
        if method == "reference":  # the excess over a reference population (or x's own main peak)
            ref, values = b.get("reference", "self"), None
            if ref != "self":
                ref_idx = self.sample_idx(ref, int(b.get("fit_events", self.strat.fit_events)))
                if len(ref_idx) < M.MIN_EVENTS:
                    raise GatingError(f"only {len(ref_idx)} events in {ref!r} to place {dim}")
                values = self.column(dim)[ref_idx]
            res = M.reference_threshold(x, values, side=b.get("side", "high"))
        elif (
            method == "split"
        ):  # functional marker: the subset's own valley, else the parent's tail
            sub = self.sample_idx(spec.parent, int(b.get("fit_events", self.strat.fit_events)))
            if len(sub) < M.MIN_EVENTS:
                raise GatingError(f"only {len(sub)} events in {spec.parent!r} to place {dim}")
            neg = b.get("reference")  # a population without the marker, when the sample has it
            negative, strata = None, {}
            if neg and neg in self.masks:
                neg_idx = self.sample_idx(neg, int(b.get("fit_events", self.strat.fit_events)))
                negative = self.column(dim)[neg_idx]
                if b.get("stratum") in self.masks:  # the subset's cells unlike the reference
                    strata = self.strata(b["stratum"], neg, within, sub, idx, dim)
            elif b.get("strata") in self.masks:  # a gate on `within` splitting subset and reference
                inside, col = self.mask(b["strata"]), self.column(dim)
                a, r = inside[sub], inside[idx]
                strata = {"strata": (col[sub][a], col[sub][~a], col[idx][r], col[idx][~r])}
            res = split_threshold(self.column(dim)[sub], x, negative=negative, **kw, **strata)
        else:
            res = _one_d(method, x, kw)
        if guide and res.status != "ok":
            res = _valley_above_window(x, kw, res)
        if b.get("helper") and res.status == "ok" and self.cols.get(b["helper"]) is not None:
            ref = M2.helper_threshold(x, self.column(b["helper"])[idx], float(res.value),
                                      side=b.get("side", "high"))  # fmt: skip
            res = M.Placement(ref.value, res.status, res.message, {**res.details, **ref.details})
        if b.get("helpers"):
            res = self.discriminant(spec, dim, b, idx, x, res)
        if guide.get("skipped"):
            note = (
                f"{b['guide']} guide skipped ({guide['skipped']}): valley searched on {dim} alone"
            )
            message = f"{res.message}; {note}" if res.message else note
            res = M.Placement(res.value, res.status, message, res.details)
        value = float(res.value)
        if prior is not None:
            # the sample's own placement wins when it agrees with the prior; else search near it.
            # "near" in units of the data's spread: one robust SD of the events placed on (the
            # transform's own units, so logicle and arcsinh data behave alike)
            kw["window"] = float(kw.get("window", _landmark(x)["spread"]))
            max_shift = float(b.get("max_shift", kw["window"]))
            if abs(value - prior) > max_shift or res.status != "ok":
                if res.status == "ok":
                    self.warnings.append(
                        f"{spec.id}: own {dim} threshold {value:.3f} is far from the prior "
                        f"{prior:.3f}; placed near the prior"
                    )
                res = M.density_valley(x, prior=prior, **kw) if method == "valley" else res
                value = float(res.value)
        details = {"n_fit": len(idx), **_jsonable(res.details), "landmark": _landmark(x)}
        if res.status == "fallback":
            passed, reason = M.fallback_check(res, side=b.get("side", "high"))
            details["check"] = {"passed": passed, "reason": reason}
        if guide:
            details["guide"] = _jsonable(guide)
        return value, res.status, res.message, details

    def strata(self, stratum: str, negative: str, within: str, sub, idx, dim: str) -> dict:
        """``split_threshold``'s ``stratum`` (the marker on the events of the subset draw ``sub`` that
        are in gate ``stratum``) and ``others`` (on the events of the ``within`` draw ``idx`` outside
        the negative reference population)."""
        col = self.column(dim)
        inside = self.mask(stratum)[sub]
        outside = ~self.mask(negative)[idx]
        return {"stratum": col[sub][inside], "others": col[idx][outside]}

    def discriminant(self, spec: GateSpec, dim: str, b: dict, idx, x, res: M.Placement):
        """``helpers: {CD25: high, CD127: low}``: the count of the positive population on ``dim`` and
        the helpers together (:func:`discriminant_count`), then the threshold on ``dim`` that gates as
        many events, counted as the gate named by ``count_with`` will count them (its other bounds
        placed within this population). Without a separating axis, ``res`` is kept."""
        helpers = {m: s for m, s in b["helpers"].items() if self.cols.get(m) is not None}
        if not helpers:
            return res
        sign = M._side_sign(b.get("side", "high"))
        X = np.column_stack([x, *(self.column(m)[idx] for m in helpers)])
        signs = [sign, *(M._side_sign(s) for s in helpers.values())]
        # a fallback threshold (tail, midpoint) still seeds the discriminant axis: the count needs a
        # valley on that axis, so a guessed start only chooses where the search begins
        start = float(res.value)

        excess = self.excess_count(b, helpers, idx, x)

        def count(fit_events: int):
            pos, info = M2.discriminant_split(
                X, signs, start=start, seed=self.strat.seed, fit_events=fit_events, membership=True
            )
            prob = info.pop("membership", None)
            if prob is not None and b.get("count_with"):  # the counted gate's purity check
                markers = "/".join(self.var(m) for m in (dim, *helpers))
                self.members[spec.id] = (idx, prob, str(b["count_with"]), markers)
            if excess is not None:
                info["excess_count"] = excess
            if pos is None or pos.sum() < 2 * M.MIN_EVENTS:  # none, or a handful of outliers
                return None, info
            # the split's positives against the rest on dim, in robust SDs of the rest
            finite = np.isfinite(x)
            neg, above = x[~pos & finite], x[pos & finite]
            shift = sign * float(np.median(above) - np.median(neg))
            info["separation"] = round(shift / M._robust_sd(neg), 2)
            beyond = excess is not None and pos.sum() - excess > MAX_COUNT_GAP_PP / 100 * len(x)
            if info["separation"] < M2.PRIMARY_DISTINCT and beyond:
                # the events above the valley are not distinct from the rest on dim, the marker
                # that defines the population, and they outnumber dim's excess over its negatives
                # by more than two right estimates can differ (MAX_COUNT_GAP_PP points): the valley
                # lies in the bulk (the CD25 smear of memory cells), not between it and the
                # population. Either alone also rejected right valleys: FOXP3-dim Tregs (separation
                # 1.7) and an excess that undercounts where spillover shifts the CD25-low cells
                info["rejected_valley_count"] = int(pos.sum())
                return None, info
            self.splits[spec.id] = (idx, pos)  # a gate may draw this split (``refine``)
            return int(pos.sum()), info

        n_pos, info = count(DISCRIMINANT_FIT)
        status, message = "ok", f"count from the discriminant of {dim}, {', '.join(helpers)}"
        if n_pos is None and res.status == "ok":
            return M.Placement(res.value, res.status, res.message, {**res.details, **info})
        if n_pos is None and len(X) > DISCRIMINANT_FIT:
            # neither a valley on dim nor on the discriminant. A rare population overlapping the
            # bulk needs events to show as a mixture component of its own (Tregs with dim FOXP3:
            # 4,000 events merged them with FOXP3lo activated Tconv), so the mixture is refitted on
            # more of them, only here where the cheap fit found nothing
            n_pos, info = count(min(len(X), DISCRIMINANT_REFIT))
            info["refit_events"] = min(len(X), DISCRIMINANT_REFIT)
        if n_pos is None:  # the smaller of the mixture's and the tail's count (_fallback_count)
            source, guess = _fallback_count(info)
            if guess < 2 * M.MIN_EVENTS:
                return M.Placement(res.value, res.status, res.message, {**res.details, **info})
            n_pos, status = int(guess), "fallback"
            message = f"{res.message}; no discriminant valley either: count from its {source}"
        rules = [
            (col[idx], *rest) for col, *rest in self.count_rules(b.get("count_with"), spec.id, dim)
        ]
        value = _count_matched(x, sign, n_pos, rules)
        info.update(n_positive=n_pos, helpers=list(helpers))
        return M.Placement(value, status, message, {**res.details, **info})

    def excess_count(self, b: dict, helpers: dict, idx, x) -> int | None:
        """``negative_half: MARKER`` (a helper): how many of the events ``x`` (on the bound's dim)
        lie in excess of the negatives, whose shape on dim is that of the half of the events on the
        far side of MARKER's median from the population. CD4+CD25- cells are the conventional T cells
        (Sakaguchi et al., J Immunol 1995; Baecher-Allan et al., J Immunol 2001: the regulatory cells
        are the CD25-high few), so the FOXP3 of the CD25-low half of CD4 is the shape of FOXP3 on
        cells that lack it.

        Overton's subtraction (Overton, Cytometry 1988): below a point ``t`` of the reference lie a
        known share ``q`` of the negatives and (almost) no positives, so the negatives number
        ``#(x < t) / q`` and the rest are the excess. ``t`` is the reference's point one SD above its
        median (``q = Phi(1)``): half the negatives (Overton's median) leave the count's noise twice
        as large, and dim positives within one SD of the negatives are not told from them by dim
        anyway. No shape is assumed for the positives (a Gaussian fitted to them, the ``reference``
        method, widened over the FOXP3lo activated Tconv: +1.5 points of CD4 on dev trials).
        It rests on the two halves' negatives having the same shape: where spillover makes FOXP3
        of the CD25-low cells sit higher (0.3 SD on simulated trial 9701), it undercounts."""
        marker = b.get("negative_half")
        if not marker or marker not in helpers:
            return None
        h = self.column(marker)[idx]
        ok = np.isfinite(h) & np.isfinite(x)
        if ok.sum() < 10 * M.MIN_EVENTS:
            return None
        med = float(np.median(h[ok]))
        far = ok & ((h - med) * M._side_sign(helpers[marker]) < 0)
        sign = M._side_sign(b.get("side", "high"))
        xs, ref = x[ok] * sign, x[far] * sign  # the population above
        t = float(np.quantile(ref, ONE_SD_SHARE))
        negatives = np.count_nonzero(xs < t) / ONE_SD_SHARE
        return max(round(len(xs) - negatives), 0)

    def count_rules(self, gate_id: str | None, within: str, dim: str) -> list:
        """``(column, method kw)`` of the bounds of gate ``gate_id`` placed within ``within``."""
        node = next((n for n in self.strat.nodes if n.id == gate_id), None)
        if not isinstance(node, GateSpec) or node.method != "range":
            return []
        rules = []
        for odim, ob in node.params.get("bounds", {}).items():
            if odim == dim or ob.get("within") != within or self.cols.get(odim) is None:
                continue
            method = ob.get("method", "valley")
            kw = {k: v for k, v in ob.items() if k in _METHOD_KW.get(method, set())}
            rules.append((self.column(odim), method, kw, ob.get("side", "high")))
        return rules

    def evaluate(self, spec: PopulationSpec) -> None:
        try:
            mask = _eval(spec.tree, self.mask) & self.mask(spec.parent)
        except GatingError as err:
            self.fail(spec, err.message, status="skipped")
            return
        self.masks[spec.id] = mask
        self.records[spec.id] = _record(None, "boolean", {"expr": spec.expr}, "ok", "")

    # ---------------------------------------------------------------- results
    def summary(self, present: list[str]) -> dict:
        counts = {name: np.count_nonzero(self.masks[name]) for name in present}
        pops = []
        for n in self.strat.nodes:
            entry = {"name": n.id, "parent": n.parent, "label": bool(n.label)}
            if isinstance(n, PopulationSpec):
                entry["expr"] = n.expr
            pops.append(entry)
            if n.id in counts and n.expect is not None and n.id not in self.above:
                parent_count = self.n if n.parent == ROOT else counts.get(n.parent, 0)
                pct = 100.0 * counts[n.id] / max(parent_count, 1)
                lo, hi = n.expect
                if not lo <= pct <= hi:
                    self.warnings.append(
                        f"{n.id} is {pct:.1f}% of {n.parent}, outside its usual {lo:g}-{hi:g}%"
                    )
        return {
            "strategy": self.strat.name,
            "populations": population_columns(pops),
            "gates": self.records,
            "counts": counts,
            "scales": self.scales,
            "warnings": list(self.warnings),
            "missing_markers": {m: list(ids) for m, ids in self.missing_markers.items()},
            **({"start_at": self.start_at} if self.start_at else {}),
        }


def _unnamed_hint(adata: AnnData) -> str:
    """What to do when the file names no marker on any fluorescence channel (no ``$PnS``)."""
    if K.MARKER not in adata.var or K.ROLE not in adata.var:
        return ""
    channels = adata.var[K.CHANNEL].astype(str) if K.CHANNEL in adata.var else adata.var_names
    names = adata.var[K.MARKER].astype(str).str.strip()
    fluorescence = ~adata.var[K.ROLE].astype(str).isin(["scatter", "time"])
    named = (names != "") & (names != channels)
    if not fluorescence.any() or named[fluorescence].any():
        return ""
    return (
        f" (the file names no marker on its {int(fluorescence.sum())} fluorescence channels: map them "
        "with --panel; `cytokit panel FILE` writes a template)"
    )


def _pregated_nodes(strat: Strategy, start_at: str | None) -> tuple[set[str], set[str]]:
    """For a file exported from ``start_at``: (its ancestors and itself, nodes outside its branch)."""
    if start_at is None:
        return set(), set()
    parent = {n.id: n.parent for n in strat.nodes}
    above, name = set(), start_at
    while name in parent:
        above.add(name)
        name = parent[name]

    def below(name: str) -> bool:
        while name in parent and name != start_at:
            name = parent[name]
        return name == start_at

    outside = {n.id for n in strat.nodes if n.id not in above and not below(n.id)}
    return above, outside


def _helper_markers(spec: GateSpec) -> set[str]:
    """Markers a gate's placement reads besides its dims (``guide``, ``helper``, ``helpers``)."""
    bounds = [spec.params, *spec.params.get("bounds", {}).values()]
    out = {
        str(b[k]) for b in bounds if isinstance(b, dict) for k in ("guide", "helper") if b.get(k)
    }
    out |= {str(m) for b in bounds if isinstance(b, dict) for m in (b.get("helpers") or {})}
    return out


def _fallback_count(info: dict) -> tuple[str, int]:
    """``(source, count)`` of a population that has a valley neither on its marker nor on the
    discriminant axis: the marker's excess over its negatives (``excess_count``,
    :meth:`_Run.excess_count`) where the strategy names a negative half, else the smaller of the
    mixture's count (its components distinct on the marker, ``mixture_count``) and the tail rule's
    (``tail_count``), whichever exist.

    The excess models the negatives from cells known to lack the marker and the positives not at
    all. The mixture and the tail both take in the part of the bulk's tail that overlaps a shoulder:
    a Gaussian component fitted to it widens over the neighbouring events (FOXP3lo activated Tconv,
    the CD25 smear of memory cells), and the tail rule counts everything beyond the bulk's own
    spread. Neither has a reason to count fewer events than the population holds, so the smaller is
    the tighter of the two (simulated overlap trials, dev seeds
    7901/7902/9201/9202: the mixture's count was above the truth on 30 of 30 such samples, by 2.1
    points of CD4 on average; the smaller of the two 1.2 points). On dev trials 9812/9813/9954/7952
    (73 samples without a valley) the excess was off by 0.72 / 2.28 points (mean / worst), the
    smaller of mixture and tail by 2.85 / 30.6 (a CD25-driven axis whose tail counted the smear).

    An excess of zero is no count: the reference's shape then covers every event, which happens when
    its negatives sit higher than the rest's (spillover, see :meth:`_Run.excess_count`), not because
    the population is absent; the other counts are used as without a negative half."""
    if info.get("excess_count"):  # None (no negative half) or 0 (see above): the other counts
        return "excess", int(info["excess_count"])
    counts = {s: int(info[f"{s}_count"]) for s in ("mixture", "tail") if info.get(f"{s}_count")}
    if not counts:
        return "tail", 0
    source = min(counts, key=counts.get)
    return source, counts[source]
