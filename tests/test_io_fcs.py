"""FCS reader: real cytometer files (fcsparser's test data), FlowKit agreement, and crafted edge cases."""

from __future__ import annotations

import importlib.util
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from data_fcs_helpers import build_fcs

from cytokit import _keys as K
from cytokit.errors import FCSError
from cytokit.io import parse_fcs, read_fcs
from cytokit.io._fcs import _parse_text

GATINGML_FCS = (
    Path(__file__).parents[1] / ".." / "shared" / "data" / "gatingml2-compliance" / "data1.fcs"
)


def _fcsparser_dir() -> Path:
    spec = importlib.util.find_spec("fcsparser")
    if spec is None or spec.origin is None:
        pytest.skip("fcsparser (test data) is not installed")
    return Path(spec.origin).parent / "tests" / "data" / "FlowCytometers"


def _fp(rel: str) -> Path:
    path = _fcsparser_dir() / rel
    if not path.exists():
        pytest.skip(f"{rel} is not shipped with this fcsparser")
    return path


GOOD = [
    "Cytek_xP5/Cytek_xP5.fcs",
    "FACSCaliburHTS/Sample_Well_A02.fcs",
    "Fortessa/FCS_3.0_Fortessa_PBS_Specimen_001_A1_A01.fcs",
    "HTS_BD_LSR-II/HTS_BD_LSR_II_Mixed_Specimen_001_D6_D06.fcs",
    "MiltenyiBiotec/FCS2.0/EY_2013-07-19_PBS_FCS_2.0_Custom_Without_Add_Well_A1.001.fcs",
    "MiltenyiBiotec/FCS3.0/FCS3.0_Custom_Compatible.fcs",
    "MiltenyiBiotec/FCS3.1/EY_2013-07-19_PBS_FCS_3.1_Custom_Add_Well_A1.001.fcs",
    "MiltenyiBiotec/FCS3.1/EY_2013-07-19_PBS_FCS_3.1_Custom_Without_Add_Well_A1.001.fcs",
    "MiltenyiBiotec/FCS3.1/EY_2013-07-19_PBS_FCS_3.1_Well_A1.001.fcs",
    "MiltenyiBiotec/FCS3.1/SG_2014-09-26_Duplicate_Names.fcs",
    "cyflow_cube_8/cyflow_cube_8.fcs",
    "fake_large_fcs/fake_large_fcs.fcs",  # blank HEADER DATA offsets: the TEXT ones are right
]
# what each refused file really is
BROKEN = {
    "corrupted/corrupted.fcs": "not an FCS file",  # 10 bytes of text
    "cytek-nl-2000/sample_header.fcs": "truncated",  # HEADER+TEXT only, DATA cut off
}
# FlowIO (so FlowKit) cannot read 24-bit integers nor blank HEADER offsets
FLOWKIT_READS = [g for g in GOOD if not g.startswith(("Cytek_xP5", "fake_large"))]

