"""Panels and marker-name recognition. (Placeholder API; the panels owner replaces the body.)"""

from __future__ import annotations


def resolve_markers(channels: list[str], stains: list[str], panel=None) -> tuple[list[str], list[str]]:
    """Canonical marker name ("" if unknown) and role ("" if unknown) for each parameter."""
    return ["" for _ in channels], ["" for _ in channels]
