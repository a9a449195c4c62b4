"""report.html: one self-contained page; figures decode; renders in headless Chromium (skipped if absent)."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from matplotlib import image as mpimg
from test_readouts import make_gated

from cytokit import pl, readouts, report, stats


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    rows, pops, qc, figs = [], [], [], {}
    for p in range(4):
        for k, (tp, day) in enumerate([("D0", 0), ("D8", 8)]):
            sample = f"P{p}_{tp}"
            adata = make_gated(n=800, seed=10 * p + k, treg_shift=0.1 * k)
            rows.append(
                {
                    "sample": sample,
                    "patient": f"P{p}",
                    "timepoint": tp,
                    "day": day,
                    **readouts.sample_readouts(adata),
                }
            )
            pops.append(readouts.population_table(adata).assign(sample=sample))
            status = "warning" if sample == "P1_D8" else "ok"
            qc.append(
                {
                    "file": f"{sample}.fcs",
                    "sample": sample,
                    "status": status,
                    "events": 800,
                    "message": "Treg gate: <fallback>" if status == "warning" else "",
                }
            )
            if p == 0:
                path = out / f"{sample}.png"
                pl.gating_path(adata, max_points=300).savefig(path, dpi=40)
                figs[sample] = path
    qc.append(
        {
            "file": "bad.fcs",
            "sample": "bad",
            "status": "failed",
            "events": 0,
            "message": "truncated",
        }
    )
    summary = readouts.add_baseline_change(pd.DataFrame(rows))
    path = report.write_report(
        out,
        summary=summary,
        stats=stats.paired_tests(summary),
        qc=pd.DataFrame(qc),
        populations=pd.concat(pops),
        gate_figures=figs,
        methods={
            "cytokit": "0.1.0",
            "packages": {"numpy": np.__version__},
            "command": "cytokit run x/",
        },
    )
    return path


def test_page_is_self_contained(written):
    text = written.read_text(encoding="utf-8")
    assert written.name == "report.html"
    assert not re.search(r"https?://", text)
    assert not re.search(r'(src|href)="(?!data:|#)', text)  # only data: URIs and in-page anchors
    assert "<script" not in text and "<link" not in text


def test_sections_tables_and_escaping(written):
    text = written.read_text(encoding="utf-8")
    for anchor in ("overview", "qc", "strategy", "trial", "stats", "gating", "methods"):
        assert f'id="{anchor}"' in text
    assert 'class="warning"' in text and 'class="failed"' in text
    assert "Treg gate: &lt;fallback&gt;" in text  # user text is escaped
    assert text.count("<details") >= 2 and "P0_D0" in text
    assert "cytokit run x/" in text and "numpy" in text


_SVG = "{http://www.w3.org/2000/svg}"


def _svg_figures(text: str) -> dict[str, ET.Element]:
    found = re.findall(r'<img alt="([^"]+)" src="data:image/svg\+xml;base64,([^"]+)"', text)
    return {alt: ET.fromstring(base64.b64decode(data)) for alt, data in found}


def test_every_image_decodes(written):
    text = written.read_text(encoding="utf-8")
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(images) == 2  # the gating paths given; the report's own figures are SVG
    for data in images:
        pixels = mpimg.imread(io.BytesIO(base64.b64decode(data)), format="png")
        assert pixels.shape[0] > 50 and pixels.shape[1] > 50
        assert pixels[..., :3].std() > 0.01  # not a blank image
    figures = _svg_figures(text)
    assert len(figures) >= 6 and "gating strategy tree" in figures
    for root in figures.values():  # well-formed SVG with something drawn on it
        assert root.tag == f"{_SVG}svg" and float(root.get("width")) > 50
        assert len(list(root.iter(f"{_SVG}polyline"))) + len(list(root.iter(f"{_SVG}rect"))) > 3


def test_trial_figures_show_every_patient_and_the_paired_test(written):
    figures = _svg_figures(written.read_text(encoding="utf-8"))
    legend = {t.text for t in figures["treg_pct_cd4 per patient"].iter(f"{_SVG}text")}
    assert {"P0", "P1", "P2", "P3", "median"} <= legend
    paired = {t.text for t in figures["treg_pct_cd4 paired"].iter(f"{_SVG}text")}
    assert "n=4" in paired  # four D0/D8 pairs tested


def test_svg_points_are_placed_by_value():
    """Higher values are drawn higher (SVG y grows downwards) and later timepoints further right."""
    from cytokit.report import _figures

    summary = pd.DataFrame(
        {
            "patient": ["A", "B", "C", "A", "B", "C"],
            "timepoint": ["D0", "D0", "D0", "D8", "D8", "D8"],
            "day": [0, 0, 0, 8, 8, 8],
            "treg_pct_cd4": [5.0, 7.5, 6.0, 12.0, 9.0, 30.0],
        }
    )
    root = ET.fromstring(_figures.paired_boxes(summary, pd.DataFrame(), "treg_pct_cd4"))
    dots = [(float(c.get("cx")), float(c.get("cy"))) for c in root.iter(f"{_SVG}circle")]
    assert len(dots) == 6
    by_x = sorted(dots)
    assert by_x[2][0] < by_x[3][0]  # D0 points left of D8 points
    values = summary["treg_pct_cd4"].to_numpy()
    heights = [y for _, y in dots]  # drawn in the summary's row order
    assert np.argsort(values).tolist() == np.argsort(heights)[::-1].tolist()


def test_renders_in_headless_chromium(written, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    shot = tmp_path / "shot.png"
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tempfile.mkdtemp()}",
        f"--screenshot={shot}",
        "--window-size=1400,3000",
        f"file://{written}",
    ]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert shot.is_file()
    pixels = mpimg.imread(shot)
    assert pixels.shape[:2] == (3000, 1400)
    rgb = pixels[..., :3]
    assert rgb.std() > 0.05 and (rgb < 0.5).mean() > 0.005  # text and figures drawn, not blank


def test_report_of_a_real_pipeline_run(small_trial, tmp_path):
    """End to end on a simulated trial: gating paths of every sample embedded, stats match the summary."""
    from cytokit.pipeline import run

    result = run(small_trial, out=tmp_path, jobs=1, cluster=False)
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"https?://", text)
    summary = result.summary
    for sample in summary["sample"]:
        assert f"gating path of {sample}" in text
    wide = summary.pivot(index="patient", columns="timepoint", values="treg_pct_cd4")
    row = result.stats.set_index(["readout", "timepoint"]).loc[("treg_pct_cd4", "D8")]
    assert row["n_pairs"] == len(wide.dropna())
    assert row["median_fold_change"] == pytest.approx((wide["D8"] / wide["D0"]).median())
    assert summary["treg_fold_vs_baseline"].notna().all()


def test_cluster_section_lists_the_clusters_that_change(tmp_path):
    from test_stats import _cluster_rows

    rows = _cluster_rows(days=(0, 8))
    da = pd.DataFrame(
        {
            "cluster": ["1", "2", "3"],
            "label": ["type 1", "type 2", "CD4+ CD25hi FOXP3+"],
            "timepoint": "D8",
            "n_pairs": 8,
            "baseline_median": [60.0, 35.0, 3.0],
            "median": [59.0, 34.0, 6.0],
            "median_fold_change": [0.98, 0.97, 2.0],
            "p_value": [0.2, 0.6, 0.004],
            "p_adj": [0.3, 0.6, 0.012],
            "method": "wilcoxon",
        }
    )
    fig = pl.abundance_change(da)
    path = report.write_report(
        tmp_path,
        summary=pd.DataFrame(),
        stats=pd.DataFrame(),
        qc=pd.DataFrame(),
        populations=pd.DataFrame(),
        gate_figures={},
        methods={},
        clusters=rows,
        cluster_figures={report.ABUNDANCE_CHANGE: fig, report.CLUSTER_HEATMAP: fig},
        da=da,
    )
    text = path.read_text(encoding="utf-8")
    section = text[text.index('id="clusters"') :]
    changed = section[: section.index("<details")]  # the short table before the full da.csv
    assert "CD4+ CD25hi FOXP3+" in changed and "type 1" not in changed
    assert "1 of 3 cluster x timepoint tests with q &lt; 0.05" in section
    assert "type 1" in section  # in the full table
    assert section.index(report.CLUSTER_HEATMAP) < section.index(report.ABUNDANCE_CHANGE)


def test_a_strategy_without_tregs_gets_no_empty_treg_figure(tmp_path):
    """A mouse lineage run (no Treg or Teff readouts) shows its tables, not four empty Treg panels."""
    summary = pd.DataFrame(
        {"sample": ["M1_D0", "M1_D8"], "patient": "M1", "timepoint": ["D0", "D8"], "day": [0, 8]}
    )
    qc = pd.DataFrame({"file": ["a.fcs", "b.fcs"], "sample": summary["sample"], "status": "ok",
                       "events": 100, "message": ""})  # fmt: skip
    text = report.write_report(tmp_path, summary=summary, stats=None, qc=qc, populations=None,
                               gate_figures={}, methods={"cytokit": "0.1.0"}).read_text()  # fmt: skip
    assert "Treg versus Teff" not in text
    assert "Run overview" in text