# first rows fcsparser's own test module expects (raw values, before FlowKit's scaling)
# fmt: off
FCSPARSER_ROWS = {
    "Cytek_xP5/Cytek_xP5.fcs": [[0, 286, 164, 154, 54, 470, 1023, 770], [0, 171, 128, 153, 199, 91, 211, 12]],
    "cyflow_cube_8/cyflow_cube_8.fcs": [[8, 7, 15, 15, 5, 8, 7, 6, 23, 0], [6, 7, 13, 14, 6, 9, 10, 4, 23, 0]],
    "Fortessa/FCS_3.0_Fortessa_PBS_Specimen_001_A1_A01.fcs": [  # its rows 1 and 4
        [1312.85, 560, 153640.97, 1472.6399, 1424, 67774.53, 17.94, 8.58, 137.06, -36.72, 0.0],
        [2332.3298, 583, 262143, 624, 627, 65222.43, 24.96, 49.14, 72.38, -12.96, 0.1],
    ],
    "fake_large_fcs/fake_large_fcs.fcs": [
        [1312.85, 560, 153640.97, 1472.6399, 1424, 67774.53, 17.94, 8.58, 137.06, -36.72, 0.0],
    ],
    "HTS_BD_LSR-II/HTS_BD_LSR_II_Mixed_Specimen_001_D6_D06.fcs": [
        [-28531.25, 10, 0, 700.15, 1656, 27708.352, 98.8, 54.15, 164.22, 120.36, 0.2],
    ],
    "MiltenyiBiotec/FCS3.0/FCS3.0_Custom_Compatible.fcs": [
        [49.965588, -178.88486, 353.54587, -66318.97, 1533.7397, 1719.3441, 116922.69, -1.8530822,
         155.24149, -1564.5765, 76.81788, 161.98732, 62157.168, 37.428463, 123.47659, 38717.895],
    ],
    "MiltenyiBiotec/FCS3.1/EY_2013-07-19_PBS_FCS_3.1_Well_A1.001.fcs": [
        [1.2572854e-05, 3.3333333e-04, 3.3333333e-04, 8.3999999e-02, 6.2567286e-02, 2.0574589,
         15.204989, 2.6814053, 3.0260124, 443.0592, 0.2620652, 1.0939966, 119.77422, 0.23151575,
         0.50724781, 228.20773, -0.45996591, 0.37070319, -579.14429],
    ],
    "MiltenyiBiotec/FCS2.0/EY_2013-07-19_PBS_FCS_2.0_Custom_Without_Add_Well_A1.001.fcs": [
        [1.607649e-03, 1.4655488, 2.0311613, 360.76624, 1.579651, 1.9079087, 413.97449, -0.33931893,
         0.78408605, -216.37863, 0.2234779, 0.55175453, 202.51567, -0.24507576, 0.75164813, -164.11594],
    ],
}
# fmt: on


def _flowkit_scaled(raw: np.ndarray, kw: dict, channels: list[str]) -> np.ndarray:
    """FlowKit's default scaling written out independently: time x $TIMESTEP, $PnE log, / $PnG."""
    out = np.array(raw, dtype=float)
    for j, name in enumerate(channels):
        n = j + 1
        if name.lower() == "time":
            out[:, j] *= float(kw.get("$TIMESTEP", 1) or 1)
            continue
        f1, f2 = (float(x) for x in kw.get(f"$P{n}E", "0,0").split(","))
        if f1 > 0:
            out[:, j] = 10 ** (f1 * out[:, j] / float(kw[f"$P{n}R"])) * (f2 or 1.0)
        gain = float(kw.get(f"$P{n}G", 1) or 1)
        out[:, j] /= gain
    return out


# --------------------------------------------------------------------------- real files


@pytest.mark.parametrize("rel", GOOD)
def test_real_file_loads_with_header_event_count(rel):
    fcs = parse_fcs(_fp(rel))
    assert fcs.data.dtype == np.float32
    assert fcs.data.shape == (int(fcs.keywords["$TOT"]), int(fcs.keywords["$PAR"]))
    assert len(fcs.channels) == len(fcs.stains) == len(fcs.ranges) == fcs.data.shape[1]
    assert np.isfinite(fcs.data).all()


@pytest.mark.parametrize("rel", sorted(FCSPARSER_ROWS))
def test_real_file_values_match_fcsparser_expectations(rel):
    fcs = parse_fcs(_fp(rel))
    raw = np.array(FCSPARSER_ROWS[rel], dtype=float)
    rows = [0, 3] if rel.startswith("Fortessa") else list(range(len(raw)))
    expected = _flowkit_scaled(raw, fcs.keywords, fcs.channels)
    np.testing.assert_allclose(fcs.data[rows], expected, rtol=2e-6, atol=1e-4)


