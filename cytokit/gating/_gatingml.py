"""GatingML 2.0 in and out: the gates placed on a sample as a portable file, and fixed gates brought in.

Export builds the strategy from FlowKit's own objects (gates, ``Dimension``, transforms, ``Matrix``) and
writes it with :func:`flowkit.export_gatingml`, so anything FlowKit (or FlowJo/Cytobank via GatingML)
reads back applies the same gates to the *raw* FCS file. Import goes the other way: a GatingML 2.0 file
or a FlowJo 10 ``.wsp`` is evaluated by FlowKit's ``GatingStrategy.gate_sample`` on the sample's raw
events, and the memberships land in the AnnData the way :func:`cytokit.gating.gate` leaves them.
"""

from __future__ import annotations

import io
import logging
import math
import re
from array import array
from collections.abc import Mapping, Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from .. import _keys as K
from ..errors import CytokitError, MarkerError, StrategyError
from ._gates import EllipseGate, PolygonGate, RangeGate, gate_from_dict

__all__ = ["apply_gatingml", "export_gatingml", "load_gatingml", "to_gating_strategy"]

logger = logging.getLogger("cytokit")

#: GatingML ``fasinh`` with A = 0 and T = c * sinh(M ln10) is asinh(x / c) / (M ln10). With M = 1 / ln10
#: the scale factor is 1, so exported coordinates equal cytokit's; the code keeps the general factor.
_ASINH_M = 1.0 / math.log(10.0)
_ROOTS = {None, "", "root", "all", "events", "all events"}
_UNGATED = "ungated"
_SPILL_KEYS = ("$SPILLOVER", "SPILLOVER", "$SPILL", "SPILL")


# ----------------------------------------------------------------------------------------------- ids
def _xml_id(name: str, taken: set[str]) -> str:
    """A valid, unique XML ID (NCName) for ``name``: ``FOXP3+`` -> ``FOXP3pos``, ``B/NK`` -> ``B_NK``."""
    text = str(name).strip().replace("+", "pos")
    text = re.sub(r"-$", "neg", text)
    text = re.sub(r"[^A-Za-z0-9_.\-]", "_", text) or "gate"
    if not re.match(r"[A-Za-z_]", text[0]):
        text = "_" + text
    candidate, i = text, 2
    while candidate in taken:
        candidate, i = f"{text}_{i}", i + 1
    taken.add(candidate)
    return candidate


# ---------------------------------------------------------------------------------------- transforms
def _fk_transform(params: Mapping):
    """FlowKit transform for cytokit's per-var transform ``params`` and the factor mapping its units."""
    from flowkit import transforms as fkt

    kind = params.get("kind")
    if kind == "logicle":
        t = fkt.LogicleTransform(
            param_t=float(params["T"]),
            param_w=float(params["W"]),
            param_m=float(params["M"]),
            param_a=float(params.get("A", 0.0)),
        )
        return t, 1.0
    if kind == "asinh":
        c = float(params["cofactor"])
        scale = 1.0 / (_ASINH_M * math.log(10.0))
        return fkt.AsinhTransform(
            param_t=c * math.sinh(_ASINH_M * math.log(10.0)), param_m=_ASINH_M, param_a=0.0
        ), scale
    if kind == "linear":
        return fkt.LinearTransform(
            param_t=float(params["T"]), param_a=float(params.get("A", 0.0))
        ), 1.0
    raise StrategyError(f"transform kind {kind!r} has no GatingML 2.0 equivalent")


def _var_channel(adata: ad.AnnData, dim: str, gate_id: str) -> tuple[str, str]:
    """(var name, $PnN channel) of a gate dimension named by marker or channel; MarkerError if absent."""
    channels = (
        adata.var[K.CHANNEL]
        if K.CHANNEL in adata.var
        else pd.Series(adata.var_names, adata.var_names)
    )
    if dim in adata.var_names:
        return dim, str(channels[dim])
    hits = channels.index[channels.astype(str) == dim]
    if len(hits):
        return str(hits[0]), dim
    raise MarkerError(
        f"gate {gate_id!r} needs {dim!r}, which the sample lacks", _sample_file(adata)
    )


def _sample_file(adata: ad.AnnData) -> str | None:
    return (adata.uns.get(K.SAMPLE_INFO) or {}).get("file") or None


