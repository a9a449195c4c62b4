"""Compensation and transforms, checked against FlowKit/flowutils on the same data."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cytokit as ck
from cytokit import _keys as K
from cytokit.errors import CompensationError
from cytokit.pp import (
    compensate,
    estimate_w,
    inverse_transform,
    logicle,
    logicle_inverse,
    transform,
    transform_values,
)

flowkit = pytest.importorskip("flowkit")
flowutils = pytest.importorskip("flowutils")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gatingml2-compliance"
FLUOR = ["FITC-A", "PE-A", "APC-A"]
SPILL = np.array([[1.0, 0.2, 0.01], [0.05, 1.0, 0.1], [0.0, 0.03, 1.0]])


def _reference_logicle(x, T, W, M, A):
    return flowutils.transforms._logicle(np.asarray(x, dtype=float), T, M, W, A)


# ------------------------------------------------------------------------------------------ logicle
@pytest.mark.parametrize(
    ("T", "W", "M", "A"),
    [
        (262144, 0.5, 4.5, 0),
        (262144, 1.3, 4.5, 0),
        (1024, 0.25, 4.5, 0),
        (10_000, 0.0, 4.5, 0),
        (262144, 0.8, 4.5, 1.0),
        (4_194_304, 1.5, 5.5, 0),
    ],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_logicle_matches_flowutils_over_the_whole_range(T, W, M, A, dtype):
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            -np.logspace(-4, np.log10(T) + 0.5, 3000),
            np.logspace(-4, np.log10(T) + 1.0, 3000),
            rng.normal(0, T / 300, 3000),
            [0.0, T],
        ]
    ).astype(dtype)
    got = logicle(x, T, W, M, A)
    assert got.dtype == dtype
    assert np.abs(got - _reference_logicle(x, T, W, M, A)).max() < 1e-6


@settings(max_examples=40, deadline=None)
@given(
    T=st.floats(1e2, 1e7),
    M=st.floats(3.0, 6.0),
    w_frac=st.floats(0.0, 0.99),
    values=st.lists(
        st.floats(-1e7, 1e8).filter(lambda v: v == 0 or abs(v) > 1e-6), min_size=1, max_size=50
    ),
)
def test_logicle_matches_flowkit_for_any_parameters(T, M, w_frac, values):
    # (flowutils returns -1 for subnormal inputs when W = 0: not a reference there)
    W = w_frac * M / 2
    x = np.asarray(values)
    ref = flowkit.transforms.LogicleTransform(T, W, M, 0).apply(x.reshape(-1, 1)).ravel()
    assert np.abs(logicle(x, T, W, M, 0) - ref).max() < 1e-6


def test_logicle_fixed_points_inverse_and_monotone():
    T, W, M = 262144.0, 0.7, 4.5
    assert logicle(np.array([0.0]), T, W, M)[0] == pytest.approx(W / M, abs=1e-9)
    assert logicle(np.array([T]), T, W, M)[0] == pytest.approx(1.0, abs=1e-9)
    x = np.concatenate([-np.logspace(-2, 5, 500)[::-1], np.logspace(-2, 6, 500)])
    y = logicle(x, T, W, M)
    assert np.all(np.diff(y) > 0)
    assert np.allclose(logicle_inverse(y, T, W, M), x, rtol=1e-6, atol=1e-6)
    yy = np.linspace(-0.2, 1.1, 201)
    ref = flowutils.transforms._logicle_inverse(yy, T, M, W, 0)
    assert np.allclose(logicle_inverse(yy, T, W, M), ref, rtol=1e-10, atol=1e-8)


def test_logicle_keeps_nan_and_infinities():
    y = logicle(np.array([np.nan, np.inf, -np.inf, 10.0]), 262144, 0.5)
    assert np.isnan(y[0]) and y[1] == np.inf and y[2] == -np.inf and np.isfinite(y[3])


def test_logicle_rejects_impossible_parameters():
    with pytest.raises(ValueError, match="invalid logicle"):
        logicle(np.zeros(3), 262144, W=3.0, M=4.5)


def test_estimate_w_follows_parks_rule():
    rng = np.random.default_rng(1)
    T, M = 262144.0, 4.5
    values = np.concatenate([rng.uniform(-1000, 0, 20_000), rng.uniform(0, 1e5, 20_000)])
    r = np.percentile(values[values < 0], 5)  # ~ -950
    assert estimate_w(values, T, M) == pytest.approx((M - np.log10(T / abs(r))) / 2, abs=0.02)
    assert estimate_w(rng.uniform(0, 1e5, 10_000), T, M) == 0.5  # no negatives: the default
    assert estimate_w(np.concatenate([values, [-1e9] * 5000]), T, M) == 1.5  # clamped


# ------------------------------------------------------------------------------------ AnnData helpers
def _sample(n: int = 4000, seed: int = 0, file: str = "P01_D0.fcs") -> ad.AnnData:
    """Scatter, three spilled fluorescence channels and time, as read_fcs lays them out."""
    rng = np.random.default_rng(seed)
    true = np.where(
        rng.random((n, 3)) < 0.5, rng.normal(0, 40, (n, 3)), 10 ** rng.normal(3.5, 0.4, (n, 3))
    )
    fluor = true @ SPILL + rng.normal(0, 30, (n, 3))
    scatter = rng.normal(60_000, 10_000, (n, 2))
    time = np.sort(rng.uniform(0, 120, n))[:, None]
    X = np.hstack([scatter, fluor, time]).astype(np.float32)
    channels = ["FSC-A", "SSC-A", *FLUOR, "Time"]
    var = pd.DataFrame(
        {
            K.CHANNEL: channels,
            K.MARKER: ["FSC-A", "SSC-A", "CD4", "FOXP3", "", "Time"],
            K.STAIN: ["", "", "CD4 FITC", "FoxP3 PE", "", ""],
            K.RANGE: [262144.0] * 6,
            K.ROLE: ["scatter", "scatter", "lineage", "lineage", "", "time"],
        },
        index=["FSC-A", "SSC-A", "CD4", "FOXP3", "APC-A", "Time"],
    )
    adata = ad.AnnData(X, var=var)
    adata.uns[K.SPILLOVER] = pd.DataFrame(SPILL, index=FLUOR, columns=FLUOR)
    adata.uns[K.FCS] = {f"$P{i + 1}N": c for i, c in enumerate(channels)}
    adata.uns[K.SAMPLE_INFO] = {"file": f"/data/{file}", "sample": file[:-4], "warnings": []}
    return adata


# ------------------------------------------------------------------------------------- compensation
def test_compensate_undoes_the_spillover_on_named_channels_only():
    adata = _sample()
    raw = adata.X.copy()
    compensate(adata)
    expected = raw[:, 2:5].astype(float) @ np.linalg.inv(SPILL)
    assert adata.X.dtype == np.float32
    assert np.allclose(adata.X[:, 2:5], expected, rtol=1e-5, atol=1e-2)
    assert np.array_equal(adata.X[:, [0, 1, 5]], raw[:, [0, 1, 5]])
    assert adata.uns[K.COMPENSATION]["source"] == "FCS"
    assert list(adata.uns[K.COMPENSATION]["matrix"].columns) == FLUOR


def test_compensate_accepts_every_matrix_form(tmp_path):
    reference = compensate(_sample(), copy=True).X
    frame = pd.DataFrame(SPILL, index=FLUOR, columns=FLUOR)
    csv = tmp_path / "comp.csv"
    frame.to_csv(csv)
    headerless = tmp_path / "flowjo.csv"
    pd.DataFrame(SPILL, columns=[f"Comp-{c}" for c in FLUOR]).to_csv(headerless, index=False)
    spill_string = ",".join(["3", *FLUOR, *map(str, SPILL.ravel())])
    shuffled = frame.iloc[[2, 0, 1]]  # rows in another order are aligned to the columns
    for matrix, extra in [
        (frame, {}),
        (csv, {}),
        (str(headerless), {}),
        (spill_string, {}),
        (SPILL, {"channels": FLUOR}),
        (shuffled, {}),
    ]:
        out = compensate(_sample(), matrix, copy=True, **extra)
        assert np.allclose(out.X, reference, atol=1e-3), matrix
        assert out.uns[K.COMPENSATION]["source"] == "user"


def test_compensate_rescales_percent_matrices(caplog):
    with caplog.at_level(logging.WARNING, logger="cytokit"):
        out = compensate(
            _sample(), pd.DataFrame(SPILL * 100, index=FLUOR, columns=FLUOR), copy=True
        )
    assert np.allclose(out.X, compensate(_sample(), copy=True).X, atol=1e-3)
    assert "percent" in caplog.text


@pytest.mark.parametrize(
    ("matrix", "kwargs", "fragment"),
    [
        (pd.DataFrame(SPILL, index=FLUOR, columns=["FITC-A", "PE-A", "BV421-A"]), {}, "BV421-A"),
        (pd.DataFrame(SPILL[:, :2], index=FLUOR, columns=FLUOR[:2]), {}, "square"),
        (pd.DataFrame(SPILL * 3, index=FLUOR, columns=FLUOR), {}, "diagonal"),
        (
            pd.DataFrame([[1.0, 1.0], [1.0, 1.0]], index=FLUOR[:2], columns=FLUOR[:2]),
            {},
            "inverted",
        ),
        (SPILL, {}, "channels="),
        ("3,FITC-A,PE-A", {}, "spill string"),
    ],
)
def test_compensate_bad_matrices_name_the_file(matrix, kwargs, fragment):
    with pytest.raises(CompensationError) as err:
        compensate(_sample(file="P03_D8.fcs"), matrix, **kwargs)
    assert str(err.value).startswith("P03_D8.fcs: ") and fragment in str(err.value)


def test_compensate_without_spillover_is_a_clear_error():
    adata = _sample(file="P02_D0.fcs")
    del adata.uns[K.SPILLOVER]
    with pytest.raises(CompensationError, match=r"^P02_D0\.fcs: the file has no spillover"):
        compensate(adata)


def test_compensate_twice_is_a_no_op_with_warning(caplog):
    adata = compensate(_sample(), copy=True)
    once = adata.X.copy()
    with caplog.at_level(logging.WARNING, logger="cytokit"):
        compensate(adata)
    assert np.array_equal(adata.X, once) and "already compensated" in caplog.text


def test_compensate_matches_flowkit_on_a_written_file(tmp_path):
    from cytokit.io import read_fcs, write_fcs

    adata = _sample(n=3000, seed=3)
    path = write_fcs(
        tmp_path / "s.fcs", adata.X, list(adata.var[K.CHANNEL]), spillover=adata.uns[K.SPILLOVER]
    )
    ours = read_fcs(path)
    compensate(ours)
    sample = flowkit.Sample(str(path))
    sample.apply_compensation(sample.metadata["spillover"])
    ref = sample.get_events(source="comp")
    assert np.allclose(ours.X, ref, rtol=1e-5, atol=1e-2)


def test_compensate_matches_flowkit_on_a_real_fortessa_file():
    fcsparser = pytest.importorskip("fcsparser")
    path = Path(fcsparser.__file__).parent / "tests/data/FlowCytometers/Fortessa"
    path = path / "FCS_3.0_Fortessa_PBS_Specimen_001_A1_A01.fcs"
    if not path.is_file():
        pytest.skip("fcsparser test data not installed")
    adata = ck.read_fcs(path)
    compensate(adata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sample = flowkit.Sample(str(path))
    sample.apply_compensation(sample.metadata["spill"])
    assert np.allclose(adata.X, sample.get_events(source="comp"), rtol=1e-5, atol=1e-2)


# ---------------------------------------------------------------------------------------- transform
def test_transform_logicle_on_fluorescence_linear_on_scatter_and_time():
    adata = compensate(_sample(), copy=True)
    raw = adata.X.copy()
    transform(adata)
    params = adata.uns[K.TRANSFORM]
    assert set(params) == set(adata.var_names)
    assert params["FSC-A"] == {"kind": "linear", "T": 262144.0, "A": 0.0}
    assert params["Time"]["kind"] == "linear" and params["Time"]["T"] == pytest.approx(
        raw[:, 5].max()
    )
    assert 0 <= adata.X[:, 5].min() and adata.X[:, 5].max() == pytest.approx(1.0)
    for j, name in enumerate(["CD4", "FOXP3", "APC-A"], start=2):
        p = params[name]
        assert p["kind"] == "logicle" and p["T"] == 262144.0 and p["M"] == 4.5 and p["A"] == 0.0
        assert 0.25 <= p["W"] <= 1.5
        ref = flowkit.transforms.LogicleTransform(p["T"], p["W"], p["M"], p["A"]).apply(
            raw[:, j].astype(float)
        )
        assert np.abs(adata.X[:, j] - ref).max() < 1e-4
    assert np.allclose(adata.X[:, 0], raw[:, 0] / 262144.0)


def test_transform_w_tracks_the_negative_spread():
    narrow, wide = _sample(seed=4), _sample(seed=4)
    wide.X[:, 2:5] *= np.where(wide.X[:, 2:5] < 0, 20.0, 1.0).astype(np.float32)
    transform(narrow)
    transform(wide)
    assert wide.uns[K.TRANSFORM]["CD4"]["W"] > narrow.uns[K.TRANSFORM]["CD4"]["W"] + 0.3


def test_transform_roundtrips_through_inverse_transform():
    adata = compensate(_sample(), copy=True)
    raw = adata.X.astype(float)
    for method in ("logicle", "arcsinh"):
        out = transform(adata, method, copy=True)
        for j, name in enumerate(out.var_names):
            params = out.uns[K.TRANSFORM][name]
            back = inverse_transform(out.X[:, j], params)
            assert np.allclose(back, raw[:, j], rtol=1e-4, atol=0.05), (method, name)
            assert np.allclose(transform_values(raw[:, j], params), out.X[:, j], atol=1e-5)


def test_transform_arcsinh_cofactors():
    adata = _sample()
    raw = adata.X.copy()
    out = transform(adata, "arcsinh", copy=True)
    assert out.uns[K.TRANSFORM]["CD4"] == {"kind": "asinh", "cofactor": 150.0}
    assert np.allclose(out.X[:, 2], np.arcsinh(raw[:, 2] / 150.0), atol=1e-5)
    out = transform(adata, "arcsinh", cofactor={"FOXP3": 500.0, "APC-A": 20.0}, copy=True)
    assert out.uns[K.TRANSFORM]["FOXP3"]["cofactor"] == 500.0
    assert out.uns[K.TRANSFORM]["APC-A"]["cofactor"] == 20.0
    assert out.uns[K.TRANSFORM]["CD4"]["cofactor"] == 150.0
    assert np.array_equal(adata.X, raw)  # copy=True left the original alone


def test_transform_mass_cytometry_channels_default_to_cofactor_5():
    var = pd.DataFrame(
        {K.CHANNEL: ["Nd142Di", "Time"], K.RANGE: [np.nan, np.nan]}, index=["CD19", "Time"]
    )
    adata = ad.AnnData(
        np.abs(np.random.default_rng(0).normal(0, 50, (100, 2))).astype(np.float32), var=var
    )
    transform(adata, "arcsinh")
    assert adata.uns[K.TRANSFORM]["CD19"]["cofactor"] == 5.0
    assert adata.uns[K.TRANSFORM]["Time"]["kind"] == "linear"


def test_transform_subset_and_second_call(caplog):
    adata = _sample()
    raw = adata.X.copy()
    transform(adata, channels=["FOXP3", "PE-A", "APC-A"])  # PE-A is FOXP3's channel: once only
    assert set(adata.uns[K.TRANSFORM]) == {"FOXP3", "APC-A"}
    assert np.array_equal(adata.X[:, [0, 1, 2, 5]], raw[:, [0, 1, 2, 5]])
    once = adata.X.copy()
    with caplog.at_level(logging.WARNING, logger="cytokit"):
        transform(adata)
    assert "already transformed" in caplog.text
    assert np.array_equal(adata.X[:, [3, 4]], once[:, [3, 4]])  # not transformed twice
    assert set(adata.uns[K.TRANSFORM]) == set(adata.var_names)


def test_transform_log_amplified_channels_use_ten_to_the_decades():
    adata = _sample()
    adata.uns[K.FCS]["$P3E"] = "4,1"  # FITC-A recorded on a 4-decade log amplifier
    adata.uns[K.FCS]["$P4G"] = "2"  # PE-A with gain 2
    transform(adata)
    assert adata.uns[K.TRANSFORM]["CD4"]["T"] == 10_000.0
    assert adata.uns[K.TRANSFORM]["FOXP3"]["T"] == 131072.0


def test_real_calibur_file_transform_matches_flowkit():
    path = SHARED / "data1.fcs"
    if not path.is_file():
        pytest.skip(f"GatingML compliance data not found at {path.parent}")
    adata = ck.read_fcs(path)
    raw = adata.X.copy()
    transform(adata)
    params = adata.uns[K.TRANSFORM]
    assert params["CD4"]["T"] == 10_000.0  # $P3E = 4,0: four decades
    for j, name in enumerate(adata.var_names):
        p = params[name]
        if p["kind"] == "logicle":
            ref = flowkit.transforms.LogicleTransform(p["T"], p["W"], p["M"], p["A"]).apply(
                raw[:, j].astype(float)
            )
            assert np.abs(adata.X[:, j] - ref).max() < 1e-4, name
