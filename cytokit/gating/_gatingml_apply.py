"""Fixed gates brought in ("bring your own gates"): GatingML 2.0 or a FlowJo ``.wsp`` applied by FlowKit.

FlowKit's ``GatingStrategy.gate_sample`` evaluates the gates on the sample's raw events with the
compensation and transforms the file declares; the memberships land in the AnnData the way
:func:`cytokit.gating.gate` leaves them. Also the bridge from cytokit's recorded preprocessing
(``uns["transform"]``, ``uns["compensation"]``) to FlowKit objects, shared with the export.
"""

from __future__ import annotations

import io
import logging
import math
import re
from array import array
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd

from .. import _keys as K
from ..errors import CytokitError, GatingError, MarkerError, StrategyError
from ._strategy import population_columns

if TYPE_CHECKING:  # FlowKit is imported where used: importing cytokit stays light
    import flowkit as fk

__all__ = ["apply_gatingml", "load_gatingml"]

logger = logging.getLogger("cytokit")

#: GatingML ``fasinh`` with A = 0 and T = c * sinh(M ln10) is asinh(x / c) / (M ln10). With M = 1 / ln10
#: the factor is 1 and exported coordinates equal cytokit's; the code keeps the general factor.
ASINH_M = 1.0 / math.log(10.0)
#: Namespace of the ``custom_info`` block cytokit adds to its exports (population names, labels).
CYTOKIT_NS = "urn:cytokit:gatingml:1"
UNGATED = "ungated"


# ------------------------------------------------------------------------------- FlowKit bridge
def fk_transform(params: Mapping):
    """FlowKit transform for one var's ``uns["transform"]`` entry, and the factor cytokit -> FlowKit units."""
    from flowkit import transforms as fkt

    kind = params.get("kind")
    if kind == "logicle":
        args = (
            float(params["T"]),
            float(params["W"]),
            float(params["M"]),
            float(params.get("A", 0)),
        )
        return fkt.LogicleTransform(*args), 1.0
    if kind == "asinh":
        m_ln10 = ASINH_M * math.log(10.0)
        t = float(params["cofactor"]) * math.sinh(m_ln10)
        return fkt.AsinhTransform(param_t=t, param_m=ASINH_M, param_a=0.0), 1.0 / m_ln10
    if kind == "linear":
        return fkt.LinearTransform(float(params["T"]), float(params.get("A", 0.0))), 1.0
    raise StrategyError(f"transform kind {kind!r} has no GatingML 2.0 equivalent")


def sample_file(adata: ad.AnnData) -> str | None:
    """The FCS file the AnnData was read from (for error messages), if known."""
    return (adata.uns.get(K.SAMPLE_INFO) or {}).get("file") or None


def _channels(adata: ad.AnnData) -> list[str]:
    return [str(c) for c in (adata.var[K.CHANNEL] if K.CHANNEL in adata.var else adata.var_names)]


def _raw_events(adata: ad.AnnData) -> np.ndarray:
    """Events as read (float64): undo ``pp.transform`` and ``pp.compensate`` when they were applied."""
    X = adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X
    X = np.array(X, dtype=np.float64, order="F")  # column-wise work below
    recorded = adata.uns.get(K.TRANSFORM) or {}
    for j, var in enumerate(adata.var_names):
        if recorded.get(var):
            xform, scale = fk_transform(recorded[var])
            X[:, j] = xform.inverse(X[:, j] * scale)
    comp = adata.uns.get(K.COMPENSATION)
    if comp and comp.get("matrix") is not None:
        matrix = pd.DataFrame(comp["matrix"])
        cols = [str(c) for c in matrix.columns]
        idx = [_channels(adata).index(c) for c in cols]
        X[:, idx] = X[:, idx] @ matrix.loc[matrix.columns, matrix.columns].to_numpy(float)
    return X


def _spill_text(spillover) -> str:
    frame = pd.DataFrame(spillover)
    values = ",".join(repr(float(v)) for v in frame.to_numpy(float).ravel())
    return f"{len(frame.columns)},{','.join(map(str, frame.columns))},{values}"


def _flowkit_sample(adata: ad.AnnData, events: np.ndarray):
    """A ``flowkit.Sample`` of ``events`` with the sample's $PnN/$PnS and own spillover (for ``FCS``)."""
    import flowio
    import flowkit as fk

    pns = [str(s) for s in adata.var[K.STAIN]] if K.STAIN in adata.var else None
    meta = {}
    if adata.uns.get(K.SPILLOVER) is not None:
        meta["SPILLOVER"] = _spill_text(adata.uns[K.SPILLOVER])
    data = array("f")  # one buffer copy instead of a Python float per value
    data.frombytes(np.ascontiguousarray(events, dtype=np.float32).tobytes())
    buffer = io.BytesIO()
    flowio.create_fcs(buffer, data, _channels(adata), opt_channel_names=pns, metadata_dict=meta)
    buffer.seek(0)
    sample_id = (adata.uns.get(K.SAMPLE_INFO) or {}).get("sample") or "sample"
    return fk.Sample(flowio.FlowData(buffer), sample_id=str(sample_id))


