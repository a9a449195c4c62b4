"""Placements set from outside the sample's own fit: a reviewer's corrections and control wells.

Both are the same thing to the engine: a threshold of one gate on one marker (or a whole fixed gate)
that replaces the data-driven placement of that gate on that sample, with a ``status`` saying where it
came from (``manual``: a reviewer's value; ``control``: from an FMO / isotype / unstained control
well) and a ``note``. Everything below the gate is then placed as usual on the corrected population,
so its descendants are re-derived and nothing else changes.

>>> norm = normalise_thresholds({("Treg", "CD25"): 0.42})
>>> norm[("Treg", "CD25")]["status"], norm[("Treg", "CD25")]["value"]
('manual', 0.42)
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Real

from ..errors import GatingError
from ._gates import gate_from_dict

__all__ = ["OVERRIDE_STATUSES", "normalise_gates", "normalise_thresholds"]

#: statuses an outside placement may carry (shown in uns["gating"], qc.csv, figures, GatingML):
#: a reviewer's value, a control well's reference, a placement on the patient's pooled samples
OVERRIDE_STATUSES = ("manual", "control", "patient")


def _entry(value, what: str) -> dict:
    if isinstance(value, Mapping):
        entry = dict(value)
    else:
        entry = {"value": value}
    status = str(entry.get("status", "manual"))
    if status not in OVERRIDE_STATUSES:
        raise GatingError(f"{what}: status must be one of {OVERRIDE_STATUSES}, not {status!r}")
    entry["status"] = status
    entry["note"] = str(entry.get("note") or "")
    return entry


def normalise_thresholds(thresholds: Mapping | None) -> dict[tuple[str, str], dict]:
    """``{(gate_id, marker): value | {"value", "status", "note"}}`` -> ``{(gate_id, marker): entry}``.

    Raises :class:`GatingError` when a value is not a finite number or a status is unknown.
    """
    out: dict[tuple[str, str], dict] = {}
    for key, value in (thresholds or {}).items():
        if not (isinstance(key, tuple) and len(key) == 2):
            raise GatingError(f"threshold override key {key!r} is not (gate, marker)")
        gid, marker = str(key[0]), str(key[1])
        entry = _entry(value, f"threshold override {gid}/{marker}")
        v = entry.get("value")
        if (
            isinstance(v, bool)
            or not isinstance(v, Real)
            or v != v
            or abs(float(v)) == float("inf")
        ):
            raise GatingError(f"threshold override {gid}/{marker}: value {v!r} is not a number")
        entry["value"] = float(v)
        out[(gid, marker)] = entry
    return out


def normalise_gates(gates: Mapping | None) -> dict[str, dict]:
    """``{gate_id: gate dict | {"gate": gate dict, "status", "note"}}`` -> ``{gate_id: entry}``.

    The gate dict is a fixed gate in transformed units, as ``gate_from_dict`` reads it (``kind``
    range / polygon / ellipse, ``dims`` by marker name). Raises :class:`GatingError` when it is not one.
    """
    out: dict[str, dict] = {}
    for gid, value in (gates or {}).items():
        what = f"gate override {gid}"
        if isinstance(value, Mapping) and "kind" in value:
            value = {"gate": value}
        entry = _entry(value, what)
        g = entry.get("gate")
        if not isinstance(g, Mapping):
            raise GatingError(f"{what}: needs a gate (kind, dims, ...)")
        try:
            gate_from_dict(dict(g))
        except (KeyError, TypeError, ValueError) as err:
            raise GatingError(f"{what}: not a valid gate ({type(err).__name__}: {err})") from None
        entry["gate"] = dict(g)
        out[str(gid)] = entry
    return out
