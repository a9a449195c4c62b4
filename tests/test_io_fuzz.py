"""Hostile input: mutated, truncated or lying FCS bytes only ever give FCSError, quickly and in bounded memory."""

from __future__ import annotations

import re
import tracemalloc

import numpy as np
import pytest
from data_fcs_helpers import build_fcs

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from cytokit.errors import FCSError  # noqa: E402
from cytokit.io import parse_fcs  # noqa: E402

_RNG = np.random.default_rng(1)
_VALS = _RNG.integers(0, 1000, size=(30, 3))
SEEDS = [
    build_fcs(
        _VALS.astype(np.float32), ["FSC-A", "B1-A", "Time"], keywords={"$SPILLOVER": "1,B1-A,1"}
    ),
    build_fcs(
        _VALS,
        ["A", "B", "C"],
        datatype="I",
        bits=[24, 16, 8],
        ranges=[1024, 512, 256],
        byteord="4,3,2,1",
    ),
    build_fcs(_VALS, ["A", "B", "C"], datatype="D", header_data="blank", stext={"X": "1"}),
]
_KEYS = [b"$TOT", b"$PAR", b"$P1B", b"$P2B", b"$BEGINDATA", b"$ENDDATA", b"$NEXTDATA", b"$BYTEORD",
         b"$DATATYPE", b"$P1R", b"$P1E", b"$P1G", b"$TIMESTEP", b"$SPILLOVER", b"$BEGINSTEXT", b"$MODE"]  # fmt: skip
_VALUES = [b"99999999999999999999", b"-5", b"0", b"", b"nan", b"1e308", b"inf", b"abc", b"4,3,2,1",
           b"1,2", b"2147483647", b"64", b"7", b"I", b"D", b"A", b"3,x,y,1,0", b"1000000000"]  # fmt: skip
_MAX_PEAK = 16_000_000  # bytes; the seed files are < 2 kB, so any big allocation is a missed check


def _set_keyword(data: bytes, key: bytes, value: bytes) -> bytes:
    pattern = re.escape(b"/" + key + b"/") + rb"[^/]*/"
    return re.sub(pattern, b"/" + key + b"/" + value + b"/", data, count=1)


mutations = st.one_of(
    st.tuples(st.just("byte"), st.integers(0, 4000), st.integers(0, 255)),
    st.tuples(st.just("cut"), st.integers(0, 4000), st.just(0)),
    st.tuples(
        st.just("kw"), st.sampled_from(range(len(_KEYS))), st.sampled_from(range(len(_VALUES)))
    ),
    st.tuples(st.just("header"), st.integers(10, 57), st.sampled_from(b"0123456789 -x")),
)


def _mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for kind, a, b in ops:
        if kind == "byte" and buf:
            buf[a % len(buf)] = b
        elif kind == "cut":
            del buf[a % (len(buf) + 1) :]
        elif kind == "kw":
            buf = bytearray(_set_keyword(bytes(buf), _KEYS[a], _VALUES[b]))
        elif kind == "header" and len(buf) > a:
            buf[a] = b
    return bytes(buf)


@settings(
    max_examples=150,
    deadline=2000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.sampled_from(range(len(SEEDS))), ops=st.lists(mutations, min_size=1, max_size=4))
def test_mutated_fcs_gives_fcserror_or_consistent_data(tmp_path, seed, ops):
    path = tmp_path / "fuzz.fcs"
    path.write_bytes(_mutate(SEEDS[seed], ops))
    tracemalloc.start()
    try:
        fcs = parse_fcs(path)
    except FCSError as err:
        assert "\n" not in str(err)
    else:
        assert fcs.data.dtype == np.float32
        assert fcs.data.shape[1] == len(fcs.channels) == len(fcs.stains)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < _MAX_PEAK


@pytest.mark.parametrize("seed", range(len(SEEDS)))
def test_every_truncation_is_refused(tmp_path, seed):
    data = SEEDS[seed]
    path = tmp_path / "cut.fcs"
    for cut in range(0, len(data), 7):
        path.write_bytes(data[:cut])
        with pytest.raises(FCSError):
            parse_fcs(path)


def test_seeds_are_valid(tmp_path):
    for data in SEEDS:
        path = tmp_path / "ok.fcs"
        path.write_bytes(data)
        assert parse_fcs(path).data.shape == (30, 3)
