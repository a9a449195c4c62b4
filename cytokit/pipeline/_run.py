"""A whole run: samples -> per-sample tasks (parallel, cached) -> trial tables, clusters, statistics, report."""

from __future__ import annotations

import hashlib
import inspect
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from .._resources import resolve_definition
from ..errors import CytokitError
from ._cache import SampleCache
from ._choose import choose_strategy, file_markers
from ._execute import WorkerDied, default_jobs, execute
from ._inputs import SampleSpec, control_rows, discover_samples
from ._overrides import (
    CONTROL_PERCENTILE,
    control_entries,
    control_marker,
    load_overrides,
    outside_text,
)
from ._task import SampleResult, Settings, process_sample
from ._trial import N_CLUSTERS, cluster_pooled, write_run_report

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
    n_clusters: int = N_CLUSTERS,
    da_method: str = "auto",
    start_at: str | None = None,
    auc_window: tuple[float, float] | str | None = None,
    overrides: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> RunResult:
    """Process every sample of ``input`` (folder or manifest CSV) and write the contract's files to ``out``.

    Bad samples are recorded as ``failed`` in ``qc.csv`` and never stop the others. A rerun into the same
    ``out`` reuses samples whose file and settings did not change. ``consistency="patient"`` re-places each
    sample's gates with its patient's consensus placement as a prior (openCyto's groupBy idea);
    ``"sample"`` places every sample on its own data only. ``cluster_population``: the gated population
    whose events are clustered (pooled subsample) and then all mapped to the clusters (``clusters.csv``);
    ``n_clusters``: FlowSOM metaclusters; ``da_method``: ``"auto"``, ``"wilcoxon"`` or ``"glm"`` p-values in
    ``da.csv`` (:func:`cytokit.stats.differential_abundance`).

    Without ``strategy``, each file gets the shipped strategy that fits its markers (``treg`` with FOXP3,
    ``treg_surface`` with CD25 and CD127 but no FOXP3); the choice is logged, in ``qc.csv`` (``strategy``)
    and in the report. ``start_at`` names the population the files were exported from (e.g. ``"CD4"``):
    every event belongs to it and the gates above it are skipped. ``auc_window`` (``(first_day, last_day)``
    or ``"START:END"``) bounds the Treg change AUC; default the whole follow-up. ``overrides``: a YAML
    file of a reviewer's corrections (``{sample, gate, marker, value}`` or ``{sample, gate, fixed}``
    entries, see ``pipeline/_overrides.py``), applied to those samples only and marked ``manual``.
    Control wells (manifest ``control``: ``FMO:Ki67``...) are processed first and set that marker's
    thresholds on the stained samples of their patient (or ``batch``).

    Raises
    ------
    CytokitError
        A usage error found before any sample is processed: no samples, a panel or strategy that cannot
        be loaded, an unknown ``start_at`` population, a bad ``auc_window``, an overrides file that
        cannot be applied.
    """
    if consistency not in {"sample", "patient"}:
        raise CytokitError(f"consistency must be 'sample' or 'patient', not {consistency!r}")
    start = time.perf_counter()
    auc_window = parse_auc_window(auc_window)
    specs = discover_samples(input, manifest)
    plan = _plan(specs, panel, strategy, start_at, seed, cells_per_sample, figures, consistency)
    settings = [replace(s, cluster_population=cluster_population) for s in plan.settings]
    if overrides is not None:
        entries = load_overrides(overrides, specs, settings)
        settings = [
            replace(s, overrides=e) if e else s for s, e in zip(settings, entries, strict=True)
        ]
    out = Path(out)
    (out / "gates").mkdir(parents=True, exist_ok=True)
    jobs = default_jobs() if jobs is None else max(1, int(jobs))
    logger.info(
        "%d sample(s), %s", len(specs), f"scheduler {scheduler}" if scheduler else f"{jobs} job(s)"
    )

    results, control_note = _process_all(
        specs, settings, out, jobs=jobs, scheduler=scheduler, progress=progress
    )
    tables = _write_tables(results, out, auc_window=auc_window)
    clustered = None
    if cluster:
        clustered = _guarded(
            "clustering",
            cluster_pooled,
            results,
            out,
            seed=seed,
            population=cluster_population,
            n_clusters=n_clusters,
            da_method=da_method,
        )
    clusters, da = clustered or (None, None)
    notes = {**plan.notes, "AUC window": _auc_text(auc_window)}
    if control_note:
        notes["control wells"] = control_note
    if overrides is not None:
        notes["reviewer overrides"] = _overrides_note(results, overrides)
    if absent := absent_markers_note(results):
        notes["absent markers"] = absent
    if not start_at and (exports := _recognised_exports(results)):
        notes["pre-gated files"] = exports
    _guarded(
        "report", write_run_report, tables, results, settings[0], out, clusters, da, notes=notes
    )
    logger.info(
        "finished %d sample(s) in %.1f s -> %s", len(specs), time.perf_counter() - start, out
    )
    return RunResult(out=out, clusters=clusters, da=da, **tables)


