"""The run's self-contained HTML report (``report.html``): QC, gating, trial readouts, statistics, methods."""

from ._report import CLUSTER_HEATMAP, write_report

__all__ = ["CLUSTER_HEATMAP", "write_report"]