# ------------------------------------------------------------------------------------- loading
def load_gatingml(path: str | Path) -> fk.GatingStrategy:
    """Read fixed gates from a GatingML 2.0 file or a FlowJo 10 workspace.

    Parameters
    ----------
    path
        A GatingML 2.0 document, or a FlowJo ``.wsp``: the gating of the first sample of the first
        sample group that has one is used (``Comp-`` channels without a resolved matrix use the file's
        own spillover, FlowJo's acquisition-defined matrix).

    Returns
    -------
    A ``flowkit.GatingStrategy``. Problems (missing file, not schema-valid GatingML 2.0, ...) raise
    :class:`~cytokit.errors.StrategyError` naming the file.
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
    except Exception as err:  # lxml / FlowKit raise many types for bad documents
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise StrategyError(f"not a usable GatingML 2.0 / FlowJo file: {message}", path) from err


def _wsp_strategy(workspace, path: Path):
    for group in workspace.get_sample_groups():
        ids = workspace.get_sample_ids(group_name=group, loaded_only=False)
        if ids:
            return _resolve_comp_prefix(workspace.get_gating_strategy(ids[0]), path)
    raise StrategyError("the FlowJo workspace has no sample with gates", path)


def _resolve_comp_prefix(strategy, path: Path):
    """``Comp-FL2-A`` dimensions whose matrix FlowKit did not resolve use the file's own spillover.

    That is FlowJo's acquisition-defined matrix (FlowKit #265: such gates otherwise fail to apply).
    """
    from flowkit.exceptions import QuadrantReferenceError

    for name, gate_path in strategy.get_gate_ids():
        try:
            gate = strategy.get_gate(name, gate_path)
        except QuadrantReferenceError:
            continue
        for dim in getattr(gate, "dimensions", None) or []:
            match = re.match(r"^Comp\d*-(.+)$", str(getattr(dim, "id", "")))
            if match and dim.compensation_ref in (None, "uncompensated"):
                logger.warning(
                    "%s: %s has no matrix in the workspace; using the file's", path.name, dim.id
                )
                dim.id, dim.compensation_ref = match.group(1), "FCS"
    return strategy


def _cytokit_info(path) -> tuple[list[dict], set[str]]:
    """Populations cytokit recorded in its own export (id, name, label, outside) and its helper gates.

    ([], set()) for files from elsewhere.
    """
    from lxml import etree

    try:
        root = etree.parse(str(path)).getroot()
    except (OSError, etree.XMLSyntaxError):
        return [], set()
    rows = [
        {
            "id": el.get("id"),
            "name": el.get("name", el.get("id")),
            "label": el.get("label", "true") == "true",
            "outside": el.get("outside"),
        }
        for el in root.iter(f"{{{CYTOKIT_NS}}}population")
    ]
    return rows, {el.get("id") for el in root.iter(f"{{{CYTOKIT_NS}}}helper")}


def _check_channels(strategy, labels: set[str], gating_file: str, fcs_file: str | None) -> None:
    """Every gate dimension must be a channel ($PnN or $PnS) of the sample, else MarkerError."""
    import flowkit as fk
    from flowkit.exceptions import QuadrantReferenceError

    matrices = strategy.comp_matrices
    for name, gate_path in strategy.get_gate_ids():
        try:
            gate = strategy.get_gate(name, gate_path)
        except QuadrantReferenceError:  # checked with its QuadrantGate
            continue
        for dim in getattr(gate, "dimensions", None) or []:
            if isinstance(dim, fk.RatioDimension):
                needed = list(getattr(strategy.get_transform(dim.ratio_ref), "dimensions", []))
            else:
                needed = [getattr(dim, "dimension_ref", None) or dim.id]
            matrix = matrices.get(dim.compensation_ref)
            for label in needed:
                if label in labels or (matrix is not None and label in matrix.fluorochromes):
                    continue
                raise MarkerError(
                    f"gate {name!r} of {gating_file} needs channel {label!r}, which the sample lacks",
                    fcs_file,
                )


# ------------------------------------------------------------------------------------- results
def _get_any_gate(strategy, name, gate_path):
    """The gate, or for a single quadrant the ``Quadrant`` of its QuadrantGate."""
    from flowkit.exceptions import QuadrantReferenceError

    try:
        return strategy.get_gate(name, gate_path)
    except QuadrantReferenceError:
        return strategy.get_gate(gate_path[-1], gate_path[:-1]).quadrants[name]


def _populations(strategy) -> list[dict]:
    """One row per population (gates and quadrants, not QuadrantGates): id, path, name, parent."""
    from flowkit import gates as fkg

    def is_quadrant_gate(name, path):
        return isinstance(_get_any_gate(strategy, name, path), fkg.QuadrantGate)

    ids = [(n, p) for n, p in strategy.get_gate_ids() if not is_quadrant_gate(n, p)]
    repeated = {n for n in (n for n, _ in ids) if sum(m == n for m, _ in ids) > 1}

    def key(name, path):  # the name, or its path when it repeats (FlowJo allows that)
        return "/".join((*path[1:], name)) if name in repeated else name

    rows = []
    for name, path in sorted(ids, key=lambda item: len(item[1])):
        parent = (path[-1], path[:-1]) if len(path) > 1 else None
        if parent is not None and is_quadrant_gate(*parent):
            parent = (path[-2], path[:-2]) if len(path) > 2 else None
        rows.append(
            {
                "id": name,
                "path": path,
                "name": key(name, path),
                "parent": None if parent is None else key(*parent),
                "gate": _get_any_gate(strategy, name, path),
            }
        )
    return rows


def _boolean_text(gate, names: Mapping[str, str]) -> str:
    """A BooleanGate as cytokit expression text (``"CD4 and not FOXP3+"``)."""
    terms = [
        ("not " if r["complement"] else "") + names.get(r["ref"], r["ref"]) for r in gate.gate_refs
    ]
    if gate.type == "not":
        return f"not ({terms[0]})" if terms[0].startswith("not ") else f"not {terms[0]}"
    return f" {gate.type} ".join(terms)


def _number(value) -> float:
    """A bound as stored in ``uns`` (.h5ad-writable): NaN where open."""
    return math.nan if value is None else float(value)


def _geometry(strategy, row: dict) -> dict:
    """The gate's shape in the file's own dimensions and units (kept in ``params``, not drawn); open
    bounds NaN and absent compensation/transform references "" (``uns`` stays writable to .h5ad)."""
    from flowkit import gates as fkg

    gate = row["gate"]
    if isinstance(gate, fkg.Quadrant):
        owner = strategy.get_gate(row["path"][-1], row["path"][:-1])
        dims = {d.id: d.dimension_ref for d in owner.dimensions}
        ranges = [gate.get_divider_range(r) for r in gate.divider_refs]
        return {
            "kind": "range",
            "dims": [dims[r] for r in gate.divider_refs],
            "low": [_number(r[0]) for r in ranges],
            "high": [_number(r[1]) for r in ranges],
            "quadrant_of": row["path"][-1],
        }
    dims = [getattr(d, "ratio_ref", None) or d.id for d in gate.dimensions]
    shape: dict = {
        "dims": dims,
        "compensation": [d.compensation_ref or "" for d in gate.dimensions],
        "transforms": [d.transformation_ref or "" for d in gate.dimensions],
    }
    if isinstance(gate, fkg.RectangleGate):
        low = [_number(d.min) for d in gate.dimensions]
        high = [_number(d.max) for d in gate.dimensions]
        return {"kind": "range", **shape, "low": low, "high": high}
    if isinstance(gate, fkg.PolygonGate):
        return {
            "kind": "polygon",
            **shape,
            "vertices": [list(map(float, v)) for v in gate.vertices],
        }
    cov = [list(map(float, r)) for r in gate.covariance_matrix]
    mean = list(map(float, gate.coordinates))
    return {
        "kind": "ellipse",
        **shape,
        "mean": mean,
        "covariance": cov,
        "distance_square": float(gate.distance_square),
    }


def _labels(columns: pd.DataFrame, populations: list[dict]) -> np.ndarray:
    """Deepest labelled population of each event; a parent's events failing a gate get its ``outside``.

    The same rule as the engine's; for files without cytokit's information every gate is labelled
    and has no outside label, so this is the deepest gate holding the event (else ``"ungated"``).
    """
    nodes = [p for p in populations if p.get("label", True)]
    depth: dict = {None: 0}
    for p in populations:  # parents come first
        depth[p["name"]] = depth.get(p["parent"], 0) + 1
    labels = np.full(len(columns), UNGATED, dtype=object)
    everything = np.ones(len(columns), dtype=bool)
    for name in [None, *sorted((p["name"] for p in nodes), key=depth.__getitem__)]:
        inside = everything if name is None else columns[name].to_numpy()
        if name is not None:
            labels[inside] = name
        for child in nodes:
            if child["parent"] == name and child.get("outside"):
                labels[inside & ~columns[child["name"]].to_numpy()] = child["outside"]
    return labels


def _gating_results(strategy, results, path) -> tuple[pd.DataFrame, list[dict], dict]:
    """Membership columns, ``populations`` rows and ``gates`` entries in the engine's shape."""
    from flowkit import gates as fkg

    rows = _populations(strategy)
    info, helpers = _cytokit_info(path) if path is not None else ([], set())
    names = {i["id"]: i["name"] for i in info}
    if info:  # cytokit's own export: its names, labels and order first; helper gates left out
        by_id = {r["id"]: r for r in rows}
        listed = [{**by_id[i["id"]], **i} for i in info if i["id"] in by_id]
        rows = listed + [r for r in rows if r["id"] not in names and r["id"] not in helpers]
        for r in rows:
            r["parent"] = names.get(r["parent"], r["parent"])
    columns, populations, gates = {}, [], {}
    for r in rows:
        columns[r["name"]] = np.asarray(results.get_gate_membership(r["id"], r["path"]), bool)
        pop = {"name": r["name"], "parent": r["parent"], "label": r.get("label", True)}
        if r.get("outside"):
            pop["outside"] = r["outside"]
        params = {"type": type(r["gate"]).__name__}
        if isinstance(r["gate"], fkg.BooleanGate):
            pop["expr"] = params["expr"] = _boolean_text(r["gate"], names)
        else:
            params["geometry"] = _geometry(strategy, r)
        populations.append(pop)
        gates[r["name"]] = {
            "gate": {},
            "method": "gatingml",
            "params": params,
            "status": "ok",
            "message": "",
        }
    return pd.DataFrame(columns), populations, gates


