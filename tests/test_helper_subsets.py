"""Helper T-cell subsets (cTfh, Th1/Th2/Th17, cytokine+) on hand-made transformed samples.

The helper markers are drawn as on real memory CD4 T cells: CXCR5+ cells are a shoulder on the negative
peak, CXCR3 and CCR6 positives are continua that overlap the negatives; naive CD4 T cells lack them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_gating_engine import synthetic_sample

from cytokit import _keys as K
from cytokit.gating import gate, load_strategy
from cytokit.gating._methods import reference_threshold, tail_threshold
from cytokit.readouts import HELPER_READOUTS, sample_readouts

HELPER = ("CXCR5", "PD-1", "CXCR3", "CCR6", "CCR4")
HELPER_GATES = ("CD4_CD45RAneg", "CD4mem", "CD4naive", "cTfh", "cTfh_PD1hi", "CD4mem_CXCR5neg",
                "CXCR3pos", "CXCR3neg", "Th1", "Th1_17", "CCR6pos", "CCR6neg", "Th17", "Th2",
                "IL17Apos", "IFNgpos", "IL4pos")  # fmt: skip
NEG = (0.2, 0.035)  # the negative staining of synthetic_sample's markers (transformed units)


def helper_sample(
    n=30000,
    *,
    seed=0,
    markers=HELPER,
    tfh=0.16,
    th17_frac=0.2,
    cytokines=(),
    cxcr3=(0.33, 0.06),
    memory_shift=0.0,
):
    """synthetic_sample plus helper-subset markers, with the truth of each readout in uns["truth"]."""
    ad = synthetic_sample(n=n, seed=seed, time_anomaly=False)
    rng = np.random.default_rng(seed + 100)
    truth = ad.obs["truth"].astype(str).to_numpy()
    ra = ad[:, "CD45RA"].X[:, 0]
    cd4 = np.isin(truth, ["Treg", "Teff"])
    memory = (truth == "Teff") & (
        ra != np.float32(0.55)
    )  # synthetic_sample's naive CD4 sit at 0.55
    values = {m: rng.normal(*NEG, n) for m in (*markers, *cytokines)}
    u = rng.random(n)
    is_tfh = memory & (u < tfh)
    rest = memory & ~is_tfh
    v = rng.random(n)  # among CXCR5- memory: Th1 30 %, Th17 th17_frac, Th1/17 10 %, Th2 the rest
    th1 = rest & (v < 0.3)
    th17 = rest & (v >= 0.3) & (v < 0.3 + th17_frac)
    th1_17 = rest & (v >= 0.3 + th17_frac) & (v < 0.4 + th17_frac)
    th2 = rest & (v >= 0.4 + th17_frac)
    pd1hi = is_tfh & (rng.random(n) < 0.3)

    def pos(mask, mu, sd, marker):
        if marker in values:
            values[marker][mask] = rng.normal(mu, sd, mask.sum())

    pos(is_tfh, 0.31, 0.05, "CXCR5")  # a shoulder: 3 negative SDs up, wider than the negatives
    pos(is_tfh & ~pd1hi, 0.37, 0.05, "PD-1")  # cTfh are PD-1+; PD-1hi overlap them without a valley
    pos(pd1hi, 0.5, 0.045, "PD-1")
    if "CXCR3" in values:  # memory cells' receptor-negative part may sit brighter than naive cells'
        values["CXCR3"][memory] += memory_shift
    pos(th1 | th1_17, *cxcr3, "CXCR3")  # continua overlapping the negatives (by default)
    pos(th17 | th1_17, 0.35, 0.06, "CCR6")
    pos(th17 | th2, 0.4, 0.05, "CCR4")
    ifng = cd4 & (rng.random(n) < 0.04)
    pos(ifng, 0.55, 0.06, "IFNg")
    added = [*markers, *cytokines]
    X = np.column_stack([ad.X, np.column_stack([values[m] for m in added]).astype(np.float32)])
    var = pd.DataFrame(
        {K.MARKER: [*ad.var[K.MARKER], *added],
         K.CHANNEL: [*ad.var[K.CHANNEL], *(f"FL{i}-A" for i in range(len(added)))]},
        index=[*ad.var_names, *added],
    )  # fmt: skip
    out = ad.__class__(X, obs=ad.obs.copy(), var=var, uns=ad.uns)
    subset = np.full(n, "", dtype=object)
    for name, mask in (
        ("cTfh", is_tfh),
        ("Th1", th1),
        ("Th2", th2),
        ("Th17", th17),
        ("Th1_17", th1_17),
    ):
        subset[mask] = name
    out.obs["helper_truth"] = pd.Categorical(subset)
    n_cd4, n_mem, n_treg = cd4.sum(), memory.sum(), (truth == "Treg").sum()
    out.uns["truth"] = {
        "tfh_pct_cd4": 100 * is_tfh.sum() / n_cd4,
        "tfh_pd1hi_pct_tfh": 100 * pd1hi.sum() / is_tfh.sum(),
        "th1_pct_mem": 100 * th1.sum() / n_mem,
        "th2_pct_mem": 100 * th2.sum() / n_mem,
        "th17_pct_mem": 100 * th17.sum() / n_mem,
        "th1_17_pct_mem": 100 * th1_17.sum() / n_mem,
        "th17_treg_ratio": th17.sum() / n_treg,
        "ifng_pct_cd4": 100 * ifng.sum() / n_cd4,
    }
    return out


def _helper_warnings(ad) -> list[str]:
    return [w for w in ad.uns[K.GATING]["warnings"] if w.split(":")[0].split()[0] in HELPER_GATES]


def _strategy_without_helpers(tmp_path):
    text = (load_strategy("treg").path).read_text()
    line = "include: [shared/cd4_memory.yaml, shared/helper_subsets.yaml]"
    assert line in text
    path = tmp_path / "treg_plain.yaml"
    shared = load_strategy("treg").path.parent / "shared" / "cd4_memory.yaml"
    path.write_text(text.replace(line, f"include: [{shared}]"))
    return path


# ------------------------------------------------------------------------------ placement method
def _shoulder(rng, n=4000, frac=0.2, neg_sd=0.035):
    pos = rng.random(n) < frac
    x = np.where(pos, rng.normal(0.3, 0.05, n), rng.normal(0.2, neg_sd, n))
    return x, pos


def test_reference_threshold_counts_a_shoulder_that_a_tail_gate_misses():
    errors, tail_errors = [], []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        x, pos = _shoulder(rng)
        ref = rng.normal(0.2, 0.035, 5000)
        p = reference_threshold(x, ref)
        gated = np.mean(x >= p.value)
        assert gated == pytest.approx(p.details["positive_fraction"], abs=0.002)  # gate = count
        errors.append(gated - pos.mean())
        tail_errors.append(np.mean(x >= tail_threshold(ref).value) - pos.mean())
    assert np.mean(np.abs(errors)) < 0.02 and np.max(np.abs(errors)) < 0.05
    assert np.mean(tail_errors) < -0.05  # why a tail gate is not used: it misses the shoulder


def test_reference_threshold_follows_wider_negatives_and_low_side():
    rng = np.random.default_rng(3)
    x, pos = _shoulder(rng, frac=0.3, neg_sd=0.045)  # compensation spread: wider than the reference
    p = reference_threshold(x, rng.normal(0.2, 0.035, 5000))
    assert abs(np.mean(x >= p.value) - pos.mean()) < 0.03
    low = reference_threshold(-x, -rng.normal(0.2, 0.035, 5000), side="low")
    assert abs(np.mean(-x <= low.value) - pos.mean()) < 0.03


def test_reference_threshold_without_positives_gates_almost_nothing():
    rng = np.random.default_rng(4)
    p = reference_threshold(rng.normal(0.2, 0.035, 4000), rng.normal(0.2, 0.035, 5000))
    assert p.details["positive_fraction"] < 0.03


def test_self_reference_follows_the_bright_share_of_a_positive_population():
    # PD-1hi among PD-1+ cTfh: no population carries the int level alone; the main peak's lower half
    # is the reference. What must hold: more PD-1hi cells, a larger share (the week-2 direction)
    shares = []
    for frac in (0.1, 0.35):
        est = []
        for seed in range(3):
            rng = np.random.default_rng(seed)
            hi = rng.random(3000) < frac
            x = np.where(hi, rng.normal(0.52, 0.045, 3000), rng.normal(0.37, 0.05, 3000))
            est.append(reference_threshold(x, None).details["positive_fraction"])
        shares.append(np.mean(est))
        assert abs(np.mean(est) - frac) < 0.1
    assert shares[1] > shares[0] + 0.1


# ------------------------------------------------------------------------------ gating + readouts
@pytest.fixture(scope="module")
def gated_helper():
    ad = helper_sample(n=24000, seed=1, cytokines=("IFNg",))
    gate(ad)
    return ad


def test_combined_panel_gives_treg_and_helper_readouts_together(gated_helper):
    ad = gated_helper
    r = sample_readouts(ad)
    truth = ad.uns["truth"]
    assert np.isfinite(r["treg_pct_cd4"]) and np.isfinite(r["treg_teff_ratio"])
    assert abs(r["tfh_pct_cd4"] - truth["tfh_pct_cd4"]) < 1.0
    for key in ("th1_pct_mem", "th2_pct_mem", "th17_pct_mem", "th1_17_pct_mem"):
        assert abs(r[key] - truth[key]) < 4.0, key
    assert r["th17_treg_ratio"] == pytest.approx(truth["th17_treg_ratio"], rel=0.2)
    assert abs(r["ifng_pct_cd4"] - truth["ifng_pct_cd4"]) < 1.0
    assert np.isnan(r["il17a_pct_cd4"]) and np.isnan(r["il4_pct_cd4"])  # not in this panel
    assert not _helper_warnings(ad)
    assert set(ad.uns[K.GATING]["missing_markers"]) == {"IL-17A", "IL-4"}


def test_helper_subsets_are_memory_cd4_and_disjoint(gated_helper):
    pops = gated_helper.obsm[K.POPULATIONS]
    mem = pops["CD4mem"].to_numpy()
    assert not (mem & pops["Treg"].to_numpy()).any()
    assert not (mem & pops["CD4naive"].to_numpy()).any()
    subsets = pops[["cTfh", "Th1", "Th2", "Th17", "Th1_17"]].to_numpy()
    assert (subsets.sum(axis=1) <= 1).all() and not subsets[~mem].any()
    # Th1 cells are mostly true Th1: the quadrants are placed where the truth is, not anywhere
    truth = gated_helper.obs["helper_truth"].astype(str).to_numpy()
    for name in ("cTfh", "Th1", "Th2", "Th17"):
        assert np.mean(truth[pops[name].to_numpy()] == name) > 0.75, name


def test_panel_without_helper_markers_gates_exactly_as_before(tmp_path):
    ad = synthetic_sample(n=8000, seed=2)
    plain = ad.copy()
    gate(ad)
    gate(plain, strategy=_strategy_without_helpers(tmp_path))
    assert (ad.obs[K.POPULATION] == plain.obs[K.POPULATION]).all()
    for name in plain.obsm[K.POPULATIONS]:
        assert (ad.obsm[K.POPULATIONS][name] == plain.obsm[K.POPULATIONS][name]).all(), name
    assert ad.uns[K.GATING]["warnings"] == plain.uns[K.GATING]["warnings"]
    assert "cTfh" in ad.uns[K.GATING]["missing_markers"]["CXCR5"]
    for name in ("cTfh", "CXCR3pos", "CCR6pos", "Th1", "Th17"):
        assert ad.uns[K.GATING]["gates"][name]["status"] == "skipped", name
    r, before = sample_readouts(ad), sample_readouts(plain)
    for key in HELPER_READOUTS:
        assert np.isnan(r[key]), key  # empty, never 0
    assert r["treg_pct_cd4"] == before["treg_pct_cd4"]


def test_ccr4_refines_th2_and_th17_only_where_measured():
    with_ccr4 = helper_sample(n=16000, seed=3)
    without = helper_sample(n=16000, seed=3, markers=("CXCR5", "PD-1", "CXCR3", "CCR6"))
    gate(with_ccr4)
    gate(without)
    a, b = sample_readouts(with_ccr4), sample_readouts(without)
    assert np.isfinite(b["th17_pct_mem"]) and np.isfinite(b["th2_pct_mem"])
    assert (
        b["th2_pct_mem"] > a["th2_pct_mem"] + 2
    )  # CCR4- CXCR3- CCR6- cells count as Th2 without CCR4
    assert not _helper_warnings(without)
    assert "CCR4" in without.uns[K.GATING]["missing_markers"]


def test_helper_markers_found_under_other_spellings():
    ad = helper_sample(n=16000, seed=4)
    renamed = ad.copy()
    stains = {"CXCR5": "CD185 BB515", "PD-1": "CD279 BV605", "CXCR3": "CD183 PE",
              "CCR6": "CD196 BV785", "CCR4": "CD194 PE-Cy7"}  # fmt: skip
    names = list(renamed.var_names)
    renamed.var[K.STAIN] = [stains.get(n, n) for n in names]
    renamed.var[K.MARKER] = ["" if n in stains else n for n in names]
    renamed.var_names = [
        renamed.var[K.CHANNEL].iloc[i] if n in stains else n for i, n in enumerate(names)
    ]
    gate(ad)
    gate(renamed)
    r, s = sample_readouts(ad), sample_readouts(renamed)
    for key in ("tfh_pct_cd4", "th1_pct_mem", "th17_pct_mem", "th17_treg_ratio"):
        assert np.isfinite(s[key]) and s[key] == pytest.approx(r[key]), key


# ------------------------------------------------------------------------------ one definition
def test_helper_gates_are_one_shared_definition(tmp_path):
    strat = load_strategy("treg")
    assert [p.name for p in strat.sources] == [
        "treg.yaml",
        "cd4_memory.yaml",
        "helper_subsets.yaml",
    ]
    assert {"cTfh", "Th1", "Th2", "Th17", "CD4mem"} <= set(strat.names)
    # a copy of the strategy elsewhere still finds the shipped shared file
    copy = tmp_path / "mine.yaml"
    copy.write_text(strat.path.read_text())
    assert "cTfh" in load_strategy(copy).names


def test_include_errors_name_the_file(tmp_path):
    from cytokit.errors import StrategyError

    base = load_strategy("treg").path.read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(base.replace("shared/helper_subsets.yaml", "nowhere.yaml"))
    with pytest.raises(StrategyError, match=r"nowhere\.yaml"):
        load_strategy(bad)
    (tmp_path / "frag.yaml").write_text("name: x\ngates: []\n")
    bad.write_text(base.replace("shared/helper_subsets.yaml", "frag.yaml"))
    with pytest.raises(StrategyError, match=r"frag\.yaml"):
        load_strategy(bad)
    (tmp_path / "dup.yaml").write_text(
        "gates:\n  - {id: Treg, parent: CD4, dims: [CD25], method: tail}\n"
    )
    bad.write_text(base.replace("shared/helper_subsets.yaml", "dup.yaml"))
    with pytest.raises(StrategyError, match="duplicate"):
        load_strategy(bad)


# ------------------------------------------------------------------------------ tables and figures
def _helper_summary(with_helpers=True):
    rng = np.random.default_rng(0)
    rows = []
    for p in range(6):
        for week, day in ((0, 0), (2, 14), (4, 28)):
            row = {"sample": f"P{p}_W{week}", "patient": f"P{p}", "timepoint": f"W{week}", "day": day,
                   "treg_pct_cd4": 6 + week + rng.normal(0, 0.3)}  # fmt: skip
            for key in HELPER_READOUTS:
                row[key] = np.nan
            if with_helpers:
                row.update(tfh_pct_cd4=8 - week + rng.normal(0, 0.3), th1_pct_mem=25 + rng.normal(0, 1),
                           th2_pct_mem=30 + rng.normal(0, 1), th17_pct_mem=15 - 2 * week + rng.normal(0, 0.5),
                           tfh_pd1hi_pct_tfh=30 + rng.normal(0, 2))  # fmt: skip
                row["th17_treg_ratio"] = row["th17_pct_mem"] / row["treg_pct_cd4"]
            rows.append(row)
    return pd.DataFrame(rows)


def test_stats_test_helper_readouts_only_when_measured():
    from cytokit.stats import paired_tests

    with_h = paired_tests(_helper_summary())
    assert {"tfh_pct_cd4", "th17_pct_mem", "th17_treg_ratio"} <= set(with_h["readout"])
    assert "il17a_pct_cd4" not in set(with_h["readout"])  # never measured: no rows of blanks
    tfh = with_h.loc[(with_h["readout"] == "tfh_pct_cd4") & (with_h["timepoint"] == "W4")].iloc[0]
    assert tfh["median_difference"] < -3 and tfh["n_pairs"] == 6
    without = paired_tests(_helper_summary(with_helpers=False))
    assert not set(HELPER_READOUTS) & set(without["readout"])


def test_helper_subset_figure_draws_measured_panels_only():
    from cytokit import pl

    fig = pl.helper_subsets(_helper_summary())
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "cTfh and activated cTfh",
        "Th subsets (% of memory CD4)",
        "Th17/Treg balance",
    ]
    th = fig.axes[1]
    assert [t.get_text() for t in th.get_legend().get_texts()] == ["Th1", "Th2", "Th17"]
    th17 = th.get_lines()[2].get_ydata()  # median fold of Th17 over W0, W2, W4 falls
    assert th17[0] == pytest.approx(1.0) and th17[-1] < 0.7
    empty = pl.helper_subsets(_helper_summary(with_helpers=False))
    assert "not measured" in empty.axes[0].texts[0].get_text()


def test_report_shows_helper_subsets_only_when_measured(tmp_path):
    from cytokit import report
    from cytokit.stats import paired_tests

    def page(summary, folder):
        qc = pd.DataFrame({"file": [f"{s}.fcs" for s in summary["sample"]], "sample": summary["sample"],
                           "status": "ok", "events": 1000, "message": ""})  # fmt: skip
        path = report.write_report(folder, summary=summary, stats=paired_tests(summary), qc=qc,
                                   populations=pd.DataFrame(), gate_figures={},
                                   methods={"command": "cytokit run x/"})  # fmt: skip
        return path.read_text(encoding="utf-8")

    with_h = page(_helper_summary(), tmp_path / "a")
    assert "Helper T-cell subsets" in with_h and 'alt="helper subsets"' in with_h
    assert "Th17/Treg ratio" in with_h  # its paired boxes among the subset readouts
    without = page(_helper_summary(with_helpers=False), tmp_path / "b")
    assert "Helper T-cell subsets" not in without


def test_a_valley_in_memory_cells_wins_over_the_excess_over_naive_cells():
    # unseen SLE trial 7302, P06_W2: memory CXCR3- cells sat brighter than naive CD4 (median 0.19 vs
    # 0.16) and Th1 were a separate peak at 0.48; the excess over the naive shape counted the shifted
    # negatives too (Th1 63 % of memory called for 32 %). The memory cells' own valley separates them
    ad = helper_sample(n=24000, seed=4, cxcr3=(0.45, 0.04), memory_shift=0.035)
    gate(ad)
    r, truth = sample_readouts(ad), ad.uns["truth"]
    assert abs(r["th1_pct_mem"] - truth["th1_pct_mem"]) < 2.0, (
        r["th1_pct_mem"],
        truth["th1_pct_mem"],
    )
    assert abs(r["th1_17_pct_mem"] - truth["th1_17_pct_mem"]) < 2.0
