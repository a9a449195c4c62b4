"""Apply a gating strategy to one sample: place every gate from the sample's data, then label events.

``gate(adata, "treg")`` works on a compensated, transformed AnnData (see DEVELOPERS.md). Placement uses
a subsample of each parent population (``fit_events`` of the strategy); gates are then applied to all
events, vectorised. Results: ``obs[key_added]`` (deepest lineage population, every event has one),
``obsm["populations"]`` (bool DataFrame, one column per population) and ``uns["gating"]``.
"""

from __future__ import annotations

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
from ._functional import split_threshold
from ._gates import PolygonGate, RangeGate, bound, gate_from_dict
from ._methods_corner import corner_population
from ._overrides import normalise_gates, normalise_thresholds
from ._strategy import (
    ROOT,
    GateSpec,
    PopulationSpec,
    Strategy,
    load_strategy,
    population_columns,
)

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["consensus_prior", "gate", "placement_jumps", "resolve_dims"]

logger = logging.getLogger("cytokit")

#: events the FOXP3/CD25/CD127 mixture of the discriminant count is fitted on (a component of a 2-5 %
#: population then holds 80-200 events) ...
DISCRIMINANT_FIT = 4000
#: ... and refitted on when neither FOXP3 nor that fit's discriminant axis has a valley
DISCRIMINANT_REFIT = 16000

