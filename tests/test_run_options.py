"""Run options and run-level behaviour: panel templates, strategy choice, usage errors that stop a run once,
absent optional markers, the AUC window, and a worker process that dies mid-batch."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cytokit as ck
from cytokit.errors import CytokitError
from cytokit.io import parse_fcs, write_fcs
from cytokit.pipeline import _run, process_sample
from cytokit.pipeline._choose import choose_strategy, file_markers
from cytokit.pipeline._execute import WorkerDied, execute


def cytokit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cytokit.cli", *args], capture_output=True, text=True, timeout=600
    )


def rewrite_fcs(
    src: Path,
    dst: Path,
    *,
    drop: tuple[str, ...] = (),
    rename: dict[str, tuple[str, str]] | None = None,
    rows: np.ndarray | None = None,
) -> Path:
    """A copy of ``src`` without the parameters whose stain names a marker in ``drop``, with channels
    renamed (``{old $PnN: (new $PnN, new $PnS)}``, as a plate cytometer writes them) or only ``rows``."""
    fcs = parse_fcs(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    rename = rename or {}
    markers = [ck.panels.canonical_marker(s) if s else None for s in fcs.stains]
    keep = [j for j, m in enumerate(markers) if m not in drop]
    channels = [rename.get(fcs.channels[j], (fcs.channels[j], ""))[0] for j in keep]
    stains = [
        rename[fcs.channels[j]][1] if fcs.channels[j] in rename else fcs.stains[j] for j in keep
    ]
    spill = fcs.spillover
    if spill is not None:
        kept = [fcs.channels[j] for j in keep if fcs.channels[j] in spill.index]
        spill = spill.loc[kept, kept]
        names = {c: rename.get(c, (c, ""))[0] for c in kept}
        spill = spill.rename(index=names, columns=names)
    data = fcs.data[:, keep] if rows is None else fcs.data[np.ix_(rows, keep)]
    keywords = {k: v for k, v in fcs.keywords.items() if k in ("$TIMESTEP", "$CYT", "$DATE")}
    write_fcs(
        dst,
        data,
        channels,
        stains,
        keywords=keywords,
        spillover=spill,
        ranges=[fcs.ranges[j] for j in keep],
    )
    return dst


def _copy_trial(small_trial: Path, folder: Path, n: int | None = None, **changes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for f in sorted(small_trial.glob("*.fcs"))[:n]:
        if changes:
            rewrite_fcs(f, folder / f.name, **changes)
        else:
            shutil.copy(f, folder / f.name)
    return folder


# ------------------------------------------------------------------------------- panel template
def test_panel_template_maps_an_unnamed_plate_channel_with_one_edit(small_trial, tmp_path):
    """A plate cytometer file names CD25's detector only (VL1-H, no $PnS): the template's one edit makes
    CD25 resolve, and a run with it gates Tregs where the run without it cannot."""
    src = sorted(small_trial.glob("*.fcs"))[0]
    cd25_channel = next(
        c
        for c, s in zip(parse_fcs(src).channels, parse_fcs(src).stains, strict=True)
        if "CD25" in s
    )
    plate = rewrite_fcs(src, tmp_path / "data" / "P01_D0.fcs", rename={cd25_channel: ("VL1-H", "")})
    assert "CD25" not in set(ck.read_fcs(plate).var["marker"])

    proc = cytokit("panel", str(plate))
    assert proc.returncode == 0, proc.stderr
    template = proc.stdout
    assert "FILL IN" in template and "FOXP3" in template
    # unedited, the template is a valid panel that changes nothing
    (tmp_path / "unedited.yaml").write_text(template)
    unedited = ck.read_fcs(plate, panel=tmp_path / "unedited.yaml")
    assert list(unedited.var_names) == list(ck.read_fcs(plate).var_names)

    edited = template.replace("- name: VL1-H", "- name: CD25", 1)
    assert edited != template
    panel = tmp_path / "my_panel.yaml"
    panel.write_text(edited)
    adata = ck.read_fcs(plate, panel=panel)
    assert adata.var.loc["CD25", "channel"] == "VL1-H"

    proc = cytokit(
        "run", str(plate.parent), "--out", str(tmp_path / "with"), "--panel", str(panel),
        "--no-cluster", "--no-figures",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = pd.read_csv(tmp_path / "with" / "summary.csv")
    assert 0 < summary["treg_pct_cd4"].iloc[0] < 40
    without = ck.run(plate.parent, tmp_path / "without", jobs=1, cluster=False, figures=False)
    assert without.qc["status"].iloc[0] == "failed"
    assert "CD25" in without.qc["message"].iloc[0]


def test_panel_template_of_a_missing_file_is_a_usage_error(tmp_path):
    proc = cytokit("panel", str(tmp_path / "nope.fcs"))
    assert proc.returncode == 2 and "nope.fcs" in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------- strategy choice
def test_default_strategy_follows_the_panel():
    assert choose_strategy({"CD3", "CD4", "CD25", "FOXP3", "CD127"})[0] == "treg"
    assert choose_strategy({"CD3", "CD4", "CD8"})[0] == "treg"
    name, why = choose_strategy({"CD3", "CD4", "CD25", "CD127", "CD45RA"})
    if "treg_surface" not in ck._resources.shipped("gating"):
        pytest.skip("gating/treg_surface.yaml is not shipped yet")
    assert name == "treg_surface" and "FOXP3" in why


def test_file_markers_reads_the_panel_from_the_text_segment(small_trial, tmp_path):
    src = sorted(small_trial.glob("*.fcs"))[0]
    assert {"CD3", "CD4", "CD25", "FOXP3", "CD127"} <= file_markers(src)
    no_foxp3 = rewrite_fcs(src, tmp_path / "x.fcs", drop=("FOXP3",))
    assert "FOXP3" not in file_markers(no_foxp3) and "CD25" in file_markers(no_foxp3)
    (tmp_path / "bad.fcs").write_bytes(b"not fcs")
    assert file_markers(tmp_path / "bad.fcs") is None


# ------------------------------------------------------------------------------- usage errors
BAD_STRATEGIES = {
    "unparseable.yaml": "gates: [\n  - id: CD3\n    dims: [CD3\n",
    "unknown_method.yaml": "gates:\n  - id: CD3\n    parent: root\n    dims: [CD3]\n"
    "    method: crystal_ball\n",
}


@pytest.mark.parametrize("name", sorted(BAD_STRATEGIES))
def test_a_bad_strategy_file_stops_the_run_once_before_any_sample(small_trial, tmp_path, name):
    path = tmp_path / name
    path.write_text(BAD_STRATEGIES[name])
    out = tmp_path / "out"
    with pytest.raises(CytokitError) as info:
        ck.run(small_trial, out, strategy=path, jobs=1, cluster=False, figures=False)
    assert name in str(info.value) and "\n" not in str(info.value)
    assert not (out / "qc.csv").exists()


def test_the_command_tunes_the_garbage_collector_only_in_its_own_process(small_trial, tmp_path):
    """``cytokit run`` freezes the objects alive after its first sample (so full collections stop
    walking every imported module) only when the process is the command's own: ``cli`` called
    in-process (a test, a notebook) must never freeze the caller's objects, which would then never be
    collected."""
    import gc

    from click.testing import CliRunner

    from cytokit.cli import cli

    trial = _copy_trial(small_trial, tmp_path / "trial", n=2)
    frozen = gc.get_freeze_count()
    args = ["-q", "run", str(trial), "--out", str(tmp_path / "out"), "--jobs", "1", "--no-cluster"]
    result = CliRunner().invoke(cli, [*args, "--no-figures"])
    assert result.exit_code == 0, result.output
    assert gc.get_freeze_count() == frozen
    assert len(pd.read_csv(tmp_path / "out" / "summary.csv")) == 2


def test_usage_errors_exit_2_with_one_line_naming_the_file(small_trial, tmp_path):
    bad_panel = tmp_path / "bad_panel.yaml"
    bad_panel.write_text("markers:\n  - name: CD25\n    role: sideways\n")
    cases = [
        (["--strategy", "no_such_strategy"], "no_such_strategy"),
        (["--panel", str(bad_panel)], "bad_panel.yaml"),
        (["--start-at", "Thymocytes", "--strategy", "treg"], "Thymocytes"),
        (["--auc-window", "30:10"], "auc-window"),
    ]
    for extra, named in cases:
        out = tmp_path / f"out{len(named)}"
        proc = cytokit("run", str(small_trial), "--out", str(out), "--jobs", "1", *extra)
        assert proc.returncode == 2, (extra, proc.stderr)
        assert named in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert not (out / "qc.csv").exists()


# ------------------------------------------------------------------------------- one run, many checks
@pytest.fixture(scope="module")
def no_helios_run(small_trial, tmp_path_factory):
    """Every file lacks Helios and CD56 (another panel); one file also lacks Ki67, which the others have.
    Run with an AUC window, into a folder reused for a second window."""
    base = tmp_path_factory.mktemp("nohelios")
    data = _copy_trial(small_trial, base / "data", drop=("Helios", "CD56"))
    odd = sorted(data.glob("*.fcs"))[1]
    rewrite_fcs(odd, odd, drop=("Ki67",))
    out = base / "out"
    result = ck.run(data, out, jobs=2, cluster=False, figures=False, auc_window="0:4")
    return result, out, odd.stem


def test_absent_optional_markers_are_one_run_note_not_a_warning_per_sample(no_helios_run):
    _, out, odd = no_helios_run
    qc = pd.read_csv(out / "qc.csv").set_index("sample")
    assert (
        qc["absent_markers"].str.contains("Helios") & qc["absent_markers"].str.contains("CD56")
    ).all()
    others = qc.drop(index=odd)
    assert (others["status"] == "ok").all(), others[["status", "message"]]
    assert not others["message"].fillna("").str.contains("Helios|CD56").any()
    # the marker only this file lacks is about this file
    assert qc.loc[odd, "status"] == "warning" and "Ki67" in qc.loc[odd, "message"]
    report = (out / "report.html").read_text()
    assert "absent markers" in report and "Helios" in report


def test_auc_window_bounds_the_treg_change_area_and_is_reported(no_helios_run, small_trial):
    result, out, _ = no_helios_run
    half = result.summary.drop_duplicates("patient").set_index("patient")
    data = out.parent / "data"
    whole = ck.run(data, out, jobs=1, cluster=False, figures=False).summary  # cached samples
    whole = whole.drop_duplicates("patient").set_index("patient")
    # a straight line from baseline (day 0) to day 8: its mean over days 0-4 is half its mean over 0-8
    np.testing.assert_allclose(
        half["treg_change_auc_per_day"], whole["treg_change_auc_per_day"] / 2, rtol=1e-9
    )
    assert (whole["treg_change_auc_per_day"].abs() > 0).all()
    report = (out / "report.html").read_text()
    assert "AUC window" in report and "whole follow-up" in report


def test_control_wells_are_listed_but_never_a_baseline_pair_or_statistic(small_trial, tmp_path):
    """A CD25 control well on the baseline day (manifest `control`) must not become a patient's baseline or
    a 'D0' sample compared with it."""
    data = _copy_trial(small_trial, tmp_path / "data", n=4)  # P01 and P02, D0 and D8
    control = rewrite_fcs(data / "P01_D0.fcs", data / "P01_D0_unstained.fcs", drop=("CD25",))
    rows = ["file,patient,timepoint,day,control"]
    rows += [
        f"{f.name},{f.stem.split('_')[0]},{f.stem.split('_')[1]},,"
        for f in sorted(data.glob("P0?_D?.fcs"))
    ]
    rows.append(f"{control.name},P01,D0,0,unstained:CD25")
    (data / "manifest.csv").write_text("\n".join(rows) + "\n")
    result = ck.run(data, tmp_path / "out", jobs=1, cluster=False, figures=False)
    qc = result.qc.set_index("sample")
    assert "P01_D0_unstained" in qc.index
    summary = result.summary.set_index("sample")
    assert summary.loc["P01_D8", "baseline_timepoint"] == "D0"
    assert summary.loc["P01_D0", "treg_fold_vs_baseline"] == 1.0
    assert pd.isna(summary.loc["P01_D0_unstained", "treg_fold_vs_baseline"])
    treg = result.stats.loc[result.stats["readout"] == "treg_pct_cd4"]
    assert list(treg["timepoint"]) == ["D8"] and list(treg["n_pairs"]) == [2]


# ------------------------------------------------------------------------------- dying workers
def _double_or_die(i: int) -> int:
    if i == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # what the out-of-memory killer does
    return 2 * i


def test_a_killed_worker_costs_only_its_task():
    outcomes = dict(execute(_double_or_die, [(i,) for i in range(8)], jobs=2))
    assert sorted(outcomes) == list(range(8))
    assert isinstance(outcomes[3], WorkerDied) and "SIGKILL" in str(outcomes[3])
    assert {i: v for i, v in outcomes.items() if i != 3} == {i: 2 * i for i in range(8) if i != 3}


def _killed_on(spec, *args):
    """process_sample, except that the worker holding the sample named in the environment is killed."""
    if spec.sample == os.environ.get("CYTOKIT_TEST_KILL_SAMPLE"):
        os.kill(os.getpid(), signal.SIGKILL)
    return process_sample(spec, *args)


def test_a_worker_killed_mid_batch_fails_only_its_sample(small_trial, tmp_path, monkeypatch):
    monkeypatch.setattr(_run, "process_sample", _killed_on)
    monkeypatch.setenv("CYTOKIT_TEST_KILL_SAMPLE", "P01_D8")
    result = ck.run(small_trial, tmp_path / "out", jobs=2, cluster=False, figures=False)
    qc = result.qc.set_index("sample")
    assert list(qc.index[qc["status"] == "failed"]) == ["P01_D8"]
    assert "killed" in qc.loc["P01_D8", "message"] and "P01_D8.fcs" in qc.loc["P01_D8", "message"]
    assert set(result.summary["sample"]) == set(qc.index) - {"P01_D8"}


def _double_or_die_once(i: int, marker: str) -> int:
    """Kill the worker the first time task 3 runs (the marker file remembers it), as a node lost once."""
    if i == 3 and not os.path.exists(marker):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return 2 * i


@pytest.mark.slow
def test_a_killed_dask_worker_is_retried_by_the_scheduler(tmp_path):
    """On a Dask cluster a task whose worker died is run again by the scheduler: the batch completes."""
    distributed = pytest.importorskip("distributed")  # optional dependency ([cluster] extra)
    marker = str(tmp_path / "killed_once")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        tasks = [(i, marker) for i in range(6)]
        outcomes = dict(execute(_double_or_die_once, tasks, scheduler=cluster.scheduler_address))
    assert Path(marker).exists()  # a worker was killed
    assert outcomes == {i: 2 * i for i in range(6)}