@dataclass
class _Plan:
    """Per-sample settings of a run (the strategy may differ per file) and notes for the report."""

    settings: list[Settings]
    notes: dict


def _plan(
    specs, panel, strategy, start_at, seed: int, cells_per_sample: int, figures: bool, consistency
) -> _Plan:
    """Resolve and load every definition now, so a bad panel, strategy or option is one usage error
    before any work starts (not one failure per sample)."""
    from ..panels import load_panel

    panel_path = resolve_definition("panels", panel) if panel else None
    loaded_panel = load_panel(panel_path) if panel_path else None
    if strategy:
        chosen = [(str(strategy), "")] * len(specs)
    else:
        chosen = _choose_per_file(specs, loaded_panel)
    paths = {name: _check_strategy(name, start_at) for name, _ in set(chosen)}
    base = Settings(
        panel=str(panel_path) if panel_path else None,
        cells_per_sample=cells_per_sample,
        seed=seed,
        figures=figures,
        consistency=consistency,
        start_at=start_at or None,
    )
    by_name = {}
    for name, (path, sources) in paths.items():
        digest = hashlib.sha256()
        for file in filter(None, (*sources, panel_path)):  # included strategy files count too
            digest.update(Path(file).read_bytes())
        by_name[name] = replace(base, strategy=str(path), definitions=digest.hexdigest())
    notes = {"strategy choice": _choice_text(chosen, bool(strategy))}
    if start_at:
        notes["pre-gated files"] = (
            f"files exported from the {start_at} gate (--start-at {start_at}): every event counted as "
            f"{start_at}, the gates above it skipped"
        )
    logger.info("strategy: %s", notes["strategy choice"])
    if start_at:
        logger.info("pre-gated: %s", notes["pre-gated files"])
    return _Plan([by_name[name] for name, _ in chosen], notes)


def _choose_per_file(specs, panel) -> list[tuple[str, str]]:
    """Each file's fitting shipped strategy; a file that cannot be read (its task will fail and say why)
    takes the run's most common choice, so it neither changes nor clutters the reported choice."""
    markers = [file_markers(s.file, panel) for s in specs]
    chosen = [choose_strategy(m) if m is not None else None for m in markers]
    readable = [c for c in chosen if c is not None]
    # most common, ties to the first file's choice (deterministic, unlike max over a set)
    common = Counter(readable).most_common(1)[0][0] if readable else choose_strategy(None)
    return [c if c is not None else common for c in chosen]