# --------------------------------------------------------------------------------------------- export
class _Builder:
    """Collects FlowKit transforms/matrix for one sample and turns cytokit gates into FlowKit gates."""

    def __init__(self, adata: ad.AnnData):
        import flowkit as fk

        self.adata = adata
        self.strategy = fk.GatingStrategy()
        self.transform_ids: dict[str, tuple[str, float]] = {}
        self.taken: set[str] = set()
        self.comp_ref, self.comp_channels = self._compensation()

    def _compensation(self) -> tuple[str, set[str]]:
        import flowkit as fk

        comp = self.adata.uns.get(K.COMPENSATION)
        if not comp or comp.get("matrix") is None:
            return "uncompensated", set()
        matrix = pd.DataFrame(comp["matrix"])
        channels = [str(c) for c in matrix.columns]
        fcs = {str(k).upper() for k in self.adata.uns.get(K.FCS, {})}
        if comp.get("source") == "FCS" and fcs.intersection(_SPILL_KEYS):
            return "FCS", set(
                channels
            )  # the file's own matrix: the XML stays valid for its sibling files
        stains = dict(
            zip(self.adata.var.get(K.CHANNEL, []), self.adata.var.get(K.STAIN, []), strict=False)
        )
        fluoro = [str(stains.get(c) or c) for c in channels]
        ref = _xml_id("cytokit_compensation", self.taken)
        self.strategy.add_comp_matrix(ref, fk.Matrix(matrix.to_numpy(float), channels, fluoro))
        return ref, set(channels)

    def dimension(self, dim: str, name: str, low=None, high=None):
        """FlowKit Dimension for a cytokit dim (by $PnN) and the factor from cytokit to FlowKit units."""
        import flowkit as fk

        var, channel = _var_channel(self.adata, dim, name)
        ref, scale = self._transform_ref(var, channel)
        comp = self.comp_ref if channel in self.comp_channels else "uncompensated"
        low = None if low is None else float(low) * scale
        high = None if high is None else float(high) * scale
        return fk.Dimension(
            channel, compensation_ref=comp, transformation_ref=ref, range_min=low, range_max=high
        ), scale

    def _transform_ref(self, var: str, channel: str) -> tuple[str | None, float]:
        params = (self.adata.uns.get(K.TRANSFORM) or {}).get(var)
        if not params:
            return None, 1.0
        if channel not in self.transform_ids:
            xform, scale = _fk_transform(params)
            ref = _xml_id(f"{params['kind']}_{channel}", self.taken)
            self.strategy.add_transform(ref, xform)
            self.transform_ids[channel] = (ref, scale)
        return self.transform_ids[channel]

    def fk_gate(self, gate_id: str, gate, name: str):
        """The FlowKit gate for population ``name``'s gate object (coordinates in FlowKit units)."""
        from flowkit import gates as fkg

        if isinstance(gate, RangeGate):
            dims = []
            for dim, lo, hi in zip(gate.dims, gate.low, gate.high, strict=True):
                if lo is None and hi is None:
                    continue  # GatingML needs a bound per dimension; an open one constrains nothing
                dims.append(self.dimension(dim, name, lo, hi)[0])
            if (
                not dims
            ):  # everything passes: keep the gate (children hang on it) with a bound nothing fails
                dims = [self.dimension(gate.dims[0], name, low=-1e300)[0]]
            return fkg.RectangleGate(gate_id, dims)
        pairs = [self.dimension(d, name) for d in gate.dims]
        dims, scale = [p[0] for p in pairs], np.array([p[1] for p in pairs])
        if isinstance(gate, PolygonGate):
            vertices = [[float(v) for v in np.asarray(p, float) * scale] for p in gate.vertices]
            return fkg.PolygonGate(gate_id, dims, vertices)
        if isinstance(gate, EllipseGate):
            mean = [float(v) for v in np.asarray(gate.mean, float) * scale]
            cov = np.asarray(gate.covariance, float) * np.outer(scale, scale)
            return fkg.EllipsoidGate(gate_id, dims, mean, cov.tolist(), float(gate.distance_square))
        raise StrategyError(f"gate {name!r}: unsupported gate type {type(gate).__name__}")