@pytest.mark.parametrize("rel", [g for g in GOOD if "fake_large" not in g])
def test_real_file_matches_fcsparser_whole_matrix(rel):
    fcsparser = pytest.importorskip("fcsparser")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            _, df = fcsparser.parse(str(_fp(rel)), reformat_meta=False)
        except AttributeError as err:  # fcsparser 0.2.4 on numpy 2: big-endian files fail
            pytest.skip(f"fcsparser cannot read it with this numpy ({err})")
    fcs = parse_fcs(_fp(rel))
    expected = _flowkit_scaled(df.to_numpy(dtype=float), fcs.keywords, fcs.channels)
    np.testing.assert_allclose(fcs.data, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("rel", FLOWKIT_READS)
def test_real_file_matches_flowkit(rel):
    fk = pytest.importorskip("flowkit")
    # Miltenyi files end DATA one byte late; FlowKit needs to be told that is fine
    ref = fk.Sample(str(_fp(rel)), ignore_offset_error=True).get_events(source="raw")
    np.testing.assert_allclose(parse_fcs(_fp(rel)).data, ref, rtol=1e-6, atol=0)


def test_blank_header_offsets_file_equals_its_original():
    fake = parse_fcs(_fp("fake_large_fcs/fake_large_fcs.fcs"))
    orig = parse_fcs(_fp("Fortessa/FCS_3.0_Fortessa_PBS_Specimen_001_A1_A01.fcs"))
    np.testing.assert_array_equal(fake.data, orig.data)


@pytest.mark.parametrize("rel", sorted(BROKEN))
def test_broken_real_file_is_refused_in_one_line(rel):
    with pytest.raises(FCSError, match=BROKEN[rel]) as info:
        parse_fcs(_fp(rel))
    assert "\n" not in str(info.value) and Path(rel).name in str(info.value)


def test_real_spillover_keyword_maps_to_channel_names():
    fcs = parse_fcs(_fp("Fortessa/FCS_3.0_Fortessa_PBS_Specimen_001_A1_A01.fcs"))
    sp = fcs.spillover
    assert (
        list(sp.index)
        == list(sp.columns)
        == ["FITC-A", "PerCP-Cy5-5-A", "AmCyan-A", "PE-Texas Red-A"]
    )
    assert sp.loc["FITC-A", "AmCyan-A"] == pytest.approx(0.16)
    assert np.allclose(np.diag(sp), 1)


def test_miltenyi_supplemental_text_and_names_only_spillover():
    fcs = parse_fcs(_fp("MiltenyiBiotec/FCS3.1/EY_2013-07-19_PBS_FCS_3.1_Well_A1.001.fcs"))
    assert fcs.keywords["@MB_P1_BASE"].startswith("HDR-T")  # from supplemental TEXT
    assert fcs.spillover is None  # the keyword names 6 channels but holds no values
    assert any("$SPILLOVER" in w for w in fcs.warnings)


def test_text_with_empty_values_and_latin1_reads():
    if not GATINGML_FCS.exists():
        pytest.skip(f"{GATINGML_FCS} is absent")
    fcs = parse_fcs(GATINGML_FCS)
    assert fcs.data.shape == (13367, 8)
    assert fcs.keywords["$CYT"] == "FACSCalibur"
    assert fcs.keywords["&8ACQUISITION DOC."] == "LYMPH SUBSET ACQ"
    fk = pytest.importorskip("flowkit")
    ref = fk.Sample(str(GATINGML_FCS)).get_events(source="raw")
    np.testing.assert_allclose(fcs.data, ref, rtol=1e-6)


# --------------------------------------------------------------------------- TEXT parsing


def test_text_doubled_delimiters_are_escapes():
    kw, _ = _parse_text(b"/flow_speed/3 m//s/x/a///y/b/////")
    assert kw == {"FLOW_SPEED": "3 m/s", "X": "a/", "Y": "b//"}


@pytest.mark.parametrize("final", [True, False])
def test_text_whitespace_delimiter(final):
    raw = "\t$BEGINDATA\t15\t$ENDDATA\t500" + ("\t" if final else "")
    assert _parse_text(raw.encode())[0] == {"$BEGINDATA": "15", "$ENDDATA": "500"}


def test_text_end_offset_one_byte_too_far_is_tolerated():
    kw, warns = _parse_text(b"/$PAR/1/$TOT/5/\x9a")
    assert kw == {"$PAR": "1", "$TOT": "5"} and not warns


def test_text_empty_value_before_standard_keyword():
    kw, warns = _parse_text(b"/$P1S//$P1N/FSC-A/$PAR/1/")
    assert kw == {"$P1S": "", "$P1N": "FSC-A", "$PAR": "1"}
    assert warns


# --------------------------------------------------------------------------- crafted files


def _write(tmp_path, data: bytes, name="x.fcs") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


RNG = np.random.default_rng(0)
INTS = RNG.integers(0, 1024, size=(50, 3))
FLOATS = RNG.normal(100, 50, size=(40, 3)).astype(np.float32)


@pytest.mark.parametrize("byteord", ["1,2,3,4", "4,3,2,1"])
def test_three_byte_integers(tmp_path, byteord):
    vals = np.column_stack([INTS[:, 0], INTS[:, 1] * 5000, INTS[:, 2]])
    data = build_fcs(
        vals,
        ["A", "B", "C"],
        datatype="I",
        bits=[24] * 3,
        ranges=[1024, 2**24, 1024],
        byteord=byteord,
    )
    np.testing.assert_array_equal(parse_fcs(_write(tmp_path, data)).data, vals)


def test_mixed_widths_and_range_bit_masks(tmp_path):
    vals = np.column_stack([INTS[:, 0] + 4096, INTS[:, 1], INTS[:, 2] + 70000])
    data = build_fcs(
        vals, ["A", "B", "C"], datatype="I", bits=[16, 8, 32], ranges=[1024, 200, 1000]
    )
    out = parse_fcs(_write(tmp_path, data)).data
    # high bits beyond the next power of two of $PnR are masked off (as FlowIO); 8-bit fits 256
    np.testing.assert_array_equal(
        out, np.column_stack([vals[:, 0] & 1023, vals[:, 1] & 255, vals[:, 2] & 1023])
    )


@pytest.mark.parametrize(
    ("datatype", "byteord"),
    [("F", "4,3,2,1"), ("D", "4,3,2,1"), ("F", "3,4,1,2"), ("D", "1,2,3,4")],
)
def test_float_byte_orders(tmp_path, datatype, byteord):
    data = build_fcs(FLOATS, ["A", "B", "C"], datatype=datatype, byteord=byteord)
    np.testing.assert_array_equal(parse_fcs(_write(tmp_path, data)).data, FLOATS)


@pytest.mark.parametrize("header_data", ["blank", "zero"])
def test_blank_or_zero_header_offsets_use_text(tmp_path, header_data):
    data = build_fcs(FLOATS, ["A", "B", "C"], header_data=header_data)
    fcs = parse_fcs(_write(tmp_path, data))
    np.testing.assert_array_equal(fcs.data, FLOATS)
    assert not fcs.warnings


def test_disagreeing_offsets_choose_the_consistent_pair(tmp_path):
    good = build_fcs(FLOATS, ["A", "B", "C"])
    start = int(good[26:34])
    end = int(good[34:42])
    bad_header = build_fcs(FLOATS, ["A", "B", "C"], header_data=(start + 8, end))
    fcs = parse_fcs(_write(tmp_path, bad_header, "h.fcs"))
    np.testing.assert_array_equal(fcs.data, FLOATS)
    assert any("disagree" in w for w in fcs.warnings)
    bad_text = build_fcs(FLOATS, ["A", "B", "C"], text_data=(start - 12, end - 12))
    fcs = parse_fcs(_write(tmp_path, bad_text, "t.fcs"))
    np.testing.assert_array_equal(fcs.data, FLOATS)
    assert any("HEADER DATA offsets, the ones consistent" in w for w in fcs.warnings)


def test_two_data_sets(tmp_path):
    second = build_fcs(FLOATS[:7] * 2, ["A", "B", "C"])
    first = build_fcs(FLOATS, ["A", "B", "C"], nextdata=1)
    first = build_fcs(FLOATS, ["A", "B", "C"], nextdata=len(first))
    path = _write(tmp_path, first + second)
    np.testing.assert_array_equal(parse_fcs(path).data, FLOATS)
    assert any("more than one data set" in w for w in parse_fcs(path).warnings)
    np.testing.assert_array_equal(parse_fcs(path, data_set=1).data, FLOATS[:7] * 2)
    with pytest.raises(FCSError, match="no data set 2"):
        parse_fcs(path, data_set=2)


def test_scaling_log_gain_and_timestep(tmp_path):
    vals = np.column_stack([INTS[:, 0], INTS[:, 1], INTS[:, 2]])
    kw = {"$P1E": "4,0", "$P2G": "2.5", "$TIMESTEP": "0.01", "$P3G": "7"}
    data = build_fcs(vals, ["FL1-H", "FSC-H", "Time"], datatype="I", bits=[16] * 3, keywords=kw)
    out = parse_fcs(_write(tmp_path, data)).data
    np.testing.assert_allclose(out[:, 0], 10 ** (4 * vals[:, 0] / 1024), rtol=1e-6)
    np.testing.assert_allclose(out[:, 1], vals[:, 1] / 2.5, rtol=1e-6)
    np.testing.assert_allclose(out[:, 2], vals[:, 2] * 0.01, rtol=1e-6)  # time gain is ignored


@pytest.mark.parametrize(
    ("datatype", "byteord"), [("I", "4,3,2,1"), ("F", "1,2,3,4"), ("D", "4,3,2,1")]
)
def test_crafted_scaling_matches_flowkit(tmp_path, datatype, byteord):
    fk = pytest.importorskip("flowkit")
    vals = np.column_stack([INTS, INTS[:, 0] + 2048])  # the last column has bits above $PnR
    kw = {
        "$P1E": "4,0",
        "$P2E": "3,0.5",
        "$P2G": "4",
        "$P3G": "0.5",
        "$P4G": "3",
        "$TIMESTEP": "0.25",
    }
    path = _write(
        tmp_path,
        build_fcs(
            vals, ["FL1", "FL2", "FL3", "TIME"], datatype=datatype, byteord=byteord, keywords=kw
        ),
    )
    ref = fk.Sample(str(path)).get_events(source="raw")
    np.testing.assert_allclose(parse_fcs(path).data, ref, rtol=1e-6)


def test_spillover_fewer_channels_named_by_stain_or_index(tmp_path):
    chans, stains = ["FSC-A", "B1-A", "R1-A", "V1-A"], ["", "CD4 FITC", "CD25 APC", "FOXP3"]
    for key, names in [
        ("$SPILLOVER", "B1-A,R1-A"),
        ("SPILL", "CD4 FITC,CD25 APC"),
        ("$SPILL", "2,3"),
    ]:
        kw = {key: f"2,{names},1,0.1,0.02,1"}
        data = build_fcs(FLOATS[:, [0, 1, 2, 0]], chans, stains=stains, keywords=kw)
        sp = parse_fcs(_write(tmp_path, data)).spillover
        assert list(sp.index) == list(sp.columns) == ["B1-A", "R1-A"]
        assert sp.loc["B1-A", "R1-A"] == pytest.approx(0.1)


def test_spillover_naming_unknown_channel_is_ignored_with_warning(tmp_path):
    data = build_fcs(FLOATS, ["A", "B", "C"], keywords={"$SPILLOVER": "2,A,Z,1,0,0,1"})
    fcs = parse_fcs(_write(tmp_path, data))
    assert fcs.spillover is None and any("not in the file" in w for w in fcs.warnings)


def test_delimiter_inside_values_and_supplemental_text(tmp_path):
    kw = {"$FIL": "a/b//c.fcs", "$P1S": "CD3/CD4"}
    data = build_fcs(FLOATS, ["A", "B", "C"], keywords=kw, stext={"EXTRA/KEY": "x/y"})
    fcs = parse_fcs(_write(tmp_path, data))
    assert fcs.keywords["$FIL"] == "a/b//c.fcs" and fcs.stains[0] == "CD3/CD4"
    assert fcs.keywords["EXTRA/KEY"] == "x/y"


def test_ascii_and_fcs32_per_parameter_datatype(tmp_path):
    data = build_fcs(np.round(FLOATS, 2), ["A", "B", "C"], datatype="A", version="3.0")
    np.testing.assert_allclose(
        parse_fcs(_write(tmp_path, data, "a.fcs")).data, np.round(FLOATS, 2), rtol=1e-6
    )
    vals = np.column_stack([INTS[:40, 0], FLOATS[:, 1], INTS[:40, 2]])
    kw = {"$P2DATATYPE": "F"}
    data = build_fcs(
        vals, ["A", "B", "C"], datatype="I", bits=[16, 32, 16], keywords=kw, version="3.2"
    )
    np.testing.assert_array_equal(
        parse_fcs(_write(tmp_path, data, "b.fcs")).data, vals.astype(np.float32)
    )


def test_huge_tot_refused_before_allocation(tmp_path):
    data = build_fcs(FLOATS, ["A", "B", "C"], tot=10**12)
    path = _write(tmp_path, data)
    tracemalloc.start()
    try:
        with pytest.raises(FCSError, match="truncated DATA") as info:
            parse_fcs(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000 and "\n" not in str(info.value)


def test_truncated_data_refused(tmp_path):
    data = build_fcs(FLOATS, ["A", "B", "C"])
    with pytest.raises(FCSError, match="truncated"):
        parse_fcs(_write(tmp_path, data[:-20]))


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        ({"$MODE": "C"}, "list mode"),
        ({"$DATATYPE": "Q"}, "DATATYPE"),
        ({"$PAR": "0"}, r"\$PAR"),
        ({"$PAR": "999999999"}, r"\$PAR"),
    ],
)
def test_invalid_keywords_refused(tmp_path, edit, match):
    data = build_fcs(FLOATS, ["A", "B", "C"], keywords=edit)
    with pytest.raises(FCSError, match=match):
        parse_fcs(_write(tmp_path, data))


