"""What a strategy's gate parameters may say, checked when the strategy is loaded (no sample needed).

A parameter that names another gate or population (``within``, ``from``, ``reference``, ``stratum``,
``strata``, ``count_with``, ``refine``, ``dead_check``, ``parent``), one of a method's words
(``side: high|low``, ``peak: outside|gated``, ...), a number, or a key no code reads (a misspelt
``minority``) used to show up per sample, as a failed gate or not at all. Here it is one
:class:`~cytokit.errors.StrategyError` naming the file, the gate, the key and what is wrong, before any
sample is read.

Markers (``dims``, ``guide``, ``helper``, the keys of ``helpers``) are not checked: whether a sample
has them depends on its panel, and a missing one skips an optional gate by design. What a key may hold
is taken from where it is read: the 1-D keywords from the engine's own filter (``_METHOD_KW``), the
other methods' keywords and every number's type from the placement functions' signatures.
"""

from __future__ import annotations

import difflib
import inspect
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from ..errors import StrategyError
from . import _methods as M
from . import _methods_2d as M2
from ._functional import split_threshold
from ._methods_corner import _CHI2_2, corner_population
from ._strategy import ROOT, GateSpec, PopulationSpec
from ._thresholds import _METHOD_KW

Node = GateSpec | PopulationSpec

logger = logging.getLogger("cytokit")

__all__ = ["check_order", "check_params", "check_top_level"]

#: keys of a strategy file (``strategy_from_dict``; ``include``/``extends`` are merged before it)
TOP_LEVEL_KEYS = frozenset(
    {"name", "description", "fit_events", "seed", "include", "extends", "gates", "populations"}
)
#: keys of any gate's params that the engine reads itself (``_Run.judge_fallback``, ``placement_jumps``)
GATE_KEYS = frozenset({"routine", "warn", "moves"})
#: keys of one 1-D threshold whatever its method (``_Run.threshold``, ``_Run.range_gate``) ...
THRESHOLD_KEYS = frozenset(
    {
        "side",
        "within",
        "from",
        "value",
        "fit_events",
        "max_shift",
        "moves",
        "helper",
        "helpers",
        "count_with",
        "negative_half",
    }
)
#: ... those only some 1-D methods read (a guide window is searched by ``valley`` only) ...
ONE_D_KEYS = {
    "valley": frozenset({"guide", "guide_events"}),
    "tail": frozenset(),
    "otsu": frozenset(),
    "reference": frozenset({"reference"}),
    "split": frozenset({"reference", "stratum", "strata"}),
}
#: ... and those of a bound of a ``range`` gate (``optional``: ``_Run.dims_of``)
BOUND_KEYS = frozenset({"method", "optional"})
#: params of a ``range`` gate besides ``GATE_KEYS`` (its thresholds are in ``bounds``)
RANGE_KEYS = frozenset({"bounds", "refine"})
#: the 2-D methods' functions: their keyword-only parameters are the keys a strategy may set, except
#: those ``_Run.placement`` passes itself
TWO_D = {
    "singlets": M2.singlet_band,
    "scatter_mixture": M2.scatter_mixture,
    "corner": corner_population,
    "time_qc": M.time_anomalies,
}
_FROM_ENGINE = frozenset({"dims", "seed", "live", "X_live"})
#: keys ``_Run.placement`` reads for a 2-D method and never passes to it (``_PLACEMENT_KEYS``)
TWO_D_ENGINE = {
    "singlets": frozenset({"fit_events"}),
    "scatter_mixture": frozenset({"fit_events", "dead_check"}),
    "corner": frozenset({"fit_events"}),
    "time_qc": frozenset(),  # placed on every event
}
ONE_D_FUNCTIONS = {
    "valley": M.density_valley,
    "tail": M.tail_threshold,
    "otsu": M.otsu_threshold,
    "reference": M.reference_threshold,
    "split": split_threshold,
}
#: the words a key may hold, as the code that reads it accepts them
CHOICES = {
    "side": ("high", "low"),  # _methods._side_sign
    "peak": ("outside", "gated"),  # tail_threshold
    "pair": ("top2", "below_main", "above_main"),  # density_valley
    "fallback": ("tail", "tail_main", "otsu", "midpoint", "none"),  # density_valley's _fallback
    "reference_rule": ("tail", "valley"),  # split_threshold
    "select": ("lowest_y", "densest_low", "largest"),  # scatter_mixture's _pick_component
    "shape": ("density", "ellipse"),  # scatter_mixture: any other word silently gave the ellipse
    "method": ("valley", "tail", "otsu", "reference", "split", "fixed"),  # a bound: _Run.threshold
}
#: numbers the engine reads itself (the methods' numbers come from their signatures)
ENGINE_NUMBERS = frozenset({"fit_events", "guide_events", "max_shift", "value"})
ENGINE_FLAGS = frozenset({"optional", "warn"})
#: names listed in a message about a misspelt reference (with the closest one named first)
MAX_LISTED = 25


