"""What mapping every event onto the clusters adds to a run: four 1M-event files, with and without it.

    python benchmarks/bench_mapping.py [--events 1000000] [--repeats 2] [--jobs 2]

A run clusters a pooled subsample (500 events per sample); since issue 10 it also keeps every event of each
sample's clustered population (live lymphocytes) beside the cache and maps them onto the fitted clusters, so
``clusters.csv`` counts every event. This benchmark runs ``cytokit.run`` on four simulated files (2 patients x
D0/D8, generated once into ``benchmarks/_data/``) twice per repeat, into fresh folders:

- ``every event``: the run as shipped;
- ``subsample only``: the same run with the per-sample task keeping only its subsample and the cluster counts
  taken from it (the behaviour before issue 10), patched in this process (workers are forked from it).

Goal: the every-event run takes at most 20 % longer (best of the repeats, CPU seconds of the process and its
workers; wall seconds are printed beside). Exit status 1 when the goal is missed. Also usable through
``benchmarks/run.py`` (``run(quick)``).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
GOAL = 1.20  # issue 10: mapping every event adds at most 20 % to the run time


def make_files(n_events: int) -> Path:
    from cytokit.datasets import simulate_sample

    folder = HERE / "_data" / f"mapping_{n_events}"
    folder.mkdir(parents=True, exist_ok=True)
    for patient in (1, 2):
        for day in (0, 8):
            path = folder / f"P0{patient}_D{day}.fcs"
            if not path.is_file():
                simulate_sample(n_events, seed=7, patient=patient, day=day).write(path)
    return folder


@contextmanager
def subsample_only():
    """The run as before issue 10: the task keeps its subsample only; counts come from the subsample."""
    from cytokit.pipeline import _task, _trial

    def old_subsample_cells(adata, settings, spec, events_dir, events_name, warnings):
        keep = _task._cluster_population(adata, settings.cluster_population, warnings)
        idx = np.flatnonzero(keep)
        rng = np.random.default_rng([settings.seed, _task._stable_hash(spec.sample)])
        if idx.size > settings.cells_per_sample:
            idx = np.sort(rng.choice(idx, settings.cells_per_sample, replace=False))
        roles = adata.var["role"].astype(str)
        cols = np.flatnonzero(~roles.isin(["scatter", "time"]).to_numpy())
        return {
            "X": np.asarray(adata.X[idx][:, cols], dtype=np.float32),
            "var_names": [str(v) for v in adata.var_names[cols]],
            "roles": [str(r) for r in roles.to_numpy()[cols]],
            "event": adata.obs["event"].to_numpy()[idx],
            "population": adata.obs["population"].to_numpy()[idx].astype(str),
            "events_X": None,
        }

    def old_abundance(results, model):
        for r in results:
            if r.cells:
                r.cells["events_X"] = r.cells["X"]  # the subsample stands for the sample
        return original_abundance(results, model)

    original_cells, original_abundance = _task._subsample_cells, _trial.mapped_abundance
    _task._subsample_cells, _trial.mapped_abundance = old_subsample_cells, old_abundance
    try:
        yield
    finally:
        _task._subsample_cells, _trial.mapped_abundance = original_cells, original_abundance


def timed_run(folder: Path, jobs: int) -> tuple[float, float, int]:
    import cytokit as ck

    with tempfile.TemporaryDirectory() as tmp:
        before = (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
        start = time.perf_counter()
        result = ck.run(folder, Path(tmp) / "out", jobs=jobs, figures=False)
        wall = time.perf_counter() - start
        after = (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
        cpu = sum(
            a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime
            for a, b in zip(after, before, strict=True)
        )
        counted = int(result.clusters["count"].sum())
    return cpu, wall, counted


def measure(n_events: int, repeats: int, jobs: int) -> dict:
    folder = make_files(n_events)
    timed_run(folder, jobs)  # warm up: numba compilation, file cache
    every, subsample = [], []
    for _ in range(repeats):
        every.append(timed_run(folder, jobs))
        with subsample_only():
            subsample.append(timed_run(folder, jobs))
    best_every = min(every)
    best_sub = min(subsample)
    return {
        "events_per_file": n_events,
        "every_event_cpu_s": best_every[0],
        "every_event_wall_s": min(w for _, w, _ in every),
        "subsample_cpu_s": best_sub[0],
        "subsample_wall_s": min(w for _, w, _ in subsample),
        "events_counted": best_every[2],
        "subsample_events_counted": best_sub[2],
        "ratio_cpu": best_every[0] / best_sub[0],
        "ratio_wall": min(w for _, w, _ in every) / min(w for _, w, _ in subsample),
    }


def run(quick: bool) -> list[dict]:
    """Rows for benchmarks/run.py."""
    row = measure(200_000 if quick else 1_000_000, 1 if quick else 2, 2)
    return [
        {
            "task": f"run of 4 x {row['events_per_file']:,} events, every event mapped vs subsample only",
            "cytokit_s": row["every_event_cpu_s"],
            "baseline": "same run, subsample only (goal: <= 1.20x)",
            "baseline_s": row["subsample_cpu_s"],
            "ratio": row["subsample_cpu_s"] / row["every_event_cpu_s"],
        }
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    row = measure(args.events, args.repeats, args.jobs)
    for key, value in row.items():
        print(f"{key:>26}: {value:.3f}" if isinstance(value, float) else f"{key:>26}: {value}")
    ok = row["ratio_cpu"] <= GOAL
    print(
        f"every-event mapping adds {100 * (row['ratio_cpu'] - 1):.1f} % CPU time: "
        + ("goal met" if ok else f"goal MISSED (> {100 * (GOAL - 1):.0f} %)")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
