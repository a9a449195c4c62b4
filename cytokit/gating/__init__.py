"""Automated gating: strategies as data, gates placed from each sample's data, GatingML export."""

from ._engine import gate, resolve_dims
from ._functional import patient_thresholds, split_threshold
from ._gates import EllipseGate, Gate, PolygonGate, RangeGate, gate_from_dict
from ._gatingml import apply_gatingml, export_gatingml, load_gatingml, to_gating_strategy
from ._methods import Placement, density_valley, otsu_threshold, tail_threshold, time_anomalies
from ._methods_2d import mixture_window, scatter_mixture, singlet_band
from ._methods_corner import corner_population
from ._pregated import detect_start
from ._priors import consensus_prior, placement_jumps
from ._strategy import GateSpec, PopulationSpec, Strategy, load_strategy

__all__ = [
    "EllipseGate",
    "Gate",
    "GateSpec",
    "Placement",
    "PolygonGate",
    "PopulationSpec",
    "RangeGate",
    "Strategy",
    "apply_gatingml",
    "consensus_prior",
    "corner_population",
    "density_valley",
    "detect_start",
    "export_gatingml",
    "gate",
    "gate_from_dict",
    "load_gatingml",
    "load_strategy",
    "mixture_window",
    "otsu_threshold",
    "patient_thresholds",
    "placement_jumps",
    "resolve_dims",
    "scatter_mixture",
    "singlet_band",
    "split_threshold",
    "tail_threshold",
    "time_anomalies",
    "to_gating_strategy",
]
