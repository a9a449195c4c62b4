"""The gating engine on hand-made transformed samples: labels, populations, uns, priors, strategies."""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

from cytokit import _keys as K
from cytokit.datasets._panel import MARKERS as SIMULATED_MARKERS
from cytokit.errors import GatingError, MarkerError, StrategyError
from cytokit.gating import consensus_prior, gate, gate_from_dict, load_strategy
from cytokit.gating._strategy import parse_expr, population_rows, strategy_from_dict

MARKERS = [m for m in SIMULATED_MARKERS if m != "Viability"]
DIMS = ["FSC-A", "FSC-H", "SSC-A", "Time", "Viability", *MARKERS]


def synthetic_sample(n=20000, *, seed=0, treg=0.08, shift=0.0, time_anomaly=True, drop=()):
    """A transformed sample (0..1 units) with per-event truth in obs["truth"]."""
    rng = np.random.default_rng(seed)
    kinds = ["debris", "doublet", "mono", "gran", "dead", "B/NK", "CD8", "DN", "Treg", "Teff"]
    lymph_live = np.array([0.25, 0.22, 0.03, 0.5 * treg, 0.5 * (1 - treg)]) * 0.72
    p = np.array([0.05, 0.03, 0.1, 0.04, 0.06, *lymph_live])
    kind = rng.choice(len(kinds), n, p=p / p.sum())
    names = np.array(kinds, dtype=object)[kind]
    X = {d: rng.normal(0.2, 0.035, n) for d in MARKERS}
    X["Viability"] = rng.normal(0.2, 0.04, n)
    fsc = rng.normal(0.35, 0.03, n)
    ssc = rng.normal(0.12, 0.02, n)
    set_ = {
        "debris": {"fsc": (0.08, 0.03), "ssc": (0.04, 0.02)},
        "mono": {"fsc": (0.55, 0.04), "ssc": (0.35, 0.05), "CD4": (0.4, 0.04), "HLA-DR": (0.6, 0.05)},
        "gran": {"fsc": (0.6, 0.04), "ssc": (0.7, 0.07)},
        "dead": {"fsc": (0.3, 0.03), "Viability": (0.65, 0.05)},
        "B/NK": {"CD56": (0.45, 0.08)},
        "CD8": {"CD3": (0.6, 0.04), "CD8": (0.65, 0.05), "CD45RA": (0.55, 0.08)},
        "DN": {"CD3": (0.6, 0.04)},
        "Treg": {"CD3": (0.6, 0.04), "CD4": (0.62, 0.04), "CD25": (0.62, 0.05), "FOXP3": (0.58, 0.05),
                 "CD127": (0.25, 0.04), "Helios": (0.55, 0.06)},
        "Teff": {"CD3": (0.6, 0.04), "CD4": (0.62, 0.04), "CD25": (0.3, 0.05), "CD127": (0.5, 0.05)},
    }  # fmt: skip
    for k, spec in set_.items():
        sel = names == k
        for dim, (mu, sd) in spec.items():
            vals = rng.normal(mu, sd, sel.sum())
            if dim == "fsc":
                fsc[sel] = vals
            elif dim == "ssc":
                ssc[sel] = vals
            else:
                X[dim][sel] = vals
    nk = (names == "B/NK") & (rng.random(n) < 0.5)
    X["CD56"][nk] = 0.2 + rng.random(nk.sum()) * 0.0
    memory = rng.random(n) < 0.5
    X["CD45RA"][np.isin(names, ["Treg", "Teff"]) & ~memory] = 0.55
    X["Ki67"][rng.random(n) < 0.1] += 0.35
    for d in MARKERS:
        X[d] += shift
    height = fsc * 0.85 + rng.normal(0, 0.006, n)
    dbl = names == "doublet"
    fsc[dbl] = rng.normal(0.35, 0.03, dbl.sum()) * 1.9
    height[dbl] = fsc[dbl] * 0.55
    X["FSC-A"], X["FSC-H"], X["SSC-A"] = fsc, height, ssc
    t = np.sort(rng.uniform(0, 1, n))
    if time_anomaly:
        bad = (t > 0.6) & (t < 0.64)
        X["FSC-A"][bad] += 0.15
        names = names.copy()
        names[bad] = "time_anomaly"
    X["Time"] = t
    dims = [d for d in DIMS if d not in drop]
    ad = AnnData(np.column_stack([X[d] for d in dims]).astype(np.float32))
    ad.var_names = dims
    ad.var[K.MARKER] = dims
    ad.var[K.CHANNEL] = [f"ch{i}" for i in range(len(dims))]
    ad.obs["truth"] = pd.Categorical(names)
    ad.uns[K.SAMPLE_INFO] = {"file": "synthetic.fcs", "sample": "synthetic", "warnings": []}
    return ad


