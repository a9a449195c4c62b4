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
        return fkt.AsinhTransform(param_t=c * math.sinh(_ASINH_M * math.log(10.0)), param_m=_ASINH_M, param_a=0.0), scale
    if kind == "linear":
        return fkt.LinearTransform(param_t=float(params["T"]), param_a=float(params.get("A", 0.0))), 1.0
    raise StrategyError(f"transform kind {kind!r} has no GatingML 2.0 equivalent")


def _var_channel(adata: ad.AnnData, dim: str, gate_id: str) -> tuple[str, str]:
    """(var name, $PnN channel) of a gate dimension named by marker or channel; MarkerError if absent."""
    channels = adata.var[K.CHANNEL] if K.CHANNEL in adata.var else pd.Series(adata.var_names, adata.var_names)
    if dim in adata.var_names:
        return dim, str(channels[dim])
    hits = channels.index[channels.astype(str) == dim]
    if len(hits):
        return str(hits[0]), dim
    raise MarkerError(f"gate {gate_id!r} needs {dim!r}, which the sample lacks", _sample_file(adata))


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
            return "FCS", set(channels)  # the file's own matrix: the XML stays valid for its sibling files
        stains = dict(zip(self.adata.var.get(K.CHANNEL, []), self.adata.var.get(K.STAIN, []), strict=False))
        fluoro = [str(stains.get(c) or c) for c in channels]
        ref = _xml_id("cytokit_compensation", self.taken)
        self.strategy.add_comp_matrix(ref, fk.Matrix(matrix.to_numpy(float), channels, fluoro))
        return ref, set(channels)

    def dimension(self, dim: str, gate_id: str, low=None, high=None):
        """FlowKit Dimension for a cytokit dim (by $PnN) and the factor from cytokit to FlowKit units."""
        import flowkit as fk

        var, channel = _var_channel(self.adata, dim, gate_id)
        ref, scale = self._transform_ref(var, channel)
        comp = self.comp_ref if channel in self.comp_channels else "uncompensated"
        low = None if low is None else float(low) * scale
        high = None if high is None else float(high) * scale
        return fk.Dimension(channel, compensation_ref=comp, transformation_ref=ref, range_min=low, range_max=high), scale

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

    def fk_gate(self, gate_id: str, gate):
        """The FlowKit gate for one cytokit gate object (coordinates mapped to FlowKit units)."""
        from flowkit import gates as fkg

        if isinstance(gate, RangeGate):
            dims = []
            for dim, lo, hi in zip(gate.dims, gate.low, gate.high, strict=True):
                if lo is None and hi is None:
                    continue  # GatingML needs a bound per dimension; an open one constrains nothing
                dims.append(self.dimension(dim, gate_id, lo, hi)[0])
            if not dims:  # everything passes: keep the gate (children hang on it) with a bound nothing fails
                dims = [self.dimension(gate.dims[0], gate_id, low=-1e300)[0]]
            return fkg.RectangleGate(gate_id, dims)
        pairs = [self.dimension(d, gate_id) for d in gate.dims]
        dims, scale = [p[0] for p in pairs], np.array([p[1] for p in pairs])
        if isinstance(gate, PolygonGate):
            vertices = [[float(v) for v in np.asarray(p, float) * scale] for p in gate.vertices]
            return fkg.PolygonGate(gate_id, dims, vertices)
        if isinstance(gate, EllipseGate):
            mean = [float(v) for v in np.asarray(gate.mean, float) * scale]
            cov = np.asarray(gate.covariance, float) * np.outer(scale, scale)
            return fkg.EllipsoidGate(gate_id, dims, mean, cov.tolist(), float(gate.distance_square))
        raise StrategyError(f"gate {gate_id!r}: unsupported gate type {type(gate).__name__}")


def _population_order(populations: Sequence[Mapping]) -> list[Mapping]:
    """Populations with every parent before its children (file order otherwise kept)."""
    by_name = {p["name"]: p for p in populations}
    done: dict[str, Mapping] = {}

    def visit(p, trail=()):
        if p["name"] in done or p["name"] in trail:
            return
        parent = p.get("parent")
        if parent in by_name:
            visit(by_name[parent], (*trail, p["name"]))
        done[p["name"]] = p

    for p in populations:
        visit(p)
    return list(done.values())


