"""Preprocessing: compensation and display transforms, in place on ``adata.X`` (scanpy's ``pp``).

>>> ck.pp.compensate(adata)   # the file's own $SPILLOVER unless a matrix is given
>>> ck.pp.transform(adata)    # logicle on fluorescence (FlowKit scale), scatter/time linear 0..1
"""

from ._compensate import compensate, read_matrix
from ._logicle import logicle, logicle_inverse
from ._transform import (
    estimate_w,
    inverse_transform,
    pretransformed,
    transform,
    transform_values,
)

__all__ = [
    "compensate",
    "estimate_w",
    "inverse_transform",
    "logicle",
    "logicle_inverse",
    "pretransformed",
    "read_matrix",
    "transform",
    "transform_values",
]