def _population_order(populations: Sequence[Mapping]) -> list[Mapping]:
    """Populations with parents and referenced populations first (file order otherwise kept)."""
    from ._strategy import expr_names

    by_name = {p["name"]: p for p in populations}
    done: dict[str, Mapping] = {}

    def visit(p, trail=()):
        if p["name"] in done or p["name"] in trail:
            return
        tree = _expression(p)
        for dep in [p.get("parent"), *(expr_names(tree) if tree else ())]:
            if dep in by_name:
                visit(by_name[dep], (*trail, p["name"]))
        done[p["name"]] = p

    for p in populations:
        visit(p)
    return list(done.values())


def _expression(pop: Mapping) -> tuple | None:
    """Expression tree of a boolean population (``expr``), or ``not <gate>`` for an outside label."""
    from ._strategy import parse_expr

    text = pop.get("expr") or pop.get("boolean")
    if text:
        try:
            return parse_expr(str(text))
        except ValueError as err:
            raise StrategyError(
                f"population {pop['name']!r}: bad expression {text!r} ({err})"
            ) from err
    if pop.get("outside"):  # the parent's events failing a gate (debris, doublet, dead, ...)
        return ("not", ("name", str(pop["outside"])))
    return None


class _Booleans:
    """Turns an expression tree into BooleanGates; nested sub-expressions become helper gates.

    References to the population's own ancestors are true within its parent (a BooleanGate is
    intersected with its parent), and are dropped: FlowKit's reader cannot take a gate that refers to
    its parent (``CD4 and not FOXP3+`` under CD4 is written as ``not FOXP3+`` under CD4).
    """

    def __init__(self, builder: _Builder, placed: dict, name: str, path: tuple, ancestors: set):
        self.builder, self.placed, self.name, self.path = builder, placed, name, path
        self.ancestors = ancestors
        self.helpers: list = []

    def ref(self, tree: tuple, complement: bool = False) -> dict:
        """A gate reference for ``tree`` (a placed population, or a helper gate built for it)."""
        if tree[0] == "name":
            gate_id, path = self.placed[tree[1]]
            if not path:  # an alias of all events has no gate to refer to
                raise KeyError(tree[1])
            return {"ref": gate_id, "path": path, "complement": complement}
        if tree[0] == "not":
            return self.ref(tree[1], not complement)
        helper_id = _xml_id(f"{self.name}_{len(self.helpers) + 1}", self.builder.taken)
        self.helpers.append(self.gate(helper_id, tree))
        return {"ref": helper_id, "path": self.path, "complement": complement}

    def gate(self, gate_id: str, tree: tuple):
        """One BooleanGate for ``tree``: a flat and/or over references, or a 'not'."""
        from flowkit import gates as fkg

        tree = _simplify(tree, self.ancestors)
        if isinstance(tree, bool):  # the population is its parent, or empty: no GatingML form
            raise KeyError(f"{self.name} (constant {tree})")
        if tree[0] in ("and", "or"):
            operands = _flatten(tree, tree[0])
            return fkg.BooleanGate(gate_id, tree[0], [self.ref(t) for t in operands])
        ref = self.ref(tree)  # a name or a negation: GatingML 'not' takes exactly one operand
        if ref["complement"]:
            return fkg.BooleanGate(gate_id, "not", [{**ref, "complement": False}])
        return fkg.BooleanGate(gate_id, "and", [ref, ref])  # an alias: 'and' needs two operands


def _simplify(tree: tuple, true_names: set) -> tuple | bool:
    """``tree`` with the names in ``true_names`` replaced by True and constants folded away."""
    op = tree[0]
    if op == "name":
        return True if tree[1] in true_names else tree
    if op == "not":
        inner = _simplify(tree[1], true_names)
        return (not inner) if isinstance(inner, bool) else ("not", inner)
    left, right = _simplify(tree[1], true_names), _simplify(tree[2], true_names)
    absorbing = op == "or"  # True absorbs 'or', False absorbs 'and'
    for a, b in ((left, right), (right, left)):
        if isinstance(a, bool):
            return absorbing if a == absorbing else b
    return (op, left, right)


def _flatten(tree: tuple, op: str) -> list[tuple]:
    if tree[0] != op:
        return [tree]
    return [leaf for sub in tree[1:] for leaf in _flatten(sub, op)]


