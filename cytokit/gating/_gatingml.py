"""GatingML 2.0 export: the gates placed on one sample as a portable file, written with ``xml.etree``.

Gates are written on dimensions named by ``$PnN`` with ``compensation-ref`` and ``transformation-ref``,
with the transforms and spectrum matrix they refer to, in the elements and namespaces FlowKit's own
writer uses (``flowkit.export_gatingml``), so FlowKit (and other GatingML readers) applying the file to
the *raw* FCS file reproduce cytokit's memberships (tested). Writing directly keeps FlowKit (a second
or more to import) out of every batch worker; FlowKit is imported only to apply ``.xml``/``.wsp``
strategies. Import ("bring your own gates") lives in ``_gatingml_apply.py`` and is re-exported here.
"""

from __future__ import annotations

import io
import logging
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd

from .. import _keys as K
from ..errors import MarkerError, StrategyError
from ._gates import EllipseGate, PolygonGate, RangeGate, gate_from_dict
from ._gatingml_apply import ASINH_M, CYTOKIT_NS, apply_gatingml, load_gatingml, sample_file
from ._strategy import population_rows

if TYPE_CHECKING:  # FlowKit is imported where used: importing cytokit stays light
    import flowkit as fk

__all__ = ["apply_gatingml", "export_gatingml", "load_gatingml", "to_gating_strategy"]

logger = logging.getLogger("cytokit")

_ROOTS = {None, "", "root"}
_SPILL_KEYS = ("$SPILLOVER", "SPILLOVER", "$SPILL", "SPILL")  # the ones FlowKit reads for "FCS"
_NS = {
    "gating": "http://www.isac-net.org/std/Gating-ML/v2.0/gating",
    "data-type": "http://www.isac-net.org/std/Gating-ML/v2.0/datatypes",
    "transforms": "http://www.isac-net.org/std/Gating-ML/v2.0/transformations",
}
for _prefix, _uri in _NS.items():
    ET.register_namespace(_prefix, _uri)


def _q(prefix: str, name: str) -> str:
    """Qualified ``{namespace}name`` of a GatingML element or attribute."""
    return f"{{{_NS[prefix]}}}{name}"


def _num(value) -> str:
    return str(float(value))


def _transform_element(params: Mapping) -> tuple[ET.Element, float]:
    """``<transforms:transformation>`` content for one var's ``uns["transform"]`` entry, and the factor
    from cytokit units to the GatingML transform's units (as ``_gatingml_apply.fk_transform``)."""
    kind = params.get("kind")
    if kind == "logicle":
        names = {"T": params["T"], "W": params["W"], "M": params["M"], "A": params.get("A", 0)}
        tag, scale = "logicle", 1.0
    elif kind == "asinh":
        m_ln10 = ASINH_M * math.log(10.0)
        t = float(params["cofactor"]) * math.sinh(m_ln10)
        names, tag, scale = {"T": t, "M": ASINH_M, "A": 0.0}, "fasinh", 1.0 / m_ln10
    elif kind == "linear":
        names, tag, scale = {"T": params["T"], "A": params.get("A", 0.0)}, "flin", 1.0
    else:
        raise StrategyError(f"transform kind {kind!r} has no GatingML 2.0 equivalent")
    element = ET.Element(_q("transforms", tag))
    for key, value in names.items():
        element.set(_q("transforms", key), _num(value))
    return element, scale