def treg_pct(ad, key="population"):
    pops = ad.obsm[K.POPULATIONS]
    return 100 * pops["Treg"].sum() / pops["CD4"].sum()


def truth_pct(ad):
    t = ad.obs["truth"].astype(str)
    return 100 * (t == "Treg").sum() / t.isin(["Treg", "Teff"]).sum()


def test_gate_fills_obs_obsm_uns():
    ad = synthetic_sample()
    assert gate(ad) is None
    pops = ad.obsm[K.POPULATIONS]
    assert pops.dtypes.eq(bool).all()
    for name in ["time_ok", "cells", "singlets", "lymphocytes", "live", "CD3", "CD4", "CD8", "Treg",
                 "Teff", "Treg_CD45RAneg", "Treg_Ki67pos", "NK_CD56bright"]:  # fmt: skip
        assert name in pops
    labels = ad.obs["population"]
    assert isinstance(labels.dtype, pd.CategoricalDtype)
    assert not (labels == "ungated").any()
    # every event carries exactly its deepest lineage population
    assert set(labels.cat.categories) <= {
        "Treg", "Teff", "CD4", "CD8", "DN/DP T", "B/NK", "dead", "non-lymphocyte", "doublet",
        "debris", "time_anomaly",
    }  # fmt: skip
    assert (labels == "Treg").sum() == pops["Treg"].sum()
    assert not (pops["Treg"] & pops["Teff"]).any()
    assert (pops["Treg"] <= pops["CD4"]).all() and (pops["CD4"] <= pops["CD3"]).all()
    uns = ad.uns[K.GATING]
    assert uns["strategy"] == "treg"
    parents = {p["name"]: p["parent"] for p in population_rows(uns)}
    assert parents["Treg"] == "FOXP3+CD127lo" and parents["FOXP3+CD127lo"] == "CD4"
    rec = uns["gates"]["Treg"]
    assert rec["status"] in ("ok", "fallback") and gate_from_dict(rec["gate"]).dims == ("CD25",)
    core = gate_from_dict(uns["gates"]["FOXP3+CD127lo"]["gate"])
    assert core.dims == ("FOXP3", "CD127")
    assert isinstance(uns["warnings"], list)


def test_labels_match_truth_on_clean_sample():
    ad = synthetic_sample(seed=1)
    gate(ad)
    truth, got = ad.obs["truth"].astype(str).to_numpy(), ad.obs["population"].astype(str).to_numpy()
    for name in ["Treg", "Teff", "CD8", "debris", "doublet", "dead", "time_anomaly"]:
        sel = truth == name
        assert (got[sel] == name).mean() > 0.9, name
    assert abs(treg_pct(ad) - truth_pct(ad)) < 1.0


def test_drifted_intensities_still_gate_well():
    # each detector drifts its own way (voltage, laser power): markers move by different amounts and
    # some are compressed, so no constant threshold in transformed units fits every channel
    ad = synthetic_sample(seed=2, treg=0.05)
    moves = {"CD3": (0.10, 1.0), "CD4": (-0.06, 0.9), "CD25": (0.08, 1.15), "FOXP3": (-0.05, 0.85),
             "CD8": (0.12, 1.0), "Viability": (0.06, 1.1), "CD127": (-0.04, 1.0)}  # fmt: skip
    for dim, (shift, stretch) in moves.items():
        j = ad.var_names.get_loc(dim)
        ad.X[:, j] = 0.2 + (ad.X[:, j] - 0.2) * stretch + shift
    gate(ad)
    assert abs(treg_pct(ad) - truth_pct(ad)) < 1.0
    truth, got = ad.obs["truth"].astype(str).to_numpy(), ad.obs["population"].astype(str).to_numpy()
    for name in ("Teff", "CD8", "dead"):
        assert (got[truth == name] == name).mean() > 0.9, name


