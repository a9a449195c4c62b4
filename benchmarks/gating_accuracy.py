"""Gating accuracy on simulated ld-IL2 trials: gated Treg % of CD4 and fold change vs the truth.

    python benchmarks/gating_accuracy.py [--quick] [--seeds 101 202] [--drift mild strong]
        [--events 8000 20000] [--naming bd beckman] [--datatype F I] [--prior] [--jobs 2]

For each trial (seed x drift x events x naming x datatype) every sample is simulated in memory
(``cytokit.datasets.simulate_sample``, the same draw ``simulate_trial`` writes), written to FCS, read,
compensated, transformed and gated per sample (``prior=None``); with ``--prior`` also with the
patient's consensus as prior (``consensus_prior`` of the per-sample placements, then re-gating).
Reports per condition the mean and worst |Treg % CD4 - truth| (percentage points), the worst
per-patient fold-change error |gated fold / true fold - 1| (fold = timepoint / baseline), and from the
per-event truth where the errors come from: CD4 missed / extra (% of true CD4) and Treg missed / extra
among true CD4 events (% of true Treg). Goals: mean <= 1.0 pp, worst <= 2.0 pp, fold within 15 %.
Seeds here are not the ones of ``sample_data`` (0) nor those of the tests.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

import cytokit as ck
from cytokit.datasets import simulate_sample
from cytokit.gating import consensus_prior, gate

DAYS = (0, 8, 15, 29)


def preprocess(sim, folder: Path, datatype: str = "F"):
    path = sim.write(folder / "sample.fcs", datatype=datatype)
    adata = ck.read_fcs(path)
    if adata.uns.get("spillover") is not None:
        ck.pp.compensate(adata)
    ck.pp.transform(adata)
    return adata


def treg_pct(adata) -> float:
    pops = adata.obsm["populations"]
    return 100.0 * pops["Treg"].sum() / max(pops["CD4"].sum(), 1)


def event_errors(sim, adata) -> dict:
    """Where the gated counts differ from the per-event truth (percent of the true population)."""
    names = np.asarray(sim.label_names)[sim.labels[adata.obs["event"].to_numpy()]]
    true_cd4 = np.char.startswith(names.astype(str), "CD4_") | np.char.startswith(
        names.astype(str), "Treg_"
    )
    true_treg = np.char.startswith(names.astype(str), "Treg_")
    pops = adata.obsm["populations"]
    cd4, treg = pops["CD4"].to_numpy(), pops["Treg"].to_numpy()
    n_cd4, n_treg = max(true_cd4.sum(), 1), max(true_treg.sum(), 1)
    return {
        "cd4_missed": 100 * (true_cd4 & ~cd4).sum() / n_cd4,
        "cd4_extra": 100 * (~true_cd4 & cd4).sum() / n_cd4,
        "treg_missed": 100 * (true_treg & cd4 & ~treg).sum() / n_treg,
        "treg_extra": 100 * (~true_treg & true_cd4 & treg).sum() / n_treg,
    }


def gate_trial(
    cond: dict, *, n_patients: int, days=DAYS, prior: bool = False, strategy="treg"
) -> pd.DataFrame:
    """One row per sample: truth and gated Treg % of CD4 (per sample, optionally with a prior)."""
    logging.getLogger("cytokit").setLevel(logging.ERROR)
    rows, adatas = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for p in range(n_patients):
            for day in days:
                sim = simulate_sample(cond["events"], seed=cond["seed"], patient=p, day=day,
                                      drift=cond["drift"], naming=cond["naming"])  # fmt: skip
                adata = preprocess(sim, Path(tmp), cond["datatype"])
                gate(adata, strategy)
                adatas[(p, day)] = adata
                rows.append({**cond, "patient": p, "day": day, "truth": sim.truth["treg_pct_cd4"],
                             "per_sample": treg_pct(adata), **event_errors(sim, adata),
                             "n_warnings": len(adata.uns["gating"]["warnings"])})  # fmt: skip
    table = pd.DataFrame(rows)
    if prior:
        for p in range(n_patients):
            pr = consensus_prior([adatas[(p, d)].uns["gating"] for d in days])
            for day in days:
                again = gate(adatas[(p, day)], strategy, prior=pr, copy=True)
                sel = (table.patient == p) & (table.day == day)
                table.loc[sel, "patient_prior"] = treg_pct(again)
    return table


GROUP = ["seed", "drift", "events", "naming", "datatype", "patient"]


def fold_errors(table: pd.DataFrame, mode: str) -> pd.Series:
    """|gated fold / true fold - 1| per sample after baseline, fold = value / patient's day-0 value."""
    out = []
    for _, grp in table.groupby(GROUP):
        base = grp[grp.day == grp.day.min()].iloc[0]
        later = grp[grp.day != grp.day.min()]
        fold_true = later.truth / base.truth
        fold_gated = later[mode] / base[mode]
        out.append((fold_gated / fold_true - 1).abs())
    return pd.concat(out)


