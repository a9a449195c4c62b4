"""Gating strategies as data: a YAML tree of named gates and boolean populations -> :class:`Strategy`.

A strategy file (see the shipped ``gating/treg.yaml``, documented inline) holds::

    name: treg
    fit_events: 20000          # events (per parent population) the data-driven methods see
    gates:                     # ordered; each gate's id is the population name it defines
      - id: CD3
        parent: live
        dims: [CD3]            # marker names (var_names of the sample, panel spellings resolved)
        method: valley         # valley | tail | otsu | reference | range | singlets | scatter_mixture | time_qc | fixed
        params: {side: high}
        outside: B/NK          # name of the parent's events that fail this gate (obs label)
        required: true         # false: skipped with a warning when a marker is missing
    populations:               # boolean combinations of gates
      - id: Teff
        parent: CD4
        expr: CD4 and not FOXP3+
    include: [shared/helper_subsets.yaml]   # gates/populations of other files, defined once

An included file holds ``gates:`` and ``populations:`` only (no lineage of its own); its nodes join the
strategy as if written in it. Paths are relative to the including file, then to the shipped ``gating/``.

``extends: treg`` starts from another strategy (a shipped name or a file beside this one): a gate or
population of the same id replaces the base's where it stands, new ones are added, and the base's
other gates are kept (a lab's variant without copying the whole tree; ``treg_cytof`` is ``treg`` with
mass-cytometry gates in place of the scatter gates).

Only loading and validation live here; placement is in ``_engine.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import yaml

from .._resources import resolve_definition
from ..errors import CytokitError, StrategyError

__all__ = [
    "METHODS",
    "GateSpec",
    "PopulationSpec",
    "Strategy",
    "load_strategy",
    "parse_expr",
    "population_columns",
    "population_rows",
]

ROOT = "root"
METHODS = frozenset(
    {
        "valley",
        "tail",
        "otsu",
        "reference",
        "split",
        "range",
        "singlets",
        "scatter_mixture",
        "time_qc",
        "fixed",
        "corner",
    }
)
# ``uns["gating"]["populations"]``: one list per field, in strategy (tree) order, "" where a field is
# empty (the root's parent, a gate population's expr). h5py can store neither None nor a list of dicts,
# and a dict keyed by name would come back from .h5ad in alphabetical order, not tree order.
POPULATION_FIELDS = ("name", "parent", "label", "expr", "outside")


def population_columns(rows: Sequence[Mapping]) -> dict[str, list]:
    """``uns["gating"]["populations"]`` from rows ``{"name", "parent", "label", "expr"?, "outside"?}``:
    ``{"name": [...], "parent": [...], "label": [...], "expr": [...], "outside": [...]}`` (see DEVELOPERS.md)."""
    rows = population_rows({"populations": list(rows)})
    out: dict[str, list] = {f: [] for f in POPULATION_FIELDS}
    for row in rows:
        out["name"].append(row["name"])
        out["parent"].append(row["parent"] or "")
        out["label"].append(row["label"])
        out["expr"].append(row.get("expr", ""))
        out["outside"].append(row.get("outside", ""))
    return out


def population_rows(gating: Mapping | None) -> list[dict]:
    """The populations of ``uns["gating"]`` in strategy order, one dict each: ``name``, ``parent``
    (None at the root), ``label`` (bool) and, when not empty, ``expr``, ``outside``, ``gate``.

    The one reader of ``uns["gating"]["populations"]``: the stored columns, as :func:`gate` writes them
    or as they come back from an .h5ad file (numpy arrays), and the older list of dicts.
    """
    listed = (gating or {}).get("populations")
    if listed is None or len(listed) == 0:
        return []
    if isinstance(listed, Mapping):  # columns
        names = list(listed["name"])
        cols = {k: list(v) for k, v in listed.items() if len(v) == len(names)}
        listed = [{k: v[i] for k, v in cols.items()} for i in range(len(names))]
    rows = []
    for p in listed:
        parent = _text(p.get("parent"))
        row = {
            "name": str(p["name"]),
            "parent": None if parent in ("", ROOT) else parent,
            "label": bool(p.get("label", True)),
        }
        row.update({k: _text(p[k]) for k in ("expr", "outside", "gate") if _text(p.get(k))})
        rows.append(row)
    return rows


def _text(value) -> str:
    """A stored text field: "" for None or NaN (an empty field), else ``str``."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value)


