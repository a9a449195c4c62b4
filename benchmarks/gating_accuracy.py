"""Gating accuracy on simulated ld-IL2 trials: gated Treg % of CD4 and fold change vs the truth.

    python benchmarks/gating_accuracy.py [--quick] [--seeds 101 202] [--drift mild strong] [--events 20000]

For each trial (seed x drift) every sample is simulated in memory (``cytokit.datasets.simulate_sample``,
the same draw ``simulate_trial`` writes), written to FCS, read, compensated, transformed and gated
three ways: per sample (``prior=None``), and with the patient's consensus as prior (two passes:
``consensus_prior`` of the per-sample placements, then re-gating each sample with it). Reports per
mode the mean and worst |Treg % CD4 - truth| (percentage points) and the worst per-patient fold-change
error |gated fold / true fold - 1| (fold = timepoint / baseline). Goals: mean <= 1.0 pp, worst <= 2.0
pp, fold within 15 %. Seeds here are not the ones of ``sample_data`` (0) nor those of the tests.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

import cytokit as ck
from cytokit.datasets import simulate_sample
from cytokit.gating import consensus_prior, gate

DAYS = (0, 8, 15, 29)


def preprocess(sim, folder: Path):
    path = sim.write(folder / "sample.fcs")
    adata = ck.read_fcs(path)
    if adata.uns.get("spillover") is not None:
        ck.pp.compensate(adata)
    ck.pp.transform(adata)
    return adata


def treg_pct(adata) -> float:
    pops = adata.obsm["populations"]
    return 100.0 * pops["Treg"].sum() / max(pops["CD4"].sum(), 1)


def gate_trial(seed: int, drift: str, *, n_patients: int, n_events: int, days=DAYS) -> pd.DataFrame:
    """One row per sample: truth and gated Treg % of CD4 in each mode."""
    rows, adatas = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for p in range(n_patients):
            for day in days:
                sim = simulate_sample(n_events, seed=seed, patient=p, day=day, drift=drift)
                adata = preprocess(sim, Path(tmp))
                gate(adata)
                adatas[(p, day)] = adata
                warnings = adata.uns["gating"]["warnings"]
                rows.append({"seed": seed, "drift": drift, "patient": p, "day": day,
                             "truth": sim.truth["treg_pct_cd4"], "per_sample": treg_pct(adata),
                             "n_warnings": len(warnings)})  # fmt: skip
    table = pd.DataFrame(rows)
    for p in range(n_patients):
        prior = consensus_prior([adatas[(p, d)].uns["gating"] for d in days])
        for day in days:
            again = gate(adatas[(p, day)], prior=prior, copy=True)
            sel = (table.patient == p) & (table.day == day)
            table.loc[sel, "patient_prior"] = treg_pct(again)
    return table


def fold_errors(table: pd.DataFrame, mode: str) -> pd.Series:
    """|gated fold / true fold - 1| per sample after baseline, fold = value / patient's day-0 value."""
    out = []
    for _, grp in table.groupby(["seed", "drift", "patient"]):
        base = grp[grp.day == grp.day.min()].iloc[0]
        later = grp[grp.day != grp.day.min()]
        fold_true = later.truth / base.truth
        fold_gated = later[mode] / base[mode]
        out.append((fold_gated / fold_true - 1).abs())
    return pd.concat(out)


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (drift, mode), _ in (
        pd.MultiIndex.from_product([sorted(table.drift.unique()), ["per_sample", "patient_prior"]])
        .to_frame()
        .groupby(level=[0, 1])
    ):
        t = table[table.drift == drift]
        err = (t[mode] - t.truth).abs()
        fold = fold_errors(t, mode)
        rows.append({"drift": drift, "mode": mode, "n": len(t), "mean_pp": err.mean(),
                     "max_pp": err.max(), "fold_err_max": fold.max(), "fold_err_mean": fold.mean()})  # fmt: skip
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one seed, 3 patients")
    ap.add_argument("--seeds", type=int, nargs="+", default=[101, 202])
    ap.add_argument("--drift", nargs="+", default=["mild", "strong"])
    ap.add_argument("--patients", type=int, default=6)
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--csv", type=Path, help="write the per-sample table here")
    args = ap.parse_args(argv)
    logging.getLogger("cytokit").setLevel(logging.ERROR)
    seeds, patients = (args.seeds[:1], 3) if args.quick else (args.seeds, args.patients)
    start = time.perf_counter()
    tables = [gate_trial(s, d, n_patients=patients, n_events=args.events)
              for s in seeds for d in args.drift]  # fmt: skip
    table = pd.concat(tables, ignore_index=True)
    if args.csv:
        table.to_csv(args.csv, index=False)
    pd.set_option("display.width", 140)
    print(summarise(table).round(3).to_string(index=False))
    worst = table.assign(err=(table.per_sample - table.truth).abs()).nlargest(5, "err")
    print("\nworst samples (per_sample mode):")
    print(worst.round(2).to_string(index=False))
    print(f"\n{len(table)} samples in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
