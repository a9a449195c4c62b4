"""One gate's record in ``uns["gating"]["gates"]``: plain, h5ad-writable values and status messages."""

from __future__ import annotations

import numpy as np

_OVERRIDE_TEXT = {
    "manual": "set by a reviewer",
    "control": "set from a control well",
    "patient": "placed on the patient's pooled samples",
}


def _override_message(entry: dict) -> str:
    what = _OVERRIDE_TEXT[entry["status"]]
    return f"{what}: {entry['note']}" if entry["note"] else what


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
