"""The run's self-contained HTML report (``report.html``): QC, gating, trial readouts, statistics, methods."""

from ._report import ABUNDANCE_CHANGE, CLUSTER_HEATMAP, write_report

__all__ = ["ABUNDANCE_CHANGE", "CLUSTER_HEATMAP", "write_report"]
