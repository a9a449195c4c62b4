"""What scale each fluorescence dim of a sample is on: transformed data is gated, linear refused."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import _keys as K
from ..errors import GatingError
from ..pp._transform import linear_kind

if TYPE_CHECKING:
    from anndata import AnnData

# Transformed fluorescence ends below ~12 (logicle 0..1; arcsinh of an 18-bit maximum, 262143, with
# the mass-cytometry cofactor 5 is 11.6); untransformed fluorescence spans 10^3..10^5.
_TRANSFORMED_MAX = 100.0


def _check_scales(adata: AnnData, cols: dict[str, int | None], path) -> dict[str, str]:
    """What ``X`` holds on each fluorescence dim the strategy places, from ``uns["transform"]``.

    Placement is scale-free (densities with data-driven bandwidths, tails and windows in robust SDs,
    mixtures), so logicle and arcsinh data are gated alike. Fluorescence that is not transformed
    (``kind: linear``, or no record and values far beyond any transformed scale) crowds every
    negative population into the first bins: refused with a :class:`GatingError` naming the file.
    """
    records = adata.uns.get(K.TRANSFORM) or {}
    scales: dict[str, str] = {}
    for j in sorted({c for c in cols.values() if c is not None}):
        var = str(adata.var_names[j])
        # scatter, time and other linear parameters (CyTOF Event_length) are not fluorescence
        if _is_scatter_or_time(var) or linear_kind(adata.var.iloc[j], var):
            continue
        record = records.get(var) or {}
        kind = str(record.get("kind", ""))
        # linear fluorescence is refused, unless the file itself held it transformed (pp.pretransformed)
        if kind == "linear" and not record.get("pretransformed"):
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