def _boolean_terms(definition) -> tuple[str, list[tuple[str, bool]]]:
    """Parse ``"CD4 and not FOXP3+"`` / ``{"and": [...]}`` / ``{"not": "X"}`` into (op, [(ref, negated)])."""
    if isinstance(definition, Mapping):
        (op, refs), *rest = definition.items()
        if rest or op not in ("and", "or", "not"):
            raise StrategyError(f"boolean population {definition!r} is not one of and/or/not")
        refs = [refs] if isinstance(refs, str) else list(refs)
        terms = [_negated(r) for r in refs]
        if op == "not":
            return "and", [(ref, not neg) for ref, neg in terms]
        return op, terms
    if isinstance(definition, str):
        text = f" {definition.strip()} "
        ops = {op for op in ("and", "or") if f" {op} " in text}
        if len(ops) > 1:
            raise StrategyError(f"boolean population {definition!r} mixes 'and' and 'or'")
        op = ops.pop() if ops else "and"
        return op, [_negated(t) for t in text.strip().split(f" {op} ")]
    if isinstance(definition, Sequence):
        return "and", [_negated(t) for t in definition]
    raise StrategyError(f"boolean population {definition!r} is neither text nor a mapping")


def _negated(term: str) -> tuple[str, bool]:
    term = str(term).strip()
    for prefix in ("not ", "!", "~"):
        if term.lower().startswith(prefix):
            return term[len(prefix) :].strip(), True
    return term, False


def _boolean_definition(pop: Mapping):
    for key in ("boolean", "definition", "expr", "expression", "bool"):
        if pop.get(key):
            return pop[key]
    if pop.get("outside"):
        return {"not": pop["outside"]}  # the parent's events failing a gate (debris, doublet, dead)
    return None


def to_gating_strategy(adata: ad.AnnData):
    """The gates placed on ``adata`` (``uns["gating"]``) as a :class:`flowkit.GatingStrategy`.

    Gate dimensions are the channels' ``$PnN``, with the sample's compensation (``"FCS"`` when the file's
    own spillover was used, else an embedded matrix) and per-channel transforms, so the strategy applies
    to the raw FCS file. Populations whose gate failed or was skipped are left out with their children.
    """
    from flowkit import gates as fkg

    gating = adata.uns.get(K.GATING)
    if not gating or not gating.get("gates"):
        raise StrategyError("the sample has no placed gates (run cytokit.gate first)", _sample_file(adata))
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
        fk_gate = _population_gate(builder, pop, gates, gate_id, placed, fkg)
        if fk_gate is None:
            builder.taken.discard(gate_id)
            continue
        builder.strategy.add_gate(fk_gate, path)
        placed[name] = (gate_id, path)
    return builder.strategy


def _population_gate(builder: _Builder, pop: Mapping, gates: Mapping, gate_id: str, placed, fkg):
    """FlowKit gate of one population: its placed gate, or a BooleanGate over exported populations."""
    name = pop["name"]
    entry = gates.get(pop.get("gate", name))
    if entry is not None:
        if entry.get("status") in ("failed", "skipped") or not entry.get("gate"):
            logger.info("GatingML export: gate %r not placed (%s), left out", name, entry.get("status"))
            return None
        gate = entry["gate"]
        return builder.fk_gate(gate_id, gate if hasattr(gate, "apply") else gate_from_dict(dict(gate)))
    definition = _boolean_definition(pop)
    if definition is None:
        return None
    op, terms = _boolean_terms(definition)
    if any(ref not in placed for ref, _ in terms):
        logger.info("GatingML export: boolean population %r refers to a gate not exported", name)
        return None
    refs = [{"ref": placed[r][0], "path": placed[r][1], "complement": neg} for r, neg in terms]
    if len(refs) == 1:  # GatingML: 'and'/'or' need two operands, 'not' exactly one
        op, refs = ("not", [{**refs[0], "complement": False}]) if refs[0]["complement"] else ("and", refs * 2)
    return fkg.BooleanGate(gate_id, op, refs)


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
