"""The per-sample task: one file and the run's settings in, that sample's small results out.

Nothing is shared between tasks, so they run in any order, in local processes or on a Dask cluster, and a
finished one can be cached by (file content, settings).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import _keys as K
from ..errors import CytokitError, FCSError
from ._inputs import SampleSpec
from ._overrides import control_reference, gate_kwargs, gate_status_column, outside_text

__all__ = ["SampleResult", "Settings", "process_sample"]

logger = logging.getLogger("cytokit")


@dataclass(frozen=True)
class Settings:
    """Everything besides the file that changes a sample's result (part of the cache key)."""

    panel: str | None = None
    strategy: str = "treg"
    transform: str = "logicle"
    cofactor: float | None = None
    cells_per_sample: int = 500
    cluster_population: str = (
        "live"  # clustered parent population: every one of its events is mapped
    )
    seed: int = 0
    figures: bool = True
    consistency: str = "sample"  # or "patient": second pass with the patient's consensus as prior
    definitions: str = ""  # digest of the panel and strategy files' contents
    start_at: str | None = None  # population the files were exported from (pre-gated), e.g. "CD4"
    # this sample's gates set from outside its fit: a reviewer's --overrides entries and control-well
    # thresholds (dicts, see _overrides.py); only the samples concerned get a different cache key
    overrides: tuple = ()

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def strategy_is_gatingml(self) -> bool:
        return Path(self.strategy).suffix.lower() in {".xml", ".wsp"}


@dataclass
class SampleResult:
    """What a task returns: small tables and values, never the full event matrix."""

    sample: str
    file: str
    status: str = "ok"  # ok / warning / failed
    events: int | None = None
    message: str = ""
    metadata: dict = field(default_factory=dict)
    populations: pd.DataFrame | None = None
    readouts: dict = field(default_factory=dict)
    gating: dict | None = None
    gatingml: bytes | None = None
    gate_png: bytes | None = None
    cells: dict | None = None
    seconds: float = 0.0
    # plain defaults (class attributes) so results cached by an older version still read
    strategy: str = ""  # name of the strategy used (chosen from the panel unless --strategy)
    absent_markers: tuple[str, ...] = ()  # markers of skipped optional gates the file lacks
    partial: bool = False  # failed, but the populations above the failing gate were kept
    control_reference: dict | None = (
        None  # a control well's percentiles per population (_overrides)
    )

    def qc_row(self) -> dict:
        return {
            "file": self.file,
            "sample": self.sample,
            "status": self.status,
            "events": self.events,
            "message": self.message,
            "strategy": self.strategy,
            "absent_markers": "; ".join(self.absent_markers),
            "manual": outside_text(self.gating, "manual"),
            "control_gates": outside_text(self.gating, "control"),
            "control": str(self.metadata.get("control") or ""),
            "seconds": round(self.seconds, 3),
        }


def process_sample(
    spec: SampleSpec,
    settings: Settings,
    prior: dict | None = None,
    events_dir: str | None = None,
) -> SampleResult:
    """Load, preprocess, gate and summarise one sample; a bad input becomes a ``failed`` result, not an error.

    ``events_dir``: an existing folder where the task leaves the clustered population's events (all of
    them, ``<sample>.events.npy``) for the run to map onto the pooled clusters without reading the file
    again; when it is not a folder here (a remote Dask worker) the events travel in the result.
    """
    start = time.perf_counter()
    result = SampleResult(sample=spec.sample, file=str(spec.file), metadata=spec.metadata())
    result.strategy = Path(settings.strategy).stem
    try:
        with _steps_logged_at_debug():
            _run_steps(spec, settings, prior, result, events_dir)
    except _PartialGating as partial:
        result.status, result.partial = "failed", True
        result.message = f"{partial.error}; populations above the failed gate kept"
    except CytokitError as err:
        result.status, result.message = "failed", str(err)
    except MemoryError:
        result.status, result.message = "failed", f"{spec.file.name}: out of memory"
    except Exception as err:  # a bug must not stop the batch; keep the trace for --debug
        logger.debug("internal error on %s\n%s", spec.file, traceback.format_exc())
        result.status = "failed"
        result.message = f"{spec.file.name}: internal error {type(err).__name__}: {err}"
    result.seconds = time.perf_counter() - start
    return result