def test_copy_leaves_input_untouched():
    ad = synthetic_sample(n=5000)
    out = gate(ad, copy=True, key_added="gated")
    assert "gated" in out.obs and "gated" not in ad.obs and K.GATING not in ad.uns


def test_marker_spellings_resolve_through_channel_and_case():
    ad = synthetic_sample(n=8000, seed=3)
    names = list(ad.var_names)
    ad.var[K.CHANNEL] = names
    ad.var_names = [f"ch{i}" for i in range(len(names))]  # only the channel column names markers
    ad.var[K.MARKER] = [n.lower() if n == "FOXP3" else "" for n in names]
    gate(ad)
    assert ad.uns[K.GATING]["gates"]["FOXP3+"]["gate"]["dims"] == ["ch" + str(names.index("FOXP3"))]
    assert abs(treg_pct(ad) - truth_pct(ad)) < 1.0


def test_missing_optional_marker_is_skipped_and_recorded_not_warned():
    # a marker the panel lacks is about the panel, not the sample: recorded, no per-sample warning
    ad = synthetic_sample(n=8000, drop=("Helios", "CD56"))
    gate(ad)
    pops = ad.obsm[K.POPULATIONS]
    assert "Treg_Heliospos" not in pops and "NK_CD56bright" not in pops and "Treg" in pops
    rec = ad.uns[K.GATING]["gates"]["Treg_Heliospos"]
    assert rec["status"] == "skipped" and "Helios" in rec["message"]
    missing = ad.uns[K.GATING]["missing_markers"]
    assert "Treg_Heliospos" in missing["Helios"] and "NK" in missing["CD56"]
    assert not any("Helios" in w or "CD56" in w for w in ad.uns[K.GATING]["warnings"])


def test_missing_time_passes_all_events():
    ad = synthetic_sample(n=8000, drop=("Time",), time_anomaly=False)
    gate(ad)
    assert ad.obsm[K.POPULATIONS]["time_ok"].all()
    assert ad.uns[K.GATING]["gates"]["time_ok"]["status"] == "skipped"


def test_missing_required_marker_raises_marker_error_naming_file():
    ad = synthetic_sample(n=5000, drop=("FOXP3",))
    with pytest.raises(MarkerError, match=r"synthetic\.fcs.*FOXP3"):
        gate(ad)


def test_too_few_events_raise_gating_error():
    ad = synthetic_sample(n=5000)[:15].copy()
    with pytest.raises(GatingError, match=r"synthetic\.fcs"):
        gate(ad)


def test_prior_keeps_placement_and_flags_jump():
    # the prior comes from the patient's other samples (other draws, their own small drifts)
    others = [
        synthetic_sample(n=8000, seed=s, shift=d) for s, d in ((40, 0.02), (41, -0.02), (42, 0.0))
    ]
    for o in others:
        gate(o)
    prior = consensus_prior([o.uns[K.GATING] for o in others])
    ad = synthetic_sample(seed=4)
    own = gate(ad, copy=True)
    thr = own.uns[K.GATING]["gates"]["FOXP3+"]["gate"]["low"][0]
    again = gate(ad, prior=prior, copy=True)
    # the sample's own valley agrees with the prior: it is kept (not replaced by the prior)
    assert abs(again.uns[K.GATING]["gates"]["FOXP3+"]["gate"]["low"][0] - thr) < 0.02
    assert abs(treg_pct(again) - truth_pct(again)) < 1.0
    # a sample without Tregs to see (FOXP3, CD25, CD127 one peak each) falls back to the prior's cut
    flat = synthetic_sample(seed=9)
    for m in ("FOXP3", "CD25", "CD127"):
        j = flat.var_names.get_loc(m)
        flat.X[:, j] = np.random.default_rng(9).normal(0.3, 0.08, flat.n_obs)
    placed = gate(flat, prior=prior, copy=True).uns[K.GATING]["gates"]["FOXP3+"]
    assert placed["status"] == "fallback"
    assert abs(placed["gate"]["low"][0] - prior["gates"]["FOXP3+"]["gate"]["low"][0]) < 1e-6
    moved = {
        "gates": {
            "FOXP3+": {
                "gate": {"kind": "range", "dims": ["FOXP3"], "low": [thr + 0.25], "high": [None]}
            }
        }
    }
    third = gate(ad, prior=moved, copy=True)
    assert any("far from the prior" in w for w in third.uns[K.GATING]["warnings"])


