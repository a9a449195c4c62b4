"""Which samples a run processes: a folder of FCS files or a manifest CSV, into plain `SampleSpec` records."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import ManifestError

__all__ = ["SampleSpec", "control_from_name", "control_rows", "discover_samples"]

logger = logging.getLogger("cytokit")

_NAME_PATTERN = re.compile(r"^(?P<patient>[^_]+)_(?P<timepoint>[^_]+)$")
_DAY_PATTERN = re.compile(r"^(?:D|DAY|W|WEEK)?(?P<n>-?\d+(?:\.\d+)?)$", re.IGNORECASE)
_REQUIRED = ("file", "patient", "timepoint")


@dataclass(frozen=True)
class SampleSpec:
    """One sample of a run: its file and its metadata (patient, timepoint, day, extra manifest columns)."""

    file: Path
    sample: str
    patient: str | None = None
    timepoint: str | None = None
    day: float | None = None
    meta: dict = field(default_factory=dict)

    def metadata(self) -> dict:
        """Columns carried into every per-sample table row."""
        return {
            "sample": self.sample,
            "patient": self.patient,
            "timepoint": self.timepoint,
            "day": self.day,
            **self.meta,
        }


def control_rows(table: pd.DataFrame) -> pd.Series:
    """Rows of a per-sample table that are control wells (a non-empty manifest ``control`` column)."""
    if "control" not in table:
        return pd.Series(False, index=table.index)
    value = table["control"].astype("string").fillna("").str.strip()
    return (value != "") & (value.str.lower() != "nan")


def discover_samples(source: str | Path, manifest: str | Path | None = None) -> list[SampleSpec]:
    """Samples of ``source`` (a folder, or a manifest CSV), or of an explicit ``manifest``.

    A folder may hold ``manifest.csv``; without one every ``*.fcs`` file is a sample and patient/timepoint come
    from ``<patient>_<timepoint>.fcs`` where that pattern fits.
    """
    source = Path(source)
    if manifest is not None:
        return _from_manifest(Path(manifest))
    if source.is_file() and source.suffix.lower() == ".csv":
        return _from_manifest(source)
    if source.is_file() and source.suffix.lower() == ".fcs":
        return _unique([_from_name(source)])
    if not source.is_dir():
        raise ManifestError("not a folder of FCS files, an FCS file or a manifest CSV", source)
    if (source / "manifest.csv").is_file():
        return _from_manifest(source / "manifest.csv")
    files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() == ".fcs")
    if not files:
        raise ManifestError("no *.fcs files in this folder", source)
    return _unique([_from_name(p) for p in files])


def _from_name(path: Path) -> SampleSpec:
    stem, control = control_from_name(path.stem)
    meta = {"control": control} if control else {}
    if control:
        logger.info("%s: a %s well by its name: kept out of the trial's tables", path.name, control)
    match = _NAME_PATTERN.match(stem)
    if match is None:
        return SampleSpec(file=path, sample=path.stem, meta=meta)
    timepoint = match["timepoint"]
    day = _day_from_timepoint(timepoint)
    return SampleSpec(path, path.stem, match["patient"], timepoint, day, meta=meta)


# Control wells as acquisition software and labs name them: "P01_D0_FMO_Ki67", "P01_D0 Isotype HLA-DR",
# "Unstained", BD FACSDiva's "Compensation Controls_FITC Stained Control", "CD4 single stain", "beads"
_CONTROL_WORD = re.compile(
    r"(?i)(?:^|[_\s.-])(?P<kind>fmo|isotype|iso|unstained|unstain|compensation|single[_\s-]?stain(?:ed)?"
    r"|stained[_\s-]control|comp(?:ensation)?[_\s-]?beads?|beads?)(?=$|[_\s.-])"
)
_KIND = {
    "fmo": "FMO",
    "isotype": "isotype",
    "iso": "isotype",
    "unstained": "unstained",
    "unstain": "unstained",
}


def control_from_name(stem: str) -> tuple[str, str]:
    """``(the name before the control words, control)`` from a file name; control ``""`` for a sample.

    ``"P01_D0_FMO_Ki67"`` -> ``("P01_D0", "FMO:Ki67")``; ``"Unstained"`` -> ``("", "unstained")``;
    a compensation (single-stain or bead) well -> ``"compensation"``. An FMO or isotype well whose
    marker is not recognised is still a control, of the bare kind ``unstained`` (no threshold); the
    abbreviation ``iso`` counts only before a marker name (``P01_D0_iso_CD25``).
    """
    from ..panels import canonical_marker

    match = _CONTROL_WORD.search(stem)
    if match is None:
        return stem, ""
    word = re.sub(r"[_\s-]", "", match["kind"].lower())
    kind = _KIND.get(word, "compensation")
    before, after = stem[: match.start()].strip(" _-."), stem[match.end() :].strip(" _-.")
    marker = canonical_marker(after) if after and kind != "compensation" else None
    if word == "iso" and not marker:
        return stem, ""
    if kind in ("FMO", "isotype") and not marker:
        return before, "unstained"
    return before, f"{kind}:{marker}" if marker else kind


def _day_from_timepoint(timepoint: str) -> float | None:
    match = _DAY_PATTERN.match(timepoint.strip())
    if match is None:
        return None
    scale = 7.0 if timepoint.strip().upper().startswith("W") else 1.0
    return float(match["n"]) * scale


def _from_manifest(path: Path) -> list[SampleSpec]:
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise ManifestError(f"cannot read manifest: {err}", path) from None
    table.columns = [c.strip() for c in table.columns]
    missing = [c for c in _REQUIRED if c not in table.columns]
    if missing:
        raise ManifestError(f"manifest lacks column(s) {', '.join(missing)}", path)
    if table.empty:
        raise ManifestError("manifest has no rows", path)
    specs = []
    for i, row in table.iterrows():
        specs.append(_spec_from_row(row, path, line=i + 2))
    return _unique(specs)


def _spec_from_row(row: pd.Series, manifest: Path, line: int) -> SampleSpec:
    name = row["file"].strip()
    if not name:
        raise ManifestError(f"line {line}: empty 'file'", manifest)
    file = Path(name) if Path(name).is_absolute() else manifest.parent / name
    day = None
    if "day" in row and str(row["day"]).strip():
        try:
            day = float(row["day"])
        except ValueError:
            raise ManifestError(
                f"line {line}: day {row['day']!r} is not a number", manifest
            ) from None
    elif row["timepoint"].strip():
        day = _day_from_timepoint(row["timepoint"])
    meta = {k: v for k, v in row.items() if k not in (*_REQUIRED, "day", "sample")}
    return SampleSpec(
        file=file,
        sample=Path(name).stem,
        patient=row["patient"].strip() or None,
        timepoint=row["timepoint"].strip() or None,
        day=day,
        meta=meta,
    )


def _unique(specs: list[SampleSpec]) -> list[SampleSpec]:
    """Make sample names unique (two files with one stem would collide in every table)."""
    seen: dict[str, int] = {}
    out = []
    for spec in specs:
        n = seen.get(spec.sample, 0)
        seen[spec.sample] = n + 1
        if n:
            new = f"{spec.sample}__{n + 1}"
            logger.warning("%s: sample name %r is taken; using %r", spec.file, spec.sample, new)
            spec = SampleSpec(spec.file, new, spec.patient, spec.timepoint, spec.day, spec.meta)
        out.append(spec)
    return out
