"""Cluster abundance over every event against the truth of simulated ld-IL2 trials.

    python benchmarks/cluster_accuracy.py [--seeds 303 404] [--patients 8] [--events 20000] [--jobs 2]
        [--population live] [--da-method auto]

For each seed a trial (patients x D0/D8/D15/D29) is simulated, ``cytokit.run`` clusters it (pooled FlowSOM,
then every event of each sample's clustered population mapped), and the Treg-phenotype clusters (labels
with FOXP3+/hi and CD25+/hi) are compared with the per-event truth:

- per-sample % of the population in those clusters vs the true Treg % of the same events' true
  lymphocytes (``live``: every true lymphocyte type; ``CD4``: the true CD4) -- Spearman >= 0.95;
- per-patient D8/D0 fold of that % vs the true fold -- every patient within 15 %;
- ``da.csv``: the Treg clusters changed at D8 (q < 0.05).

Exit status 1 when a goal is missed. Seeds here are not those of ``sample_data`` (0) nor of the tests.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

import cytokit as ck
from cytokit.datasets import CD4_LABELS, TREG_LABELS, load_event_truth, simulate_trial

LYMPHOCYTES_NOT = ("debris", "doublet", "dead", "granulocyte", "monocyte")


def treg_clusters(labels: pd.Series) -> list[str]:
    """Clusters whose label says Treg phenotype: FOXP3 positive and CD25 not negative. Among lymphocytes the
    label names CD25 ("CD25+"/"CD25hi"); among CD4 (``--population CD4``) CD25 is positive in most
    clusters, so labels name it only where it is negative ("FOXP3+ Helios+")."""
    lab = labels.astype(str)
    is_treg = lab.str.contains(r"FOXP3(?:\+|hi)") & ~lab.str.contains(r"CD25-")
    return sorted(labels.index[is_treg].astype(str))


def true_treg_pct(folder: Path, samples: list[str], population: str) -> pd.Series:
    out = {}
    for s in samples:
        lab = load_event_truth(folder, s)["label"].astype(str)
        parent = lab.isin(CD4_LABELS) if population == "CD4" else ~lab.isin(LYMPHOCYTES_NOT)
        out[s] = 100.0 * (lab.isin(TREG_LABELS) & parent).sum() / max(parent.sum(), 1)
    return pd.Series(out)


def evaluate(seed: int, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "trial"
        simulate_trial(folder, n_patients=args.patients, n_events=args.events, seed=seed)
        res = ck.run(
            folder,
            Path(tmp) / "out",
            jobs=args.jobs,
            seed=seed,
            figures=False,
            cluster_population=args.population,
            da_method=args.da_method,
        )
        clusters, da = res.clusters, res.da
        labels = clusters.drop_duplicates("cluster").set_index("cluster")["label"]
        tregs = treg_clusters(labels)
        pct = clusters.loc[clusters["cluster"].isin(tregs)].groupby("sample")["pct"].sum()
        truth = true_treg_pct(folder, list(pct.index), args.population)
        meta = clusters.drop_duplicates("sample").set_index("sample")[["patient", "timepoint"]]
        frame = meta.assign(cluster=pct, truth=truth.reindex(pct.index))
        wide = frame.pivot(index="patient", columns="timepoint")
        fold = wide["cluster"]["D8"] / wide["cluster"]["D0"]
        true_fold = wide["truth"]["D8"] / wide["truth"]["D0"]
        fold_err = (fold / true_fold - 1).abs()
        d8 = da.loc[da["cluster"].astype(str).isin(tregs) & (da["timepoint"] == "D8")]
        counts = clusters.groupby("sample")["count"].sum()
        pops = res.populations.loc[res.populations["population"] == args.population]
        return {
            "seed": seed,
            "treg_clusters": " | ".join(f"{c}: {labels[c]}" for c in tregs),
            "spearman": float(spearmanr(frame["cluster"], frame["truth"])[0]),
            "worst_fold_err": float(fold_err.max()),
            "median_fold": float(fold.median()),
            "median_true_fold": float(true_fold.median()),
            "d8_min_q": float(d8["p_adj"].min()) if len(d8) else np.nan,
            "d8_q": ", ".join(
                f"{c}:{q:.3g}" for c, q in zip(d8["cluster"], d8["p_adj"], strict=True)
            ),
            "counts_equal_population": bool(
                (counts == pops.set_index("sample")["count"].reindex(counts.index)).all()
            ),
        }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[303])
    parser.add_argument("--patients", type=int, default=8)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--population", default="live")
    parser.add_argument("--da-method", default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    rows = [evaluate(seed, args) for seed in args.seeds]
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 250, "display.max_colwidth", 80):
        print(table.to_string(index=False))
    ok = (
        (table["spearman"] >= 0.95)
        & (table["worst_fold_err"] <= 0.15)
        & (table["d8_min_q"] < 0.05)
        & table["counts_equal_population"]
    )
    print("goals met" if ok.all() else f"goals MISSED for seeds {list(table.loc[~ok, 'seed'])}")
    return 0 if ok.all() else 1


if __name__ == "__main__":
    sys.exit(main())