def test_consensus_prior_is_median_of_thresholds():
    def mk(v):
        rec = {
            "status": "ok",
            "gate": {"kind": "range", "dims": ["CD3"], "low": [v], "high": [None]},
        }
        return {"gates": {"CD3": rec}}

    prior = consensus_prior([mk(0.3), mk(0.5), mk(0.35)])
    assert prior["gates"]["CD3"]["gate"]["low"] == [0.35]
    assert np.isnan(prior["gates"]["CD3"]["gate"]["high"]).all()  # open, as uns stores it


def test_fixed_gate_strategy_and_boolean():
    doc = {
        "name": "mini",
        "gates": [
            {"id": "pos", "dims": ["CD3"], "gate": {"kind": "range", "low": [0.4], "high": [None]}},
            {"id": "cd4", "parent": "pos", "dims": ["CD4"], "method": "valley", "outside": "other"},
        ],
        "populations": [
            {"id": "notcd4", "parent": "pos", "expr": "pos and not cd4", "label": False}
        ],
    }
    ad = synthetic_sample(n=6000)
    gate(ad, strategy_from_dict(doc))
    pops = ad.obsm[K.POPULATIONS]
    x = ad[:, "CD3"].X.ravel()
    assert (pops["pos"] == (x >= 0.4)).all()
    assert (pops["notcd4"] == (pops["pos"] & ~pops["cd4"])).all()
    assert set(ad.obs["population"].cat.categories) <= {"pos", "cd4", "other", "ungated"}


def test_strategy_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("gates:\n  - id: a\n    dims: [CD3]\n    method: magic\n")
    with pytest.raises(StrategyError, match=r"bad\.yaml.*unknown method 'magic'"):
        load_strategy(bad)
    cyc = {"gates": [{"id": "a", "parent": "b", "dims": ["x"], "method": "valley"},
                     {"id": "b", "parent": "a", "dims": ["x"], "method": "valley"}]}  # fmt: skip
    with pytest.raises(StrategyError, match="cycle"):
        strategy_from_dict(cyc)
    with pytest.raises(
        StrategyError, match="gate 'a': parent names 'zz', which is not a population"
    ):
        strategy_from_dict(
            {"gates": [{"id": "a", "parent": "zz", "dims": ["x"], "method": "tail"}]}
        )
    with pytest.raises(StrategyError, match="no gating definition"):
        load_strategy("no_such_strategy")


