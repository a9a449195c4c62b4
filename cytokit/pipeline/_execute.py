"""Run per-sample tasks: in this process, in local worker processes, or on a Dask distributed scheduler."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed

__all__ = ["default_jobs", "execute"]

logger = logging.getLogger("cytokit")


def default_jobs() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def execute(
    func: Callable, tasks: Sequence[tuple], *, jobs: int = 1, scheduler: str | None = None
) -> Iterator[tuple[int, object]]:
    """Yield ``(index, func(*tasks[index]))`` as tasks finish.

    A task that cannot run at all (a worker process died) yields the exception in place of its result.
    """
    if not tasks:
        return
    if scheduler:
        yield from _on_dask(func, tasks, scheduler)
    elif jobs <= 1 or len(tasks) == 1:
        for i, args in enumerate(tasks):
            yield i, func(*args)
    else:
        yield from _on_processes(func, tasks, jobs)


def _on_processes(
    func: Callable, tasks: Sequence[tuple], jobs: int
) -> Iterator[tuple[int, object]]:
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), initializer=_one_thread) as pool:
        futures = {pool.submit(func, *args): i for i, args in enumerate(tasks)}
        for future in as_completed(futures):
            try:
                yield futures[future], future.result()
            except Exception as err:  # worker killed (out of memory, crash)
                yield futures[future], err


def _on_dask(func: Callable, tasks: Sequence[tuple], address: str) -> Iterator[tuple[int, object]]:
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError as err:  # pragma: no cover - optional dependency
        raise RuntimeError(
            "--scheduler needs dask[distributed]: pip install 'cytokit[cluster]'"
        ) from err
    with Client(address, timeout="20s") as client:
        futures = [client.submit(func, *args, pure=False) for args in tasks]
        index = {f.key: i for i, f in enumerate(futures)}
        for future in dask_completed(futures):
            try:
                yield index[future.key], future.result()
            except Exception as err:
                yield index[future.key], err


def _one_thread() -> None:
    # Workers already split the cores between them; nested BLAS/numba threads only oversubscribe.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover
        pass
