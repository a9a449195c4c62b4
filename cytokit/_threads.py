"""One BLAS/OpenMP thread for the small numeric work of one sample.

Gating fits mixtures and k-means on a few thousand events in 2-3 dimensions; OpenBLAS and OpenMP threads
on such small problems cost more in start-up and spin-waiting than they save, and on a busy 2-core
machine they made ``gate()`` 10x slower (0.1 s -> 1-2 s CPU for a 20k-event sample). Batch workers
already split the cores between them.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

__all__ = ["single_threaded"]


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Limit BLAS and OpenMP thread pools to one thread inside the block (no-op without threadpoolctl)."""
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        yield
        return
    _load_openmp()
    with _controller().limit(limits=1):
        yield


_cached: tuple[int, object] | None = None


def _controller():
    """threadpoolctl's view of the loaded thread pools, made once and remade only when modules were
    imported since (a new extension may bring a BLAS or OpenMP runtime). ``threadpool_limits`` scans
    every loaded shared library on each call: ~3 ms per ``gate()``, 0.15 s of a 48-file batch."""
    global _cached
    from threadpoolctl import ThreadpoolController

    n = len(sys.modules)
    if _cached is None or _cached[0] != n:
        _cached = (n, ThreadpoolController())
    return _cached[1]


def _load_openmp() -> None:
    """Load scikit-learn's OpenMP runtime before limiting it.

    ``threadpool_limits`` only limits the libraries already loaded when it is entered. Gating imports
    scikit-learn lazily, at its first mixture, so the first sample of a process ran its k-means starts
    with every core's OpenMP threads: on a busy 2-core machine ~2 s more CPU for a 1M-event file than
    the samples after it (and a result that could depend on the order of the samples).
    """
    import importlib.util

    if importlib.util.find_spec("sklearn") is not None:
        import sklearn.utils._openmp_helpers  # noqa: F401  (links the OpenMP runtime)