# a mistake in a user's strategy (one gate of ``extends: treg`` replaced): gate id, its YAML, the key
# named and what the message says is wrong
LYMPH = "dims: [FSC-A|FSC-H, SSC-A|SSC-H]\n    method: scatter_mixture\n    params: "
MISTAKES = {
    "dead_check misspelt": ("lymphocytes", LYMPH + "{dead_check: Liv}", "dead_check",
                            "names 'Liv', which is not a gate.*did you mean 'live'"),
    "dead_check not a valley gate": ("lymphocytes", LYMPH + "{dead_check: CD4}", "dead_check",
                                     "names 'CD4', which is not a valley gate"),
    "within misspelt": ("Treg_Heliospos", "dims: [Helios]\n    method: split\n    "
                        "params: {side: high, within: CD44}", "within",
                        "names 'CD44', which is not a population.*did you mean 'CD4'"),
    "from a gate without the dim": ("Treg_CD45RApos", "dims: [CD45RA]\n    method: valley\n    "
                                    "params: {from: Treg_Ki67pos, side: high}", "from",
                                    "not a 1-D or range gate over CD45RA"),
    "count_with misspelt": ("FOXP3+", "dims: [FOXP3]\n    method: valley\n    "
                            "params: {helpers: {CD25: high}, count_with: Tregs}", "count_with",
                            "did you mean 'Treg'"),
    "count_with placed before": ("FOXP3+", "dims: [FOXP3]\n    method: valley\n    "
                                 "params: {helpers: {CD25: high}, count_with: CD4}", "count_with",
                                 "placed before this gate"),
    "negative_half not a helper": ("FOXP3+", "dims: [FOXP3]\n    method: valley\n    "
                                   "params: {helpers: {CD25: high}, negative_half: CD4}",
                                   "negative_half", "not one of its helpers \\(CD25\\)"),
    "refine misspelt": ("FOXP3+CD127lo", "dims: [FOXP3, CD127]\n    method: range\n    params:\n"
                        "      refine: FOXP3\n      bounds: {FOXP3: {from: FOXP3+}, CD127: {side: low}}",
                        "refine", "did you mean 'FOXP3\\+'"),
    "stratum without reference": ("Treg_HLADRpos", "dims: [HLA-DR]\n    method: split\n    "
                                  "params: {within: CD4, stratum: Treg_CD45RAneg}", "stratum",
                                  "only with reference"),
    "side misspelt in a bound": ("CD4", "dims: [CD4, CD8]\n    method: range\n    params:\n"
                                 "      bounds: {CD4: {side: high}, CD8: {side: hgh}}",
                                 "bounds.CD8.side", "'hgh'; it must be one of high, low"),
    "bound method misspelt": ("CD4", "dims: [CD4, CD8]\n    method: range\n    params:\n"
                              "      bounds: {CD4: {method: vally}, CD8: {side: low}}",
                              "bounds.CD4.method", "'vally'; it must be one of valley"),
    "peak misspelt": ("Teff_CD25pos", "dims: [CD25]\n    method: tail\n    "
                      "params: {side: high, peak: gate}", "peak", "one of outside, gated"),
    "fallback misspelt": ("CD3", "dims: [CD3]\n    method: valley\n    params: {fallback: otsuu}",
                          "fallback", "'otsuu'"),
    "reference_rule misspelt": ("Treg_CD45RAneg", "dims: [CD45RA]\n    method: split\n    "
                                "params: {side: low, reference_rule: valey}", "reference_rule",
                                "one of tail, valley"),
    "shape misspelt": ("lymphocytes", LYMPH + "{shape: densty}", "shape", "one of density, ellipse"),
    "unknown key of split": ("Treg_Ki67pos", "dims: [Ki67]\n    method: split\n    "
                             "params: {side: high, minorty: true}", "minorty",
                             "not a parameter of method 'split' \\(did you mean 'minority'\\?"),
    "unknown key of singlets": ("singlets", "dims: [FSC-A, FSC-H]\n    method: singlets\n    "
                                "params: {k_hi: 6.0}", "k_hi", "it takes: .*k_high, k_low"),
    "a number that is not one": ("CD3", "dims: [CD3]\n    method: valley\n    params: {k: '3,5'}",
                                 "k", "must be a number"),
}  # fmt: skip


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_mistake_in_a_strategy_is_one_error_at_load(tmp_path, mistake):
    # each used to load and then fail per sample (a GatingError, or a TypeError / ValueError from the
    # method), or be silently ignored
    gid, body, key, wrong = MISTAKES[mistake]
    base = load_strategy("treg").node(gid)
    path = tmp_path / "mine.yaml"
    path.write_text(
        f"extends: treg\ngates:\n  - id: {gid}\n    parent: {base.parent}\n    {body}\n"
    )
    with pytest.raises(StrategyError) as info:
        load_strategy(path)
    message = str(info.value)
    assert message.startswith(f"mine.yaml: gate {gid!r}: {key} "), message
    assert re.search(wrong, message), message
    assert "\n" not in message


def test_a_mistake_in_an_included_file_names_that_file_too(tmp_path):
    (tmp_path / "extra.yaml").write_text(
        "gates:\n  - id: CD3bright\n    parent: CD3\n    dims: [CD3]\n    method: tail\n"
        "    params: {side: high, within: CD33}\n"
    )
    (tmp_path / "mine.yaml").write_text("extends: treg\ninclude: [extra.yaml]\ngates: []\n")
    with pytest.raises(StrategyError, match=r"^mine\.yaml: gate 'CD3bright' \(in extra\.yaml\): "
                                            r"within names 'CD33'.*did you mean 'CD3'"):  # fmt: skip
        load_strategy(tmp_path / "mine.yaml")
    (tmp_path / "typo.yaml").write_text("extends: treg\nfit_event: 5000\ngates: []\n")
    with pytest.raises(StrategyError, match=r"^typo\.yaml: unknown key fit_event .*'fit_events'"):
        load_strategy(tmp_path / "typo.yaml")