def _check_strategy(name: str, start_at: str | None) -> tuple[Path, tuple[Path, ...]]:
    """The strategy's file and the files it includes, loaded once (syntax, methods, references), and
    ``start_at`` checked on it."""
    from ..gating import gate, load_strategy

    path = resolve_definition("gating", name)
    if path.suffix.lower() in {".xml", ".wsp"}:
        if start_at:
            raise CytokitError(
                "--start-at works with cytokit strategies (YAML), not fixed GatingML/FlowJo gates",
                path,
            )
        from ..gating import load_gatingml

        try:
            load_gatingml(path)
        except CytokitError:
            raise
        except Exception as err:  # FlowKit's parse errors: still one usage error naming the file
            msg = " ".join(f"{type(err).__name__}: {err}".split())[:200]
            raise CytokitError(f"cannot load gates ({msg})", path) from None
        return path, (path,)
    strat = load_strategy(path)  # syntax errors and unknown methods surface here, once
    if start_at:
        if start_at not in strat.names:
            raise CytokitError(
                f"--start-at {start_at!r} is not a population of the strategy "
                f"(have: {', '.join(strat.names)})",
                path,
            )
        if "start_at" not in inspect.signature(gate).parameters:
            raise CytokitError("--start-at is not supported by this version's gating engine")
    return path, tuple(strat.sources)


def _choice_text(chosen: list[tuple[str, str]], explicit: bool) -> str:
    """``treg_surface (CD25 and CD127 without FOXP3)`` or, when files differ, each choice with its count."""
    if not chosen:
        return ""
    if explicit:
        return f"{Path(chosen[0][0]).stem} (--strategy)"
    counts: dict[tuple[str, str], int] = {}
    for item in chosen:
        counts[item] = counts.get(item, 0) + 1
    if len(counts) == 1:
        name, why = chosen[0]
        return f"{name}, chosen from the panel ({why})"
    parts = [f"{name} for {n} file(s) ({why})" for (name, why), n in counts.items()]
    return "chosen per file from its panel: " + "; ".join(parts)


def parse_auc_window(window) -> tuple[float, float] | None:
    """``(start, end)`` days from ``"START:END"`` or a pair; None (whole follow-up) stays None."""
    if window is None or window == "":
        return None
    if isinstance(window, str):
        parts = window.split(":")
        if len(parts) != 2:
            raise CytokitError(f"AUC window {window!r} is not START:END (days, e.g. 0:84)")
    else:
        parts = list(window)
    try:
        lo, hi = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise CytokitError(f"AUC window {window!r} is not START:END (days, e.g. 0:84)") from None
    if not hi > lo:
        raise CytokitError(f"AUC window {window!r}: END must be after START")
    return lo, hi


def _auc_text(window: tuple[float, float] | None) -> str:
    if window is None:
        return "whole follow-up: each patient's baseline day to their last sample"
    return f"days {window[0]:g} to {window[1]:g} (--auc-window), clipped to each patient's samples"


def _process_all(
    specs, settings, out: Path, *, jobs, scheduler, progress
) -> tuple[list[SampleResult], str]:
    """Control wells first (their thresholds go into the stained samples' settings); then pass 1
    places every sample's gates on its own data; with ``consistency="patient"`` a second pass re-places
    each sample with its patient's consensus placement as the prior. Returns the results and the
    report's note on control wells ("" without any)."""
    cache = SampleCache(out / ".cache")
    settings, control_note = _controls_first(specs, settings, out, cache, jobs, scheduler)
    run_pass = _PassRunner(specs, settings, out, cache, jobs=jobs, scheduler=scheduler)
    patient_pass = settings[0].consistency == "patient"
    show = progress if not patient_pass else None
    results = run_pass([None] * len(specs), tag="", progress=show)
    if patient_pass:
        priors = _patient_priors(specs, results)
        results = run_pass(priors, tag="prior", progress=progress, previous=results)
    return _flag_absent_markers(specs, _flag_jumps(specs, results)), control_note


