"""write_fcs: valid FCS 3.1 read back identically by FlowIO, FlowKit and fcsparser."""

from __future__ import annotations

import sys

import flowio
import flowkit as fk
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cytokit.io import _write
from cytokit.io._write import write_fcs

CHANNELS = ["FSC-A", "SSC-A", "BV510-A", "PE-A", "APC-A", "Time"]
STAINS = ["", None, "L/D Aqua - Viability", "CD25 PE", "FoxP3 AF647", ""]
NATIVE = "<" if sys.byteorder == "little" else ">"


def _events(n: int = 500, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.lognormal(7, 1.5, (n, len(CHANNELS))) - 200  # negatives, as after baseline subtraction
    x[:, -1] = np.arange(n) * 0.7
    return x.astype(np.float32)


def _spill() -> pd.DataFrame:
    names = ["BV510-A", "PE-A", "APC-A"]
    m = np.array([[1.0, 0.012, 0.0], [0.0, 1.0, 0.0315], [0.0, 0.25, 1.0]])
    return pd.DataFrame(m, index=names, columns=names)


def _flowio_events(path) -> np.ndarray:
    fd = flowio.FlowData(str(path))
    return np.reshape(np.asarray(fd.events, dtype=float), (-1, fd.channel_count))


@pytest.mark.parametrize(
    ("datatype", "byteorder"),
    [("F", "<"), ("F", ">"), ("D", "<"), ("D", ">"), ("I", "<"), ("I", ">")],
)
def test_round_trip_readers(tmp_path, datatype, byteorder):
    events = _events()
    path = write_fcs(
        tmp_path / "a.fcs",
        events,
        CHANNELS,
        STAINS,
        spillover=_spill(),
        datatype=datatype,
        byteorder=byteorder,
        keywords={"$CYT": "LSRFortessa", "TUBE NAME": "Treg/panel"},
    )
    expected = events.astype(float)
    if datatype == "I":
        expected = np.clip(np.rint(expected), 0, 65535)
    np.testing.assert_allclose(_flowio_events(path), expected, rtol=1e-6)
    sample = fk.Sample(str(path))
    np.testing.assert_allclose(sample.get_events(source="raw")[:, :-1], expected[:, :-1], rtol=1e-6)
    assert sample.pnn_labels == CHANNELS
    assert sample.pns_labels == ["", "", "L/D Aqua - Viability", "CD25 PE", "FoxP3 AF647", ""]
    assert sample.metadata["tube name"] == "Treg/panel"
    assert sample.metadata["datatype"] == datatype
    if byteorder == NATIVE:  # fcsparser 0.2.4 cannot byte-swap under numpy 2
        fcsparser = pytest.importorskip("fcsparser")
        meta, df = fcsparser.parse(str(path), reformat_meta=True)
        np.testing.assert_allclose(df.to_numpy(dtype=float), expected, rtol=1e-6)
        assert meta["$P3S"] == "L/D Aqua - Viability"


def test_spillover_keyword_read_by_flowkit(tmp_path):
    path = write_fcs(tmp_path / "s.fcs", _events(), CHANNELS, STAINS, spillover=_spill())
    sample = fk.Sample(str(path))
    text = sample.metadata["spillover"]
    assert text.startswith("3,BV510-A,PE-A,APC-A,")
    matrix = fk.Matrix(text, detectors=["BV510-A", "PE-A", "APC-A"])
    np.testing.assert_allclose(matrix.matrix, _spill().to_numpy())


def test_header_offsets_and_segments(tmp_path):
    events = _events(100)
    path = write_fcs(tmp_path / "h.fcs", events, CHANNELS, STAINS)
    raw = path.read_bytes()
    assert raw[:10] == b"FCS3.1    "
    offsets = [int(raw[10 + 8 * i : 18 + 8 * i]) for i in range(6)]
    text_start, text_end, data_start, data_end = offsets[:4]
    assert text_start == 58 and data_start == text_end + 1
    assert data_end - data_start + 1 == events.size * 4
    text = raw[text_start : text_end + 1].decode()
    delim = text[0]
    assert text.endswith(delim)
    assert f"$BEGINDATA{delim}{data_start}{delim}" in text
    assert f"$ENDDATA{delim}{data_end}{delim}" in text
    assert "$MODE" in text and "$NEXTDATA" in text and "$P6R" in text


def test_large_offsets_moved_to_text(tmp_path, monkeypatch):
    """Offsets beyond 99,999,999 are written as 0 in HEADER and read from $BEGINDATA/$ENDDATA."""
    monkeypatch.setattr(_write, "_MAX_HEADER_OFFSET", 1000)
    events = _events(300)
    path = write_fcs(tmp_path / "big.fcs", events, CHANNELS, STAINS)
    raw = path.read_bytes()
    assert int(raw[26:34]) == 0 and int(raw[34:42]) == 0
    # readers accept zeros only for really large files; told to, they take the offsets from TEXT
    fd = flowio.FlowData(str(path), ignore_offset_discrepancy=True)
    np.testing.assert_allclose(np.reshape(fd.events, events.shape), events, rtol=1e-6)
    assert int(fd.text["enddata"]) > 1000 > int(fd.text["begindata"])


def test_delimiter_escaping_and_fallback(tmp_path):
    stains = ["a/b", "//", "x", "ends/", "/starts", "t"]
    path = write_fcs(tmp_path / "d.fcs", _events(10), CHANNELS, stains)
    assert fk.Sample(str(path)).pns_labels == stains
    # a value ending in "/" cannot be escaped with "/" as delimiter: the writer picks another
    assert path.read_bytes()[58:59] != b"/"
    path2 = write_fcs(tmp_path / "e.fcs", _events(10), CHANNELS, ["a/b", "", "", "", "", ""])
    assert path2.read_bytes()[58:59] == b"/"
    assert b"a//b" in path2.read_bytes()
    assert fk.Sample(str(path2)).pns_labels[0] == "a/b"


def test_integer_data_clipped_rounded_and_sized(tmp_path):
    events = np.array([[-5.0, 1.4, 70000.0], [1.6, 65534.6, 100.5]])
    path = write_fcs(tmp_path / "i.fcs", events, ["A", "B", "C"], datatype="I")
    np.testing.assert_array_equal(_flowio_events(path), [[0, 1, 65535], [2, 65535, 100]])
    meta = flowio.FlowData(str(path)).text
    assert meta["p1b"] == "16" and meta["p1r"] == "65536"
    path32 = write_fcs(
        tmp_path / "i32.fcs",
        events,
        ["A", "B", "C"],
        datatype="I",
        bits=32,
        ranges=[1024, 1024, 1024],
    )
    np.testing.assert_array_equal(_flowio_events(path32), [[0, 1, 1023], [2, 1023, 100]])
    assert flowio.FlowData(str(path32)).text["p2b"] == "32"


def test_structural_keywords_cannot_be_overridden(tmp_path):
    path = write_fcs(
        tmp_path / "k.fcs", _events(20), CHANNELS, keywords={"$TOT": "5", "$par": "2", "$cyt": "X"}
    )
    meta = flowio.FlowData(str(path)).text
    assert meta["tot"] == "20" and meta["par"] == "6" and meta["cyt"] == "X"


def test_empty_values_and_no_stains(tmp_path):
    path = write_fcs(tmp_path / "n.fcs", _events(5), CHANNELS, keywords={"NOTE": ""})
    sample = fk.Sample(str(path))
    assert sample.pns_labels == [""] * len(CHANNELS)
    assert sample.metadata["note"].strip() == ""


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"events": np.zeros((3, 2))}, "columns"),
        ({"events": np.full((2, 6), np.nan)}, "finite"),
        ({"channels": ["A"] * 6}, "unique"),
        ({"channels": ["A,B", "b", "c", "d", "e", "f"]}, "comma"),
        ({"datatype": "X"}, "datatype"),
        ({"byteorder": "="}, "byteorder"),
        ({"ranges": [1, 2]}, "ranges"),
        ({"spillover": pd.DataFrame(np.eye(1), index=["Q"], columns=["Q"])}, "not in the file"),
        ({"datatype": "I", "bits": 8}, "16 or 32"),
    ],
)
def test_bad_arguments_raise(tmp_path, kwargs, match):
    args = {"events": _events(2), "channels": CHANNELS} | kwargs
    with pytest.raises(ValueError, match=match):
        write_fcs(tmp_path / "bad.fcs", args.pop("events"), args.pop("channels"), **args)


_names = (
    st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")),
        max_size=12,
    )
    .map(str.strip)
    .filter(bool)
)


@settings(max_examples=25, deadline=None)
@given(
    stains=st.lists(_names, min_size=3, max_size=3),
    values=st.lists(st.floats(-1e6, 1e6, width=32), min_size=6, max_size=6),
)
def test_round_trip_any_stain_text(tmp_path_factory, stains, values):
    path = tmp_path_factory.mktemp("hyp") / "h.fcs"
    events = np.array(values, dtype=np.float32).reshape(2, 3)
    write_fcs(path, events, ["A", "B", "C"], stains)
    fd = flowio.FlowData(str(path))
    np.testing.assert_array_equal(np.reshape(fd.events, (2, 3)), events)
    meta = pytest.importorskip("fcsparser").parse(str(path), meta_data_only=True)
    assert [
        meta[f"$P{i}S"] for i in (1, 2, 3)
    ] == stains  # FlowIO drops "$" from values; fcsparser keeps it