def to_gating_strategy(adata: ad.AnnData):
    """The gates placed on ``adata`` (``uns["gating"]``) as a :class:`flowkit.GatingStrategy`.

    Gate dimensions are the channels' ``$PnN``, with the sample's compensation (``"FCS"`` when the file's
    own spillover was used, else an embedded matrix) and per-channel transforms, so the strategy applies
    to the raw FCS file. Populations whose gate failed or was skipped are left out with their children.
    """
    gating = adata.uns.get(K.GATING)
    if not gating or not gating.get("gates"):
        raise StrategyError(
            "the sample has no placed gates (run cytokit.gate first)", _sample_file(adata)
        )
    builder = _Builder(adata)
    gates = gating["gates"]
    pops = gating.get("populations") or [{"name": g, "parent": None} for g in gates]
    placed: dict[str, tuple[str, tuple[str, ...]]] = {}  # population -> (xml id, FlowKit gate path)
    for pop in _population_order(pops):
        name, parent = pop["name"], pop.get("parent")
        if parent not in _ROOTS and parent not in placed:
            continue  # its parent was not exported
        path = ("root",) if parent in _ROOTS else (*placed[parent][1], placed[parent][0])
        gate_id = _xml_id(name, builder.taken)
        ancestors = _ancestors(pops, name)
        fk_gates = _population_gates(builder, pop, gates, gate_id, path, placed, ancestors)
        for fk_gate in fk_gates:
            builder.strategy.add_gate(fk_gate, path)
        if fk_gates:
            placed[name] = (gate_id, path)
            continue
        builder.taken.discard(gate_id)
        if name in gating.get(
            "counts", {}
        ):  # skipped but kept ("when_missing: pass"): = its parent
            placed[name] = (path[-1], path[:-1])
    return builder.strategy


def _ancestors(populations: Sequence[Mapping], name: str) -> set[str]:
    parents = {p["name"]: p.get("parent") for p in populations}
    found: set[str] = set()
    while parents.get(name) not in _ROOTS and parents[name] not in found:
        name = parents[name]
        found.add(name)
    return found


def _population_gates(
    builder: _Builder, pop: Mapping, gates: Mapping, gate_id: str, path, placed, ancestors: set
) -> list:
    """FlowKit gates of one population: its placed gate, or BooleanGates (helpers first)."""
    name = pop["name"]
    tree = _expression(pop)
    if tree is None:
        entry = gates.get(pop.get("gate", name)) or {}
        gate = entry.get("gate")
        if entry.get("status") in ("failed", "skipped") or not gate:
            logger.info(
                "GatingML export: gate %r not placed (%s), left out", name, entry.get("status")
            )
            return []
        gate = gate if hasattr(gate, "apply") else gate_from_dict(dict(gate))
        return [builder.fk_gate(gate_id, gate, name)]
    booleans = _Booleans(builder, placed, gate_id, path, ancestors)
    try:
        top = booleans.gate(gate_id, tree)
    except KeyError as err:
        logger.info("GatingML export: population %r needs %s, which was not exported", name, err)
        return []
    return [top] if not booleans.helpers else [*booleans.helpers, top]


def export_gatingml(adata: ad.AnnData, path: str | Path | None = None) -> bytes:
    """Write the gates placed on ``adata`` as GatingML 2.0 (FlowKit's writer); return the document bytes.

    Gate ids are the population names made XML-safe (``FOXP3+`` -> ``FOXP3pos``, ``B/NK`` -> ``B_NK``);
    boolean populations (``Teff = CD4 and not FOXP3+``) are BooleanGates. Applying the file with FlowKit
    to the raw FCS file reproduces cytokit's memberships (see :func:`to_gating_strategy`).

    Parameters
    ----------
    adata
        A gated AnnData (``uns["gating"]`` from :func:`cytokit.gating.gate`).
    path
        Also write the bytes to this file when given.
    """
    import flowkit as fk

    strategy = to_gating_strategy(adata)
    buffer = io.BytesIO()
    fk.export_gatingml(strategy, buffer)
    data = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
        logger.info("wrote GatingML %s (%d gates)", path, len(strategy.get_gate_ids()))
    return data


