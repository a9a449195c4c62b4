"""``benchmarks/gating_accuracy.py`` itself: a sample that fails to gate is a missed goal, not a gap."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from cytokit.errors import GatingError

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gating_accuracy.py"


def _script():
    spec = importlib.util.spec_from_file_location("gating_accuracy_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_sample_that_fails_to_gate_is_reported_and_misses_the_goals(monkeypatch, capsys):
    # a trial once stopped the whole benchmark with a GatingError of one sample (19 events in FOXP3+),
    # and a failed sample left out of the tables would let the goals pass on the others
    bench = _script()
    real_gate = bench.gate

    def gate(adata, strategy, **kw):
        if adata.uns.get("cytokit_test_fail"):
            raise GatingError("gate 'FOXP3+': only 19 events")
        return real_gate(adata, strategy, **kw)

    real_pre = bench.preprocess

    def preprocess(sim, folder, datatype):
        adata = real_pre(sim, folder, datatype)
        adata.uns["cytokit_test_fail"] = len(calls) == 1  # the trial's second sample
        calls.append(1)
        return adata

    calls: list[int] = []
    monkeypatch.setattr(bench, "gate", gate)
    monkeypatch.setattr(bench, "preprocess", preprocess)
    code = bench.main(["--seeds", "611", "--drift", "mild", "--events", "8000", "--patients", "1"])
    out = capsys.readouterr().out
    assert code == 1
    assert "1 sample(s) failed to gate" in out
    assert "only 19 events" in out
