"""Run every ``benchmarks/bench_*.py`` and print cytokit's speed against the baseline each one names.

Each module exposes ``run(quick: bool) -> list[dict]`` with rows ``task, cytokit_s, baseline,
baseline_s`` and optionally ``goal`` (text) and ``met`` (bool). The table shows ``x`` = cytokit_s /
baseline_s (cytokit's time as a multiple of the baseline's: 0.5x is twice as fast). A row whose
baseline is a goal in seconds is met when cytokit_s <= baseline_s. The exit status is 1 when a
benchmark fails or a goal is missed.

    python benchmarks/run.py [--quick] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLUMNS = ("task", "cytokit_s", "baseline", "baseline_s", "x", "goal", "met")


def discover(only: list[str] | None = None) -> list[Path]:
    """Benchmark modules in this folder, optionally only those whose name contains one of ``only``."""
    found = sorted(HERE.glob("bench_*.py"))
    if only:
        found = [p for p in found if any(o in p.stem for o in only)]
    return found


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def format_table(rows: list[dict]) -> str:
    """Plain-text table of benchmark rows."""

    def cell(row: dict, key: str) -> str:
        value = row.get(key, "")
        if key == "x":
            return f"{row['cytokit_s'] / row['baseline_s']:.2f}x" if row.get("baseline_s") else ""
        if key == "met":
            return {True: "yes", False: "MISSED"}.get(value, "")
        if isinstance(value, float):
            return f"{value:.3f}"
        return str(value)

    cells = [list(COLUMNS)] + [[cell(r, k) for k in COLUMNS] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smaller data, one repeat (smoke test)"
    )
    parser.add_argument(
        "--only", nargs="*", help="run only benchmarks whose module name contains these"
    )
    args = parser.parse_args(argv)
    rows, failed = [], 0
    for path in discover(args.only):
        start = time.perf_counter()
        print(f"running {path.stem} ...", file=sys.stderr, flush=True)
        try:
            rows += load(path).run(quick=args.quick)
        except Exception:  # one broken benchmark must not hide the others
            failed += 1
            traceback.print_exc()
        print(f"  done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    rows = [judged(r) for r in rows]
    print(format_table(rows))
    missed = [r["task"] for r in rows if r.get("met") is False]
    for task in missed:
        print(f"goal missed: {task}", file=sys.stderr)
    return 1 if failed or missed else 0


def judged(row: dict) -> dict:
    """The row with ``met`` filled in when its baseline is a goal in seconds."""
    if "met" not in row and str(row.get("baseline", "")).startswith("goal"):
        return {**row, "met": row["cytokit_s"] <= row["baseline_s"]}
    return row


if __name__ == "__main__":
    sys.exit(main())