class _Document:
    """The parts of a GatingML 2.0 document, in the order they are written (transforms, matrices,
    gates); ``get_gate_ids()`` as FlowKit's ``GatingStrategy`` (gate id, path of ancestor ids)."""

    def __init__(self):
        self.transforms: list[ET.Element] = []
        self.matrices: list[ET.Element] = []
        self.gates: list[tuple[ET.Element, tuple[str, ...]]] = []

    def add_transform(self, ref: str, content: ET.Element) -> None:
        element = ET.Element(_q("transforms", "transformation"), {_q("transforms", "id"): ref})
        element.append(content)
        self.transforms.append(element)

    def add_comp_matrix(self, ref: str, values, detectors, fluorochromes) -> None:
        element = ET.Element(_q("transforms", "spectrumMatrix"), {_q("transforms", "id"): ref})
        for tag, names in (("fluorochromes", fluorochromes), ("detectors", detectors)):
            group = ET.SubElement(element, _q("transforms", tag))
            for name in names:
                ET.SubElement(
                    group, _q("data-type", "fcs-dimension"), {_q("data-type", "name"): name}
                )
        for row in np.asarray(values, dtype=float):
            spectrum = ET.SubElement(element, _q("transforms", "spectrum"))
            for value in row:
                ET.SubElement(
                    spectrum,
                    _q("transforms", "coefficient"),
                    {_q("transforms", "value"): _num(value)},
                )
        self.matrices.append(element)

    def add_gate(self, gate: ET.Element, path: tuple[str, ...]) -> None:
        if len(path) > 1:
            gate.set(_q("gating", "parent_id"), path[-1])
        self.gates.append((gate, tuple(path)))

    def get_gate_ids(self) -> list[tuple[str, tuple[str, ...]]]:
        return [(g.get(_q("gating", "id")), path) for g, path in self.gates]

    def _depth_first(self) -> list[ET.Element]:
        """Gates parent first, each followed by its subtree (FlowKit's order; any order is valid)."""
        children: dict[tuple, list] = {}
        for gate, path in self.gates:
            children.setdefault(path, []).append(gate)
        ordered: list[ET.Element] = []

        def visit(path: tuple) -> None:
            for gate in children.get(path, []):
                ordered.append(gate)
                visit((*path, gate.get(_q("gating", "id"))))

        visit(("root",))
        seen = {id(g) for g in ordered}
        return ordered + [g for g, _ in self.gates if id(g) not in seen]

    def to_bytes(self) -> bytes:
        root = ET.Element(_q("gating", "Gating-ML"))
        root.extend(self.transforms + self.matrices + self._depth_first())
        ET.indent(root)
        return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _dimension(channel: str, comp: str, xform: str | None, low=None, high=None) -> ET.Element:
    element = ET.Element(_q("gating", "dimension"), {_q("gating", "compensation-ref"): comp})
    if xform is not None:
        element.set(_q("gating", "transformation-ref"), xform)
    if low is not None:
        element.set(_q("gating", "min"), _num(low))
    if high is not None:
        element.set(_q("gating", "max"), _num(high))
    ET.SubElement(element, _q("data-type", "fcs-dimension"), {_q("data-type", "name"): channel})
    return element


def _gate_element(kind: str, gate_id: str, dims: Sequence[ET.Element]) -> ET.Element:
    element = ET.Element(_q("gating", kind), {_q("gating", "id"): gate_id})
    element.extend(dims)
    return element


def _values(parent: ET.Element, tag: str, values) -> None:
    """``<tag>`` children of ``parent`` holding ``data-type:value`` numbers."""
    for value in values:
        ET.SubElement(parent, _q("gating", tag), {_q("data-type", "value"): _num(value)})


def _boolean_gate(gate_id: str, op: str, refs: Sequence[Mapping]) -> ET.Element:
    element = ET.Element(_q("gating", "BooleanGate"), {_q("gating", "id"): gate_id})
    body = ET.SubElement(element, _q("gating", op))
    for ref in refs:
        item = ET.SubElement(body, _q("gating", "gateReference"), {_q("gating", "ref"): ref["ref"]})
        if ref["complement"]:
            item.set(_q("gating", "use-as-complement"), "true")
    return element


def _xml_id(name: str, taken: set[str]) -> str:
    """A valid, unique XML ID (NCName) for ``name``: ``FOXP3+`` -> ``FOXP3pos``, ``B/NK`` -> ``B_NK``."""
    text = re.sub(r"-$", "neg", str(name).strip().replace("+", "pos"))
    text = re.sub(r"[^A-Za-z0-9_.\-]", "_", text) or "gate"
    if not re.match(r"[A-Za-z_]", text[0]):
        text = "_" + text
    candidate, i = text, 2
    while candidate in taken:
        candidate, i = f"{text}_{i}", i + 1
    taken.add(candidate)
    return candidate


