"""Shared fixtures: small simulated trials (made once per session) and paths to external reference data."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def small_trial(tmp_path_factory) -> Path:
    """A 3-patient x 2-timepoint simulated trial with few events: fast end-to-end runs."""
    from cytokit.datasets import simulate_trial

    folder = tmp_path_factory.mktemp("small_trial")
    simulate_trial(
        folder, n_patients=3, timepoints=("D0", "D8"), days=(0, 8), n_events=6000, seed=101
    )
    return folder


@pytest.fixture(scope="session")
def gatingml_compliance() -> Path:
    """The GatingML 2.0 compliance set (shared reference data, never copied into the repo)."""
    folder = SHARED_DATA / "gatingml2-compliance"
    if not folder.is_dir():
        pytest.skip(
            f"GatingML compliance data not found at {folder} (a fresh clone has no ../shared)"
        )
    return folder
