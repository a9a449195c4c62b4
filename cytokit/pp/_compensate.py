"""Compensation: undo fluorescence spillover with the file's own $SPILLOVER or a user-given matrix.

Events are rows, so compensated = observed @ inv(S) with S[i, j] the fraction of fluorochrome i's signal
seen in detector j (the FCS/FlowJo/FlowKit convention). The small matrix is inverted once in float64; the
events see one matrix product in X's own float type.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys as K
from .._logging import logger
from ..errors import CompensationError

__all__ = ["compensate", "read_matrix"]

_DIAGONAL_TOLERANCE = (
    0.05  # |S_ii - 1| above this is not a spillover matrix (after percent rescaling)
)
_MAX_CONDITION = 1e8  # a matrix this ill-conditioned amplifies noise beyond use
_CHUNK = 65_536  # rows per block
_PREFIXES = ("comp-", "comp_", "fjcomp-", "[")  # FlowJo/FlowKit decorations of compensated names


def compensate(
    adata: AnnData,
    matrix: pd.DataFrame | np.ndarray | str | Path | None = None,
    *,
    channels: list[str] | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Compensate fluorescence in place: ``X[:, chans] = X[:, chans] @ inv(S)``.

    Parameters
    ----------
    adata
        Events x parameters from :func:`cytokit.read_fcs` (untransformed).
    matrix
        None for the file's own ``uns["spillover"]``; else a DataFrame (columns = channels), a CSV/TSV
        path (FlowJo export, header = channels, optional first column of names), an FCS spill string
        (``"n,ch1,...,chn,v11,..."``) or an ndarray (then ``channels=`` names its columns).
    channels
        Channel names of an ndarray ``matrix``, in column order.
    copy
        Return a compensated copy instead of working in place.

    Only the channels the matrix names change. Names are matched to ``var["channel"]`` ($PnN), then to
    markers and stains. ``uns["compensation"] = {"source": "FCS" | "user", "matrix": DataFrame}``.
    Raises :class:`~cytokit.errors.CompensationError` naming the file when there is no matrix, a name
    is not in the sample, or the matrix is not a usable spillover matrix.
    """
    adata = adata.copy() if copy else adata
    path = adata.uns.get(K.SAMPLE_INFO, {}).get("file")
    if K.COMPENSATION in adata.uns:
        logger.warning("%s: already compensated; left as it is", _name(path))
        return adata if copy else None
    from ._transform import pretransformed  # (_transform imports this module)

    if pretransformed(adata):
        logger.warning(
            "%s: fluorescence already transformed in the file; a spillover matrix applies to linear "
            "values: not compensated",
            _name(path),
        )
        return adata if copy else None
    if matrix is None:
        spill = adata.uns.get(K.SPILLOVER)
        if spill is None:
            raise CompensationError(
                "the file has no spillover matrix ($SPILLOVER/$SPILL); give one", path
            )
        source = "FCS"
    else:
        spill, source = read_matrix(matrix, channels=channels, path=path), "user"
    spill = _checked(_as_frame(spill, path), path)
    cols = _match_columns(adata, list(spill.columns), path)
    inverse = np.linalg.solve(spill.to_numpy(dtype=np.float64), np.eye(len(cols)))
    X = adata.X
    if not isinstance(X, np.ndarray):
        raise TypeError("compensate needs a dense adata.X")
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float32)
    _apply(X, cols, inverse.astype(X.dtype))
    adata.X = X
    adata.uns[K.COMPENSATION] = {"source": source, "matrix": spill}
    logger.info("compensated %d channels (%s matrix)", len(cols), source)
    return adata if copy else None


def _apply(X: np.ndarray, cols: list[int], inverse: np.ndarray) -> None:
    """``X[:, cols] = X[:, cols] @ inverse`` in cache-sized row blocks, on one BLAS thread.

    A tall-skinny product gains nothing from BLAS threads, and threads fight with the pipeline's own
    worker processes (20x slower on a busy 2-core machine), so BLAS is held to one thread here.
    """
    where = column_index(cols)
    with _one_blas_thread():
        for start in range(0, len(X), _CHUNK):  # row blocks stay in cache: one pass over X
            block = X[start : start + _CHUNK]
            block[:, where] = np.take(block, cols, axis=1) @ inverse


def column_index(cols: list[int]) -> slice | list[int]:
    """A slice when ``cols`` are consecutive (numpy copies slices far faster than index lists)."""
    if cols and cols == list(range(cols[0], cols[0] + len(cols))):
        return slice(cols[0], cols[0] + len(cols))
    return cols


