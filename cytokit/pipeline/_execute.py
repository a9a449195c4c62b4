"""Run per-sample tasks: in this process, in local worker processes, or on a Dask distributed scheduler."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import wait

__all__ = ["WorkerDied", "default_jobs", "execute"]

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

    A task that cannot finish because its worker process died (killed by the out-of-memory killer, a
    crash in native code) yields a :class:`WorkerDied` in place of its result; only the task that worker
    held is lost, and a new worker takes the remaining tasks. On Dask the scheduler retries a task once.
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


class WorkerDied(RuntimeError):
    """The worker process running a task stopped without returning (killed, or crashed)."""


def _death_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (e.g. the out-of-memory killer)" if -exitcode == signal.SIGKILL else ""
        return f"worker process killed by {name}{hint}"
    return f"worker process exited with status {exitcode}"


class _Worker:
    """One worker process and the pipe it takes tasks from (a task at a time, so a death loses one)."""

    def __init__(self, ctx, func: Callable):
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_loop, args=(func, child), daemon=True)
        self.process.start()
        child.close()
        self.task: int | None = None

    def send(self, index: int, args: tuple) -> None:
        self.task = index
        self.conn.send((index, args))

    def stop(self) -> None:
        """Let an idle worker exit; kill one still busy (the run is being interrupted)."""
        if self.task is not None:
            self.process.kill()
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def _on_processes(
    func: Callable, tasks: Sequence[tuple], jobs: int
) -> Iterator[tuple[int, object]]:
    """Tasks on ``jobs`` local processes; a worker that dies is replaced and costs only its own task."""
    ctx = multiprocessing.get_context()
    pending = list(range(len(tasks)))[::-1]  # popped from the end: submission order
    workers = [_Worker(ctx, func) for _ in range(min(jobs, len(tasks)))]
    try:
        for k in range(len(workers)):
            if pending:
                i = pending.pop()
                _give(workers, k, ctx, func, i, tasks[i])
        while any(w.task is not None for w in workers):
            busy = [w for w in workers if w.task is not None]
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for k, w in enumerate(list(workers)):
                if w.task is None or (w.conn not in ready and w.process.sentinel not in ready):
                    continue
                outcome, died = _collect(w)
                index, w.task = w.task, None
                if died:
                    logger.warning("%s; starting a new worker", outcome)
                    w.stop()
                    workers[k] = _Worker(ctx, func)
                if pending:  # the next task goes out before the caller gets this result
                    i = pending.pop()
                    _give(workers, k, ctx, func, i, tasks[i])
                yield index, outcome
    finally:
        for w in workers:
            w.stop()


def _give(workers: list[_Worker], k: int, ctx, func: Callable, index: int, args: tuple) -> None:
    """Send a task to worker ``k``; a worker that died while idle is replaced first (it held nothing)."""
    w = workers[k]
    if w.process.is_alive():
        try:
            w.send(index, args)
            return
        except (BrokenPipeError, ConnectionError, OSError):
            pass
    w.task = None
    w.stop()
    workers[k] = _Worker(ctx, func)
    workers[k].send(index, args)


def _collect(w: _Worker) -> tuple[object, bool]:
    """The result a worker sent, or a :class:`WorkerDied` (and True) when it died holding its task."""
    try:
        if w.conn.poll():
            _, outcome = w.conn.recv()
            return outcome, False
    except (EOFError, OSError):
        pass
    w.process.join(timeout=5)
    return WorkerDied(_death_reason(w.process.exitcode)), True


def _worker_loop(func: Callable, conn) -> None:
    _one_thread()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops us
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        index, args = message
        try:
            outcome = func(*args)
        except Exception as err:  # the task's own error goes back as its result
            outcome = err
        try:
            conn.send((index, outcome))
        except Exception as err:  # an unpicklable result or error: say so rather than hang
            conn.send((index, RuntimeError(f"{type(err).__name__}: {err}")))


def _on_dask(func: Callable, tasks: Sequence[tuple], address: str) -> Iterator[tuple[int, object]]:
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError as err:  # pragma: no cover - optional dependency
        raise RuntimeError(
            "--scheduler needs dask[distributed]: pip install 'cytokit[cluster]'"
        ) from err
    with Client(address, timeout="20s") as client:
        # retries=1: the scheduler runs a task once more when it errs or its worker is lost
        futures = [client.submit(func, *args, pure=False, retries=1) for args in tasks]
        index = {f.key: i for i, f in enumerate(futures)}
        for future in dask_completed(futures):
            try:
                yield index[future.key], future.result()
            except Exception as err:  # KilledWorker after the retries, or the task's own error
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