def test_a_labs_own_top_level_keys_are_ignored_with_a_note(tmp_path, caplog):
    (tmp_path / "lab.yaml").write_text("extends: treg\nversion: 3\nnotes: ours\ngates: []\n")
    with caplog.at_level(logging.WARNING, logger="cytokit"):
        strat = load_strategy(tmp_path / "lab.yaml")
    assert strat.node("Treg") is not None
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "'version' is not part of a gating strategy" in said and "'notes'" in said


def test_every_shipped_strategy_loads():
    from cytokit._resources import data_dir
    from cytokit.gating import _engine, _schema

    shipped = sorted(data_dir("gating").glob("*.yaml"))
    assert len(shipped) >= 4
    for path in shipped:
        assert load_strategy(path).nodes
    # the keys a 2-D method may be given that the engine reads itself are never passed on to it
    for method, own in _schema.TWO_D_ENGINE.items():
        assert own <= _engine._PLACEMENT_KEYS
        assert (
            not (_schema.allowed_keys(method) - own - _schema.GATE_KEYS) & _engine._PLACEMENT_KEYS
        )


def test_parse_expr_precedence():
    assert parse_expr("a and not b or c") == (
        "or",
        ("and", ("name", "a"), ("not", ("name", "b"))),
        ("name", "c"),
    )
    assert parse_expr("CD4 and not (FOXP3+ or B/NK)")[2][1][0] == "or"
    with pytest.raises(ValueError):
        parse_expr("a and")


def test_shipped_strategy_has_contract_population_names():
    names = set(load_strategy("treg").names)
    needed = {"time_ok", "cells", "singlets", "lymphocytes", "live", "CD3", "CD4", "CD8", "Treg", "Teff",
              "Treg_CD127lo", "Treg_CD45RAneg", "Treg_CD45RApos", "Treg_Ki67pos", "Treg_HLADRpos",
              "Treg_Heliospos", "Teff_CD45RAneg", "Teff_Ki67pos", "Teff_HLADRpos", "Teff_CD25pos",
              "NK_CD56bright"}  # fmt: skip
    assert needed <= names


def test_dim_alternatives_and_optional_bound():
    ad = synthetic_sample(n=8000, seed=5, drop=("FSC-A", "CD8"))  # FSC-H stands in; no CD8 stain
    gate(ad)
    g = ad.uns[K.GATING]["gates"]
    assert g["cells"]["gate"]["dims"] == ["FSC-H"]
    assert g["CD4"]["gate"]["dims"] == ["CD4"] and "CD8 not found" in g["CD4"]["message"]
    assert g["CD8"]["status"] == "skipped"
    assert abs(treg_pct(ad) - truth_pct(ad)) < 1.0


def test_gate_dims_are_var_names_when_markers_resolve_by_spelling():
    ad = synthetic_sample(n=8000, seed=6)
    names = list(ad.var_names)
    ad.var[K.STAIN] = [f"{n} PE-Cy7" if n == "CD25" else n for n in names]
    ad.var[K.MARKER] = ["" if n == "CD25" else n for n in names]
    ad.var_names = ["PE-Cy7-A" if n == "CD25" else n for n in names]
    gate(ad)
    assert ad.uns[K.GATING]["gates"]["Treg"]["gate"]["dims"] == ["PE-Cy7-A"]


def test_routine_fallback_is_recorded_but_not_warned():
    ad = synthetic_sample(n=8000, seed=7)
    keep = ad.obs["truth"].astype(str) != "debris"  # no debris peak: cells gate falls back
    ad = ad[keep.to_numpy()].copy()
    gate(ad)
    g = ad.uns[K.GATING]
    assert g["gates"]["cells"]["status"] == "fallback"
    assert not any(w.startswith("cells") for w in g["warnings"])
    pops = ad.obsm[K.POPULATIONS]
    assert pops["cells"].sum() / pops["time_ok"].sum() > 0.97


def test_gatingml_file_is_applied_as_fixed_gates(monkeypatch, tmp_path):
    from cytokit.gating import _gatingml

    seen = {}

    def fake_apply(adata, path, *, key_added, copy):
        seen.update(path=path, key_added=key_added, copy=copy)

    monkeypatch.setattr(_gatingml, "apply_gatingml", fake_apply)
    gate(synthetic_sample(n=500), tmp_path / "gates.xml", key_added="pop")
    assert seen == {"path": tmp_path / "gates.xml", "key_added": "pop", "copy": False}