@contextlib.contextmanager
def _steps_logged_at_debug():
    """In a batch, the per-step INFO lines of every sample drown the one line per sample; keep them for
    ``--debug``. Warnings still show."""
    level = logger.level
    if level != logging.DEBUG:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _run_steps(
    spec: SampleSpec,
    settings: Settings,
    prior: dict | None,
    result: SampleResult,
    events_dir: str | None = None,
) -> None:
    from .. import pp
    from ..gating import _gatingml, detect_start, gate
    from ..io import read_fcs

    if not spec.file.is_file():
        raise FCSError("file not found", spec.file)
    adata = read_fcs(spec.file, panel=settings.panel)
    result.events = int(adata.n_obs)
    warnings = list(adata.uns.get(K.SAMPLE_INFO, {}).get("warnings", []))
    if adata.n_obs == 0:
        raise FCSError("the file holds zero events", spec.file)
    if settings.strategy_is_gatingml:
        _gatingml.apply_gatingml(adata, settings.strategy)
    if K.SPILLOVER in adata.uns:
        pp.compensate(adata)
    else:
        warnings.append("no spillover matrix in the file: not compensated")
    pp.transform(adata, method=settings.transform, cofactor=settings.cofactor)
    if not settings.strategy_is_gatingml:
        options = {"start_at": settings.start_at} if settings.start_at else {}
        if not settings.start_at:  # a file exported from a lineage gate (CD3+, CD3+CD4+)
            found, why = detect_start(adata, settings.strategy)
            if found:
                options["start_at"] = found
                warnings.append(
                    f"pre-gated: {why}; gated from {found} (--start-at {found} says so)"
                )
        options.update(gate_kwargs(settings.overrides))
        try:
            gate(adata, strategy=settings.strategy, prior=prior, **options)
        except CytokitError as err:
            if not _has_partial_gating(adata):
                raise
            _keep_gating(adata, settings, result)  # the gates above the failure stay reviewable
            raise _PartialGating(err) from None
    skipped, result.absent_markers = _skipped_gates(adata, settings)
    warnings += [w for w in _gating_warnings(adata) if not _about(w, skipped)]
    _keep_gating(adata, settings, result)
    if spec.meta.get("control"):
        result.control_reference = control_reference(adata, spec.meta["control"])
    events_name = (
        f"{spec.sample}{'.prior' if prior else ''}.events.npy"  # as the cache names passes
    )
    result.cells = _subsample_cells(adata, settings, spec, events_dir, events_name, warnings)
    if warnings:
        result.status = "warning"
        result.message = "; ".join(dict.fromkeys(str(w) for w in warnings))


def _keep_gating(adata, settings: Settings, result: SampleResult) -> None:
    """Gating record, population table, readouts, GatingML and figure of a gated sample into ``result``."""
    from .. import readouts
    from ..gating import _gatingml

    result.gating = _plain(adata.uns.get(K.GATING, {}))
    result.populations = gate_status_column(readouts.population_table(adata), result.gating)
    result.readouts = readouts.sample_readouts(adata)
    if not settings.strategy_is_gatingml:
        result.gatingml = _gatingml.export_gatingml(adata)
    if settings.figures:
        result.gate_png = _gating_figure(adata)


class _PartialGating(Exception):
    """A required gate failed after others were placed: the sample fails, what was gated is kept."""

    def __init__(self, error: CytokitError):
        super().__init__(str(error))
        self.error = error


def _has_partial_gating(adata) -> bool:
    """``gate()`` left the populations it placed before a required gate failed (``uns["gating"]["error"]``)."""
    gating = adata.uns.get(K.GATING) or {}
    pops = adata.obsm.get(K.POPULATIONS)
    return bool(gating.get("error")) and pops is not None and pops.shape[1] > 0


def _gating_warnings(adata) -> list[str]:
    return [str(w) for w in (adata.uns.get(K.GATING) or {}).get("warnings", [])]