def _keyword_defaults(fn) -> dict[str, object]:
    return {
        name: p.default
        for name, p in inspect.signature(fn).parameters.items()
        if p.kind is p.KEYWORD_ONLY and name not in _FROM_ENGINE
    }


_DEFAULTS: dict[str, dict[str, object]] = {
    m: _keyword_defaults(fn) for m, fn in {**ONE_D_FUNCTIONS, **TWO_D}.items()
}
#: every key a number or a flag, from the functions' defaults (``k: 3,5`` is a string and failed a fit)
NUMBERS = ENGINE_NUMBERS | {
    k for d in _DEFAULTS.values() for k, v in d.items() if type(v) in (int, float)
}
FLAGS = ENGINE_FLAGS | {k for d in _DEFAULTS.values() for k, v in d.items() if type(v) is bool}


def allowed_keys(method: str, *, bound: bool = False) -> frozenset[str]:
    """The params keys of a gate of ``method`` (``bound``: of one bound of a ``range`` gate)."""
    if method in ONE_D_KEYS:
        keys = THRESHOLD_KEYS | _METHOD_KW[method] | ONE_D_KEYS[method]
        return keys | BOUND_KEYS if bound else keys | GATE_KEYS
    if bound:  # a bound placed by 'fixed': its value
        return THRESHOLD_KEYS | BOUND_KEYS
    if method == "range":
        return RANGE_KEYS | GATE_KEYS
    if method in TWO_D:
        return frozenset(_DEFAULTS[method]) | TWO_D_ENGINE[method] | GATE_KEYS
    return GATE_KEYS  # fixed