ONE_D = frozenset({"valley", "tail", "otsu", "reference", "split"})
_GATE_KEYS = {
    "id", "parent", "dims", "method", "params", "gate", "outside", "required",
    "when_missing", "label", "expect", "description",
}  # fmt: skip
_INCLUDE_KEYS = {"gates", "populations", "description", "include"}
_POP_KEYS = {"id", "parent", "expr", "label", "required", "expect", "description"}


@dataclass(frozen=True)
class GateSpec:
    """One gate of a strategy; ``id`` is the name of the population it defines."""

    id: str
    parent: str
    dims: tuple[str, ...]
    method: str
    params: dict = field(default_factory=dict)
    gate: dict | None = (
        None  # fixed coordinates (a gate dict, transformed units) for method "fixed"
    )
    outside: str | None = None
    required: bool = True
    when_missing: str = "drop"  # "drop": population absent; "pass": population = parent (QC gates)
    label: bool = True  # False: functional/helper population, does not change obs["population"]
    expect: tuple[float, float] | None = None  # plausible % of parent; outside it -> warning
    description: str = ""

    def references(self) -> set[str]:
        """Populations this gate needs placed first (parent, ``within``/``from`` of its bounds, the
        gate whose split ``refine`` draws)."""
        refs = {self.parent}
        bounds = self.params.get("bounds", {}) if self.method == "range" else {}
        for spec in [self.params, *bounds.values()]:
            for key in ("within", "from", "reference", "stratum", "strata", "refine"):
                if isinstance(spec, dict) and spec.get(key):
                    refs.add(spec[key])
        return refs - {ROOT, "self"}


@dataclass(frozen=True)
class PopulationSpec:
    """A boolean population, e.g. ``CD4 and not FOXP3+``."""

    id: str
    parent: str
    expr: str
    tree: tuple
    label: bool = True
    required: bool = True
    expect: tuple[float, float] | None = None
    description: str = ""

    def references(self) -> set[str]:
        return ({self.parent} | expr_names(self.tree)) - {ROOT}


@dataclass(frozen=True)
class Strategy:
    """A validated gating strategy: nodes (gates and boolean populations) in dependency order."""

    name: str
    nodes: tuple[GateSpec | PopulationSpec, ...]
    fit_events: int = 20000
    seed: int = 0
    description: str = ""
    path: Path | None = None
    # files whose nodes were included (their contents define the strategy too)
    includes: tuple[Path, ...] = ()

    @property
    def sources(self) -> tuple[Path, ...]:
        """Every file the strategy was read from (a cache key must cover all of them)."""
        return tuple(p for p in (self.path, *self.includes) if p is not None)

    @property
    def names(self) -> list[str]:
        return [n.id for n in self.nodes]

    def node(self, name: str) -> GateSpec | PopulationSpec:
        for n in self.nodes:
            if n.id == name:
                return n
        raise KeyError(name)


# --------------------------------------------------------------------------------- boolean expressions
_TOKEN = re.compile(r"\(|\)|[^\s()]+")


