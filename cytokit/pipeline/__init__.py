"""Batch runs: per-sample tasks in parallel (local processes or Dask), cached, into the trial's tables."""

from ._inputs import SampleSpec, discover_samples
from ._run import RunResult, run
from ._task import SampleResult, Settings, process_sample

__all__ = [
    "RunResult",
    "SampleResult",
    "SampleSpec",
    "Settings",
    "discover_samples",
    "process_sample",
    "run",
]