# --------------------------------------------------------------------------------- the checks
class _Checker:
    """The checks of one strategy's nodes (ids known), raising on the first problem."""

    def __init__(self, nodes, path: Path | None, origins: Mapping[str, Path] | None):
        self.nodes = {n.id: n for n in nodes}
        self.path = path
        self.origins = origins or {}

    def fail(self, node: Node, key: str, problem: str) -> NoReturn:
        kind = "gate" if isinstance(node, GateSpec) else "population"
        where = f"{kind} {node.id!r}"
        origin = self.origins.get(node.id)
        if origin is not None and self.path is not None and origin != self.path:
            where += f" (in {origin.name})"
        raise StrategyError(f"{where}: {key} {problem}", self.path)

    def names(
        self,
        node: Node,
        key: str,
        name,
        candidates: list[str],
        heading: str,
        what: str | None = None,
    ) -> None:
        """``name`` (the value of ``key``) must be one of ``candidates`` (listed as ``heading``);
        ``what``: what a node of the strategy that is not a candidate is ("not a valley gate")."""
        if isinstance(name, str) and name in candidates:
            return
        kind = "gate" if "gate" in heading else "population"
        hint = ""
        if isinstance(name, str) and name in self.nodes and what:
            problem = f"names {name!r}, which is {what}"
        else:  # a misspelling: the closest candidate first
            problem = f"names {name!r}, which is not a {kind} of this strategy"
            close = _closest(name, candidates)
            hint = f"did you mean {close!r}? " if close else ""
        shown = candidates if len(candidates) <= MAX_LISTED else candidates[:MAX_LISTED]
        more = (
            f", ... ({len(candidates) - len(shown)} more)" if len(shown) < len(candidates) else ""
        )
        listed = (", ".join(shown) + more) if candidates else "none"
        self.fail(node, key, f"{problem} ({hint}{heading}: {listed})")

    def gates(self, where=lambda g: True) -> list[str]:
        return [i for i, n in self.nodes.items() if isinstance(n, GateSpec) and where(n)]

    # ------------------------------------------------------------------ nodes
    def node(self, node: Node) -> None:
        populations = [ROOT, *self.nodes]
        if node.parent != ROOT:
            self.names(node, "parent", node.parent, populations, "populations")
        if not isinstance(node, GateSpec):
            for name in sorted(node.references() - {node.parent}):
                self.names(node, "expr", name, list(self.nodes), "populations")
            return
        params = node.params
        self.keys(node, params, node.method, "")
        if node.method in ONE_D_KEYS:
            self.threshold(node, node.dims[0], params, node.method, "")
        elif node.method == "range":
            for dim, b in params["bounds"].items():
                where = f"bounds.{dim}."
                if not isinstance(b, Mapping):
                    self.fail(
                        node,
                        where[:-1],
                        f"must be a mapping of keys (method, side, ...), not {b!r}",
                    )
                method = b.get("method", "valley")
                self.choice(node, f"{where}method", method, CHOICES["method"])
                self.keys(node, b, method, where, bound=True)
                self.threshold(node, dim, b, method, where)
            if params.get("refine") is not None:
                self.refine(node, params["refine"])
        elif node.method == "corner":
            self.corner(node, params)
        if node.method == "scatter_mixture" and params.get("dead_check") is not None:
            valleys = self.gates(lambda g: g.method == "valley")
            what = "not a valley gate: dead_check uses the live/dead dye gate's valley"
            self.names(node, "dead_check", params["dead_check"], valleys, "valley gates", what)
        for key in ("select", "shape"):
            if node.method == "scatter_mixture" and key in params:
                self.choice(node, key, params[key], CHOICES[key])

    def keys(self, node: Node, params: Mapping, method: str, where: str, *, bound=False) -> None:
        """No key the method does not read; numbers are numbers, flags true/false."""
        allowed = allowed_keys(method, bound=bound)
        for key, value in params.items():
            if key not in allowed:
                close = _closest(key, sorted(allowed))
                hint = f"did you mean {close!r}? " if close else ""
                what = "a bound" if bound else "method"
                self.fail(
                    node,
                    f"{where}{key}",
                    f"is not a parameter of {what} {method!r} ({hint}it takes: "
                    f"{', '.join(sorted(allowed))})",
                )
            if key in NUMBERS and value is not None:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    self.fail(node, f"{where}{key}", f"must be a number, not {value!r}")
            if key in FLAGS and not isinstance(value, bool):
                self.fail(node, f"{where}{key}", f"must be true or false, not {value!r}")

    def choice(self, node: Node, key: str, value, choices) -> None:
        if value not in choices:
            self.fail(node, key, f"is {value!r}; it must be one of {', '.join(choices)}")

    def threshold(self, node: Node, dim: str, b: Mapping, method: str, where: str) -> None:
        """One 1-D threshold (a 1-D gate's params, or a bound of a range gate)."""
        populations = [ROOT, *self.nodes]
        for key in ("side", "peak", "pair", "fallback", "reference_rule"):
            if key in b:
                self.choice(node, f"{where}{key}", b[key], CHOICES[key])
        if method == "fixed" and b.get("value") is None and not b.get("from"):
            self.fail(node, f"{where}method", "is 'fixed' without a value (value: NUMBER)")
        if b.get("from") is not None:
            has_dim = self.gates(
                lambda g: (g.method in ONE_D_KEYS or g.method == "range") and dim in g.dims
            )
            others = [g for g in has_dim if g != node.id]
            self.names(
                node,
                f"{where}from",
                b["from"],
                others,
                f"gates with a threshold on {dim}",
                f"not a 1-D or range gate over {dim}",
            )
        if b.get("within") is not None:
            self.names(node, f"{where}within", b["within"], populations, "populations")
        ref = b.get("reference")
        if ref is not None and not (method == "reference" and ref == "self"):
            heading = "populations" + (" (or self)" if method == "reference" else "")
            self.names(node, f"{where}reference", ref, list(self.nodes), heading)
        for key in ("stratum", "strata"):
            if b.get(key) is not None:
                self.names(node, f"{where}{key}", b[key], list(self.nodes), "populations")
        if b.get("stratum") is not None and ref is None:
            self.fail(
                node,
                f"{where}stratum",
                "is used only with reference: POP (a population without the marker)",
            )
        for key in ("guide", "helper"):
            if key in b and not isinstance(b[key], str):
                self.fail(node, f"{where}{key}", f"must be one marker name, not {b[key]!r}")
        helpers = b.get("helpers")
        if helpers is not None:
            if not isinstance(helpers, Mapping) or not helpers:
                self.fail(
                    node,
                    f"{where}helpers",
                    f"must map markers to high or low ({{CD25: high}}), not {helpers!r}",
                )
            for marker, side in helpers.items():
                self.choice(node, f"{where}helpers.{marker}", side, CHOICES["side"])
        for key in ("count_with", "negative_half"):
            if b.get(key) is not None and not helpers:
                self.fail(
                    node,
                    f"{where}{key}",
                    "is used only with helpers: {MARKER: high|low}",
                )
        if b.get("count_with") is not None:
            others = [g for g in self.gates() if g != node.id]
            self.names(
                node,
                f"{where}count_with",
                b["count_with"],
                others,
                "gates",
                "not another gate of this strategy (a boolean population is never counted)",
            )
        half = b.get("negative_half")
        if half is not None and half not in helpers:
            self.fail(
                node,
                f"{where}negative_half",
                f"names {half!r}, which is not one of its helpers ({', '.join(map(str, helpers))})",
            )

    def refine(self, node: GateSpec, name) -> None:
        """``refine: GATE``: GATE's discriminant split (``helpers``), drawn on this gate's two dims."""
        if len(node.dims) != 2:
            self.fail(node, "refine", f"draws on two dims; this gate has {len(node.dims)}")
        self.names(
            node,
            "refine",
            name,
            self.gates(_has_helpers),
            "gates with helpers",
            "not a gate counted with helpers (whose discriminant split refine draws)",
        )

    def corner(self, node: GateSpec, params: Mapping) -> None:
        sides = params.get("sides", ("high", "low"))
        if not isinstance(sides, list | tuple) or len(sides) != 2:
            self.fail(node, "sides", f"must be two sides, one per dim ([high, low]), not {sides!r}")
        for side in sides:
            self.choice(node, "sides", side, CHOICES["side"])
        if "quantile" in params:
            self.choice(node, "quantile", params["quantile"], tuple(sorted(_CHI2_2)))

    # ------------------------------------------------------------------ order
    def order(self, ordered: list) -> None:
        """Checks of the dependency order: the gate ``count_with`` names is placed after this one
        (its purity check and count rules run when it is placed; one placed before never gets them)."""
        index = {n.id: i for i, n in enumerate(ordered)}
        for node in ordered:
            if not isinstance(node, GateSpec):
                continue
            bounds = node.params.get("bounds", {}) if node.method == "range" else {}
            for where, b in [("", node.params), *((f"bounds.{d}.", v) for d, v in bounds.items())]:
                target = b.get("count_with")
                if target is not None and index[target] < index[node.id]:
                    self.fail(
                        node,
                        f"{where}count_with",
                        f"names {target!r}, which is placed before this gate (a gate counted "
                        "with this gate's split must be placed after it)",
                    )