def _var_channel(adata: ad.AnnData, dim: str, population: str) -> tuple[str, str]:
    """(var name, $PnN) of a gate dimension named by marker or channel; MarkerError when absent."""
    var = adata.var
    channels = var[K.CHANNEL].astype(str) if K.CHANNEL in var else pd.Series(var.index, var.index)
    if dim in var.index:
        return dim, str(channels[dim])
    hits = channels.index[channels == dim]
    if len(hits):
        return str(hits[0]), dim
    message = f"gate {population!r} needs {dim!r}, which the sample lacks"
    raise MarkerError(message, sample_file(adata))


def _str_list(values) -> list[str]:
    return [] if values is None else [str(v) for v in values]


def _file_spill_is_used(adata: ad.AnnData, matrix: pd.DataFrame) -> bool:
    """Whether FlowKit's ``compensation_ref="FCS"`` finds this very matrix in the file's keywords."""
    keywords = {str(k).upper(): str(v) for k, v in (adata.uns.get(K.FCS) or {}).items()}
    text = next((keywords[k] for k in _SPILL_KEYS if k in keywords), None)
    parts = [p.strip() for p in (text or "").split(",")]
    try:
        n = int(float(parts[0]))
        names = parts[1 : n + 1]
        values = np.asarray(parts[n + 1 : n + 1 + n * n], dtype=float).reshape(n, n)
        ours = matrix.loc[names, names].to_numpy(float)
    except (ValueError, KeyError):
        return False
    return set(names) == set(map(str, matrix.columns)) and np.allclose(values, ours, atol=1e-6)


class _Builder:
    """GatingML gates for one sample: dimensions by $PnN with its compensation and transforms."""

    def __init__(self, adata: ad.AnnData):
        self.adata = adata
        self.strategy = _Document()
        self.transforms: dict[str, tuple[str, float]] = {}
        self.taken: set[str] = set()
        self.comp_ref, self.comp_channels = self._compensation()

    def _compensation(self) -> tuple[str, set[str]]:
        comp = self.adata.uns.get(K.COMPENSATION)
        if not comp or comp.get("matrix") is None:
            return "uncompensated", set()
        matrix = pd.DataFrame(comp["matrix"])
        channels = [str(c) for c in matrix.columns]
        if comp.get("source") == "FCS" and _file_spill_is_used(self.adata, matrix):
            return "FCS", set(channels)  # the file's own matrix, as FlowJo would reference it
        var = self.adata.var
        stains = dict(zip(_str_list(var.get(K.CHANNEL)), _str_list(var.get(K.STAIN)), strict=False))
        fluoro = [stains.get(c) or c for c in channels]  # GatingML names rows by fluorochrome
        values = matrix.loc[matrix.columns, matrix.columns].to_numpy(float)
        ref = _xml_id("cytokit_compensation", self.taken)
        self.strategy.add_comp_matrix(ref, values, channels, fluoro)
        return ref, set(channels)

    def dimension(self, dim: str, population: str, low=None, high=None):
        """GatingML dimension for a cytokit dim, and the factor from cytokit to GatingML units."""
        var, channel = _var_channel(self.adata, dim, population)
        ref, scale = self._transform(var, channel)
        comp = self.comp_ref if channel in self.comp_channels else "uncompensated"
        low = None if low is None else float(low) * scale
        high = None if high is None else float(high) * scale
        return _dimension(channel, comp, ref, low, high), scale

    def _transform(self, var: str, channel: str) -> tuple[str | None, float]:
        params = (self.adata.uns.get(K.TRANSFORM) or {}).get(var)
        if not params:
            return None, 1.0
        if channel not in self.transforms:
            content, scale = _transform_element(params)
            ref = _xml_id(f"{params['kind']}_{channel}", self.taken)
            self.strategy.add_transform(ref, content)
            self.transforms[channel] = (ref, scale)
        return self.transforms[channel]

    def gate(self, gate_id: str, gate, population: str) -> ET.Element:
        """The GatingML element of one placed cytokit gate (coordinates mapped to GatingML units)."""
        if isinstance(gate, RangeGate):
            bounds = zip(gate.dims, gate.low, gate.high, strict=True)
            dims = [
                self.dimension(d, population, lo, hi)[0]
                for d, lo, hi in bounds
                if (lo, hi) != (None, None)
            ]
            if not dims:  # GatingML needs a bound per dimension: one that no event fails
                dims = [self.dimension(gate.dims[0], population, low=-1e300)[0]]
            return _gate_element("RectangleGate", gate_id, dims)
        pairs = [self.dimension(d, population) for d in gate.dims]
        dims, scale = [p[0] for p in pairs], np.array([p[1] for p in pairs])
        if isinstance(gate, PolygonGate):
            element = _gate_element("PolygonGate", gate_id, dims)
            for vertex in np.asarray(gate.vertices, dtype=float) * scale:
                _values(ET.SubElement(element, _q("gating", "vertex")), "coordinate", vertex)
            return element
        if isinstance(gate, EllipseGate):
            element = _gate_element("EllipsoidGate", gate_id, dims)
            mean = np.asarray(gate.mean, dtype=float) * scale
            cov = np.asarray(gate.covariance, dtype=float) * np.outer(scale, scale)
            _values(ET.SubElement(element, _q("gating", "mean")), "coordinate", mean)
            matrix = ET.SubElement(element, _q("gating", "covarianceMatrix"))
            for row in cov:
                _values(ET.SubElement(matrix, _q("gating", "row")), "entry", row)
            _values(element, "distanceSquare", [gate.distance_square])
            return element
        raise StrategyError(f"gate {population!r}: unsupported gate type {type(gate).__name__}")