def _skipped_gates(adata, settings: Settings) -> tuple[set[str], tuple[str, ...]]:
    """Gates skipped because the file lacks their markers (or their parent was skipped), and those markers.

    A skipped optional gate is about the panel, not the sample: the run reports the absent markers once
    (``absent_markers`` in qc.csv, the log, the report) instead of a warning on every sample.
    """
    from ..gating import GateSpec, load_strategy, resolve_dims

    gating = adata.uns.get(K.GATING) or {}
    gates = gating.get("gates", {})
    skipped = {str(g) for g, rec in gates.items() if str(rec.get("status")) == "skipped"}
    if "missing_markers" in gating:  # the engine's own record: {marker: [gates skipped for it]}
        return skipped, tuple(sorted(str(m) for m in gating["missing_markers"]))
    if not skipped or settings.strategy_is_gatingml:
        return skipped, ()
    strategy = load_strategy(settings.strategy)
    dims = sorted(
        {
            d
            for n in strategy.nodes
            if isinstance(n, GateSpec) and n.id in skipped
            for d in n.dims
            if not (n.params.get("bounds", {}).get(d, {}) or {}).get("optional")
        }
    )
    absent = [d for d, j in resolve_dims(adata, dims).items() if j is None]
    return skipped, tuple(absent)


def _about(warning: str, gate_ids: set[str]) -> bool:
    """Whether an engine warning is the note of one of ``gate_ids`` (``"<id> skipped: ..."``)."""
    head = warning.split(":", 1)[0].strip()
    return any(head in (g, f"{g} skipped") for g in gate_ids)


def _plain(obj):
    """uns["gating"] as plain Python (dicts, lists, numbers) so it pickles and serialises cheaply."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, pd.DataFrame):
        return obj.to_dict(orient="list")
    return obj


def _gating_figure(adata) -> bytes:
    from ..pl._gating import gating_path_png

    return gating_path_png(adata)  # drawn straight to PNG: no matplotlib in the worker


def _subsample_cells(
    adata,
    settings: Settings,
    spec: SampleSpec,
    events_dir: str | None,
    events_name: str,
    warnings: list[str],
) -> dict | None:
    """An equal-size random subsample of the sample's clustered population (live lymphocytes by default)
    for pooled clustering, and every event of that population for mapping onto the pooled clusters."""
    if settings.cells_per_sample <= 0:
        return None
    keep = _cluster_population(adata, settings.cluster_population, warnings)
    if keep is None:
        return None
    idx = np.flatnonzero(keep)
    roles = adata.var[K.ROLE].astype(str) if K.ROLE in adata.var else pd.Series("", adata.var_names)
    cols = np.flatnonzero(~roles.isin(["scatter", "time"]).to_numpy())
    everything = np.asarray(adata.X[np.ix_(idx, cols)], dtype=np.float32)  # one copy, not two
    rng = np.random.default_rng([settings.seed, _stable_hash(spec.sample)])
    sub = np.arange(idx.size)
    if idx.size > settings.cells_per_sample:
        sub = np.sort(rng.choice(idx.size, settings.cells_per_sample, replace=False))
    population = adata.obs[K.POPULATION].to_numpy()[idx[sub]] if K.POPULATION in adata.obs else None
    cells = {
        "X": everything[sub],
        "var_names": [str(v) for v in adata.var_names[cols]],
        "roles": [str(r) for r in roles.to_numpy()[cols]],
        "event": adata.obs[K.EVENT].to_numpy()[idx[sub]],
        "population": None if population is None else population.astype(str),
        "n_population": int(idx.size),
    }
    cells.update(_keep_all_events(everything, events_dir, events_name))
    return cells


def _cluster_population(adata, name: str, warnings: list[str]) -> np.ndarray | None:
    """Events of the clustered population; every event when the strategy has no such population and the
    default was asked for (a GatingML strategy, a file exported from a lower gate)."""
    pops = adata.obsm.get(K.POPULATIONS)
    if pops is not None and name in pops.columns:
        keep = pops[name].to_numpy(dtype=bool)  # not np.asarray: see readouts
        return keep if keep.any() else None
    if name == Settings.cluster_population:
        return np.ones(adata.n_obs, dtype=bool)
    warnings.append(f"no population {name!r} to cluster: sample left out of the clusters")
    return None


def _keep_all_events(X: np.ndarray, events_dir: str | None, name: str) -> dict:
    """Leave the population's events where the run maps them: a file beside the cache, else the result."""
    if events_dir and Path(events_dir).is_dir():
        path = Path(events_dir) / name
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, X, allow_pickle=False)
        tmp.replace(path)
        return {"events_file": str(path)}
    return {"events_X": X}


def _stable_hash(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode())