def _controls_first(specs, settings, out, cache, jobs, scheduler) -> tuple[list, str]:
    """Process the control wells, then set their marker's thresholds on the stained samples of the same
    patient / batch (status ``control``; a reviewer's override of the same threshold still wins)."""
    controls = [i for i, s in enumerate(specs) if control_marker(s.meta.get("control"))]
    if not controls:
        return settings, ""
    sub = _PassRunner([specs[i] for i in controls], [settings[i] for i in controls], out, cache,
                      jobs=jobs, scheduler=scheduler)  # fmt: skip
    done = sub([None] * len(controls), tag="", progress=None)
    references = {i: r.control_reference for i, r in zip(controls, done, strict=True)}
    entries = control_entries(specs, settings, {i: r for i, r in references.items() if r})
    settings = list(settings)
    for i, extra in entries.items():
        settings[i] = replace(settings[i], overrides=(*tuple(extra), *settings[i].overrides))
    used = sorted({e["gate"] + " " + e["marker"] for extra in entries.values() for e in extra})
    marked = [i for i in controls if control_marker(specs[i].meta.get("control"))[1]]
    bare = [i for i in controls if i not in marked]
    wells = ", ".join(f"{specs[i].sample} ({specs[i].meta.get('control')})" for i in marked)
    notes = []
    if bare:  # unstained / compensation wells: not the trial's cells, no threshold
        names = ", ".join(f"{specs[i].sample} ({specs[i].meta.get('control')})" for i in bare)
        notes.append(f"kept out of the trial's tables: {names}")
    if marked and not entries:
        notes.append(f"control wells {wells}: no stained sample of the same patient/batch")
    elif marked:
        notes.append(
            f"control wells {wells}: thresholds of {', '.join(used)} on {len(entries)} stained "
            f"sample(s) of the same patient/batch placed at the {CONTROL_PERCENTILE:g}th percentile "
            "of the control's events in the same population (FMO convention; marked 'control')"
        )
    note = "; ".join(notes)
    logger.info("%s", note)
    return settings, note


def _overrides_note(results: list[SampleResult], path) -> str:
    manual = [r.sample for r in results if r.gating and outside_text(r.gating, "manual")]
    return f"{len(manual)} sample(s) with gates set by a reviewer ({Path(path).name}): " + (
        ", ".join(manual) or "none applied"
    )


def _recognised_exports(results: list[SampleResult]) -> str:
    """The report's note on files recognised as exported from a parent gate ("" without any)."""
    found = Counter(
        str(r.gating.get("start_at")) for r in results if (r.gating or {}).get("start_at")
    )
    if not found:
        return ""
    gates = ", ".join(f"{gate} ({n})" for gate, n in sorted(found.items()))
    return (
        f"{sum(found.values())} file(s) recognised as exported from a parent gate and gated from it: "
        f"{gates} (one peak on its marker, no negatives; --start-at says so explicitly)"
    )


def absent_markers_note(results: list[SampleResult]) -> str:
    """The run's one note on optional markers no sample has (their gates skipped), or ""."""
    everywhere = _absent_everywhere(results)
    if not everywhere:
        return ""
    return (
        f"not in the panel: {', '.join(sorted(everywhere))} (optional: their gates were skipped "
        "and their readouts are empty in every sample)"
    )


def _absent_everywhere(results: list[SampleResult]) -> set[str]:
    """Markers absent from every sample whose gating ran to the end. A sample that failed part-way
    never reached the optional gates, so its (empty) list says nothing about the panel: counted in,
    it emptied the intersection and every other sample was warned for the panel's absent markers.
    Partly gated samples count only when no sample was gated to the end."""
    gated = [r for r in results if r.status != "failed"] or [r for r in results if r.partial]
    return set.intersection(*(set(r.absent_markers) for r in gated)) if gated else set()


