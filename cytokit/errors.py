"""Typed errors: every problem a user can cause is a :class:`CytokitError` naming the file and the problem.

The command line turns these into one-line messages (no traceback); anything else is a bug.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CompensationError",
    "CytokitError",
    "FCSError",
    "GatingError",
    "ManifestError",
    "MarkerError",
    "PanelError",
    "StrategyError",
]


class CytokitError(Exception):
    """Base class of cytokit's errors; ``str(err)`` is a one-line message for the user."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        self.message = message
        super().__init__(f"{self.path.name}: {message}" if self.path is not None else message)


class FCSError(CytokitError):
    """An FCS file that cannot be read: not FCS, truncated, inconsistent header or TEXT."""


class CompensationError(CytokitError):
    """A spillover matrix that is missing, does not fit the sample's channels, or cannot be inverted."""


class PanelError(CytokitError):
    """A panel definition that cannot be loaded or does not fit a file."""


class MarkerError(CytokitError):
    """A marker that a step needs is missing from the sample."""


class StrategyError(CytokitError):
    """A gating strategy file that cannot be loaded (syntax, unknown method, cycle)."""


class GatingError(CytokitError):
    """A gate that could not be placed or applied on a sample."""


class ManifestError(CytokitError):
    """A manifest CSV that is unreadable or names files that do not exist."""