# ---------------------------------------------------------------------------- boolean populations
def _expression(pop: Mapping) -> tuple | None:
    """Expression tree of a boolean population (its ``expr``), None for a gate population."""
    from ._strategy import parse_expr

    text = pop.get("expr")
    if not text:
        return None
    try:
        return parse_expr(str(text))
    except ValueError as err:
        raise StrategyError(f"population {pop['name']!r}: bad expression {text!r} ({err})") from err


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
    return [leaf for sub in tree[1:] for leaf in _flatten(sub, op)] if tree[0] == op else [tree]


class _Booleans:
    """BooleanGate elements for one expression; nested sub-expressions become helper gates (``Teff_1``).

    A BooleanGate is intersected with its parent, so references to the population's own ancestors are
    true and dropped (FlowKit's reader also rejects a gate referring to its parent): ``CD4 and not
    FOXP3+`` under CD4 is written as ``not FOXP3+`` under CD4.
    """

    def __init__(self, builder: _Builder, placed: dict, gate_id: str, path: tuple, ancestors: set):
        self.builder, self.placed, self.id, self.path = builder, placed, gate_id, path
        self.ancestors = ancestors
        self.helpers: list = []

    def ref(self, tree: tuple, complement: bool = False) -> dict:
        if tree[0] == "name":
            gate_id, path = self.placed[tree[1]]
            if not path:  # an alias of all events: nothing to refer to
                raise KeyError(tree[1])
            return {"ref": gate_id, "path": path, "complement": complement}
        if tree[0] == "not":
            return self.ref(tree[1], not complement)
        helper = _xml_id(f"{self.id}_{len(self.helpers) + 1}", self.builder.taken)
        self.helpers.append(self.gate(helper, tree)[0])
        return {"ref": helper, "path": self.path, "complement": complement}

    def gate(self, gate_id: str, tree: tuple) -> tuple[ET.Element, tuple]:
        """(BooleanGate element, its path); helpers sit beside it under the same parent."""
        tree = _simplify(tree, self.ancestors)
        if isinstance(tree, bool):  # the population is its parent, or empty: no GatingML form
            raise KeyError(f"{self.id} (always {tree})")
        if tree[0] in ("and", "or"):
            refs = [self.ref(t) for t in _flatten(tree, tree[0])]
            return _boolean_gate(gate_id, tree[0], refs), self.path
        ref = self.ref(tree)  # GatingML 'not' takes one operand; 'and' needs two
        if ref["complement"]:
            return _boolean_gate(gate_id, "not", [{**ref, "complement": False}]), self.path
        return _boolean_gate(gate_id, "and", [ref, ref]), self.path


