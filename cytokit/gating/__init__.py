"""Automated gating: strategies as data, gates placed from each sample's data, GatingML export."""

from ._gates import EllipseGate, Gate, PolygonGate, RangeGate, gate_from_dict

__all__ = ["EllipseGate", "Gate", "PolygonGate", "RangeGate", "gate_from_dict"]