def _closest(name, candidates: list[str], cutoff: float = 0.6) -> str | None:
    """The candidate closest to a misspelt ``name``, letter case aside (``Liv`` -> ``live``)."""
    lower = {str(c).lower(): c for c in reversed(candidates)}
    close = difflib.get_close_matches(str(name).lower(), list(lower), n=1, cutoff=cutoff)
    return lower[close[0]] if close else None


def _has_helpers(g) -> bool:
    bounds = g.params.get("bounds", {}) if g.method == "range" else {}
    return any(isinstance(b, Mapping) and b.get("helpers") for b in [g.params, *bounds.values()])


def check_top_level(doc: Mapping, path: Path | None) -> None:
    """Keys of the strategy file itself: a misspelt one (``fit_event:``, which was ignored) is an
    error; a key like none of them (``version:``, ``author:``: a lab's own bookkeeping) is logged
    and ignored, as YAML front matter usually is."""
    for key in sorted(set(map(str, doc)) - TOP_LEVEL_KEYS):
        # 0.8: a slip of a letter or two (fit_event, gate, includes), not a word of its own (notes
        # and gates share 60 % of their letters)
        close = _closest(key, sorted(TOP_LEVEL_KEYS), cutoff=0.8)
        if close is not None:
            raise StrategyError(
                f"unknown key {key} (did you mean {close!r}? a strategy has: "
                f"{', '.join(sorted(TOP_LEVEL_KEYS))})",
                path,
            )
        logger.warning(
            "%s: key %r is not part of a gating strategy; ignored",
            path.name if path is not None else "strategy",
            key,
        )
    for key in ("fit_events", "seed"):
        value = doc.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise StrategyError(f"{key} must be a whole number, not {value!r}", path)


def check_params(nodes, path: Path | None, origins: Mapping[str, Path] | None = None) -> None:
    """Every node's references and params (see the module doc); before the dependency order, so a
    misspelt reference names its key."""
    checker = _Checker(nodes, path, origins)
    for node in nodes:
        checker.node(node)


def check_order(ordered, path: Path | None, origins: Mapping[str, Path] | None = None) -> None:
    """The checks that need the nodes in dependency (placement) order."""
    _Checker(ordered, path, origins).order(list(ordered))
