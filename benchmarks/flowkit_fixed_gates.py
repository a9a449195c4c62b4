"""The FlowKit baseline of ``bench_pipeline``: read, compensate, logicle-transform, apply 8 fixed gates.

    python benchmarks/flowkit_fixed_gates.py DIR '{"CD3": "APC-Cy7-A", ...}'

What a FlowKit user writes for a fixed (not data-driven) Treg gating of every ``*.fcs`` of DIR: one
``GatingStrategy`` with the file's own spillover (``compensation_ref="FCS"``), logicle on every
fluorescence dimension, and 8 gates (lymphocytes, singlets, live, CD3+, CD4+, CD25+, FOXP3+, CD127lo),
applied by ``gate_sample`` to each ``Sample``; prints the FOXP3+ count of each file. The channel of
each marker is given as JSON (a FlowKit user knows their panel; ``bench_pipeline`` finds them with
cytokit's recogniser outside the timed process); thresholds are fixed logicle values.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import flowkit as fk

LOGICLE = fk.transforms.LogicleTransform(262144.0, 0.5, 4.5, 0.0)


def _strategy(channels: dict[str, str]) -> fk.GatingStrategy:
    def dim(channel, lo=None, hi=None, xform="logicle", comp="FCS"):
        return fk.Dimension(channel, comp, xform, range_min=lo, range_max=hi)

    s = fk.GatingStrategy()
    s.add_transform("logicle", LOGICLE)
    s.add_transform("scatter", fk.transforms.LinearTransform(262144.0, 0.0))
    fsc_a, fsc_h, ssc_a = "FSC-A", "FSC-H", "SSC-A"
    scatter = [dim(fsc_a, xform="scatter", comp="uncompensated")]
    scatter.append(dim(ssc_a, xform="scatter", comp="uncompensated"))
    lymph = fk.gates.PolygonGate(
        "lymphocytes", scatter, [[0.1, 0.0], [0.5, 0.0], [0.5, 0.3], [0.1, 0.3]]
    )
    s.add_gate(lymph, ("root",))
    singlet_dims = [dim(fsc_a, xform="scatter", comp="uncompensated")]
    singlet_dims.append(dim(fsc_h, xform="scatter", comp="uncompensated"))
    singlets = fk.gates.PolygonGate(
        "singlets", singlet_dims, [[0.0, 0.0], [1.0, 0.7], [1.0, 1.0], [0.0, 0.15]]
    )
    s.add_gate(singlets, ("root", "lymphocytes"))
    path = ("root", "lymphocytes", "singlets")
    chain = [
        ("live", "Viability", None, 0.45),
        ("CD3", "CD3", 0.42, None),
        ("CD4", "CD4", 0.45, None),
    ]
    for name, marker, lo, hi in chain:
        s.add_gate(fk.gates.RectangleGate(name, [dim(channels[marker], lo, hi)]), path)
        path = (*path, name)
    for name, marker, lo, hi in [("CD25pos", "CD25", 0.35, None), ("CD127lo", "CD127", None, 0.45)]:
        s.add_gate(fk.gates.RectangleGate(name, [dim(channels[marker], lo, hi)]), path)
    s.add_gate(fk.gates.RectangleGate("FOXP3pos", [dim(channels["FOXP3"], 0.36)]), path)
    return s


def main(folder: str, channels: dict[str, str]) -> None:
    strategy = _strategy(channels)
    for path in sorted(Path(folder).glob("*.fcs")):
        sample = fk.Sample(str(path))
        result = strategy.gate_sample(sample)
        path_to_foxp3 = ("root", "lymphocytes", "singlets", "live", "CD3", "CD4")
        print(path.name, result.get_gate_count("FOXP3pos", path_to_foxp3))


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]))
