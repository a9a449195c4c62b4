"""Read + compensate + logicle-transform one large FCS 3.1 file: cytokit against FlowKit.

The file (1M events, 3 scatter + 12 fluorescence + Time, float32, with $SPILLOVER) is generated once
into ``benchmarks/_data/``. FlowKit runs its usual path: ``Sample`` + ``apply_compensation`` (the file's
matrix) + ``apply_transform`` (logicle on every fluorescence channel).
"""

from __future__ import annotations

import gc
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parent / "_data"
N_FLUOR = 12
T = 262144.0


def make_file(n_events: int, seed: int = 7) -> Path:
    """A realistic-looking stained sample: lognormal populations, spillover applied, detector noise."""
    path = DATA / f"preprocess_{n_events // 1000}k.fcs"
    if path.exists():
        return path
    from cytokit.io import write_fcs

    DATA.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_pop = 6
    pop = rng.integers(n_pop, size=n_events)
    means = rng.uniform(1.0, 4.3, size=(n_pop, N_FLUOR)) * (rng.random((n_pop, N_FLUOR)) < 0.5)
    true = 10 ** (means[pop] + rng.normal(0, 0.25, (n_events, N_FLUOR)))
    true[means[pop] == 0] = rng.normal(0, 30, (means[pop] == 0).sum())
    spill = np.eye(N_FLUOR)
    for i in range(N_FLUOR):
        for j in rng.choice(N_FLUOR, size=3, replace=False):
            if j != i:
                spill[i, j] = rng.uniform(0.005, 0.25)
    observed = true @ spill + rng.normal(0, 60, (n_events, N_FLUOR))
    fsc = rng.normal(80000, 15000, n_events).clip(1000, T)
    ssc = rng.lognormal(10, 0.4, n_events).clip(500, T)
    time_ = np.sort(rng.uniform(0, 60000, n_events))
    fluor = [f"FL{i + 1}-A" for i in range(N_FLUOR)]
    channels = ["FSC-A", "FSC-H", "SSC-A", *fluor, "Time"]
    stains = ["", "", "", *[f"M{i + 1}" for i in range(N_FLUOR)], ""]
    events = np.column_stack([fsc, fsc * 0.8, ssc, observed, time_]).astype(np.float32)
    frame = pd.DataFrame(spill, index=fluor, columns=fluor)
    write_fcs(path, events, channels, stains, spillover=frame, keywords={"$TIMESTEP": "0.01"})
    return path


def run_cytokit(path: Path):
    import cytokit as ck

    adata = ck.read_fcs(path)
    ck.pp.compensate(adata)
    ck.pp.transform(adata, method="logicle")
    return adata


def run_flowkit(path: Path):
    import flowkit as fk

    sample = fk.Sample(str(path))
    sample.apply_compensation(sample.metadata["spillover"])
    sample.apply_transform(fk.transforms.LogicleTransform(T, 0.5, 4.5, 0))
    return sample


def _best(fn, path: Path, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        result = fn(path)
        times.append(time.perf_counter() - start)
        del result
    return min(times)


def run(quick: bool = False) -> list[dict]:
    n_events = 200_000 if quick else 1_000_000
    repeats = 1 if quick else 3
    path = make_file(n_events)
    warnings.filterwarnings("ignore")
    run_cytokit(path)  # warm imports and caches for both sides
    run_flowkit(path)
    ck_s = _best(run_cytokit, path, repeats)
    fk_s = _best(run_flowkit, path, repeats)
    task = f"read+compensate+logicle {n_events // 1000}k x {N_FLUOR + 4}"
    return [
        {"task": task, "cytokit_s": ck_s, "baseline": "FlowKit 1.3", "baseline_s": fk_s, "ratio": fk_s / ck_s}
    ]


if __name__ == "__main__":
    for row in run(quick=False):
        print(row)
