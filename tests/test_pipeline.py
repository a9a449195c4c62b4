"""End to end: `cytokit run` on a small simulated trial, bad inputs in a batch, cache reuse, exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cytokit.io import write_fcs

CONTRACT_COLUMNS = {
    "qc.csv": ["file", "sample", "status", "events", "message"],
    "populations.csv": [
        "sample",
        "patient",
        "timepoint",
        "population",
        "parent",
        "count",
        "pct_parent",
        "pct_total",
    ],
    "summary.csv": [
        "sample",
        "patient",
        "timepoint",
        "day",
        "cd4_count",
        "treg_count",
        "teff_count",
        "treg_pct_cd4",
        "teff_pct_cd4",
        "treg_teff_ratio",
    ],
    "stats.csv": [
        "readout",
        "timepoint",
        "n_pairs",
        "baseline_median",
        "median",
        "median_fold_change",
        "p_value",
        "p_adj",
    ],
    "clusters.csv": ["sample", "cluster", "count", "pct", "label"],
    "da.csv": [
        "cluster",
        "label",
        "timepoint",
        "n_pairs",
        "baseline_median",
        "median",
        "median_fold_change",
        "p_value",
        "p_adj",
    ],
}


def cytokit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cytokit.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


@pytest.fixture(scope="module")
def trial_with_bad_files(small_trial, tmp_path_factory) -> Path:
    """The small trial plus a corrupt, a truncated and a zero-event FCS file."""
    folder = tmp_path_factory.mktemp("batch")
    for f in small_trial.glob("*.fcs"):
        shutil.copy(f, folder)
    good = sorted(folder.glob("*.fcs"))[0].read_bytes()
    (folder / "BAD_corrupt.fcs").write_bytes(b"this is not an FCS file at all" * 10)
    (folder / "BAD_truncated.fcs").write_bytes(good[: len(good) // 2])
    write_fcs(folder / "BAD_empty.fcs", np.zeros((0, 3), np.float32), ["FSC-A", "SSC-A", "Time"])
    return folder


@pytest.fixture(scope="module")
def run_out(trial_with_bad_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    proc = cytokit("run", str(trial_with_bad_files), "--out", str(out), "--jobs", "2")
    return proc, out


def test_run_writes_contract_files_and_exit_3_for_failed_samples(run_out):
    proc, out = run_out
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    for name, cols in CONTRACT_COLUMNS.items():
        table = pd.read_csv(out / name)
        assert set(cols) <= set(table.columns), (name, table.columns)
    for name in ("cells.h5ad", "report.html"):
        assert (out / name).is_file()


def test_bad_files_fail_alone_with_one_line_messages(run_out):
    _, out = run_out
    qc = pd.read_csv(out / "qc.csv").set_index("sample")
    assert qc.loc["BAD_corrupt", "status"] == "failed"
    assert qc.loc["BAD_truncated", "status"] == "failed"
    assert qc.loc["BAD_empty", "status"] == "failed"
    assert "zero events" in qc.loc["BAD_empty", "message"]
    for bad in ("BAD_corrupt", "BAD_truncated", "BAD_empty"):
        message = qc.loc[bad, "message"]
        assert f"{bad}.fcs" in message and "\n" not in message
    good = qc.drop(index=["BAD_corrupt", "BAD_truncated", "BAD_empty"])
    assert (good["status"] != "failed").all()
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["sample"]) == set(good.index)


def test_summary_is_consistent_with_populations(run_out):
    _, out = run_out
    summary = pd.read_csv(out / "summary.csv").set_index("sample")
    pops = pd.read_csv(out / "populations.csv")
    counts = pops.pivot_table(index="sample", columns="population", values="count")
    np.testing.assert_allclose(summary["cd4_count"], counts.loc[summary.index, "CD4"])
    np.testing.assert_allclose(summary["treg_count"], counts.loc[summary.index, "Treg"])
    np.testing.assert_allclose(
        summary["treg_pct_cd4"], 100 * summary["treg_count"] / summary["cd4_count"]
    )
    np.testing.assert_allclose(
        summary["treg_teff_ratio"], summary["treg_count"] / summary["teff_count"]
    )


def test_gates_are_gatingml_that_flowkit_loads(run_out):
    import flowkit as fk

    _, out = run_out
    xml = sorted((out / "gates").glob("*.xml"))
    assert len(xml) == 6
    strategy = fk.parse_gating_xml(str(xml[0]))
    ids = {g.gate_name for g in strategy.get_root_gates()} | {
        name for name, _ in strategy.get_gate_ids()
    }
    assert {"CD4", "Treg", "Teff"} <= ids


def test_cells_h5ad_traces_events_to_files(run_out):
    import anndata as ad

    _, out = run_out
    cells = ad.read_h5ad(out / "cells.h5ad")
    assert {"sample", "event", "patient", "timepoint", "population", "cluster"} <= set(
        cells.obs.columns
    )
    assert cells.obsm["X_umap"].shape == (cells.n_obs, 2)
    assert "FOXP3" in cells.var_names
    assert (cells.obs["event"] >= 0).all()


def test_rerun_reuses_finished_samples(run_out, trial_with_bad_files):
    _, out = run_out
    before = pd.read_csv(out / "summary.csv")
    proc = cytokit(
        "run", str(trial_with_bad_files), "--out", str(out), "--jobs", "1", "--no-cluster"
    )
    assert proc.returncode == 3
    assert "reusing 6 finished sample(s)" in proc.stderr
    after = pd.read_csv(out / "summary.csv")
    pd.testing.assert_frame_equal(before, after)


def test_usage_errors_exit_2_without_traceback(tmp_path, small_trial):
    bad_manifest = tmp_path / "m.csv"
    bad_manifest.write_text("file,patient\nx.fcs,P1\n")
    for args in (
        ["run", str(tmp_path / "missing")],
        ["run", str(bad_manifest)],
        ["run", str(small_trial), "--strategy", "no_such_strategy", "--out", str(tmp_path)],
        ["run", str(small_trial), "--jobs", "0"],
    ):
        proc = cytokit(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_inspect_shows_channels_markers_and_spillover(small_trial):
    f = sorted(small_trial.glob("*.fcs"))[0]
    proc = cytokit("inspect", str(f))
    assert proc.returncode == 0, proc.stderr
    assert "events" in proc.stdout and "FOXP3" in proc.stdout and "spillover" in proc.stdout
    assert "FCS 3.1" in proc.stdout


def test_dask_scheduler_gives_identical_results(small_trial, tmp_path):
    distributed = pytest.importorskip("distributed")
    from cytokit.pipeline import run

    files = sorted(small_trial.glob("*.fcs"))[:2]
    folder = tmp_path / "two"
    folder.mkdir()
    for f in files:
        shutil.copy(f, folder)
    local = run(folder, tmp_path / "local", jobs=1, cluster=False, figures=False)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        remote = run(
            folder,
            tmp_path / "dask",
            scheduler=cluster.scheduler_address,
            cluster=False,
            figures=False,
        )
    pd.testing.assert_frame_equal(local.summary, remote.summary)


def test_runner_marks_jumping_samples_warning_and_keeps_the_rest(tmp_path):
    from cytokit.pipeline import SampleSpec
    from cytokit.pipeline._run import _flag_jumps
    from cytokit.pipeline._task import SampleResult

    specs, results = [], []
    for day, threshold in zip((0, 8, 15, 29), (0.40, 0.42, 0.75, 0.41), strict=True):
        spec = SampleSpec(tmp_path / f"P1_D{day}.fcs", f"P1_D{day}", "P1", f"D{day}", float(day))
        gate = {"kind": "range", "dims": ["CD3"], "low": [threshold], "high": [None]}
        details = {"CD3": {"landmark": {"median": 0.2, "spread": 0.05}}}
        rec = {"gate": gate, "method": "valley", "status": "ok", "details": details}
        gating = {"gates": {"CD3": rec}}
        specs.append(spec)
        results.append(SampleResult(spec.sample, str(spec.file), gating=gating))
    flagged = _flag_jumps(specs, results)
    assert [r.status for r in flagged] == ["ok", "ok", "warning", "ok"]
    assert "patient's other samples" in flagged[2].message
    assert results[2].status == "ok"  # the cached result is not changed in place


def test_clusters_count_every_event_of_the_clustered_population(run_out):
    _, out = run_out
    clusters = pd.read_csv(out / "clusters.csv", dtype={"cluster": str})
    pops = pd.read_csv(out / "populations.csv")
    live = pops.loc[pops["population"] == "live"].set_index("sample")["count"]
    per_sample = clusters.groupby("sample")["count"].sum()
    # every live lymphocyte is counted, not the pooled subsample of a few hundred
    assert per_sample.to_dict() == live.loc[per_sample.index].to_dict()
    assert (per_sample > 1000).all()
    np.testing.assert_allclose(clusters.groupby("sample")["pct"].sum(), 100.0)
    # every sample has every cluster, labelled as in the model the run saved
    model = json.loads((out / "cluster_model.json").read_text())
    assert set(clusters["cluster"]) == set(model["node_cluster"])
    labels = clusters.drop_duplicates("cluster").set_index("cluster")["label"]
    assert labels.to_dict() == model["labels"]


def test_da_table_has_a_row_per_cluster_and_later_timepoint(run_out):
    _, out = run_out
    da = pd.read_csv(out / "da.csv", dtype={"cluster": str})
    assert set(CONTRACT_COLUMNS["da.csv"]) <= set(da.columns)
    clusters = pd.read_csv(out / "clusters.csv", dtype={"cluster": str})
    assert sorted(da["cluster"]) == sorted(clusters["cluster"].unique())
    assert set(da["timepoint"]) == {"D8"} and (da["n_pairs"] == 3).all()


def test_saved_model_maps_a_sample_onto_the_run_counts(run_out, small_trial):
    import cytokit as ck

    _, out = run_out
    clusters = pd.read_csv(out / "clusters.csv", dtype={"cluster": str})
    adata = ck.read_fcs(small_trial / "P01_D8.fcs")
    ck.pp.compensate(adata)
    ck.pp.transform(adata)
    ck.gate(adata)
    ck.tl.map_clusters(adata, out / "cluster_model.json")  # the model's population: live
    mine = adata.obs["cluster"].value_counts()
    run = clusters.loc[clusters["sample"] == "P01_D8"].set_index("cluster")["count"]
    assert mine.reindex(run.index).to_dict() == run.to_dict()
    assert adata.obs["cluster"].isna().sum() == (~adata.obsm["populations"]["live"]).sum()


def test_task_keeps_every_event_of_the_chosen_population(small_trial, tmp_path):
    from cytokit.pipeline._inputs import discover_samples
    from cytokit.pipeline._task import Settings, process_sample

    spec = next(s for s in discover_samples(small_trial, None) if s.sample == "P02_D0")
    settings = Settings(cluster_population="CD4", cells_per_sample=200, figures=False)
    result = process_sample(spec, settings, None, str(tmp_path))
    cd4 = result.populations.set_index("population").loc["CD4", "count"]
    events = np.load(result.cells["events_file"])
    assert len(events) == cd4 == result.cells["n_population"]
    assert len(result.cells["event"]) == 200
    assert set(result.cells["population"]) <= {"Treg", "Teff", "CD4"}  # CD4: FOXP3+ CD25-
    # no folder to leave them in (a remote Dask worker): the events travel in the result
    remote = process_sample(spec, settings, None, str(tmp_path / "absent"))
    np.testing.assert_array_equal(remote.cells["events_X"], events)
    missing = process_sample(spec, Settings(cluster_population="nope", figures=False), None)
    assert missing.cells is None and "no population 'nope'" in missing.message


def test_scanpy_plots_cells_h5ad_as_written(run_out):
    import anndata as ad

    sc = pytest.importorskip("scanpy")
    import matplotlib

    matplotlib.use("Agg")
    _, out = run_out
    cells = ad.read_h5ad(out / "cells.h5ad")
    axes = sc.pl.umap(cells, color=["cluster", "timepoint", "FOXP3"], show=False)
    assert len(axes) == 3
    legend = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert legend == list(cells.obs["cluster"].cat.categories)


def test_control_wells_are_mapped_but_neither_pooled_nor_tested():
    from cytokit import tl
    from cytokit.pipeline._inputs import control_rows
    from cytokit.pipeline._task import SampleResult
    from cytokit.pipeline._trial import mapped_abundance, pooled_cells

    rng = np.random.default_rng(0)

    def result(sample, patient, tp, control=""):
        X = rng.normal([0.2, 0.7], 0.05, (400, 2)).astype(np.float32)
        cells = {
            "X": X[:100],
            "var_names": ["CD4", "CD25"],
            "roles": ["lineage", "lineage"],
            "event": np.arange(100),
            "population": np.array(["Teff"] * 100),
            "n_population": 400,
            "events_X": X,
        }
        meta = {"sample": sample, "patient": patient, "timepoint": tp, "day": 0, "control": control}
        return SampleResult(sample=sample, file=f"{sample}.fcs", metadata=meta, cells=cells)

    results = [result("P1_D0", "P1", "D0"), result("P1_D8", "P1", "D8")]
    results.append(result("P1_FMO", "P1", "D0", control="FMO:CD25"))
    pooled = pooled_cells(results)
    assert set(pooled.obs["sample"]) == {"P1_D0", "P1_D8"}
    tl.flowsom(pooled, markers=["CD4", "CD25"], n_clusters=2, grid=(3, 3))
    clusters = mapped_abundance(results, pooled.uns["cluster"])
    assert clusters.groupby("sample")["count"].sum().to_dict() == {
        "P1_D0": 400,
        "P1_D8": 400,
        "P1_FMO": 400,
    }
    # the rows cluster_pooled leaves out of da.csv
    assert set(clusters.loc[control_rows(clusters), "sample"]) == {"P1_FMO"}


def test_a_partly_gated_failure_does_not_warn_the_others_for_the_panels_absent_markers():
    """A sample that failed part-way never reached the optional gates (its absent-marker list is
    empty); the panel's absent markers must stay a run note, not a warning on every other sample."""
    from cytokit.pipeline._inputs import SampleSpec
    from cytokit.pipeline._run import _flag_absent_markers, absent_markers_note
    from cytokit.pipeline._task import SampleResult

    names = ["P01_D0", "P01_D8", "P01_D15"]
    specs = [SampleSpec(file=Path(f"{n}.fcs"), sample=n) for n in names]
    results = [
        SampleResult(n, f"{n}.fcs", absent_markers=("CD56", "Helios")) for n in names[:2]
    ] + [SampleResult(names[2], f"{names[2]}.fcs", status="failed", partial=True)]
    flagged = _flag_absent_markers(specs, results)
    assert [r.status for r in flagged] == ["ok", "ok", "failed"]
    assert "CD56" in absent_markers_note(results) and "Helios" in absent_markers_note(results)
    # a marker absent from one gated sample only is still about that sample
    results[1] = SampleResult(names[1], "x.fcs", absent_markers=("CD56", "Helios", "Ki67"))
    flagged = _flag_absent_markers(specs, results)
    assert flagged[0].status == "ok" and flagged[1].status == "warning"
    assert "Ki67" in flagged[1].message and "Helios" not in flagged[1].message


