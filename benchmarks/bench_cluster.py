"""Unsupervised analysis speed: cytokit's FlowSOM, UMAP and a whole trial's clustering step.

Rows:
- ``flowsom`` on 200,000 events x 10 markers (10x10 SOM, 10 metaclusters) against the ``flowsom`` PyPI
  package when it is importable, else against the figure measured on this kind of machine and recorded in
  ``shared/reference/landscape.md`` (FlowSOM python, 6.1 s for 200k events x 10 markers).
- ``umap`` on the default pooled subsample of a 24-sample trial, warm (numba already compiled), against
  umap-learn called the usual way (its own nearest-neighbour descent), same seed and size.
- the clustering step of a 24-sample trial as a run does it, in a fresh process (numba compilation
  included): FlowSOM + UMAP on the pooled subsample, against the goal of 60 s.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
LANDSCAPE_FLOWSOM_200K_S = (
    6.1  # FlowSOM (python) on 200k x 10 markers, shared/reference/landscape.md
)
TRIAL_SAMPLES = 24
TRIAL_GOAL_S = 60.0


def make_events(n_events: int, n_markers: int = 10, n_pops: int = 15, seed: int = 0):
    """Events like transformed cytometry data: populations on a 0..1 scale, negative/positive levels."""
    import anndata as ad

    rng = np.random.default_rng(seed)
    levels = np.where(
        rng.random((n_pops, n_markers)) < 0.4, rng.uniform(0.45, 0.75, (n_pops, n_markers)), 0.2
    )
    weights = rng.dirichlet(np.full(n_pops, 1.5))
    pop = rng.choice(n_pops, size=n_events, p=weights)
    X = rng.normal(levels[pop], rng.uniform(0.03, 0.07, n_markers)).astype(np.float32)
    var = pd.DataFrame({"role": "lineage"}, index=[f"M{i + 1}" for i in range(n_markers)])
    adata = ad.AnnData(X, var=var)
    adata.obs["sample"] = pd.Categorical([f"S{i % TRIAL_SAMPLES:02d}" for i in range(n_events)])
    return adata


def best_of(fn, repeats: int) -> tuple[float, float]:
    """Best CPU seconds of the process (all threads) and best wall seconds over ``repeats`` calls.

    CPU time is the comparable figure on a shared machine (as in bench_preprocess); wall time also counts
    other people's processes.
    """
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return min(cpu), min(wall)


def bench_flowsom(n_events: int, repeats: int) -> dict:
    from cytokit import tl

    adata = make_events(n_events)
    cpu, wall = best_of(lambda: tl.flowsom(adata, n_clusters=10, seed=0), repeats)
    try:
        import flowsom  # noqa: F401
    except ImportError:
        name = "FlowSOM py (landscape.md, wall)"
        theirs = LANDSCAPE_FLOWSOM_200K_S * n_events / 200_000
    else:
        name, theirs = "flowsom (PyPI)", best_of(lambda: _flowsom_pypi(adata), repeats)[0]
    task = f"flowsom {n_events // 1000}k x 10 markers (cpu s; wall {wall:.1f} s)"
    return row(task, cpu, name, theirs)


def _flowsom_pypi(adata) -> None:
    import flowsom as fs

    fs.FlowSOM(
        adata.copy(), cols_to_use=list(adata.var_names), n_clusters=10, xdim=10, ydim=10, seed=0
    )


def bench_umap(n_events: int, repeats: int) -> dict:
    import umap as umap_learn

    from cytokit import tl

    adata = make_events(n_events, seed=1)

    def theirs_fn(X):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            umap_learn.UMAP(n_neighbors=15, min_dist=0.3, random_state=0).fit_transform(X)

    tl.umap(adata[:500].copy(), n_epochs=10)  # compile numba once for both sides
    theirs_fn(adata.X[:5000])  # (pynndescent compiles on data of 4096+ events)
    cpu, wall = best_of(lambda: tl.umap(adata, seed=0), repeats)
    theirs = best_of(lambda: theirs_fn(adata.X), repeats)[0]
    task = f"umap {n_events // 1000}k pooled, warm (cpu s; wall {wall:.1f} s)"
    return row(task, cpu, "umap-learn (own kNN)", theirs)


def trial_step(n_events: int) -> None:
    """What a run does after pooling: FlowSOM, labels, abundance, UMAP (in this process)."""
    from cytokit import tl

    adata = make_events(n_events, n_markers=11, seed=2)
    tl.flowsom(adata, n_clusters=10, seed=0)
    tl.cluster_abundance(adata)
    tl.umap(adata, seed=0)


def bench_trial(n_events: int) -> dict:
    """CPU seconds of a fresh process (imports and numba compilation included); wall seconds in the label.

    CPU time is what an otherwise idle 2-core machine would wait (UMAP with a seed runs on one thread);
    on a shared machine, wall time also counts other people's processes.
    """
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import bench_cluster as b; b.trial_step({n_events})"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    task = f"trial: {TRIAL_SAMPLES} samples x {n_events // TRIAL_SAMPLES} events, flowsom+umap, cold (cpu s; wall {wall:.0f} s)"
    return row(task, cpu, "goal", TRIAL_GOAL_S)


def row(task: str, ours: float, baseline: str, theirs: float) -> dict:
    return {
        "task": task,
        "cytokit_s": ours,
        "baseline": baseline,
        "baseline_s": theirs,
        "ratio": theirs / ours,
    }


def run(quick: bool = False) -> list[dict]:
    from cytokit import tl

    pooled = min(TRIAL_SAMPLES * tl.EVENTS_PER_SAMPLE, tl.MAX_POOLED_EVENTS)
    if quick:
        return [bench_flowsom(20_000, 1), bench_umap(2_000, 1)]
    return [bench_flowsom(200_000, 3), bench_umap(pooled, 1), bench_trial(pooled)]


if __name__ == "__main__":
    for r in run("--quick" in sys.argv):
        print(r)