# --------------------------------------------------------------------------------------- strategy
def _population_order(populations: Sequence[Mapping]) -> list[Mapping]:
    """Populations with parents and referenced populations first (given order otherwise kept)."""
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


def _ancestors(populations: Sequence[Mapping], name: str) -> set[str]:
    parents = {p["name"]: p.get("parent") for p in populations}
    found: set[str] = set()
    while parents.get(name) not in _ROOTS and parents[name] not in found:
        name = parents[name]
        found.add(name)
    return found


def _population_gates(builder, pop, gates, gate_id, path, placed, ancestors) -> list:
    """GatingML gates of one population: its placed gate, or BooleanGates (helpers first); [] if none."""
    tree = _expression(pop)
    if tree is None:
        entry = gates.get(pop.get("gate", pop["name"])) or {}
        gate = entry.get("gate")
        if entry.get("status") in ("failed", "skipped") or not gate:
            return []
        gate = gate if hasattr(gate, "apply") else gate_from_dict(dict(gate))
        return [builder.gate(gate_id, gate, pop["name"])]
    booleans = _Booleans(builder, placed, gate_id, path, ancestors)
    try:
        top = booleans.gate(gate_id, tree)[0]
    except KeyError as err:
        logger.info("GatingML export: %r needs %s, which is not exported", pop["name"], err)
        return []
    return [*booleans.helpers, top]


def _strategy(adata: ad.AnnData) -> tuple[_Document, list[dict]]:
    """(the GatingML document's parts, [{id, name, label, outside}] of the exported populations)."""
    gating = adata.uns.get(K.GATING)
    if not gating or not gating.get("gates"):
        message = "the sample has no placed gates (run cytokit.gate first)"
        raise StrategyError(message, sample_file(adata))
    builder, gates, kept = _Builder(adata), gating["gates"], gating.get("counts", {})
    pops = population_rows(gating) or [{"name": str(g), "parent": None} for g in gates]
    placed: dict[str, tuple] = {}  # population -> (gate id, gate path of ancestor ids)
    exported = []
    for pop in _population_order(pops):
        name, parent = pop["name"], pop.get("parent")
        if parent not in _ROOTS and parent not in placed:
            continue  # its parent is not in the file
        skipped = (gates.get(name) or {}).get("status") in ("failed", "skipped")
        if skipped and _expression(pop) is not None:
            continue  # a boolean population that was not computed (e.g. outside a pre-gated branch)
        path = ("root",) if parent in _ROOTS else (*placed[parent][1], placed[parent][0])
        gate_id = _xml_id(name, builder.taken)
        ancestors = _ancestors(pops, name)
        elements = _population_gates(builder, pop, gates, gate_id, path, placed, ancestors)
        for element in elements:
            builder.strategy.add_gate(element, path)
        if elements:
            placed[name] = (gate_id, path)
            row = {"id": gate_id, "name": name, "label": pop.get("label", True)}
            exported.append({**row, "outside": pop.get("outside")})
            continue
        builder.taken.discard(gate_id)
        if name in kept:  # skipped but kept ("when_missing: pass"): the same events as its parent
            placed[name] = (path[-1], path[:-1])
        status = (gates.get(name) or {}).get("status")
        logger.info("GatingML export: %r left out (%s)", name, status)
    return builder.strategy, exported


def to_gating_strategy(adata: ad.AnnData) -> fk.GatingStrategy:
    """The gates placed on ``adata`` (``uns["gating"]``) as a ``flowkit.GatingStrategy``.

    Dimensions are the channels' ``$PnN`` with the sample's compensation (``"FCS"`` when the file's own
    spillover was used, else an embedded matrix) and per-channel transforms, so the strategy applies to
    the raw FCS file. Populations whose gate failed or was skipped are left out with their children.
    The exported document read back by ``flowkit.parse_gating_xml``.
    """
    import flowkit as fk

    return fk.parse_gating_xml(io.BytesIO(_strategy(adata)[0].to_bytes()))