_METHOD_KW = {
    "valley": {"side", "min_prominence", "adjust", "pair", "search", "window", "fallback", "k"},
    "tail": {"side", "k", "adjust", "peak"},
    "otsu": {"nbins"},
    "reference": {"side"},
    "split": {"side", "k", "min_prominence", "min_depth", "reference_rule"},
}
_PLACEMENT_KEYS = {
    "refine",
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
    adata.obs[key_added] = run.labels()
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
        self.records: dict[str, dict] = {}
        self.warnings: list[str] = []
        self.absent: set[str] = set()  # optional nodes skipped for markers the panel lacks
        self.missing_markers: dict[str, list[str]] = {}  # marker -> optional gates skipped for it
        self.thr_over, self.gate_over = self._overrides(thresholds, gates)

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
            self.fail(
                spec, f"marker {', '.join(missing)} not found", status="skipped", missing=missing
            )
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
        if isinstance(g, PolygonGate):  # same rule as PolygonGate.apply, faster on many events
            if parent is self._root or parent.mean() > 0.5:  # the columns as they are: no copy
                return _polygon_mask(g.vertices, cols[0], cols[1]) & parent

            def fn(X):
                return _polygon_mask(g.vertices, X[:, 0], X[:, 1])
        else:
            fn = g.apply
        if parent is self._root or parent.mean() > 0.5:
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
            sub = self.spread(np.arange(len(idx)), int(p.get("fit_events", 2000)), key=spec.id)
            res = M2.scatter_mixture(
                np.column_stack(cols)[sub], dims=dims, seed=self.strat.seed, **kw
            )
        else:  # time_qc
            res = M.time_anomalies(cols[0], cols[1] if len(cols) > 1 else None, dims=dims, **kw)
        return res.value, res.status, res.message, res.details

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
                if st in ("manual", "control", "patient"):
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
            guide = M2.mixture_window(pair, seed=self.strat.seed).details
            kw["search"] = tuple(guide["window"])
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
            negative = None
            if neg and neg in self.masks:
                neg_idx = self.sample_idx(neg, int(b.get("fit_events", self.strat.fit_events)))
                negative = self.column(dim)[neg_idx]
            res = split_threshold(self.column(dim)[sub], x, negative=negative, **kw)
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

        def count(fit_events: int):
            pos, info = M2.discriminant_split(
                X, signs, start=start, seed=self.strat.seed, fit_events=fit_events
            )
            if pos is None or pos.sum() < 2 * M.MIN_EVENTS:  # none, or a handful of outliers
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
        if n_pos is None:  # the mixture's count of components distinct on dim, else the tail
            source = "mixture" if info.get("mixture_count") else "tail"
            guess = info.get(f"{source}_count") or 0
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
    def labels(self) -> pd.Categorical:
        """Deepest labelled population of every event; parent events failing a gate get its ``outside``."""
        nodes = [n for n in self.strat.nodes if n.label and n.id in self.masks]
        depth = {ROOT: 0}
        for n in self.strat.nodes:  # dependency order: parents first
            depth[n.id] = depth.get(n.parent, 0) + 1
        names = ["ungated"]
        codes = np.zeros(self.n, dtype=np.int16)

        def code(name: str) -> int:
            if name not in names:
                names.append(name)
            return names.index(name)

        for name in [ROOT, *sorted((n.id for n in nodes), key=lambda i: depth[i])]:
            parent_mask = self.mask(name)
            if name != ROOT:
                _put(codes, parent_mask, code(name))
            for child in nodes:
                outside = getattr(child, "outside", None)
                if child.parent == name and outside:
                    _put(codes, parent_mask & ~self.masks[child.id], code(outside))
        used = np.bincount(codes, minlength=len(names)) > 0
        remap = np.cumsum(used) - 1
        return pd.Categorical.from_codes(
            remap[codes], [c for c, u in zip(names, used, strict=True) if u]
        )

    def summary(self, present: list[str]) -> dict:
        counts = {name: int(self.masks[name].sum()) for name in present}
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


def _columns(X, needed: list[int], step: int = 1 << 16) -> np.ndarray:
    """``X[:, needed].T`` as one C-contiguous float32 block, gathered and transposed ``step`` events
    at a time: one allocation the size of the result, no event-sized temporary (a 1M-event sample
    allocated and page-faulted 60 MB more)."""
    if hasattr(X, "toarray"):  # sparse: densify the needed columns once
        return np.ascontiguousarray(X[:, needed].toarray().T, dtype=np.float32)
    X = np.asarray(X)
    block = np.empty((len(needed), X.shape[0]), dtype=np.float32)
    for start in range(0, X.shape[0], step):
        block[:, start : start + step] = X[start : start + step, needed].T
    return block


def _put(codes: np.ndarray, mask: np.ndarray, value: int) -> None:
    """``codes[mask] = value`` as arithmetic, ``codes += mask * (value - codes)``: the same integers,
    ~25x faster than a boolean-mask assignment over a million events (0.15 vs 4 ms)."""
    delta = np.asarray(value, dtype=codes.dtype) - codes
    delta *= mask
    codes += delta


def _polygon_mask(vertices, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon, exactly :meth:`PolygonGate.apply`'s rule, on y-sorted events.

    Each edge only visits the events whose y lies in its span (a slice of the sorted order), so a
    64-vertex polygon costs a sort plus about two passes instead of 64 passes over all events.
    """
    x, y = np.asarray(x), np.asarray(y)
    order = np.argsort(y)  # float32 sorts as its exact float64 widening does, and faster
    ys, xs = y[order].astype(float), x[order].astype(float)
    inside = np.zeros(len(x), dtype=bool)
    v = np.asarray(vertices, dtype=float)
    for (x1, y1), (x2, y2) in zip(v, np.roll(v, -1, axis=0), strict=True):
        if y1 == y2:
            continue
        lo, hi = np.searchsorted(ys, [min(y1, y2), max(y1, y2)], side="left")
        if hi <= lo:
            continue
        x_at = x1 + (ys[lo:hi] - y1) * (x2 - x1) / (y2 - y1)
        inside[lo:hi] ^= xs[lo:hi] < x_at
    out = np.empty(len(x), dtype=bool)
    out[order] = inside
    return out


def _helper_markers(spec: GateSpec) -> set[str]:
    """Markers a gate's placement reads besides its dims (``guide``, ``helper``, ``helpers``)."""
    bounds = [spec.params, *spec.params.get("bounds", {}).values()]
    out = {
        str(b[k]) for b in bounds if isinstance(b, dict) for k in ("guide", "helper") if b.get(k)
    }
    out |= {str(m) for b in bounds if isinstance(b, dict) for m in (b.get("helpers") or {})}
    return out


# Transformed fluorescence ends below ~12 (logicle 0..1; arcsinh of an 18-bit maximum, 262143, with
# the mass-cytometry cofactor 5 is 11.6); untransformed fluorescence spans 10^3..10^5.
_TRANSFORMED_MAX = 100.0
_SCATTER_OR_TIME = ("scatter", "time")


def _check_scales(adata: AnnData, cols: dict[str, int | None], path) -> dict[str, str]:
    """What ``X`` holds on each fluorescence dim the strategy places, from ``uns["transform"]``.

    Placement is scale-free (densities with data-driven bandwidths, tails and windows in robust SDs,
    mixtures), so logicle and arcsinh data are gated alike. Fluorescence that is not transformed
    (``kind: linear``, or no record and values far beyond any transformed scale) crowds every
    negative population into the first bins: refused with a :class:`GatingError` naming the file.
    """
    records = adata.uns.get(K.TRANSFORM) or {}
    roles = adata.var[K.ROLE].astype(str) if K.ROLE in adata.var else None
    scales: dict[str, str] = {}
    for j in sorted({c for c in cols.values() if c is not None}):
        var = str(adata.var_names[j])
        if (roles is not None and roles.iloc[j] in _SCATTER_OR_TIME) or _is_scatter_or_time(var):
            continue
        kind = str((records.get(var) or {}).get("kind", ""))
        if kind == "linear":
            raise GatingError(
                f"{var} is on a linear scale (uns['transform']); gating needs logicle or arcsinh "
                "fluorescence: run pp.transform first",
                path,
            )
        if not kind:
            x = adata.X[:, j]
            x = np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=float).ravel()
            if np.nanpercentile(np.abs(x), 99) > _TRANSFORMED_MAX:
                raise GatingError(
                    f"{var} looks untransformed (values up to {np.nanmax(x):.0f}, no "
                    "uns['transform'] record): run pp.transform first",
                    path,
                )
            kind = "unknown"
        scales[var] = kind
    return scales


def _is_scatter_or_time(name: str) -> bool:
    return name.upper().startswith(("FSC", "SSC")) or name.lower() == "time"


def _count_matched(x: np.ndarray, sign: int, n_pos: int, rules: list) -> float:
    """The threshold on ``x`` (positives toward ``sign``) whose gate holds ``n_pos`` events; with
    ``rules`` (other bounds placed within the positives), the count after those bounds too."""
    order = np.sort(x)[::-sign]  # most positive first
    top = float(order[min(max(n_pos, 1), len(order)) - 1])
    if not rules:
        return top
    # the other bounds only remove events: the first threshold (gating n_pos .. 2.5 n_pos events on
    # x) at which the gate counts n_pos within the count's own Poisson noise (sqrt n_pos); when none
    # does, the one whose count comes closest
    ks = np.unique(np.linspace(n_pos, min(len(order), int(2.5 * n_pos) + 1), 60).astype(int))
    best, best_err = top, np.inf
    for k in ks:
        t = float(order[max(k, 1) - 1])
        inside = (x - t) * sign >= 0
        keep = inside.copy()
        for col, method, kw, side in rules:
            if inside.sum() < M.MIN_EVENTS:
                break
            thr = float(_one_d(method, col[inside], kw).value)
            keep &= (col - thr) * M._side_sign(side) >= 0
        if abs(int(keep.sum()) - n_pos) <= np.sqrt(n_pos):
            return t
        if abs(int(keep.sum()) - n_pos) < best_err:
            best, best_err = t, abs(int(keep.sum()) - n_pos)
    return best


def _landmark(x: np.ndarray) -> dict:
    """Where the fitted events sit on a dim: median and robust spread (normal-consistent MAD). A
    threshold expressed against them does not move when the instrument shifts or stretches a channel,
    so samples of a patient recorded on different days can be compared like with like."""
    x = x[np.isfinite(x)]
    med = float(np.median(x))
    return {"median": med, "spread": float(M._robust_sd(x))}


def _valley_above_window(x: np.ndarray, kw: dict, res: M.Placement) -> M.Placement:
    """A guided valley search found nothing in its window: look for the valley between the main
    peak and a peak above the window's lower end (the positive peak beyond a component the mixture
    put in the gap); keep the guided fallback ``res`` when there is none."""
    low = float(kw["search"][0])
    try:
        alt = M.density_valley(
            x, **{**kw, "search": (low, float(np.max(x))), "pair": "above_main", "fallback": "none"}
        )
    except GatingError:
        return res
    return M.Placement(alt.value, "ok", "valley above the guide window", alt.details)


_OVERRIDE_TEXT = {
    "manual": "set by a reviewer",
    "control": "set from a control well",
    "patient": "placed on the patient's pooled samples",
}


def _override_message(entry: dict) -> str:
    what = _OVERRIDE_TEXT[entry["status"]]
    return f"{what}: {entry['note']}" if entry["note"] else what


def _one_d(method: str, x: np.ndarray, kw: dict) -> M.Placement:
    if method == "valley":
        return M.density_valley(x, **kw)
    if method == "tail":
        return M.tail_threshold(x, **kw)
    if method == "otsu":
        return M.otsu_threshold(x, **kw)
    raise GatingError(f"unknown threshold method {method!r}")


def _eval(tree: tuple, lookup) -> np.ndarray:
    op = tree[0]
    if op == "name":
        return lookup(tree[1])
    if op == "not":
        return ~_eval(tree[1], lookup)
    left, right = _eval(tree[1], lookup), _eval(tree[2], lookup)
    return left & right if op == "and" else left | right


def _jsonable(obj):
    """Plain Python numbers/lists/dicts so uns can be written to h5ad: no numpy scalars, no None (left
    out of a dict, NaN in a list)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list | tuple):
        return [float("nan") if v is None else _jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _lists(d: dict) -> dict:
    """Gate dict with tuples as lists (JSON/YAML friendly); open bounds are NaN (``to_dict``)."""
    return {k: [_lists(v) if isinstance(v, dict) else v for v in x] if isinstance(x, tuple | list) else x
            for k, x in d.items()}  # fmt: skip


def _record(g, method: str, params: dict, status: str, message: str, details=None) -> dict:
    return {
        "gate": _lists(g.to_dict()) if g is not None else {},
        "method": method,
        "params": _jsonable(params),
        "status": status,
        "message": message,
        "details": _jsonable(details or {}),
    }


# ------------------------------------------------------------------------------------- priors
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
    a Shewhart control chart). Left out: thresholds the strategy says move with treatment
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
        for key, (z, _) in _relative_thresholds(other, statuses=("ok", "fallback")).items():
            reference.setdefault(key, []).append(z)
    messages = []
    for (gid, dim), (z, value) in _relative_thresholds(gating, statuses=("ok",)).items():
        ref = reference.get((gid, dim))
        if not ref:
            continue
        dz = z - float(np.median(ref))
        if abs(dz) > max_z:
            messages.append(
                f"{gid}: {dim} threshold {value:.3f} is {abs(dz):.1f} robust SDs of its population "
                f"from where the patient's other samples place it"
            )
    return messages


# placements whose position follows biology by construction: a tail is k SDs from its peak; a
# reference threshold is the quantile that gates a subset's estimated share, so it moves with that share
# (ld-IL2 lowers cTfh and Th17); a split threshold is the subset's own valley or such an excess, the
# rule chosen by how many positives the sample has (Ki67+ Tregs at D8, Th1/17 at week 10: a CCR6 jump of
# 3.2 SDs warned a sample whose readouts were right); time QC follows each file's acquisition
_UNCHECKED = ("tail", "time_qc", "reference", "split")


def _relative_thresholds(gating: dict, *, statuses) -> dict[tuple[str, str], tuple[float, float]]:
    """``{(gate, dim): (z, threshold)}``: range thresholds placed by the sample's own valley / Otsu
    (see :func:`placement_jumps`), z in robust SDs from the median of the events they were placed on."""
    out: dict[tuple[str, str], tuple[float, float]] = {}
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
            out[(str(gid), dim)] = ((value - mark["median"]) / mark["spread"], value)
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