def test_fast_polygon_mask_equals_polygon_gate_apply():
    from cytokit.gating import PolygonGate
    from cytokit.gating._events import _polygon_mask

    r = np.random.default_rng(0)
    for _ in range(10):
        k = r.integers(3, 40)
        a, rad = np.sort(r.uniform(0, 2 * np.pi, k)), r.uniform(0.2, 1, k)
        verts = tuple(zip(rad * np.cos(a), rad * np.sin(a), strict=True))
        # float32 events, as gating reads them, and float64; NaN events are outside
        X = r.uniform(-1.2, 1.2, (5000, 2)).astype(np.float32 if k % 2 else np.float64)
        X[:50, 1] = verts[0][1]  # events exactly at a vertex's y
        X[50:60, 1], X[60:70, 0] = np.nan, np.nan
        x, y = np.ascontiguousarray(X[:, 0]), np.ascontiguousarray(X[:, 1])
        assert np.array_equal(PolygonGate(("a", "b"), verts).apply(X), _polygon_mask(verts, x, y))


def _gating_with(
    threshold: float,
    *,
    median: float = 0.2,
    status: str = "ok",
    method: str = "valley",
    moves: str | None = None,
) -> dict:
    """A placement record: a CD3 threshold placed on events whose median is ``median`` (spread 0.05)."""
    gate = {"kind": "range", "dims": ["CD3"], "low": [threshold], "high": [None]}
    time = {"kind": "range", "dims": ["Time"], "low": [threshold], "high": [None]}
    details = {"CD3": {"threshold": threshold, "landmark": {"median": median, "spread": 0.05}}}
    params = {"side": "high", **({"moves": moves} if moves else {})}
    return {
        "gates": {
            "CD3": {"gate": gate, "method": method, "status": status, "params": params,
                    "details": details},
            "time_ok": {"gate": time, "method": "time_qc", "status": "ok", "details": {}},
        }
    }  # fmt: skip


def test_placement_jumps_flags_a_gate_far_from_the_patients_other_samples():
    from cytokit.gating import placement_jumps

    others = [_gating_with(0.40), _gating_with(0.42), _gating_with(0.44)]
    assert placement_jumps(_gating_with(0.45), others) == []
    # a valley between the wrong peaks: far from the others relative to its own population
    messages = placement_jumps(_gating_with(0.70), others)
    assert len(messages) == 1 and messages[0].startswith("CD3: CD3 threshold 0.700")
    # the whole channel drifted up by 0.2 in this file: the threshold followed its population
    assert placement_jumps(_gating_with(0.62, median=0.4), others) == []
    # tails follow biology (CD25 rising on Tregs under IL-2); thresholds the strategy says move with
    # treatment are left out; a fallback is reported elsewhere; time QC follows each acquisition
    assert placement_jumps(_gating_with(0.70, method="tail"), others) == []
    assert placement_jumps(_gating_with(0.70, moves="IL-2 expands them"), others) == []
    assert placement_jumps(_gating_with(0.70, status="fallback"), others) == []
    assert placement_jumps(_gating_with(0.45), []) == []


def test_placement_jumps_ignore_a_threshold_that_moved_across_an_empty_gap():
    """A valley threshold may sit anywhere in the empty gap between two well separated peaks (CD8- and
    CD8+ T cells): moving 5 SDs of the negative peak there changes no event's gate, so it is no jump
    to review; the same move through populated events still is."""
    import numpy as np

    from cytokit.gating import placement_jumps
    from cytokit.gating._priors import _landmark

    rng = np.random.default_rng(0)
    neg, pos = rng.normal(0.2, 0.05, 9000), rng.normal(0.8, 0.05, 1000)  # a gap from ~0.4 to ~0.6
    gap = _landmark(np.r_[neg, pos])
    smear = _landmark(np.r_[neg, pos, rng.uniform(0.35, 0.65, 500)])  # events all across the gap

    def placed(threshold: float, mark: dict) -> dict:
        g = _gating_with(threshold)
        g["gates"]["CD3"]["details"]["CD3"]["landmark"] = mark
        return g

    others = [placed(t, gap) for t in (0.61, 0.62, 0.63)]
    # 0.40 vs 0.62: over 3 robust SDs of the negatives apart, but < 1 % of events between
    assert placement_jumps(placed(0.40, gap), others) == []
    messages = placement_jumps(placed(0.40, smear), [placed(t, smear) for t in (0.61, 0.62, 0.63)])
    assert len(messages) == 1 and "% of its events between" in messages[0]


