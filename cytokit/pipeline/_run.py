"""A whole run: samples -> per-sample tasks (parallel, cached) -> trial tables, clusters, statistics, report."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from .._resources import resolve_definition
from ..errors import CytokitError
from ._cache import SampleCache
from ._execute import default_jobs, execute
from ._inputs import SampleSpec, discover_samples
from ._task import SampleResult, Settings, process_sample
from ._trial import cluster_pooled, write_run_report

__all__ = ["RunResult", "run"]

logger = logging.getLogger("cytokit")

ProgressFn = Callable[[int, int, SampleResult], None]


@dataclass
class RunResult:
    """The tables a run wrote (also as files in ``out``)."""

    out: Path
    qc: pd.DataFrame
    populations: pd.DataFrame
    summary: pd.DataFrame
    stats: pd.DataFrame
    clusters: pd.DataFrame | None = None
    da: pd.DataFrame | None = None

    @property
    def n_failed(self) -> int:
        return int((self.qc["status"] == "failed").sum()) if len(self.qc) else 0


def run(
    input: str | Path,
    out: str | Path = "results",
    *,
    manifest: str | Path | None = None,
    panel: str | Path | None = None,
    strategy: str | Path | None = None,
    jobs: int | None = None,
    scheduler: str | None = None,
    cluster: bool = True,
    seed: int = 0,
    cells_per_sample: int = 500,
    figures: bool = True,
    consistency: str = "sample",
    cluster_population: str = "live",
    da_method: str = "wilcoxon",
    progress: ProgressFn | None = None,
) -> RunResult:
    """Process every sample of ``input`` (folder or manifest CSV) and write the contract's files to ``out``.

    Bad samples are recorded as ``failed`` in ``qc.csv`` and never stop the others. A rerun into the same
    ``out`` reuses samples whose file and settings did not change. ``consistency="patient"`` re-places each
    sample's gates with its patient's consensus placement as a prior (openCyto's groupBy idea);
    ``"sample"`` places every sample on its own data only. ``cluster_population``: the gated population
    whose events are clustered (pooled subsample) and then all mapped to the clusters (``clusters.csv``);
    ``da_method``: ``"wilcoxon"`` or ``"glm"`` p-values in ``da.csv`` (:func:`cytokit.stats.differential_abundance`).
    """
    if consistency not in {"sample", "patient"}:
        raise CytokitError(f"consistency must be 'sample' or 'patient', not {consistency!r}")
    start = time.perf_counter()
    specs = discover_samples(input, manifest)
    settings = _settings(panel, strategy, seed, cells_per_sample, figures, consistency)
    settings = replace(settings, cluster_population=cluster_population)
    out = Path(out)
    (out / "gates").mkdir(parents=True, exist_ok=True)
    jobs = default_jobs() if jobs is None else max(1, int(jobs))
    logger.info(
        "%d sample(s), %s", len(specs), f"scheduler {scheduler}" if scheduler else f"{jobs} job(s)"
    )

    results = _process_all(specs, settings, out, jobs=jobs, scheduler=scheduler, progress=progress)
    tables = _write_tables(results, out)
    clustered = None
    if cluster:
        clustered = _guarded(
            "clustering",
            cluster_pooled,
            results,
            out,
            seed=seed,
            population=cluster_population,
            da_method=da_method,
        )
    clusters, da = clustered or (None, None)
    _guarded("report", write_run_report, tables, results, settings, out, clusters, da)
    logger.info(
        "finished %d sample(s) in %.1f s -> %s", len(specs), time.perf_counter() - start, out
    )
    return RunResult(out=out, clusters=clusters, da=da, **tables)


def _settings(
    panel, strategy, seed: int, cells_per_sample: int, figures: bool, consistency: str
) -> Settings:
    """Resolve shipped names to files now, so a typo is a usage error before any work starts."""
    from ..gating import load_strategy

    strategy_path = resolve_definition("gating", strategy or "treg")
    sources: tuple[Path, ...] = (strategy_path,)
    if strategy_path.suffix.lower() not in {".xml", ".wsp"}:
        sources = load_strategy(strategy_path).sources  # syntax errors surface here, once
    panel_path = resolve_definition("panels", panel) if panel else None
    digest = hashlib.sha256()
    for path in filter(None, (*sources, panel_path)):  # included strategy files count too
        digest.update(Path(path).read_bytes())
    return Settings(
        panel=str(panel_path) if panel_path else None,
        strategy=str(strategy_path),
        cells_per_sample=cells_per_sample,
        seed=seed,
        figures=figures,
        consistency=consistency,
        definitions=digest.hexdigest(),
    )


def _process_all(specs, settings, out: Path, *, jobs, scheduler, progress) -> list[SampleResult]:
    """Pass 1 places every sample's gates on its own data; with ``consistency="patient"`` a second pass
    re-places each sample with its patient's consensus placement as the prior."""
    cache = SampleCache(out / ".cache")
    run_pass = _PassRunner(specs, settings, out, cache, jobs=jobs, scheduler=scheduler)
    show = progress if settings.consistency != "patient" else None
    results = run_pass([None] * len(specs), tag="", progress=show)
    if settings.consistency == "patient":
        priors = _patient_priors(specs, results)
        results = run_pass(priors, tag="prior", progress=progress, previous=results)
    return _flag_jumps(specs, results)


class _PassRunner:
    """One pass over the samples: cached results reused, the rest executed, outputs written as they land."""

    def __init__(self, specs, settings, out, cache: SampleCache, *, jobs, scheduler):
        self.specs, self.settings, self.out, self.cache = specs, settings, out, cache
        self.jobs, self.scheduler = jobs, scheduler

    def __call__(self, priors, *, tag: str, progress, previous=None) -> list[SampleResult]:
        specs, total = self.specs, len(self.specs)
        keys = [self.cache.key(s, self.settings, p) for s, p in zip(specs, priors, strict=True)]
        results = [
            previous[i] if previous is not None and priors[i] is None else self.cache.get(s, k, tag)
            for i, (s, k) in enumerate(zip(specs, keys, strict=True))
        ]
        reused = sum(r is not None for r in results)
        if reused and previous is None:
            logger.info("reusing %d finished sample(s) from %s", reused, self.cache.folder)
        for i, r in enumerate(results):
            if r is not None:
                _finish(r, specs[i], self.out, progress, i + 1, total)
        todo = [i for i, r in enumerate(results) if r is None]
        events_dir = self.cache.folder  # each task leaves its clustered events here (_task.py)
        events_dir.mkdir(parents=True, exist_ok=True)
        tasks = [(specs[i], self.settings, priors[i], str(events_dir)) for i in todo]
        for j, outcome in execute(process_sample, tasks, jobs=self.jobs, scheduler=self.scheduler):
            i = todo[j]
            if isinstance(outcome, BaseException):
                outcome = _crashed(specs[i], outcome)
            results[i] = outcome
            self.cache.put(specs[i], keys[i], outcome, tag)
            _finish(
                outcome, specs[i], self.out, progress, sum(r is not None for r in results), total
            )
        return results


def _patient_members(specs: list[SampleSpec], results: list[SampleResult]) -> list[list[int]]:
    """Indices of each patient's successfully gated samples."""
    by_patient: dict[str, list[int]] = {}
    for i, (spec, r) in enumerate(zip(specs, results, strict=True)):
        if spec.patient and r.status != "failed" and r.gating:
            by_patient.setdefault(spec.patient, []).append(i)
    return list(by_patient.values())


def _flag_jumps(specs: list[SampleSpec], results: list[SampleResult]) -> list[SampleResult]:
    """Mark ``warning`` the samples whose gates jumped away from the same patient's other samples."""
    from ..gating import placement_jumps

    results = list(results)
    for members in _patient_members(specs, results):
        if len(members) < 3:  # a median of one other sample says nothing
            continue
        for i in members:
            others = [results[j].gating for j in members if j != i]
            jumps = placement_jumps(results[i].gating, others)
            if jumps:
                message = "; ".join(filter(None, [results[i].message, *jumps]))
                results[i] = replace(results[i], status="warning", message=message)
                logger.warning("%s: %s", specs[i].sample, "; ".join(jumps))
    return results


def _patient_priors(specs: list[SampleSpec], results: list[SampleResult]) -> list[dict | None]:
    """Each sample's prior: the consensus placement of its patient's other successful samples."""
    from ..gating import consensus_prior

    priors: list[dict | None] = [None] * len(specs)
    for members in _patient_members(specs, results):
        if len(members) < 2:
            continue
        prior = consensus_prior([results[i].gating for i in members])
        for i in members:
            priors[i] = prior
    return priors


def _crashed(spec: SampleSpec, err: BaseException) -> SampleResult:
    return SampleResult(
        sample=spec.sample,
        file=str(spec.file),
        status="failed",
        message=f"{spec.file.name}: worker stopped ({type(err).__name__}: {err})",
        metadata=spec.metadata(),
    )


def _finish(
    result: SampleResult, spec: SampleSpec, out: Path, progress, n_done: int, total: int
) -> None:
    """Write what a sample produced at once, so nothing computed is lost if the run is interrupted."""
    if result.gatingml:
        (out / "gates" / f"{spec.sample}.xml").write_bytes(result.gatingml)
    if result.gate_png:
        (out / "gates" / f"{spec.sample}.png").write_bytes(result.gate_png)
    if result.status == "failed":
        logger.error("%s", result.message)
    if progress is not None:
        progress(n_done, total, result)


def _write_tables(results: list[SampleResult], out: Path) -> dict[str, pd.DataFrame]:
    from .. import readouts, stats

    qc = pd.DataFrame([r.qc_row() for r in results])
    qc["events"] = qc["events"].astype("Int64")  # a file that could not be read has no count
    meta_cols = ["sample", "patient", "timepoint", "day"]
    ok = [r for r in results if r.status != "failed"]
    pops = [r.populations.assign(**_meta(r, meta_cols)) for r in ok if r.populations is not None]
    populations = pd.concat(pops, ignore_index=True) if pops else pd.DataFrame(columns=meta_cols)
    populations = populations[meta_cols + [c for c in populations.columns if c not in meta_cols]]
    summary = pd.DataFrame([{**r.metadata, **r.readouts} for r in ok])
    if summary.empty:
        summary = pd.DataFrame(columns=meta_cols)
    else:
        summary = readouts.add_baseline_change(summary)
    test_table = stats.paired_tests(summary) if len(summary) else pd.DataFrame()
    for name, table in {
        "qc": qc,
        "populations": populations,
        "summary": summary,
        "stats": test_table,
    }.items():
        table.to_csv(out / f"{name}.csv", index=False)
    return {"qc": qc, "populations": populations, "summary": summary, "stats": test_table}


def _meta(result: SampleResult, cols: list[str]) -> dict:
    return {c: result.metadata.get(c) for c in cols}


def _guarded(what: str, func, *args, **kwargs):
    """Run a trial-level step; its failure is logged and never loses the tables already written."""
    try:
        return func(*args, **kwargs)
    except CytokitError as err:
        logger.error("%s failed: %s", what, err)
    except Exception as err:
        logger.exception("%s failed: %s: %s", what, type(err).__name__, err)
    return None
