"""``python -m cytokit.datasets OUT``: write a simulated ld-IL2 trial (the defaults make ``sample_data/``).

Examples: ``--design sle`` writes an SLE-like trial (weeks 0-12, helper-subset panel); plate-cytometer
files of real-like blood, exported from a CD3+CD4+ gate, without FOXP3, with CD25 control wells::

    python -m cytokit.datasets OUT --realism real --naming attune --panel surface \
        --exported-from CD4 --controls isotype:CD25,unstained:CD25
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from cytokit.datasets._panel import NAMING_STYLES, OPTIONAL_MARKERS, PANEL_KINDS, UNNAMED_STYLES
from cytokit.datasets._simulate import DESIGNS
from cytokit.datasets._structure import REALISMS
from cytokit.datasets._trial import DEFAULT_EVENTS, simulate_trial

# the SLE trial's schedule (He et al., Nat Med 2016): weeks 0-12, three 2-week courses
SLE_TIMEPOINTS = ("W0", "W2", "W4", "W6", "W8", "W10", "W12")
SLE_DAYS = (0, 14, 28, 42, 56, 70, 84)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and write the trial; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m cytokit.datasets", description=__doc__)
    ap.add_argument("out", help="output folder (created)")
    ap.add_argument("--seed", type=int, default=0, help="trial seed (default 0)")
    ap.add_argument("--patients", type=int, default=6, help="number of patients (default 6)")
    ap.add_argument(
        "--timepoints", help="comma-separated names (default D0,D8,D15,D29; sle: W0,W2,...,W12)"
    )
    ap.add_argument(
        "--days",
        help="comma-separated days, one per timepoint (default 0,8,15,29; sle: 0,14,...,84)",
    )
    ap.add_argument(
        "--events",
        type=int,
        default=DEFAULT_EVENTS,
        help=f"events per file, +-15%% (default {DEFAULT_EVENTS})",
    )
    ap.add_argument("--drift", choices=("none", "mild", "strong"), default="mild")
    ap.add_argument(
        "--naming",
        choices=NAMING_STYLES + UNNAMED_STYLES,
        default="bd",
        help="channel naming style (attune: no marker names; panel.yaml written)",
    )
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
    ap.add_argument(
        "--design", choices=DESIGNS, default="transreg", help="trial design (default transreg)"
    )
    ap.add_argument(
        "--realism",
        choices=REALISMS,
        default="classic",
        help="population structure: classic (fixed), drawn (per seed), overlap, real (continua)",
    )
    ap.add_argument("--panel", choices=tuple(PANEL_KINDS), default="treg", help="panel markers")
    ap.add_argument("--exported-from", choices=("CD4",), help="files exported from a CD3+CD4+ gate")
    ap.add_argument(
        "--controls",
        default="",
        help="comma-separated control wells per patient, e.g. isotype:CD25,unstained:CD25,FMO:Ki67",
    )
    ap.add_argument(
        "--platform", choices=("flow", "mass"), default="flow",
        help="mass: the same cells as CyTOF ion counts (DNA, Event_length, CD45, no scatter)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    try:
        manifest = _run(args)
    except ValueError as err:  # bad option values: a usage error, not a traceback
        ap.error(str(err))
    print(f"wrote {len(manifest)} FCS files, manifest.csv and truth/ to {args.out}")
    return 0


def _run(args: argparse.Namespace) -> pd.DataFrame:
    sle = args.design == "sle"
    timepoints = args.timepoints or ",".join(SLE_TIMEPOINTS if sle else ("D0", "D8", "D15", "D29"))
    days = args.days or ",".join(str(d) for d in (SLE_DAYS if sle else (0, 8, 15, 29)))
    return simulate_trial(
        args.out,
        n_patients=args.patients,
        timepoints=tuple(timepoints.split(",")),
        days=tuple(float(d) for d in days.split(",")),
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
        platform=args.platform,
        realism=args.realism,
        panel=args.panel,
        exported_from=args.exported_from,
        design=args.design,
        controls=tuple(c for c in args.controls.split(",") if c),
    )


if __name__ == "__main__":
    sys.exit(main())