def _flag_absent_markers(
    specs: list[SampleSpec], results: list[SampleResult]
) -> list[SampleResult]:
    """Absent optional markers are a panel fact, said once for the run; a marker absent from only some
    samples is about those samples (a file from another panel), so they get a ``warning``."""
    everywhere = _absent_everywhere(results)
    note = absent_markers_note(results)
    if note:
        logger.info("optional markers %s", note)
    out = list(results)
    for i, r in enumerate(out):
        own = [m for m in r.absent_markers if m not in everywhere]
        if own and r.status != "failed":
            why = (
                f"marker(s) {', '.join(own)} absent from this file but present in other samples "
                "of the run; their gates were skipped"
            )
            out[i] = replace(r, status="warning", message="; ".join(filter(None, [r.message, why])))
            logger.warning("%s: %s", specs[i].sample, why)
    return out


class _PassRunner:
    """One pass over the samples: cached results reused, the rest executed, outputs written as they land."""

    def __init__(self, specs, settings, out, cache: SampleCache, *, jobs, scheduler):
        self.specs, self.settings, self.out, self.cache = specs, settings, out, cache
        self.jobs, self.scheduler = jobs, scheduler

    def __call__(self, priors, *, tag: str, progress, previous=None) -> list[SampleResult]:
        specs, total = self.specs, len(self.specs)
        keys = [
            self.cache.key(s, self.settings[i], p)
            for i, (s, p) in enumerate(zip(specs, priors, strict=True))
        ]
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
        tasks = [(specs[i], self.settings[i], priors[i], str(events_dir)) for i in todo]
        for j, outcome in execute(process_sample, tasks, jobs=self.jobs, scheduler=self.scheduler):
            i = todo[j]
            if isinstance(outcome, BaseException):
                outcome = _crashed(specs[i], outcome, self.settings[i])
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


def _crashed(spec: SampleSpec, err: BaseException, settings: Settings) -> SampleResult:
    """The failed result of a sample whose task never returned (its worker died, or Dask gave up)."""
    if isinstance(err, WorkerDied):
        message = f"{spec.file.name}: {err} while processing this sample"
    else:
        message = f"{spec.file.name}: worker stopped ({type(err).__name__}: {err})"
    return SampleResult(
        sample=spec.sample,
        file=str(spec.file),
        status="failed",
        message=" ".join(message.split()),
        metadata=spec.metadata(),
        strategy=Path(settings.strategy).stem,
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


def _write_tables(
    results: list[SampleResult], out: Path, *, auc_window: tuple[float, float] | None = None
) -> dict[str, pd.DataFrame]:
    from .. import readouts, stats

    qc = pd.DataFrame([r.qc_row() for r in results])
    qc["events"] = qc["events"].astype("Int64")  # a file that could not be read has no count
    meta_cols = ["sample", "patient", "timepoint", "day"]
    # a partial sample (a required gate failed) keeps the populations placed above the failure
    ok = [r for r in results if r.status != "failed" or r.partial]
    pops = [r.populations.assign(**_meta(r, meta_cols)) for r in ok if r.populations is not None]
    if pops:  # columns a partial sample never filled are left out of the concat (pandas warns on
        # all-NA columns) and come back, in the samples' column order, as empty cells
        order = list(dict.fromkeys(c for p in pops for c in p.columns))
        populations = pd.concat(
            [p.dropna(axis=1, how="all") for p in pops], ignore_index=True
        ).reindex(columns=order)
    else:
        populations = pd.DataFrame(columns=meta_cols)
    populations = populations[meta_cols + [c for c in populations.columns if c not in meta_cols]]
    summary = pd.DataFrame([{**r.metadata, **r.readouts} for r in ok])
    if summary.empty:
        summary = pd.DataFrame(columns=meta_cols)
    else:  # control wells (manifest `control`) are listed but never a baseline, a pair or a statistic
        control = control_rows(summary)
        trial = readouts.add_baseline_change(summary.loc[~control], auc_window=auc_window)
        summary = pd.concat([trial, summary.loc[control]]).loc[summary.index]
    trial = summary.loc[~control_rows(summary)]
    test_table = stats.paired_tests(trial) if len(trial) else pd.DataFrame()
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
