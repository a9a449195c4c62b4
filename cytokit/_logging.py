"""Package logger. cytokit logs, it never prints; the CLI decides what reaches the terminal."""

from __future__ import annotations

import logging
import time

logger = logging.getLogger("cytokit")
logger.addHandler(logging.NullHandler())


def timed(message: str, start: float) -> str:
    """Return ``message`` with the seconds elapsed since ``start`` appended."""
    return f"{message} ({time.perf_counter() - start:.2f} s)"