# --------------------------------------------------------------------------------------------- import
def load_gatingml(path: str | Path):
    """Read fixed gates from a GatingML 2.0 file or a FlowJo 10 workspace as a ``flowkit.GatingStrategy``.

    For a ``.wsp`` the gating of the first sample of the first sample group that has one is used (FlowJo
    stores per-sample strategies; group gates are shared). Errors are a :class:`StrategyError` naming
    the file, e.g. a document that does not validate against the GatingML 2.0 schema.
    """
    import flowkit as fk

    path = Path(path)
    if not path.is_file():
        raise StrategyError("gating file not found", path)
    try:
        if path.suffix.lower() == ".wsp" or b"flowJoVersion" in path.read_bytes()[:4096]:
            return _wsp_strategy(fk.Workspace(str(path), load_missing_file_data=True), path)
        return fk.parse_gating_xml(str(path))
    except CytokitError:
        raise
    except Exception as err:  # lxml / FlowKit raise a wide range of types for bad documents
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise StrategyError(f"not a usable GatingML 2.0 / FlowJo file: {message}", path) from err


def _wsp_strategy(workspace, path: Path):
    for group in workspace.get_sample_groups():
        ids = workspace.get_sample_ids(group_name=group, loaded_only=False)
        if ids:
            return workspace.get_gating_strategy(ids[0])
    raise StrategyError("the FlowJo workspace has no sample with gates", path)


def _gate_dims(gate) -> list:
    """FlowKit dimensions of a gate (dividers for quadrant gates); booleans have none."""
    return list(getattr(gate, "dimensions", None) or [])


def _check_channels(strategy, labels: set[str], gating_file: str, sample_file: str | None) -> None:
    """Every dimension must name a channel ($PnN/$PnS) of the sample, else MarkerError naming the gate."""
    import flowkit as fk

    matrices = getattr(strategy, "comp_matrices", {})
    for name, gate_path in strategy.get_gate_ids():
        try:
            gate = strategy.get_gate(name, gate_path)
        except Exception:  # a single quadrant: checked with its QuadrantGate
            continue
        for dim in _gate_dims(gate):
            if isinstance(dim, fk.RatioDimension):
                xform = strategy.get_transform(dim.ratio_ref)
                needed = list(getattr(xform, "dimensions", []))
            else:
                needed = [getattr(dim, "dimension_ref", None) or dim.id]
            for label in needed:
                matrix = matrices.get(getattr(dim, "compensation_ref", None))
                if label in labels or (matrix is not None and label in matrix.fluorochromes):
                    continue
                raise MarkerError(
                    f"gate {name!r} of {gating_file} needs channel {label!r}, which the sample lacks",
                    sample_file,
                )


def _raw_events(adata: ad.AnnData) -> np.ndarray:
    """Events as read (float64): undo ``pp.transform`` and ``pp.compensate`` when they were applied."""
    X = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    X = X.astype(np.float64, copy=True)
    for j, var in enumerate(adata.var_names):
        params = (adata.uns.get(K.TRANSFORM) or {}).get(var)
        if params:
            xform, scale = _fk_transform(params)
            X[:, j] = xform.inverse(X[:, j] * scale)
    comp = adata.uns.get(K.COMPENSATION)
    if comp and comp.get("matrix") is not None:
        matrix = pd.DataFrame(comp["matrix"])
        channels = (
            list(adata.var[K.CHANNEL].astype(str))
            if K.CHANNEL in adata.var
            else list(adata.var_names)
        )
        idx = [channels.index(str(c)) for c in matrix.columns]
        X[:, idx] = X[:, idx] @ matrix.loc[matrix.columns, matrix.columns].to_numpy(float)
    return X


def _spill_text(spillover) -> str:
    frame = pd.DataFrame(spillover)
    values = ",".join(repr(float(v)) for v in frame.to_numpy(float).ravel())
    return f"{len(frame.columns)},{','.join(map(str, frame.columns))},{values}"


def _flowkit_sample(adata: ad.AnnData, events: np.ndarray):
    """A ``flowkit.Sample`` over ``events`` with the sample's $PnN/$PnS and its own spillover (``FCS``)."""
    import flowio
    import flowkit as fk

    var = adata.var
    pnn = [str(c) for c in (var[K.CHANNEL] if K.CHANNEL in var else adata.var_names)]
    pns = [str(s) for s in var[K.STAIN]] if K.STAIN in var else None
    meta = {}
    if adata.uns.get(K.SPILLOVER) is not None:
        meta["SPILLOVER"] = _spill_text(adata.uns[K.SPILLOVER])
    data = array("f")
    data.frombytes(
        np.ascontiguousarray(events, dtype=np.float32).tobytes()
    )  # no per-value Python loop
    buffer = io.BytesIO()
    flowio.create_fcs(buffer, data, pnn, opt_channel_names=pns, metadata_dict=meta)
    buffer.seek(0)
    sample_id = (adata.uns.get(K.SAMPLE_INFO) or {}).get("sample") or "sample"
    return fk.Sample(flowio.FlowData(buffer), sample_id=str(sample_id))