def test_cached_samples_are_recomputed_when_the_package_code_changes(tmp_path, monkeypatch):
    # an editable install updated with `git pull` keeps its version number: the cache key must follow
    # the code itself, or results of the old code are reused silently
    from cytokit.pipeline import SampleSpec, _cache
    from cytokit.pipeline._task import SampleResult, Settings

    fcs = tmp_path / "P1_D0.fcs"
    fcs.write_bytes(b"not read here")
    spec, settings = SampleSpec(fcs, "P1_D0", "P1", "D0", 0.0), Settings()
    cache = _cache.SampleCache(tmp_path / ".cache")
    key = cache.key(spec, settings, None)
    cache.put(spec, key, SampleResult(spec.sample, str(fcs)))
    assert cache.get(spec, cache.key(spec, settings, None)) is not None  # same code: reused
    assert len(_cache._code_digest()) == 64
    monkeypatch.setattr(_cache, "_code_digest", lambda: "0" * 64)  # the sources changed
    assert cache.key(spec, settings, None) != key
    assert cache.get(spec, cache.key(spec, settings, None)) is None


def test_an_unstained_detector_is_not_clustered(small_trial, tmp_path):
    """A detector acquired without a stain (no $PnS, no marker) is noise, not phenotype: the pooled
    clustering leaves it out, as it leaves out the viability dye."""
    import cytokit as ck
    from cytokit import _keys as K

    folder = tmp_path / "trial"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for path in sorted(small_trial.glob("P0[12]_*.fcs")):
        adata = ck.read_fcs(path)
        events = np.c_[np.asarray(adata.X), rng.normal(40, 30, adata.n_obs)]  # an empty detector
        channels = [*adata.var[K.CHANNEL].astype(str), "BV785-A"]
        stains = [*adata.var[K.STAIN].astype(str), ""]
        ranges = [*adata.var[K.RANGE].astype(float), 262144.0]
        write_fcs(folder / path.name, events, channels, stains, ranges=ranges,
                  spillover=adata.uns.get(K.SPILLOVER))  # fmt: skip
    out = tmp_path / "out"
    ck.run(folder, out, jobs=1, figures=False, n_clusters=4)
    markers = json.loads((out / "cluster_model.json").read_text())["markers"]
    assert "CD4" in markers and "FOXP3" in markers
    assert "BV785-A" not in markers and "Viability" not in markers
