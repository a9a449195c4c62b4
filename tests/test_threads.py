"""The one-thread limit of gating also covers OpenMP runtimes loaded inside the block."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A fresh interpreter (scikit-learn not imported yet, as in a new `cytokit run` or worker): k-means is
# first imported and run inside the block, as gating's first mixture does.
_PROBE = """
import json
from threadpoolctl import threadpool_info
from cytokit._threads import single_threaded
with single_threaded():
    import numpy as np
    from sklearn.cluster import KMeans
    KMeans(2, n_init=1, random_state=0).fit(np.random.default_rng(0).normal(size=(500, 2)))
    pools = [p for p in threadpool_info() if p["user_api"] == "openmp"]
    print(json.dumps([p["num_threads"] for p in pools]))
"""


def test_openmp_loaded_inside_block_is_limited():
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    env["OMP_NUM_THREADS"] = "2"  # as on a 2-core machine, whatever this one has
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    )
    threads = json.loads(done.stdout.strip().splitlines()[-1])
    assert threads, "scikit-learn's OpenMP runtime was not found"
    assert threads == [1] * len(threads)


def test_limits_hold_inside_and_are_restored_after_each_block():
    """The pools are limited in every block and given back their own sizes after it, also when the
    view of the loaded pools is reused from an earlier block."""
    import sklearn.utils._openmp_helpers  # noqa: F401  (the OpenMP runtime gating loads)
    from threadpoolctl import threadpool_info

    from cytokit._threads import single_threaded

    before = {p["filepath"]: p["num_threads"] for p in threadpool_info()}
    for _ in range(3):
        with single_threaded():
            assert all(p["num_threads"] == 1 for p in threadpool_info())
        assert {p["filepath"]: p["num_threads"] for p in threadpool_info()} == before
