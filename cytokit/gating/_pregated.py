"""Files exported from a parent gate: which lineage gate every event of a file already passes.

Labs often export a CD3+ or CD3+CD4+ gate from FlowJo and share those files. Gated as whole blood, such a
file has no negative peak on CD3 (or CD4): the valley search falls back to Otsu's split of one population
and halves it, or leaves too few CD4 cells for the Treg gate. A lineage marker with no valley whose whole
peak lies beyond the negatives of the file's other markers means the file was exported from that gate;
the run then gates it as ``--start-at`` would and says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import _keys as K
from ._methods import density_valley, smooth_density
from ._strategy import GateSpec, Strategy, load_strategy

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["detect_start"]

# The marker's 2nd percentile must lie this many negative-peak spreads above the file's negative level:
# a normal population reaches ~2 SD below its centre at the 2nd percentile, so 4 spreads keep even the
# dimmest cells of the peak at least 2 spreads clear of the negatives (no negative event among them).
_CLEAR_SPREADS = 4.0
_LOW_QUANTILE = 2.0  # percent
# evenly spaced events per marker: enough for a density, cheap on 1M-event files
_MAX_EVENTS = 50_000


def detect_start(adata: AnnData, strategy: str | Strategy) -> tuple[str | None, str]:
    """The deepest lineage gate of ``strategy`` that every event of ``adata`` already passes, and why.

    Candidates are the strategy's positive lineage gates in order (``CD3``, then ``CD4``): a 1-D
    ``valley`` gate with ``side: high`` on a lineage marker, or a ``range`` gate with such a bound. A
    candidate is passed when its marker has no valley (one peak) and the 2nd percentile of that peak
    lies :data:`_CLEAR_SPREADS` spreads above the file's negative level: the median main-peak position
    of its fluorescence markers (mostly negative in any T-cell file), spread their median half-width.
    ``(None, "")`` when the first candidate has a negative peak, as every unexported blood sample has.
    """
    from ._engine import resolve_dims

    strat = load_strategy(strategy)
    X = np.asarray(adata.X)
    rows = slice(None, None, max(1, adata.n_obs // _MAX_EVENTS))
    reference = None  # found only when a candidate has no valley (never, for an unexported sample)
    start, why = None, ""
    roles = adata.var[K.ROLE].astype(str) if K.ROLE in adata.var else None
    for spec, marker in _candidates(strat):
        if start is not None and not _below(strat, spec.id, start):
            continue
        col = resolve_dims(adata, [marker])[marker]
        if col is None:
            break
        if roles is None or roles.iloc[col] != "lineage":  # debris, DNA, viability gates
            continue
        x = X[rows, col].astype(float)
        x = x[np.isfinite(x)]
        if len(x) < 200 or density_valley(x, side="high", fallback="otsu").status == "ok":
            break
        reference = reference or _negative_level(adata, X[rows])
        if reference is None:
            break
        level, spread = reference
        low = float(np.percentile(x, _LOW_QUANTILE))
        if low < level + _CLEAR_SPREADS * spread:
            break
        start = spec.id
        why = (
            f"every event is {marker}+ (one peak, {100 - _LOW_QUANTILE:g} % of it above {low:.2f}; "
            f"the other markers' negatives at {level:.2f} +/- {spread:.2f})"
        )
    return start, why


def _candidates(strat: Strategy):
    """(gate, marker) of the strategy's positive lineage gates, in order."""
    for node in strat.nodes:
        if not isinstance(node, GateSpec) or not node.label:
            continue
        if node.method == "valley" and node.params.get("side") == "high":
            yield node, node.dims[0]
        elif node.method == "range":
            bounds = node.params.get("bounds", {})
            high = [
                d
                for d, b in bounds.items()
                if b.get("method") == "valley" and b.get("side") == "high"
            ]
            if len(high) == 1 and all(b.get("side") for b in bounds.values()):
                yield node, high[0]


def _below(strat: Strategy, name: str, ancestor: str) -> bool:
    parent = {n.id: n.parent for n in strat.nodes}
    while name in parent:
        name = parent[name]
        if name == ancestor:
            return True
    return False


def _negative_level(adata: AnnData, X: np.ndarray) -> tuple[float, float] | None:
    """Median main-peak position and median lower half-width (as an SD) of the fluorescence markers."""
    records = adata.uns.get(K.TRANSFORM) or {}
    roles = adata.var[K.ROLE].astype(str) if K.ROLE in adata.var else None
    peaks, spreads = [], []
    for j, name in enumerate(map(str, adata.var_names)):
        kind = str((records.get(name) or {}).get("kind", ""))
        record = records.get(name) or {}
        fluorescent = kind in ("logicle", "asinh") or record.get("pretransformed")
        if not fluorescent or (roles is not None and roles.iloc[j] in ("scatter", "time")):
            continue
        x = X[:, j].astype(float)
        x = x[np.isfinite(x)]
        if len(x) < 200:
            continue
        grid, dens, _ = smooth_density(x)
        main = float(grid[np.argmax(dens)])
        lower = main - x[x < main]
        if len(lower) < 50:
            continue
        peaks.append(main)
        spreads.append(1.4826 * float(np.median(lower)))
    if len(peaks) < 3:  # too few other markers to say where the negatives are
        return None
    return float(np.median(peaks)), float(np.median(spreads))