def parse_expr(text: str) -> tuple:
    """Parse ``a and not (b or c)`` into a small tree: ``("name", a)``, ``("not", t)``, ``("and", t, u)``."""
    tokens = _TOKEN.findall(text)
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def take():
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def parse_or():
        node = parse_and()
        while peek() and peek().lower() == "or":
            take()
            node = ("or", node, parse_and())
        return node

    def parse_and():
        node = parse_not()
        while peek() and peek().lower() == "and":
            take()
            node = ("and", node, parse_not())
        return node

    def parse_not():
        tok = peek()
        if tok is None:
            raise ValueError("expression ends too early")
        if tok.lower() == "not":
            take()
            return ("not", parse_not())
        if tok == "(":
            take()
            node = parse_or()
            if take() != ")":
                raise ValueError("missing ')'")
            return node
        if tok == ")" or tok.lower() in ("and", "or"):
            raise ValueError(f"unexpected {tok!r}")
        return ("name", take())

    tree = parse_or()
    if pos != len(tokens):
        raise ValueError(f"unexpected {tokens[pos]!r}")
    return tree


def expr_names(tree: tuple) -> set[str]:
    """Population names an expression tree refers to."""
    if tree[0] == "name":
        return {tree[1]}
    return set().union(*(expr_names(t) for t in tree[1:]))


# --------------------------------------------------------------------------------- loading
def load_strategy(name_or_path: str | Path | Strategy) -> Strategy:
    """Load a shipped strategy by name (``"treg"``) or a YAML file, validated and in dependency order."""
    if isinstance(name_or_path, Strategy):
        return name_or_path
    try:
        path = resolve_definition("gating", name_or_path)
    except CytokitError as err:
        raise StrategyError(str(err)) from None
    return _compose(path)


def _compose(path: Path) -> Strategy:
    """The strategy of ``path`` with its ``extends:`` base and ``include:`` files merged in (YAML
    parsed once per file version)."""
    path = path.resolve()
    doc, sources, origins = _composed_doc(path, ())
    return replace(strategy_from_dict(doc, path=path, origins=origins), includes=sources)


def _composed_doc(
    path: Path, chain: tuple[Path, ...]
) -> tuple[dict, tuple[Path, ...], dict[str, Path]]:
    """``path``'s document with its base (``extends``) and ``include:`` files merged, those files,
    and the file each gate or population id was written in (an error names it)."""
    doc = _read_yaml(path)
    if not isinstance(doc, dict):
        return doc, (), {}
    sources: tuple[Path, ...] = ()
    origins: dict[str, Path] = {}
    if doc.get("extends") is not None:
        base_path = _base_path(doc["extends"], path)
        if base_path in (*chain, path):
            raise StrategyError(f"'extends' loops back to {base_path.name}", path)
        base, base_sources, origins = _composed_doc(base_path, (*chain, path))
        origins = {**origins, **_ids(doc, path)}
        doc, sources = _extend(base, doc), (base_path, *base_sources)
    else:
        origins = _ids(doc, path)
    includes = doc.get("include")
    if includes is None:
        return doc, sources, origins
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise StrategyError("'include' must be a file name or a list of them", path)
    merged = {
        **doc,
        "include": None,
        "gates": list(doc.get("gates") or []),
        "populations": list(doc.get("populations") or []),
    }
    for name in includes:
        inc = _include_path(name, path)
        part = _read_yaml(inc)
        if not isinstance(part, dict) or set(part) - _INCLUDE_KEYS:
            raise StrategyError("an included file holds only 'gates:' and 'populations:'", inc)
        if part.get("include"):
            raise StrategyError("an included file cannot include others", inc)
        merged["gates"] += list(part.get("gates") or [])
        merged["populations"] += list(part.get("populations") or [])
        sources += (inc,)
        origins.update({k: v for k, v in _ids(part, inc).items() if k not in origins})
    return merged, sources, origins


def _ids(doc: dict, path: Path) -> dict[str, Path]:
    """``{id: path}`` of the gates and populations written in ``doc``."""
    nodes = [*(doc.get("gates") or []), *(doc.get("populations") or [])]
    return {str(n["id"]): path for n in nodes if isinstance(n, dict) and "id" in n}


