"""Gates set from outside a sample's own fit in a run: a reviewer's corrections and control wells.

**Overrides** (``cytokit run --overrides overrides.yaml``): a list of entries, each replacing one gate's
placement on one sample; the gate's descendants are re-placed on the corrected population::

    - {sample: P01_D8, gate: Treg, marker: CD25, value: 0.42}        # one threshold (transformed units)
    - {sample: P02_D0, gate: Treg, fixed: {kind: range, dims: [CD25, FOXP3], low: [0.4, 0.5], high: [null, null]}}
    - {sample: P02_D0, gate: {id: CD4, kind: range, dims: [CD4], low: [0.45], high: [null]}, note: "..."}

The file is checked before any sample is processed (a bad file is a usage error naming it and the
entry). Entries go into that sample's settings only, so the cache reuses every other sample.

**Control wells** (manifest column ``control``: ``FMO:Ki67``, ``isotype:HLA-DR``, ``unstained:CD25``):
processed first; for every gate that thresholds the control's marker, the stained samples of the same
patient (or of the same ``batch`` when the manifest has that column) get the threshold at the
:data:`CONTROL_PERCENTILE` th percentile of the control's events in the population the gate splits.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from numbers import Real
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .. import _keys as K
from ..errors import CytokitError

__all__ = [
    "CONTROL_PERCENTILE",
    "control_entries",
    "control_marker",
    "control_reference",
    "gate_kwargs",
    "gate_status_column",
    "load_overrides",
    "outside_text",
]

logger = logging.getLogger("cytokit")

#: FMO / isotype gates are set so that about 0.5 % of the control's events fall in the positive gate
#: (the 99.5th percentile; Maecker & Trotter, Cytometry A 69:1037, 2006, on FMO controls setting the
#: positivity boundary; Roederer, Cytometry 45:194, 2001, introducing FMO controls)
CONTROL_PERCENTILE = 99.5
CONTROL_KINDS = ("fmo", "isotype", "unstained")
# wells that are not the trial's cells but set no threshold: an unstained well without a marker, and
# compensation (single-stain) controls
CONTROL_BARE = ("unstained", "compensation")
_KEYS = {"sample", "gate", "marker", "value", "fixed", "note"}


class OverrideError(CytokitError):
    """An overrides file that cannot be used (syntax, unknown sample, gate or marker)."""


def load_overrides(path: str | Path, specs: Sequence, settings: Sequence) -> list[tuple[dict, ...]]:
    """Each sample's override entries (JSON-able dicts, in file order) from an overrides YAML file.

    ``specs`` / ``settings`` are the run's samples and their per-sample settings (strategy). Raises
    :class:`OverrideError` naming the file and the entry for anything that cannot be applied.
    """
    from ..gating import load_strategy
    from ..gating._strategy import GateSpec

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise OverrideError(f"cannot read overrides: {err.strerror or err}", path) from None
    except yaml.YAMLError as err:
        raise OverrideError(f"not valid YAML ({' '.join(str(err).split())[:160]})", path) from None
    if isinstance(data, dict) and "overrides" in data:
        data = data["overrides"]
    if data is None:
        data = []
    if not isinstance(data, list):
        raise OverrideError(
            "overrides must be a list of {sample, gate, marker, value} entries", path
        )
    index = {s.sample: i for i, s in enumerate(specs)}
    per_sample: list[list[dict]] = [[] for _ in specs]
    strategies: dict[str, dict] = {}
    for n, raw in enumerate(data, start=1):
        where = f"entry {n}"
        if not isinstance(raw, dict):
            raise OverrideError(f"{where}: not a mapping ({raw!r:.60})", path)
        unknown = set(raw) - _KEYS - {"id"}
        if unknown:
            raise OverrideError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}", path)
        sample = str(raw.get("sample", "")).strip()
        if sample not in index:
            raise OverrideError(f"{where}: sample {sample!r} is not in this run", path)
        settings_i = settings[index[sample]]
        if settings_i.strategy_is_gatingml:
            raise OverrideError(f"{where}: fixed GatingML/FlowJo gates cannot be overridden", path)
        gate, fixed = raw.get("gate"), raw.get("fixed")
        if isinstance(gate, dict):  # gate: {id: Treg, kind: range, ...}
            gate, fixed = gate.get("id"), {k: v for k, v in gate.items() if k != "id"}
        gid = str(gate or "").strip()
        if settings_i.strategy not in strategies:
            strat = load_strategy(settings_i.strategy)
            strategies[settings_i.strategy] = {
                n.id: n for n in strat.nodes if isinstance(n, GateSpec)
            }
        specs_by_id = strategies[settings_i.strategy]
        if gid not in specs_by_id:
            have = ", ".join(specs_by_id)
            raise OverrideError(
                f"{where}: {gid!r} is not a gate of the strategy (have: {have})", path
            )
        entry = {"gate": gid, "status": "manual", "note": str(raw.get("note") or "")}
        if fixed is not None:
            entry["fixed"] = _checked_gate(fixed, f"{where} ({sample}, {gid})", path)
        else:
            entry.update(_checked_threshold(raw, specs_by_id[gid], f"{where} ({sample})", path))
        per_sample[index[sample]].append(entry)
    return [tuple(e) for e in per_sample]


def _checked_threshold(raw: dict, spec, where: str, path: Path) -> dict:
    from ..panels import canonical_marker

    marker, value = raw.get("marker"), raw.get("value")
    if marker is None or value is None:
        raise OverrideError(f"{where}: needs marker and value, or fixed: {{gate}}", path)
    if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(float(value)):
        raise OverrideError(f"{where}: value {value!r} is not a number", path)

    def same(a: str, b: str) -> bool:
        return a.lower() == b.lower() or (canonical_marker(a) or a) == (canonical_marker(b) or b)

    dims = [d for d in spec.dims if any(same(str(marker), alt) for alt in d.split("|"))]
    if not dims:
        raise OverrideError(
            f"{where}: gate {spec.id!r} has no threshold on {marker!r} (its markers: "
            f"{', '.join(spec.dims)})",
            path,
        )
    return {"marker": dims[0], "value": float(value)}


def _checked_gate(fixed, where: str, path: Path) -> dict:
    from ..gating import gate_from_dict

    if not isinstance(fixed, dict):
        raise OverrideError(f"{where}: fixed gate must be a mapping (kind, dims, ...)", path)
    try:
        gate_from_dict(fixed)
    except (KeyError, TypeError, ValueError) as err:
        raise OverrideError(
            f"{where}: not a valid gate ({type(err).__name__}: {err})", path
        ) from None
    return fixed


def gate_kwargs(entries: Sequence[dict]) -> dict:
    """``gate()`` keyword arguments (``thresholds``, ``gates``) of a sample's entries; later entries win,
    a reviewer's (``manual``) over a control well's."""
    thresholds, gates = {}, {}
    ordered = sorted(entries, key=lambda e: e.get("status") == "manual")  # manual last: it wins
    for e in ordered:
        info = {"status": e.get("status", "manual"), "note": e.get("note", "")}
        if "fixed" in e:
            gates[e["gate"]] = {"gate": e["fixed"], **info}
        else:
            thresholds[(e["gate"], e["marker"])] = {"value": e["value"], **info}
    out = {}
    if thresholds:
        out["thresholds"] = thresholds
    if gates:
        out["gates"] = gates
    return out


def outside_text(gating: dict | None, status: str) -> str:
    """``Treg: CD25 = 0.420; CD4: fixed gate`` for the gates of ``gating`` with this status."""
    parts = []
    for gid, rec in ((gating or {}).get("gates") or {}).items():
        if rec.get("status") != status:
            continue
        g, details = rec.get("gate") or {}, rec.get("details") or {}
        values = [
            f"{dim} = {v['threshold']:.3f}"
            for dim, v in details.items()
            if isinstance(v, dict) and v.get("rule") == status and "threshold" in v
        ]
        parts.append(
            f"{gid}: {', '.join(values)}" if values else f"{gid}: fixed {g.get('kind', '')} gate"
        )
    return "; ".join(parts)


def gate_status_column(table: pd.DataFrame, gating: dict | None) -> pd.DataFrame:
    """``populations.csv``'s ``gate_status``: how each population's own gate was placed (``ok``,
    ``fallback``, ``manual``, ``control``, ``patient``, ``failed``, ``skipped``; boolean populations
    ``ok``; ``not placed`` for a population gating never reached, e.g. below a failed required gate)."""
    gates = (gating or {}).get("gates") or {}
    reached = table["count"].notna() if "count" in table else pd.Series(True, index=table.index)
    status = [
        str((gates.get(p) or {}).get("status", "ok" if seen else "not placed"))
        for p, seen in zip(table["population"], reached, strict=True)
    ]
    return table.assign(gate_status=status)


# ------------------------------------------------------------------------------------ control wells
def control_marker(control) -> tuple[str, str] | None:
    """``("fmo", "Ki67")`` from a manifest ``control`` value such as ``FMO:Ki67``; None when empty.

    ``("unstained", "")`` or ``("compensation", "")`` for those bare words (a well that is not the
    trial's cells and sets no threshold). Raises :class:`CytokitError` for any other value that is not
    ``<fmo|isotype|unstained>:<marker>``.
    """
    text = (
        ""
        if control is None or (isinstance(control, float) and np.isnan(control))
        else str(control)
    )
    text = text.strip()
    if not text:
        return None
    kind, sep, marker = text.partition(":")
    if not marker.strip() and kind.strip().lower() in CONTROL_BARE:
        return kind.strip().lower(), ""  # kept out of the trial's tables, no threshold
    if not sep or kind.strip().lower() not in CONTROL_KINDS or not marker.strip():
        raise CytokitError(
            f"control {text!r} is not <{'|'.join(CONTROL_KINDS)}>:<marker> (e.g. FMO:Ki67) "
            f"or {' / '.join(CONTROL_BARE)}"
        )
    return kind.strip().lower(), marker.strip()


def control_reference(adata, control) -> dict:
    """The control well's reference: for each population, the :data:`CONTROL_PERCENTILE` th percentile of
    the control marker on its events (``{"marker", "kind", "populations": {name: {"value", "n"}}}``)."""
    from ..panels import find_var

    parsed = control_marker(control)
    pops = adata.obsm.get(K.POPULATIONS)
    if parsed is None or pops is None:
        return {}
    kind, marker = parsed
    var = find_var(adata, marker, required=False) if marker else None
    if var is None:
        return {}
    values = np.asarray(adata[:, var].X, dtype=float).ravel()
    out = {}
    for name in pops.columns:
        sel = values[np.asarray(pops[name], dtype=bool)]
        sel = sel[np.isfinite(sel)]
        if len(sel) >= 100:  # the 99.5th percentile of fewer events is one or two cells
            out[str(name)] = {"value": float(np.percentile(sel, CONTROL_PERCENTILE)), "n": len(sel)}
    return {"marker": marker, "kind": kind, "populations": out}


def control_entries(
    specs: Sequence, settings: Sequence, references: dict[int, dict]
) -> dict[int, list]:
    """Entries (status ``control``) for the stained samples sharing a control well's patient or batch.

    ``references``: control sample index -> :func:`control_reference`. Every gate of the stained
    sample's strategy that thresholds the control's marker gets the percentile of the control's events
    in the population the gate splits (its ``within`` population when it places on another one).
    """
    from ..gating import load_strategy
    from ..gating._strategy import GateSpec
    from ..panels import canonical_marker

    def group(spec) -> tuple[str, str] | None:
        batch = str(spec.meta.get("batch", "") or "").strip()
        if batch:
            return ("batch", batch)
        return ("patient", spec.patient) if spec.patient else None

    out: dict[int, list] = {}
    for c, ref in references.items():
        if not ref or not ref.get("populations"):
            continue
        key, target = group(specs[c]), canonical_marker(ref["marker"]) or ref["marker"]
        for i, spec in enumerate(specs):
            if i in references or key is None or group(spec) != key:
                continue
            strat = load_strategy(settings[i].strategy)
            for node in strat.nodes:
                if not isinstance(node, GateSpec):
                    continue
                bounds = node.params.get("bounds", {}) if node.method == "range" else {}
                for dim in node.dims:
                    if (canonical_marker(dim) or dim) != target:
                        continue
                    b = bounds.get(dim, node.params) if bounds else node.params
                    if b.get("from") or b.get("value") is not None or node.method == "fixed":
                        continue  # reuses or fixes a threshold: follows the gate it reuses
                    population = node.parent
                    pop = ref["populations"].get(population)
                    if pop is None:  # e.g. a CD25 control has no Tregs: use the placing population
                        population = b.get("within", node.parent)
                        pop = ref["populations"].get(population)
                    if pop is None:
                        continue
                    note = (
                        f"{CONTROL_PERCENTILE:g}th percentile of {ref['kind']} control "
                        f"{specs[c].sample}'s {population} events ({pop['n']})"
                    )
                    out.setdefault(i, []).append(
                        {
                            "gate": node.id,
                            "marker": dim,
                            "value": pop["value"],
                            "status": "control",
                            "note": note,
                        }
                    )
    return out