def apply_gatingml(
    adata: ad.AnnData,
    path,
    *,
    key_added: str = K.POPULATION,
    copy: bool = False,
) -> ad.AnnData | None:
    """Apply fixed gates from a GatingML 2.0 file or a FlowJo ``.wsp`` ("bring your own gates").

    FlowKit evaluates the gates on the raw events with the compensation and transforms the file
    declares. Pass the AnnData as read (the pipeline calls this before preprocessing); when
    ``pp.compensate``/``pp.transform`` were applied they are undone first from what ``uns`` records.

    Parameters
    ----------
    adata
        The sample; ``var["channel"]`` ($PnN) and ``var["stain"]`` ($PnS) are matched to gate dimensions.
    path
        A GatingML 2.0 file, a FlowJo 10 workspace, or a ``flowkit.GatingStrategy``.
    key_added
        ``obs`` column for the deepest population holding each event (``"ungated"`` when none).
    copy
        Return a gated copy instead of writing into ``adata``.

    Returns
    -------
    The gated copy when ``copy=True``, else None. Fills ``obs[key_added]``, ``obsm["populations"]``
    (one bool column per gate, by name, or by path where names repeat) and ``uns["gating"]`` in the
    engine's shape. Gate shapes go to ``params["geometry"]`` in the file's own units (``gate`` stays
    empty: they are not in the units of cytokit's transformed ``X``). Files cytokit exported keep their
    population names (``FOXP3+``), ``label`` flags and ``outside`` labels.
    """
    adata = adata.copy() if copy else adata
    is_strategy = hasattr(path, "gate_sample")
    strategy = path if is_strategy else load_gatingml(path)
    gating_file = "GatingStrategy" if is_strategy else Path(path).name
    labels = set(_channels(adata))
    if K.STAIN in adata.var:
        labels |= {s for s in map(str, adata.var[K.STAIN]) if s}
    _check_channels(strategy, labels, gating_file, sample_file(adata))
    sample = _flowkit_sample(adata, _raw_events(adata))
    try:
        results = strategy.gate_sample(sample, cache_events=True)
    except CytokitError:
        raise
    except Exception as err:  # FlowKit's own errors (e.g. a matrix naming absent detectors)
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise GatingError(
            f"{gating_file} could not be applied: {reason}", sample_file(adata)
        ) from err
    columns, populations, gates = _gating_results(strategy, results, None if is_strategy else path)
    columns.index = adata.obs_names
    adata.obs[key_added] = pd.Categorical(_labels(columns, populations))
    adata.obsm[K.POPULATIONS] = columns
    adata.uns[K.GATING] = {
        "strategy": gating_file,
        "populations": population_columns(populations),
        "gates": gates,
        "counts": {name: int(columns[name].sum()) for name in columns},
        "warnings": [],
    }
    logger.info("applied %s: %d populations, %d events", gating_file, columns.shape[1], adata.n_obs)
    return adata if copy else None