def test_gating_columns_are_the_matrix_columns_whatever_the_block_size():
    """The engine reads its markers as one contiguous block gathered a few thousand events at a time:
    every event of every needed column, in order, also when the last block is partial, for float64
    and sparse matrices."""
    from scipy import sparse

    from cytokit.gating._events import _columns

    X = np.random.default_rng(3).normal(size=(1003, 7))
    needed = [0, 2, 5, 6]
    expected = X[:, needed].T.astype(np.float32)
    for step in (1, 100, 1003, 4096):
        block = _columns(X, needed, step=step)
        assert block.flags["C_CONTIGUOUS"] and block.dtype == np.float32
        assert np.array_equal(block, expected)
    assert np.array_equal(_columns(sparse.csr_matrix(X), needed), expected)


@pytest.mark.parametrize("strategy", ["treg", "treg_surface"])
def test_nk_cells_that_are_the_main_cd56_peak_are_still_gated(tmp_path, strategy):
    """Among CD3- cells the NK cells can be the main CD56 peak, with the B cells a shoulder below it and no
    valley (a simulated trial drew such a CD56 channel). The tail of that main peak gated no event at all
    and the NK readouts were empty; the fallback must split B from NK cells (and say it fell back)."""
    import cytokit as ck
    from cytokit import readouts
    from cytokit.datasets import simulate_sample

    sim = simulate_sample(60000, seed=7902, patient=0, day=0, drift="mild", realism="classic")
    ad = ck.read_fcs(sim.write(tmp_path / "s.fcs"))
    ck.pp.compensate(ad)
    ck.pp.transform(ad)
    gate(ad, strategy)
    assert ad.uns[K.GATING]["gates"]["NK"]["status"] == "fallback"  # no valley: flagged for review
    names = np.asarray(sim.label_names)[np.asarray(sim.labels)]
    truth = np.isin(names, ["NK_CD56dim", "NK_CD56bright"])
    nk = np.asarray(ad.obsm[K.POPULATIONS]["NK"], bool)
    assert 2 * (nk & truth).sum() / (nk.sum() + truth.sum()) > 0.8
    bright = readouts.sample_readouts(ad)["nk_cd56bright_pct_nk"]
    assert abs(bright - sim.truth["nk_cd56bright_pct_nk"]) < 3.0


def test_a_foxp3_valley_on_too_few_cells_for_its_guide_mixture_is_placed_on_foxp3_alone():
    # 150 CD4-like events (a 1,000-event CyTOF file holds about that many): too few for the CD25 x FOXP3
    # mixture that bounds the valley search (200), which failed the sample; the 1-D valley still
    # separates the 12 FOXP3+ events, and the record says the guide was skipped
    rng = np.random.default_rng(11)
    n_neg, n_pos = 138, 12
    foxp3 = np.r_[rng.normal(0.25, 0.04, n_neg), rng.normal(0.6, 0.04, n_pos)]
    cd25 = np.r_[rng.normal(0.3, 0.08, n_neg), rng.normal(0.55, 0.06, n_pos)]
    ad = AnnData(np.column_stack([foxp3, cd25]).astype(np.float32))
    ad.var_names = ["FOXP3", "CD25"]
    ad.var[K.MARKER] = ["FOXP3", "CD25"]
    ad.var[K.CHANNEL] = ["ch0", "ch1"]
    ad.uns[K.SAMPLE_INFO] = {"file": "few.fcs", "sample": "few", "warnings": []}
    doc = {
        "name": "few",
        "gates": [
            {"id": "FOXP3+", "dims": ["FOXP3"], "method": "valley",
             "params": {"side": "high", "guide": "CD25", "fallback": "midpoint"}},
        ],
    }  # fmt: skip
    gate(ad, strategy_from_dict(doc))
    rec = ad.uns[K.GATING]["gates"]["FOXP3+"]
    assert "guide skipped" in rec["message"] and "too few events" in rec["message"]
    positive = ad.obsm[K.POPULATIONS]["FOXP3+"].to_numpy()
    assert positive.sum() == n_pos and positive[n_neg:].all()