def _membership_table(strategy, results) -> tuple[pd.DataFrame, list[dict], dict]:
    """Per population: membership column, {name, parent[, boolean]} row and the uns gate entry."""
    from flowkit import gates as fkg

    ids = [(n, p) for n, p in strategy.get_gate_ids() if not _is_quadrant_gate(strategy, n, p)]
    counts: dict[str, int] = {}
    for name, _ in ids:
        counts[name] = counts.get(name, 0) + 1

    def label(name, gate_path):  # the name, or its path when the name repeats (FlowJo allows that)
        return name if counts[name] == 1 else "/".join((*gate_path[1:], name))

    columns, populations, entries = {}, [], {}
    for name, gate_path in sorted(ids, key=lambda item: len(item[1])):
        key = label(name, gate_path)
        columns[key] = np.asarray(results.get_gate_membership(name, gate_path), dtype=bool)
        parent = None if len(gate_path) == 1 else gate_path[-1]
        if parent is not None and _is_quadrant_gate(strategy, parent, gate_path[:-1]):
            parent = None if len(gate_path) == 2 else gate_path[-2]
        row = {
            "name": key,
            "parent": None if parent is None else label(parent, _path_of(ids, parent)),
        }
        gate = _get_any_gate(strategy, name, gate_path)
        if isinstance(gate, fkg.BooleanGate):
            row["boolean"] = _boolean_text(gate)
        populations.append(row)
        entries[key] = _gate_entry(strategy, name, gate_path, gate)
    return pd.DataFrame(columns), populations, entries


def _boolean_text(gate) -> str:
    """A BooleanGate as cytokit's expression text (``"CD4 and not FOXP3pos"``)."""
    terms = [("not " if r["complement"] else "") + r["ref"] for r in gate.gate_refs]
    if gate.type == "not":
        return f"not ({terms[0]})" if terms[0].startswith("not ") else f"not {terms[0]}"
    return f" {gate.type} ".join(terms)


def _is_quadrant_gate(strategy, name, gate_path) -> bool:
    from flowkit import gates as fkg

    return isinstance(_get_any_gate(strategy, name, gate_path), fkg.QuadrantGate)


def _get_any_gate(strategy, name, gate_path):
    """The gate, or for a single quadrant the ``Quadrant`` object of its QuadrantGate."""
    from flowkit.exceptions import QuadrantReferenceError

    try:
        return strategy.get_gate(name, gate_path)
    except QuadrantReferenceError:
        return strategy.get_gate(gate_path[-1], gate_path[:-1]).quadrants[name]


def _path_of(ids, name):
    return next(p for n, p in ids if n == name)


def _gate_entry(strategy, name, gate_path, gate) -> dict:
    """``uns["gating"]["gates"]`` entry: cytokit gate dict in the file's own units where one exists."""
    from flowkit import gates as fkg

    params: dict = {"type": type(gate).__name__}
    cytokit_gate = None
    if isinstance(gate, fkg.Quadrant):
        owner = strategy.get_gate(gate_path[-1], gate_path[:-1])
        dims = {d.id: d.dimension_ref for d in owner.dimensions}
        ranges = [gate.get_divider_range(r) for r in gate.divider_refs]
        cytokit_gate = RangeGate(
            tuple(dims[r] for r in gate.divider_refs),
            tuple(r[0] for r in ranges),
            tuple(r[1] for r in ranges),
        )
        params["quadrant_of"] = gate_path[-1]
    elif not isinstance(gate, fkg.BooleanGate):
        dims = [getattr(d, "ratio_ref", None) or d.id for d in gate.dimensions]
        params["compensation"] = [d.compensation_ref for d in gate.dimensions]
        params["transforms"] = [d.transformation_ref for d in gate.dimensions]
        if isinstance(gate, fkg.RectangleGate):
            cytokit_gate = RangeGate(
                tuple(dims),
                tuple(d.min for d in gate.dimensions),
                tuple(d.max for d in gate.dimensions),
            )
        elif isinstance(gate, fkg.PolygonGate):
            cytokit_gate = PolygonGate(
                tuple(dims), tuple(tuple(map(float, v)) for v in gate.vertices)
            )
        elif isinstance(gate, fkg.EllipsoidGate) and len(dims) == 2:
            cov = tuple(tuple(map(float, r)) for r in gate.covariance_matrix)
            cytokit_gate = EllipseGate(
                tuple(dims), tuple(map(float, gate.coordinates)), cov, float(gate.distance_square)
            )
        else:
            params["dims"] = dims
    return {
        "gate": None if cytokit_gate is None else cytokit_gate.to_dict(),
        "method": "gatingml",
        "params": params,
        "status": "ok",
        "message": "",
    }


