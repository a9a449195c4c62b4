"""A reviewer's corrections (--overrides) and control wells in a run: one sample changes, nothing else."""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import cytokit as ck
from cytokit import _keys as K
from cytokit.cli import cli
from cytokit.datasets import simulate_trial
from cytokit.gating import gate
from cytokit.pipeline import run

RUN = {"cluster": False, "figures": False, "jobs": 1}


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trial")
    simulate_trial(folder, n_patients=1, timepoints=("D0", "D8"), days=(0, 8), n_events=5000,
                   seed=4242, controls=("FMO:Ki67",))  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def stained(trial, tmp_path_factory):
    """The trial without its control well (plain automatic run)."""
    manifest = pd.read_csv(trial / "manifest.csv", keep_default_na=False)
    path = trial / "stained.csv"
    manifest[manifest["control"] == ""].drop(columns="control").to_csv(path, index=False)
    return path


def _treg_cd25(out, sample: str) -> float:
    text = (out / "gates" / f"{sample}.xml").read_text()
    block = text[text.index('gating:id="Treg"') :]
    low = re.search(r'gating:min="([-0-9.eE]+)"', block)
    return float(low.group(1))


def test_override_line_changes_that_sample_and_its_descendants_only(stained, tmp_path):
    logging.getLogger("cytokit").setLevel(logging.ERROR)
    out = tmp_path / "out"
    first = run(stained, out, **RUN)
    pops0 = first.populations.set_index(["sample", "population"])
    auto = pops0.loc[("P01_D8", "Treg"), "count"]
    (tmp_path / "overrides.yaml").write_text(
        "- {sample: P01_D8, gate: Treg, marker: CD25, value: 0.62, note: cut above the smear}\n"
    )
    second = run(stained, out, overrides=tmp_path / "overrides.yaml", **RUN)
    qc = second.qc.set_index("sample")
    assert qc.loc["P01_D8", "manual"] == "Treg: CD25 = 0.620"
    assert qc.loc["P01_D0", "manual"] == ""
    # the untouched sample came from the cache (its recorded run time is the first run's)
    assert qc.loc["P01_D0", "seconds"] == first.qc.set_index("sample").loc["P01_D0", "seconds"]
    pops = second.populations.set_index(["sample", "population"])
    assert pops.loc[("P01_D8", "Treg"), "gate_status"] == "manual"
    assert pops.loc[("P01_D8", "Treg"), "count"] < auto
    for name in ("CD4", "CD8", "Teff", "live"):  # above or beside Treg: unchanged
        assert pops.loc[("P01_D8", name), "count"] == pops0.loc[("P01_D8", name), "count"]
    assert pops.loc[("P01_D8", "Treg_Ki67pos"), "count"] <= pops.loc[("P01_D8", "Treg"), "count"]
    d0 = pops.xs("P01_D0", level="sample")
    assert (d0["count"] == pops0.xs("P01_D0", level="sample")["count"]).all()
    assert (d0["gate_status"] != "manual").all()
    xml = (out / "gates" / "P01_D8.xml").read_text()
    assert re.search(r'name="Treg"[^>]*status="manual"', xml)
    assert _treg_cd25(out, "P01_D8") != _treg_cd25(out, "P01_D0")
    assert "set by a reviewer" in (out / "report.html").read_text()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("- {sample: P09_D8, gate: Treg, marker: CD25, value: 0.4}\n", "not in this run"),
        ("- {sample: P01_D8, gate: Tregs, marker: CD25, value: 0.4}\n", "not a gate"),
        ("- {sample: P01_D8, gate: Treg, marker: CD3, value: 0.4}\n", "no threshold on 'CD3'"),
        ("- {sample: P01_D8, gate: Treg, marker: CD25, value: high}\n", "not a number"),
        ("- [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_overrides_file_is_a_usage_error_naming_it(stained, tmp_path, text, problem):
    path = tmp_path / "overrides.yaml"
    path.write_text(text)
    args = ["run", str(stained), "--out", str(tmp_path / "o"), "--overrides", str(path)]
    result = CliRunner().invoke(cli, [*args, "--no-cluster", "--no-figures", "--jobs", "1"])
    assert result.exit_code == 2, result.output
    assert "overrides.yaml" in result.output and problem in result.output
    assert not (tmp_path / "o" / "qc.csv").exists()  # refused before any sample ran


def test_control_well_sets_the_threshold_of_its_patients_stained_samples(trial, tmp_path):
    logging.getLogger("cytokit").setLevel(logging.ERROR)
    result = run(trial, tmp_path / "out", **RUN)
    qc = result.qc.set_index("sample")
    control = "P01_D0_FMO-Ki67"
    assert qc.loc[control, "control"] == "FMO:Ki67"
    # the reference: the 99.5th percentile of the control's own Treg Ki67 events
    adata = ck.read_fcs(trial / f"{control}.fcs")
    ck.pp.compensate(adata)
    ck.pp.transform(adata)
    gate(adata)
    treg = adata.obsm[K.POPULATIONS]["Treg"].to_numpy()
    expected = np.percentile(adata[:, "Ki67"].X.ravel()[treg], 99.5)
    for sample in ("P01_D0", "P01_D8"):
        text = qc.loc[sample, "control_gates"]
        value = float(re.search(r"Treg_Ki67pos: Ki67 = ([0-9.]+)", text).group(1))
        assert value == pytest.approx(expected, abs=1e-3)
        assert "Teff_Ki67pos: Ki67" in text  # Teff is split by the control's Teff events
    pops = result.populations.set_index(["sample", "population"])
    assert pops.loc[("P01_D8", "Treg_Ki67pos"), "gate_status"] == "control"
    assert qc.loc[control, "control_gates"] == ""  # the control itself is gated as usual
    assert "99.5th percentile" in (tmp_path / "out" / "report.html").read_text()
    assert control not in set(result.stats.get("sample", []))