def summarise(table: pd.DataFrame, by=("drift", "events")) -> pd.DataFrame:
    modes = [m for m in ("per_sample", "patient_prior") if m in table]
    rows = []
    for key, t in table.groupby(list(by)):
        for mode in modes:
            err = t[mode] - t.truth
            fold = fold_errors(t, mode)
            rows.append({**dict(zip(by, key, strict=True)), "mode": mode, "n": len(t),
                         "bias_pp": err.mean(), "mean_pp": err.abs().mean(),
                         "max_pp": err.abs().max(), "fold_err_mean": fold.mean(),
                         "fold_err_max": fold.max(), "cd4_missed%": t.cd4_missed.mean(),
                         "cd4_extra%": t.cd4_extra.mean(), "treg_missed%": t.treg_missed.mean(),
                         "treg_extra%": t.treg_extra.mean()})  # fmt: skip
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one seed, 3 patients")
    ap.add_argument("--seeds", type=int, nargs="+", default=[101, 202])
    ap.add_argument("--drift", nargs="+", default=["mild", "strong"])
    ap.add_argument("--events", type=int, nargs="+", default=[20000])
    ap.add_argument("--naming", nargs="+", default=["bd"])
    ap.add_argument("--datatype", nargs="+", default=["F"], help="F (float) or I (16-bit integer)")
    ap.add_argument("--patients", type=int, default=6)
    ap.add_argument("--prior", action="store_true", help="also gate with the patient's consensus")
    ap.add_argument("--strategy", default="treg", help="strategy name or YAML path")
    ap.add_argument("--jobs", type=int, default=1, help="trials gated in parallel")
    ap.add_argument("--csv", type=Path, help="write the per-sample table here")
    args = ap.parse_args(argv)
    seeds, patients = (args.seeds[:1], 3) if args.quick else (args.seeds, args.patients)
    start = time.perf_counter()
    conds = [dict(zip(("seed", "drift", "events", "naming", "datatype"), c, strict=True))
             for c in itertools.product(seeds, args.drift, args.events, args.naming, args.datatype)]  # fmt: skip
    kw = {"n_patients": patients, "prior": args.prior, "strategy": args.strategy}
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as ex:
            tables = list(ex.map(_trial, conds, itertools.repeat(kw)))
    else:
        tables = [_trial(c, kw) for c in conds]
    table = pd.concat(tables, ignore_index=True)
    if args.csv:
        table.to_csv(args.csv, index=False)
    pd.set_option("display.width", 200)
    print(summarise(table).round(3).to_string(index=False))
    print("\nall:")
    print(summarise(table.assign(all="all"), by=("all",)).round(3).to_string(index=False))
    worst = table.assign(err=(table.per_sample - table.truth).abs()).nlargest(5, "err")
    print("\nworst samples (per_sample mode):")
    print(worst.round(2).to_string(index=False))
    print(f"\n{len(table)} samples in {time.perf_counter() - start:.0f} s")
    return 0


def _trial(cond: dict, kw: dict) -> pd.DataFrame:
    return gate_trial(cond, **kw)


if __name__ == "__main__":
    sys.exit(main())