def _base_path(name, extending: Path) -> Path:
    """The strategy an ``extends:`` names: a shipped name (``treg``) or a path beside ``extending``."""
    if not isinstance(name, str) or not name.strip():
        raise StrategyError("'extends' must name one strategy", extending)
    beside = extending.parent / name
    if beside.is_file():
        return beside.resolve()
    try:
        return resolve_definition("gating", name).resolve()
    except CytokitError:
        raise StrategyError(f"'extends': strategy {name!r} not found", extending) from None


def _extend(base: dict, doc: dict) -> dict:
    """``doc`` on top of its base: a gate or population with a base id replaces it where it stands,
    new ones follow the base's; other keys (name, description, fit_events...) are ``doc``'s."""
    out = {**base, **{k: v for k, v in doc.items() if k not in ("extends", "gates", "populations")}}
    if "include" not in doc:
        out["include"] = None  # the base's includes are already merged into its gates
    for key in ("gates", "populations"):
        mine = {str(n.get("id")): n for n in doc.get(key) or [] if isinstance(n, dict)}
        kept = [mine.pop(str(n.get("id")), n) for n in base.get(key) or []]
        new = [n for n in doc.get(key) or [] if not isinstance(n, dict) or str(n.get("id")) in mine]
        out[key] = kept + new
    return out


def _include_path(name: str, including: Path) -> Path:
    """An included file: relative to the including file's folder, else to the shipped ``gating/``."""
    candidates = [including.parent / name]
    try:
        from .._resources import data_dir

        candidates.append(data_dir("gating") / name)
    except CytokitError:
        pass
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise StrategyError(f"included file {name!r} not found", including)


def _read_yaml(path: Path):
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as err:
        raise StrategyError(f"cannot read strategy: {err.strerror}", path) from None
    return _load_cached(path.resolve(), stamp)