def _one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def read_matrix(
    source: pd.DataFrame | np.ndarray | str | Path,
    *,
    channels: list[str] | None = None,
    path: str | Path | None = None,
) -> pd.DataFrame:
    """A spillover matrix as a DataFrame (index = columns = channel names) from any accepted form."""
    if isinstance(source, pd.DataFrame):
        return source
    if isinstance(source, np.ndarray):
        if channels is None or len(channels) != source.shape[-1]:
            raise CompensationError(
                "an ndarray matrix needs channels= naming each of its columns", path
            )
        return pd.DataFrame(source, index=list(channels), columns=list(channels))
    text = str(source)
    is_file = isinstance(source, Path) or ("\n" not in text and "," not in text and _is_file(text))
    if is_file:
        try:
            raw = Path(text).read_text(encoding="utf-8-sig")
        except OSError as err:
            raise CompensationError(f"cannot read matrix file: {err.strerror}", text) from None
        return _parse_table(raw, text)
    if "\n" in text.strip():
        return _parse_table(text, path)
    return _parse_spill_string(text, path)


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except OSError:  # a name too long for the file system is not a file
        return False


def _parse_table(text: str, path: str | Path | None) -> pd.DataFrame:
    try:
        frame = pd.read_csv(io.StringIO(text), sep=None, engine="python")
    except (ValueError, pd.errors.ParserError) as err:
        raise CompensationError(f"matrix is not a CSV/TSV table: {err}", path) from None
    first = frame.columns[0]
    if frame[first].dtype == object or str(first).strip() == "" or str(first).startswith("Unnamed"):
        frame = frame.set_index(first)
        frame.index = frame.index.astype(str).str.strip()
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _parse_spill_string(text: str, path: str | Path | None) -> pd.DataFrame:
    parts = [p.strip() for p in text.split(",")]
    try:
        n = int(parts[0])
        names, values = parts[1 : n + 1], np.array(parts[n + 1 :], dtype=float)
    except (ValueError, IndexError):
        raise CompensationError("matrix is neither a file nor an FCS spill string", path) from None
    if n < 1 or len(names) != n or values.size != n * n:
        raise CompensationError(f"spill string: {n} channels need {n * n} values", path)
    return pd.DataFrame(values.reshape(n, n), index=names, columns=names)


def _as_frame(spill: Any, path) -> pd.DataFrame:
    if not isinstance(spill, pd.DataFrame):
        return read_matrix(spill, path=path)
    return spill


def _checked(spill: pd.DataFrame, path) -> pd.DataFrame:
    """Square, numeric, finite, unit diagonal (percent matrices rescaled), invertible."""
    try:
        values = spill.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise CompensationError("matrix has non-numeric entries", path) from None
    n, m = values.shape
    if n != m or n == 0:
        raise CompensationError(f"matrix must be square, got {n} x {m}", path)
    columns = [str(c) for c in spill.columns]
    if len(set(columns)) != n:
        raise CompensationError("matrix names a channel twice", path)
    if not np.isfinite(values).all():
        raise CompensationError("matrix has missing or infinite entries", path)
    index = [str(i) for i in spill.index]
    if set(index) == set(columns) and index != columns:  # rows in another order: align to columns
        values = pd.DataFrame(values, index=index, columns=columns).loc[columns].to_numpy()
    diag = np.diag(values)
    if np.allclose(diag, 100, atol=100 * _DIAGONAL_TOLERANCE):
        logger.warning("%s: spillover given in percent; divided by 100", _name(path))
        values = values / 100.0
        diag = np.diag(values)
    if np.abs(diag - 1).max() > _DIAGONAL_TOLERANCE:
        raise CompensationError(
            f"matrix diagonal must be 1 (spillover), got {diag.round(3).tolist()}", path
        )
    cond = np.linalg.cond(values)
    if not np.isfinite(cond) or cond > _MAX_CONDITION:
        raise CompensationError(f"matrix cannot be inverted (condition number {cond:.3g})", path)
    return pd.DataFrame(values, index=columns, columns=columns)


def _match_columns(adata: AnnData, names: list[str], path) -> list[int]:
    """Column position in X of each matrix channel: $PnN, then marker/var name, then stain."""
    var = adata.var
    lookups = [var[c].astype(str).tolist() for c in (K.CHANNEL,) if c in var.columns]
    lookups.append([str(v) for v in var.index])
    lookups += [var[c].astype(str).tolist() for c in (K.MARKER, K.STAIN) if c in var.columns]
    cols, missing = [], []
    for name in names:
        j = _find(name, lookups)
        if j is None:
            missing.append(name)
        else:
            cols.append(j)
    if missing:
        raise CompensationError(f"matrix channel(s) not in the sample: {', '.join(missing)}", path)
    if len(set(cols)) != len(cols):
        raise CompensationError("two matrix channels match the same sample channel", path)
    return cols


def _find(name: str, lookups: list[list[str]]) -> int | None:
    keys = [name, _plain(name)]
    for values in lookups:
        for key in keys:
            hits = [j for j, v in enumerate(values) if v and (v == key or _plain(v) == _plain(key))]
            if len(hits) == 1:
                return hits[0]
    return None


def _plain(name: str) -> str:
    text = name.strip().lower()
    for prefix in _PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix) :]
    return text.rstrip("]").strip()


def _name(path) -> str:
    return Path(str(path)).name if path else "sample"
