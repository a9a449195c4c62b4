"""Find shipped panels and gating strategies, from a source checkout or an installed wheel."""

from __future__ import annotations

from pathlib import Path

from .errors import CytokitError

_PKG = Path(__file__).resolve().parent


def data_dir(kind: str) -> Path:
    """Folder of shipped definitions of ``kind`` (``"panels"`` or ``"gating"``)."""
    for candidate in (_PKG / "_data" / kind, _PKG.parent / kind):
        if candidate.is_dir():
            return candidate
    raise CytokitError(f"shipped {kind}/ folder not found next to the cytokit package")


def shipped(kind: str) -> dict[str, Path]:
    """Shipped definitions of ``kind`` by name (file stem)."""
    folder = data_dir(kind)
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix in {".yaml", ".yml", ".xml"}}


def resolve_definition(kind: str, name_or_path: str | Path) -> Path:
    """A shipped name (``"treg"``) or a path to a definition file; raise if neither exists."""
    path = Path(name_or_path)
    if path.suffix and path.is_file():
        return path
    found = shipped(kind).get(str(name_or_path))
    if found is None:
        names = ", ".join(shipped(kind)) or "none"
        raise CytokitError(f"no {kind} definition {str(name_or_path)!r} (shipped: {names})")
    return found