def _deepest(columns: pd.DataFrame, populations: list[dict]) -> np.ndarray:
    """Per event the deepest population holding it (later one wins a tie), else ``"ungated"``."""
    parents = {p["name"]: p["parent"] for p in populations}

    def depth(name):
        d = 0
        while parents.get(name) is not None:
            name, d = parents[name], d + 1
        return d

    labels = np.full(len(columns), _UNGATED, dtype=object)
    order = sorted(range(len(populations)), key=lambda i: depth(populations[i]["name"]))
    for i in order:
        name = populations[i]["name"]
        labels[columns[name].to_numpy()] = name
    return labels


def apply_gatingml(
    adata: ad.AnnData,
    path,
    *,
    key_added: str = K.POPULATION,
    copy: bool = False,
) -> ad.AnnData | None:
    """Apply fixed gates from a GatingML 2.0 file or a FlowJo ``.wsp`` ("bring your own gates").

    FlowKit evaluates the gates on the sample's raw events, with the compensation and transforms the
    file declares. The AnnData is best passed as read (raw ``X``); when ``pp.compensate``/``pp.transform``
    were applied they are undone first (recorded in ``uns``), so it may also be called after them.

    Parameters
    ----------
    adata
        The sample; ``var["channel"]`` ($PnN) and ``var["stain"]`` ($PnS) name the gate dimensions.
    path
        A GatingML 2.0 file, a FlowJo 10 workspace, or a ``flowkit.GatingStrategy``.
    key_added
        ``obs`` column for the deepest gate holding each event (``"ungated"`` when none).
    copy
        Return a gated copy instead of writing into ``adata``.

    Returns
    -------
    The gated copy when ``copy=True``, else None. Fills ``obs[key_added]``, ``obsm["populations"]``
    (one bool column per gate, by name or by path when names repeat) and ``uns["gating"]`` as
    :func:`cytokit.gating.gate` does; gate coordinates there are in the file's own units.
    """
    adata = adata.copy() if copy else adata
    strategy = path if hasattr(path, "gate_sample") else load_gatingml(path)
    gating_file = "strategy" if strategy is path else Path(path).name
    sample_file = _sample_file(adata)
    labels = (
        set(map(str, adata.var[K.CHANNEL]))
        if K.CHANNEL in adata.var
        else set(map(str, adata.var_names))
    )
    if K.STAIN in adata.var:
        labels |= {s for s in map(str, adata.var[K.STAIN]) if s}
    _check_channels(strategy, labels, gating_file, sample_file)
    sample = _flowkit_sample(adata, _raw_events(adata))
    try:
        results = strategy.gate_sample(sample, cache_events=True)
    except CytokitError:
        raise
    except Exception as err:
        raise StrategyError(f"{gating_file} could not be applied: {err}", sample_file) from err
    columns, populations, entries = _membership_table(strategy, results)
    columns.index = adata.obs_names
    adata.obs[key_added] = pd.Categorical(_deepest(columns, populations))
    adata.obsm[K.POPULATIONS] = columns
    adata.uns[K.GATING] = {
        "strategy": gating_file,
        "source": "gatingml",
        "populations": populations,
        "gates": entries,
        "warnings": [],
    }
    logger.info("applied %s: %d gates, %d events", gating_file, columns.shape[1], adata.n_obs)
    return adata if copy else None