def _with_cytokit_info(xml: bytes, adata: ad.AnnData, exported: list[dict], strategy) -> bytes:
    """Add a root ``custom_info`` block naming each gate's population (``FOXP3pos`` is ``FOXP3+``)."""
    from lxml import etree

    root = etree.fromstring(xml)
    # the namespace by its URI: a document without gates does not declare the data-type prefix
    info = etree.SubElement(root, _q("data-type", "custom_info"))
    block = etree.SubElement(info, f"{{{CYTOKIT_NS}}}cytokit", nsmap={"cytokit": CYTOKIT_NS})
    block.set("strategy", str((adata.uns.get(K.GATING) or {}).get("strategy", "")))
    block.set("sample", str((adata.uns.get(K.SAMPLE_INFO) or {}).get("sample", "")))
    start_at = (adata.uns.get(K.GATING) or {}).get("start_at")
    if start_at:  # a file exported from a gate: the gates above it were never placed on it
        block.set("pre_gated", str(start_at))
        note = etree.SubElement(block, f"{{{CYTOKIT_NS}}}note")
        note.text = (
            f"pre-gated: the file was exported from {start_at}; every event is {start_at} and "
            "the gates above it were not placed"
        )
    gates = (adata.uns.get(K.GATING) or {}).get("gates", {})
    for pop in exported:
        el = etree.SubElement(block, f"{{{CYTOKIT_NS}}}population", id=pop["id"])
        el.set("name", str(pop["name"]))
        el.set("label", "true" if pop["label"] else "false")
        if pop["outside"]:
            el.set("outside", str(pop["outside"]))
        _placement_info(el, gates.get(pop["name"]) or {})
    ids = {pop["id"] for pop in exported}
    for gate_id in dict.fromkeys(n for n, _ in strategy.get_gate_ids()):
        if gate_id not in ids:  # helper BooleanGates of nested expressions: not populations
            etree.SubElement(block, f"{{{CYTOKIT_NS}}}helper", id=gate_id)
    return etree.tostring(root, xml_declaration=True, encoding="utf-8", pretty_print=True)


def _placement_info(el, record: dict) -> None:
    """How the gate was placed: ``status`` when not ``ok`` (``manual``, ``control``, ``fallback``...),
    ``rule`` per marker where the method chose between rules (functional markers: ``subset valley`` or
    ``reference tail``), ``disagree`` where those rules' counts differ, and the override's note."""
    status = str(record.get("status", "ok"))
    if status != "ok":
        el.set("status", status)
    details = record.get("details") or {}
    rules = {d: v["rule"] for d, v in details.items() if isinstance(v, dict) and v.get("rule")}
    if isinstance(details.get("rule"), str):  # a whole gate set from outside
        rules = {"gate": details["rule"]}
    if rules:
        el.set("rule", "; ".join(f"{d}: {r}" for d, r in rules.items()))
    disagree = [d for d, v in details.items() if isinstance(v, dict) and v.get("disagree")]
    if disagree:
        el.set("disagree", " ".join(disagree))
    if status in ("manual", "control", "patient") and record.get("message"):
        el.set("note", str(record["message"]))


def export_gatingml(adata: ad.AnnData, path: str | Path | None = None) -> bytes:
    """The gates placed on ``adata`` as a GatingML 2.0 document; also written to ``path``.

    Gate ids are the population names, made XML-safe where needed (``FOXP3+`` -> ``FOXP3pos``, ``B/NK``
    -> ``B_NK``); boolean populations (``Teff = CD4 and not FOXP3+``) are BooleanGates. A ``custom_info``
    block keeps the original names, ``label`` flags and ``outside`` labels for :func:`apply_gatingml`.

    Parameters
    ----------
    adata
        A gated sample (``uns["gating"]`` from :func:`cytokit.gating.gate`) with its recorded
        ``uns["compensation"]`` and ``uns["transform"]``.
    path
        Also write the document to this file.

    Returns
    -------
    The document's bytes (UTF-8 XML), loadable by ``flowkit.parse_gating_xml``.
    """
    strategy, exported = _strategy(adata)
    data = _with_cytokit_info(strategy.to_bytes(), adata, exported, strategy)
    if path is not None:
        Path(path).write_bytes(data)
        logger.info("wrote %s (%d gates)", path, len(strategy.get_gate_ids()))
    return data
