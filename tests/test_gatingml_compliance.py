"""GatingML 2.0 compliance suite: every gate of every ``gml/*.xml`` on ``data1.fcs`` matches its truth file.

The set (FlowKit's copy of the ISAC compliance data, BSD-3) lives outside the repo in ``../shared/data``;
the tests skip with a reason when it is absent. Files go through the user path: ``cytokit.read_fcs`` then
``load_gatingml`` / ``apply_gatingml``. Truth files are ``truth/Results_<gate id>.txt`` (one 0/1 per event).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cytokit.errors import StrategyError
from cytokit.gating._gatingml import apply_gatingml
from cytokit.gating._strategy import population_rows
from cytokit.io import read_fcs

DATA = (Path(__file__).parents[1] / ".." / "shared" / "data" / "gatingml2-compliance").resolve()
XML_FILES = sorted((DATA / "gml").glob("*.xml")) if DATA.is_dir() else []
INVALID = {"gml_range_gate_attr_testing.xml"}  # a stray <sample> element: fails the GatingML schema
# truth files are named by gate id, except this one (the rectangle inside quadrant FL2P-FL4P)
TRUTH_NAMES = {"ParQuadRect": "ParRectangle1"}
MISSING = f"GatingML compliance data not found at {DATA} (a fresh clone has no ../shared)"


@pytest.fixture(scope="module")
def data1():
    if not DATA.is_dir():
        pytest.skip(MISSING)
    return read_fcs(DATA / "data1.fcs")


@pytest.fixture(scope="module")
def truth() -> dict[str, np.ndarray]:
    if not DATA.is_dir():
        pytest.skip(MISSING)
    files = sorted((DATA / "truth").glob("Results_*.txt"))
    names = {f: f.stem.removeprefix("Results_") for f in files}
    return {TRUTH_NAMES.get(n, n): np.loadtxt(f).astype(bool) for f, n in names.items()}


@pytest.fixture(scope="module")
def applied(data1) -> dict[str, object]:
    """Every valid compliance file applied once to data1.fcs (shared by the tests below)."""
    return {f.name: apply_gatingml(data1, f, copy=True) for f in XML_FILES if f.name not in INVALID}


@pytest.mark.parametrize("xml", XML_FILES or [None], ids=lambda f: f.stem if f else "absent")
def test_every_gate_matches_truth(xml, data1, applied, truth):
    if xml is None:
        pytest.skip(MISSING)
    if xml.name in INVALID:  # rejected with a one-line error naming the file, never half-applied
        with pytest.raises(StrategyError, match=xml.name):
            apply_gatingml(data1, xml, copy=True)
        return
    gated = applied[xml.name]
    pops = gated.obsm["populations"]
    checked = [gid for gid in pops.columns if gid in truth]
    for gid in checked:
        got = pops[gid].to_numpy()
        assert got.shape == truth[gid].shape
        mismatched = int((got != truth[gid]).sum())
        assert mismatched == 0, f"{xml.name}: gate {gid} differs from truth on {mismatched} events"
    assert checked or xml.name == "gml_ellipse2_gate.xml", f"{xml.name}: no gate has a truth file"


def test_every_truth_file_is_checked(applied, truth):
    covered = set().union(*(set(g.obsm["populations"].columns) for g in applied.values()))
    assert set(truth) <= covered, f"truth files without a gate: {sorted(set(truth) - covered)}"


def test_population_labels_follow_the_hierarchy(applied, truth):
    # And2 and ParAnd2 differ only by ParAnd2's parent Polygon1; parents and deepest labels must follow
    gated = applied["gml_parent_poly1_boolean_and2_gate.xml"]
    parents = {p["name"]: p["parent"] for p in population_rows(gated.uns["gating"])}
    assert parents["ParAnd2"] == "Polygon1" and parents["Polygon1"] is None
    label = gated.obs["population"].to_numpy()
    assert np.array_equal(label == "ParAnd2", truth["ParAnd2"])
    assert set(np.unique(label)) <= {"ParAnd2", "Polygon1", "Ellipse1", "Range1", "ungated"}
    assert (label == "ungated").sum() == (~gated.obsm["populations"].any(axis=1)).sum()


def test_quadrants_are_populations(applied, truth):
    gated = applied["gml_quadrant1_gate.xml"]
    pops = gated.obsm["populations"]
    assert {"FL2P-FL4P", "FL2N-FL4P", "FL2N-FL4N", "FL2P-FL4N"} <= set(pops.columns)
    assert "Quadrant1" not in pops.columns  # the QuadrantGate itself is not a population
    shape = gated.uns["gating"]["gates"]["FL2P-FL4P"]["params"]["geometry"]
    assert shape["kind"] == "range" and shape["quadrant_of"] == "Quadrant1"
    assert shape["dims"] == ["FL2-H", "FL4-H"]
    assert pops.to_numpy().sum(axis=1).max() <= 1  # quadrants partition the plane
