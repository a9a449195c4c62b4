"""cytokit: flow cytometry immunomonitoring, from FCS files to gated Treg/Teff readouts, clusters and statistics.

>>> import cytokit as ck
>>> adata = ck.read_fcs("P01_D0.fcs")
>>> ck.pp.compensate(adata); ck.pp.transform(adata); ck.gate(adata, strategy="treg")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .errors import CytokitError

__version__ = "0.1.0"

__all__ = ["CytokitError", "datasets", "gate", "io", "pl", "pp", "read_fcs", "run", "tl"]

_SUBMODULES = {
    "datasets",
    "gating",
    "io",
    "pl",
    "pp",
    "tl",
    "pipeline",
    "panels",
    "readouts",
    "stats",
}
_FUNCTIONS = {"read_fcs": "io", "gate": "gating", "run": "pipeline"}

if TYPE_CHECKING:  # pragma: no cover
    from . import datasets, io, pl, pp, tl
    from .gating import gate
    from .io import read_fcs
    from .pipeline import run


def __getattr__(name: str):
    # Submodules load on first use, so `import cytokit` stays fast (umap/numba are heavy).
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(f".{_FUNCTIONS[name]}", __name__), name)
    raise AttributeError(f"module 'cytokit' has no attribute {name!r}")
