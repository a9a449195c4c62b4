"""``python -m cytokit.datasets OUT``: write a simulated ld-IL2 trial (the defaults make ``sample_data/``)."""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from cytokit.datasets._panel import NAMING_STYLES, OPTIONAL_MARKERS
from cytokit.datasets._trial import DEFAULT_EVENTS, simulate_trial


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and write the trial; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m cytokit.datasets", description=__doc__)
    ap.add_argument("out", help="output folder (created)")
    ap.add_argument("--seed", type=int, default=0, help="trial seed (default 0)")
    ap.add_argument("--patients", type=int, default=6, help="number of patients (default 6)")
    ap.add_argument("--timepoints", default="D0,D8,D15,D29", help="comma-separated names")
    ap.add_argument("--days", default="0,8,15,29", help="comma-separated days, one per timepoint")
    ap.add_argument(
        "--events",
        type=int,
        default=DEFAULT_EVENTS,
        help=f"events per file, +-15%% (default {DEFAULT_EVENTS})",
    )
    ap.add_argument("--drift", choices=("none", "mild", "strong"), default="mild")
    ap.add_argument("--naming", choices=NAMING_STYLES, default="bd", help="channel naming style")
    ap.add_argument(
        "--missing",
        default="",
        help=f"comma-separated optional markers to leave out {OPTIONAL_MARKERS}",
    )
    ap.add_argument("--datatype", choices=("F", "D", "I"), default="F")
    ap.add_argument("--byteorder", choices=("<", ">"), default="<")
    ap.add_argument(
        "--compensated", action="store_true", help="write compensated data without $SPILLOVER"
    )
    ap.add_argument("--extra-scatter", action="store_true", help="also record FSC-W, SSC-H, SSC-W")
    ap.add_argument(
        "--respell", type=float, default=0.1, help="chance a file re-spells a stain (0.1)"
    )
    args = ap.parse_args(argv)
    try:
        manifest = _run(args)
    except ValueError as err:  # bad option values: a usage error, not a traceback
        ap.error(str(err))
    print(f"wrote {len(manifest)} FCS files, manifest.csv and truth/ to {args.out}")
    return 0


def _run(args: argparse.Namespace) -> pd.DataFrame:
    return simulate_trial(
        args.out,
        n_patients=args.patients,
        timepoints=tuple(args.timepoints.split(",")),
        days=tuple(float(d) for d in args.days.split(",")),
        n_events=args.events,
        seed=args.seed,
        drift=args.drift,
        naming=args.naming,
        missing=tuple(m for m in args.missing.split(",") if m),
        datatype=args.datatype,
        byteorder=args.byteorder,
        compensated=args.compensated,
        extra_scatter=args.extra_scatter,
        respell=args.respell,
    )


if __name__ == "__main__":
    sys.exit(main())