@lru_cache(maxsize=32)
def _load_cached(path: Path, stamp: int):
    """Parse once per file version (YAML parsing costs more than gating a small sample)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StrategyError(f"cannot read strategy: {first}", path) from None


def strategy_from_dict(
    doc: dict, *, path: Path | None = None, origins: Mapping[str, Path] | None = None
) -> Strategy:
    """Build a :class:`Strategy` from its parsed YAML form; :class:`StrategyError` names the problem.

    Every gate's params are checked here, without data (``_schema``): the gates and populations they
    name, the words they hold and no key the method does not read. ``origins``: the file each id was
    written in (an included or base file), named by the error."""
    from ._schema import check_order, check_params, check_top_level

    if not isinstance(doc, dict) or not isinstance(doc.get("gates"), list):
        raise StrategyError("a strategy needs a 'gates:' list", path)
    check_top_level(doc, path)
    nodes: list[GateSpec | PopulationSpec] = [_gate_spec(g, path) for g in doc["gates"]]
    nodes += [_population_spec(p, path) for p in doc.get("populations") or []]
    ids = [n.id for n in nodes]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise StrategyError(f"duplicate population id(s): {', '.join(sorted(dup))}", path)
    check_params(nodes, path, origins)
    ordered = _dependency_order(nodes, path)
    check_order(ordered, path, origins)
    return Strategy(
        name=str(doc.get("name") or (path.stem if path else "strategy")),
        nodes=tuple(ordered),
        fit_events=int(doc.get("fit_events", 20000)),
        seed=int(doc.get("seed", 0)),
        description=str(doc.get("description", "")).strip(),
        path=path,
    )


def _expect(value, where: str, path) -> tuple[float, float] | None:
    if value is None:
        return None
    if not (isinstance(value, list | tuple) and len(value) == 2):
        raise StrategyError(f"{where}: 'expect' must be [low, high] percent of parent", path)
    return float(value[0]), float(value[1])


def _gate_spec(g: dict, path) -> GateSpec:
    if not isinstance(g, dict) or "id" not in g:
        raise StrategyError(f"every gate needs an 'id' (got {g!r:.60})", path)
    gid = str(g["id"])
    unknown = set(g) - _GATE_KEYS
    if unknown:
        raise StrategyError(f"gate {gid!r}: unknown key(s) {', '.join(sorted(unknown))}", path)
    method = g.get("method", "fixed" if "gate" in g else None)
    if method not in METHODS:
        raise StrategyError(f"gate {gid!r}: unknown method {method!r}", path)
    dims = g.get("dims")
    if isinstance(dims, str):
        dims = [dims]
    if not dims:
        raise StrategyError(f"gate {gid!r}: 'dims' is missing", path)
    if method in ONE_D and len(dims) != 1:
        raise StrategyError(f"gate {gid!r}: method {method!r} takes one dimension", path)
    if method == "fixed" and not isinstance(g.get("gate"), dict):
        raise StrategyError(f"gate {gid!r}: method 'fixed' needs 'gate:' coordinates", path)
    if not isinstance(g.get("params") or {}, Mapping):
        raise StrategyError(
            f"gate {gid!r}: params must be a mapping of keys, not {g['params']!r}", path
        )
    params = dict(g.get("params") or {})
    if method == "range":
        bounds = params.get("bounds")
        if not isinstance(bounds, dict) or set(bounds) != {str(d) for d in dims}:
            raise StrategyError(
                f"gate {gid!r}: 'range' needs params.bounds for each of its dims", path
            )
    when_missing = g.get("when_missing", "drop")
    if when_missing not in ("drop", "pass"):
        raise StrategyError(f"gate {gid!r}: when_missing must be 'drop' or 'pass'", path)
    return GateSpec(
        id=gid,
        parent=str(g.get("parent", ROOT)),
        dims=tuple(str(d) for d in dims),
        method=method,
        params=params,
        gate=g.get("gate"),
        outside=None if g.get("outside") is None else str(g["outside"]),
        required=bool(g.get("required", True)),
        when_missing=when_missing,
        label=bool(g.get("label", True)),
        expect=_expect(g.get("expect"), f"gate {gid!r}", path),
        description=str(g.get("description", "")),
    )


def _population_spec(p: dict, path) -> PopulationSpec:
    if not isinstance(p, dict) or "id" not in p or "expr" not in p:
        raise StrategyError(f"every population needs 'id' and 'expr' (got {p!r:.60})", path)
    pid = str(p["id"])
    unknown = set(p) - _POP_KEYS
    if unknown:
        raise StrategyError(
            f"population {pid!r}: unknown key(s) {', '.join(sorted(unknown))}", path
        )
    try:
        tree = parse_expr(str(p["expr"]))
    except ValueError as err:
        raise StrategyError(f"population {pid!r}: bad expression ({err})", path) from None
    return PopulationSpec(
        id=pid,
        parent=str(p.get("parent", ROOT)),
        expr=str(p["expr"]),
        tree=tree,
        label=bool(p.get("label", True)),
        required=bool(p.get("required", True)),
        expect=_expect(p.get("expect"), f"population {pid!r}", path),
        description=str(p.get("description", "")),
    )


def _dependency_order(nodes: list, path) -> list:
    """Order nodes so every reference comes first (stable: file order otherwise); reject cycles."""
    by_id = {n.id: n for n in nodes}
    for n in nodes:
        missing = n.references() - set(by_id)
        if missing:
            raise StrategyError(f"{n.id!r} refers to unknown population(s) {sorted(missing)}", path)
    done: list = []
    seen: set[str] = set()
    state: dict[str, int] = {}

    def visit(n, chain):
        if state.get(n.id) == 1:
            raise StrategyError(f"cycle in strategy: {' -> '.join([*chain, n.id])}", path)
        if n.id in seen:
            return
        state[n.id] = 1
        for ref in sorted(n.references(), key=[m.id for m in nodes].index):
            visit(by_id[ref], [*chain, n.id])
        state[n.id] = 2
        seen.add(n.id)
        done.append(n)

    for n in nodes:
        visit(n, [])
    return done
