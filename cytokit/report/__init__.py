"""The run's self-contained HTML report (``report.html``): QC, gating, trial readouts, statistics, methods."""

from ._report import write_report

__all__ = ["write_report"]