def test_missing_tot_and_long_segment(tmp_path):
    data = build_fcs(FLOATS, ["A", "B", "C"], keywords={"$TOT": ""})
    fcs = parse_fcs(_write(tmp_path, data, "a.fcs"))
    np.testing.assert_array_equal(fcs.data, FLOATS)
    assert any("$TOT" in w for w in fcs.warnings)
    data = build_fcs(FLOATS, ["A", "B", "C"], tot=30)
    fcs = parse_fcs(_write(tmp_path, data, "b.fcs"))
    np.testing.assert_array_equal(fcs.data, FLOATS[:30])
    assert any("longer than $TOT" in w for w in fcs.warnings)


def test_zero_events_is_an_empty_matrix(tmp_path):
    fcs = parse_fcs(_write(tmp_path, build_fcs(np.zeros((0, 3)), ["A", "B", "C"])))
    assert fcs.data.shape == (0, 3) and fcs.data.dtype == np.float32


def test_no_float64_copy_of_the_whole_matrix(tmp_path, monkeypatch):
    import cytokit.io._fcs as fcs_module

    monkeypatch.setattr(fcs_module, "_CHUNK_BYTES", 1 << 20)
    vals = np.random.default_rng(2).integers(0, 60000, size=(200_000, 8))
    kw = {f"$P{n}G": "2" for n in range(1, 9)} | {"$P1E": "4,1"}
    data = build_fcs(
        vals, list("ABCDEFGH"), datatype="I", bits=[16] * 8, ranges=[65536] * 8, keywords=kw
    )
    path = _write(tmp_path, data)
    tracemalloc.start()
    try:
        fcs = parse_fcs(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.4 * fcs.data.nbytes + 2_000_000  # a float64 copy would be 2x
    np.testing.assert_allclose(fcs.data[:, 1], vals[:, 1] / 2, rtol=1e-6)


def test_missing_file_is_fcserror(tmp_path):
    with pytest.raises(FCSError, match="cannot read"):
        parse_fcs(tmp_path / "absent.fcs")


# --------------------------------------------------------------------------- AnnData face


def test_read_fcs_anndata_conventions(tmp_path):
    chans = ["FSC-A", "B1-A", "R1-A", "V1-A", ""]
    stains = ["", "EMPTY", " ", None, "CD25"]
    kw = {"$SPILL": "2,B1-A,R1-A,1,0.05,0,1"}
    vals = np.column_stack([FLOATS, FLOATS[:, :2]])
    path = _write(tmp_path, build_fcs(vals, chans, stains=stains, keywords=kw), "P01_D0.fcs")
    adata = read_fcs(path)
    assert adata.X.dtype == np.float32 and adata.shape == (40, 5)
    np.testing.assert_array_equal(adata.X, vals)
    assert list(adata.obs_names[:3]) == ["0", "1", "2"]
    assert adata.obs[K.EVENT].tolist() == list(range(40))
    assert list(adata.var[K.CHANNEL]) == ["FSC-A", "B1-A", "R1-A", "V1-A", "P5"]
    assert list(adata.var[K.STAIN]) == ["", "EMPTY", "", "", "CD25"]
    # blank or placeholder stains are not markers: those columns are named by channel
    assert list(adata.var_names[:4]) == ["FSC-A", "B1-A", "R1-A", "V1-A"]
    assert list(adata.var[K.MARKER][1:4]) == ["", "", ""]
    assert adata.var[K.RANGE].tolist() == [1024.0] * 5
    assert adata.uns[K.FCS]["$TOT"] == "40"
    assert isinstance(adata.uns[K.SPILLOVER], pd.DataFrame)
    info = adata.uns[K.SAMPLE_INFO]
    assert info["sample"] == "P01_D0" and info["file"] == str(path)
    assert any("$P5N" in w for w in info["warnings"])


def test_read_fcs_names_vars_by_marker_and_makes_them_unique(tmp_path, monkeypatch):
    import cytokit.panels as panels

    def fake(channels, stains, panel=None):
        return ["CD4", "", "CD4", ""], ["lineage", "scatter", "lineage", ""]

    monkeypatch.setattr(panels, "resolve_markers", fake)
    vals = np.column_stack([FLOATS, FLOATS[:, 0]])
    path = _write(tmp_path, build_fcs(vals, ["B1-A", "FSC-A", "B2-A", "FSC-A"]))
    adata = read_fcs(path)
    assert list(adata.var_names) == ["CD4", "FSC-A", "CD4-1", "FSC-A-1"]
    assert list(adata.var[K.MARKER]) == ["CD4", "", "CD4", ""]
    assert list(adata.var[K.ROLE]) == ["lineage", "scatter", "lineage", ""]


@pytest.mark.parametrize(("datatype", "byteorder"), [("F", "<"), ("D", ">"), ("I", ">")])
def test_round_trip_with_write_fcs(tmp_path, datatype, byteorder):
    from cytokit.io import write_fcs

    chans, stains = ["FSC-A", "B1-A", "R1-A", "Time"], ["", "CD25 BB515", "FOXP3 AF647", ""]
    vals = np.abs(FLOATS[:, [0, 1, 2, 0]]).round()
    spill = pd.DataFrame([[1, 0.1], [0.02, 1]], index=["B1-A", "R1-A"], columns=["B1-A", "R1-A"])
    path = write_fcs(
        tmp_path / "rt.fcs",
        vals,
        chans,
        stains,
        spillover=spill,
        datatype=datatype,
        byteorder=byteorder,
    )
    fcs = parse_fcs(path)
    np.testing.assert_array_equal(fcs.data, vals.astype(np.float32))
    assert fcs.channels == chans and fcs.stains == ["", "CD25 BB515", "FOXP3 AF647", ""]
    pd.testing.assert_frame_equal(fcs.spillover, spill.astype(float))
    assert not fcs.warnings


def test_read_fcs_loads_a_panel_given_by_name(tmp_path, monkeypatch):
    import cytokit.panels as panels

    seen = {}
    monkeypatch.setattr(panels, "load_panel", lambda name: f"<panel {name}>", raising=False)

    def fake(channels, stains, panel=None):
        seen["panel"] = panel
        return [""] * len(channels), [""] * len(channels)

    monkeypatch.setattr(panels, "resolve_markers", fake)
    read_fcs(_write(tmp_path, build_fcs(FLOATS, ["A", "B", "C"])), panel="ldil2_treg")
    assert seen["panel"] == "<panel ldil2_treg>"
