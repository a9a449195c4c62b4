"""Whole ``cytokit run`` processes: fixed cost per sample, big files against FlowKit, a first run.

Rows (each a best-of-N of whole processes, wall seconds, with the median and CPU seconds in the label):

- ``batch``: 48 simulated files of 20,000 events, ``cytokit run --jobs 1 --no-cluster`` (figures on);
  goal: at most 0.5 s per file (process wall time / files).
- ``1M vs FlowKit``: four simulated ~1,000,000-event files, ``cytokit run --no-cluster --jobs 1``
  against ``flowkit_fixed_gates.py`` (FlowKit 1.3 reads, compensates, logicle-transforms and applies
  8 fixed gates to the same files), cytokit and FlowKit runs alternating so load hits both alike; goal:
  cytokit at most 0.5x FlowKit's time.
- ``first run``: ``cytokit run sample_data/`` (24 files of ~8,000 events, clustering and UMAP on, all
  cores); goal: under 30 s wall.

Inputs are simulated once into ``benchmarks/_data/`` (``python -m cytokit.datasets``); every run
writes to a fresh temporary folder (a rerun into the same folder would reuse the cache).
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "_data"
BATCH_GOAL_S_PER_FILE = 0.5
FLOWKIT_GOAL_X = 0.5
FIRST_RUN_GOAL_S = 30.0


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _simulated(name: str, *args: str) -> Path:
    """A simulated trial folder under ``_data/`` (made once)."""
    folder = DATA / name
    if not (folder / "manifest.csv").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        cmd = [sys.executable, "-m", "cytokit.datasets", str(folder), *args]
        subprocess.run(cmd, check=True, env=_env(), stdout=subprocess.DEVNULL)
    return folder


def _process(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (the process and the workers it waited for) of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 3):  # 3: the run finished with failed samples (still timed)
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr.decode()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _cytokit(folder: Path, *options: str) -> tuple[float, float]:
    out = Path(tempfile.mkdtemp(prefix="cytokit-bench-"))
    try:
        cmd = [sys.executable, "-m", "cytokit.cli", "-q", "run", str(folder), "--out", str(out)]
        return _process([*cmd, *options])
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _flowkit(folder: Path, channels: str) -> tuple[float, float]:
    return _process([sys.executable, str(HERE / "flowkit_fixed_gates.py"), str(folder), channels])


def _marker_channels(folder: Path) -> str:
    """JSON {marker: $PnN} of the first file, for the FlowKit script (found outside its clock)."""
    import json

    from cytokit.io import read_fcs

    adata = read_fcs(sorted(folder.glob("*.fcs"))[0])
    markers = ("Viability", "CD3", "CD4", "CD25", "CD127", "FOXP3")
    return json.dumps({m: str(adata.var.loc[m, "channel"]) for m in markers})


def _summary(times: list[tuple[float, float]]) -> tuple[float, float, float]:
    """Best wall, median wall, CPU of the best run."""
    best = min(times)
    return best[0], statistics.median(t[0] for t in times), best[1]


def _batch(quick: bool, repeats: int) -> dict:
    n_patients = 2 if quick else 12  # 4 timepoints each
    folder = _simulated(f"batch_{n_patients * 4}x20k", "--patients", str(n_patients),
                        "--events", "20000", "--seed", "5")  # fmt: skip
    n_files = len(list(folder.glob("*.fcs")))
    best, median, cpu = _summary(
        [_cytokit(folder, "--jobs", "1", "--no-cluster") for _ in range(repeats)]
    )
    per_file = best / n_files
    return {
        "task": f"batch {n_files} x 20k, --jobs 1 --no-cluster, s/file "
        f"(median {median / n_files:.2f}; CPU {cpu / n_files:.2f})",
        "cytokit_s": per_file,
        "baseline": "goal",
        "baseline_s": BATCH_GOAL_S_PER_FILE,
        "goal": f"<= {BATCH_GOAL_S_PER_FILE} s/file",
        "met": per_file <= BATCH_GOAL_S_PER_FILE,
    }


def _versus_flowkit(quick: bool, repeats: int) -> dict:
    events = 100_000 if quick else 1_000_000
    folder = _simulated(f"big_4x{events // 1000}k", "--patients", "1", "--events", str(events),
                        "--seed", "9")  # fmt: skip
    channels = _marker_channels(folder)
    ours, theirs = [], []
    for _ in range(repeats):  # alternate, so a burst of load hits both sides alike
        ours.append(_cytokit(folder, "--jobs", "1", "--no-cluster"))
        theirs.append(_flowkit(folder, channels))
    (o_best, o_med, o_cpu), (t_best, t_med, t_cpu) = _summary(ours), _summary(theirs)
    x = o_best / t_best
    return {
        "task": f"4 x {events // 1000}k run --no-cluster --jobs 1 vs FlowKit 8 fixed gates "
        f"(median {o_med:.1f} vs {t_med:.1f} s; CPU {o_cpu:.1f} vs {t_cpu:.1f} s)",
        "cytokit_s": o_best,
        "baseline": "FlowKit 1.3 script",
        "baseline_s": t_best,
        "goal": f"<= {FLOWKIT_GOAL_X}x",
        "met": x <= FLOWKIT_GOAL_X,
    }


def _first_run(quick: bool, repeats: int) -> dict:
    folder = ROOT / "sample_data"
    best, median, cpu = _summary([_cytokit(folder) for _ in range(repeats)])
    return {
        "task": f"first run: cytokit run sample_data/ (median {median:.1f} s; CPU {cpu:.1f} s)",
        "cytokit_s": best,
        "baseline": "goal",
        "baseline_s": FIRST_RUN_GOAL_S,
        "goal": f"< {FIRST_RUN_GOAL_S:g} s",
        "met": best < FIRST_RUN_GOAL_S,
    }


def run(quick: bool = False) -> list[dict]:
    repeats = 1 if quick else 3
    return [_batch(quick, repeats), _versus_flowkit(quick, repeats), _first_run(quick, repeats)]


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(r)
