"""examples/walkthrough.ipynb runs top to bottom on a small run's results, so it never goes stale."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "walkthrough.ipynb"


@pytest.fixture(scope="module")
def small_run(small_trial, tmp_path_factory) -> Path:
    import cytokit as ck

    out = tmp_path_factory.mktemp("nb_run")
    # few pooled events: the UMAP of the run and the notebook's plots stay quick
    ck.run(small_trial, out, jobs=1, figures=False, cells_per_sample=200)
    return out


@pytest.mark.slow
def test_walkthrough_notebook_executes(small_run, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    monkeypatch.setenv("CYTOKIT_RESULTS", str(small_run))
    # the kernel imports this checkout's cytokit (the worktree under test, not another install)
    root = str(NOTEBOOK.parents[1])
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    )
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5  # heatmap, UMAPs, abundance change, gated vs clustered
    # the last cell: the sample mapped in the notebook has the run's counts
    last = nb.cells[-1]["outputs"][-1]["data"]["text/plain"]
    rows = [line.split() for line in last.splitlines()[1:] if line.split()]
    assert rows and all(r[1] == r[2] for r in rows if len(r) == 3), last
