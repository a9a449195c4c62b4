"""Speed of automated gating: the shipped Treg strategy on a 1M-event transformed sample, one core.

Goal (issue #3): under 1 s for 1M events (placement on subsamples, vectorised application). The
sample is simulated once (``cytokit.datasets.simulate_sample``), compensated and transformed; only
``cytokit.gate`` is timed (best of repeats, the strategy YAML already parsed). The time is the CPU time
of the process (``time.process_time``): gating is single-threaded numpy, and CPU time stays meaningful
on a shared machine where wall time is inflated by other processes; wall time is reported alongside.
"""

from __future__ import annotations

import time

import numpy as np
from anndata import AnnData

GOAL_S = 1.0


def _sample(n_events: int) -> AnnData:
    import cytokit as ck
    from cytokit.datasets import simulate_sample
    from cytokit.panels import resolve_markers

    sim = simulate_sample(n_events, seed=7, day=8, drift="mild")
    markers, roles = resolve_markers(sim.channels, sim.stains)
    names = [m or c for m, c in zip(markers, sim.channels, strict=True)]
    adata = AnnData(np.asarray(sim.events, dtype=np.float32))
    adata.var_names = names
    adata.var["channel"], adata.var["marker"], adata.var["stain"] = (
        sim.channels,
        markers,
        sim.stains,
    )
    adata.var["role"] = roles
    adata.var["range"] = 262144.0
    adata.uns["fcs"] = {k.upper(): str(v) for k, v in sim.keywords.items()}
    adata.uns["spillover"] = sim.spillover
    if sim.spillover is not None:
        ck.pp.compensate(adata)
    ck.pp.transform(adata)
    return adata


def _best(fn, repeats: int) -> tuple[float, float]:
    cpu, wall = [], []
    for _ in range(repeats):
        start, start_wall = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - start)
        wall.append(time.perf_counter() - start_wall)
    return min(cpu), min(wall)


def run(quick: bool = False) -> list[dict]:
    from cytokit.gating import gate, load_strategy

    n = 100_000 if quick else 1_000_000
    adata = _sample(n)
    strategy = load_strategy("treg")
    gate(adata, strategy)  # warm-up (imports, caches)
    seconds, wall = _best(lambda: gate(adata, strategy), 1 if quick else 3)
    goal = GOAL_S * n / 1_000_000
    return [
        {
            "task": f"gate treg strategy, {n:,} events (CPU s; wall {wall:.2f} s)",
            "cytokit_s": seconds,
            "baseline": f"goal {goal:g} s",
            "baseline_s": goal,
            "ratio": goal / seconds,
        }
    ]


if __name__ == "__main__":
    import sys

    for row in run(quick="--quick" in sys.argv):
        print(row)
