"""Trial-level steps after the per-sample tasks: pooled clustering/UMAP and the report."""

from __future__ import annotations

import logging
import platform
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .. import _keys as K
from ._inputs import control_rows
from ._task import SampleResult, Settings

__all__ = ["cluster_pooled", "write_run_report"]

logger = logging.getLogger("cytokit")

_OBS_META = ("patient", "timepoint", "day")

#: FlowSOM metaclusters of a run. On simulated ld-IL2 trials (8 patients x 4 timepoints, seeds 303/404,
#: benchmarks/cluster_accuracy.py) 10 merged the naive (CD45RA+) Tregs into naive CD4 in some pools (Treg
#: cluster % vs true Treg % Spearman 0.74-0.94, D8/D0 fold off by up to 86 %); 15 gave naive and memory
#: Treg clusters in every pool tried (Spearman >= 0.99, fold within 6 %). CATALYST's default is 20.
N_CLUSTERS = 15


def pooled_cells(results: list[SampleResult], *, seed: int = 0):
    """AnnData of the per-sample subsamples (equal events per sample), on the markers all samples share.

    A large trial takes fewer events from each sample so the pool stays under ``tl.MAX_POOLED_EVENTS``.
    """
    import anndata as ad

    from ..tl import MAX_POOLED_EVENTS

    parts = [r for r in results if r.status != "failed" and r.cells and len(r.cells["event"])]
    parts = [r for r in parts if not _is_control(r)]  # an FMO/isotype well is not the trial's cells
    if not parts:
        return None
    per_sample = max(1, MAX_POOLED_EVENTS // len(parts))
    rng = np.random.default_rng(seed)
    shared = [
        v for v in parts[0].cells["var_names"] if all(v in p.cells["var_names"] for p in parts)
    ]
    roles = dict(zip(parts[0].cells["var_names"], parts[0].cells["roles"], strict=True))
    X, obs = [], []
    for r in parts:
        cols = [r.cells["var_names"].index(v) for v in shared]
        rows = np.arange(len(r.cells["event"]))
        if rows.size > per_sample:
            rows = np.sort(rng.choice(rows, per_sample, replace=False))
        X.append(r.cells["X"][np.ix_(rows, cols)])
        n = rows.size
        frame = {"sample": [r.sample] * n, "event": r.cells["event"][rows]}
        frame.update({k: [r.metadata.get(k)] * n for k in _OBS_META})
        pops = r.cells["population"]
        frame["population"] = pops[rows] if pops is not None else ["ungated"] * n
        obs.append(pd.DataFrame(frame))
    obs = pd.concat(obs, ignore_index=True)
    for col in ("sample", "patient", "timepoint", "population"):
        obs[col] = obs[col].astype(str).astype("category")
    from ..readouts import timepoint_order

    # legends list timepoints in time (D0, D8, D15), not alphabetically (D0, D15, D8)
    obs["timepoint"] = obs["timepoint"].cat.reorder_categories(timepoint_order(obs))
    obs.index = obs["sample"].astype(str) + ":" + obs["event"].astype(str)
    var = pd.DataFrame({K.ROLE: [roles.get(v, "") for v in shared]}, index=shared)
    return ad.AnnData(X=np.vstack(X).astype(np.float32), obs=obs, var=var)


def cluster_pooled(
    results: list[SampleResult],
    out: Path,
    *,
    seed: int = 0,
    population: str = "live",
    n_clusters: int = N_CLUSTERS,
    da_method: str = "auto",
) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Fit FlowSOM on the pooled subsample, map every event of each sample's clustered population onto it.

    Writes ``cells.h5ad`` (the pooled subsample with clusters, UMAP and the model in ``uns["cluster"]``),
    ``cluster_model.json``, ``clusters.csv`` (counts and % over every event of the population) and
    ``da.csv`` (paired differential abundance versus baseline). Returns (clusters, da).
    """
    from .. import stats, tl

    adata = pooled_cells(results, seed=seed)
    if adata is None:
        logger.warning("no events to cluster")
        return None
    from ..tl._utils import default_markers

    # lineage and functional markers: a detector without a stain (an empty channel) or a viability dye
    # is acquisition, not phenotype, and would split clusters on noise
    markers = default_markers(adata)
    logger.info("clustering %d pooled events on %d markers", adata.n_obs, len(markers))
    tl.flowsom(adata, markers=markers, seed=seed, n_clusters=n_clusters)
    model = adata.uns[K.CLUSTER]
    labels = tl.label_clusters(adata, key=K.CLUSTER)["label"]
    model["labels"] = {str(c): str(v) for c, v in labels.items()}
    model["population"] = population
    tl.write_cluster_model(model, out / "cluster_model.json")
    clusters = mapped_abundance(results, model)
    clusters.to_csv(out / "clusters.csv", index=False)
    trial = clusters.loc[~control_rows(clusters)] if len(clusters) else clusters
    da = stats.differential_abundance(trial, method=da_method)
    da.to_csv(out / "da.csv", index=False)
    tl.umap(adata, markers=markers, seed=seed)
    adata.write_h5ad(out / "cells.h5ad", compression="gzip")
    return clusters, da


def mapped_abundance(results: list[SampleResult], model: dict) -> pd.DataFrame:
    """clusters.csv: per sample and cluster, the count and % of every event of the clustered population.

    Each sample's events are the ones its task left beside the cache (or sent back in its result); they are
    mapped with :func:`cytokit.tl.cluster_counts`, the rule that labelled the pooled events.
    """
    from .. import tl

    labels = model.get("labels", {})
    rows = []
    for r in results:
        if r.status == "failed" or not r.cells:
            continue
        X = _population_events(r)
        if X is None:
            continue
        missing = [m for m in model["markers"] if m not in r.cells["var_names"]]
        if (
            missing
        ):  # pooled samples share every marker; a control well left out of the pool may not
            logger.warning("%s: not clustered, it lacks %s", r.sample, ", ".join(missing))
            continue
        cols = [r.cells["var_names"].index(m) for m in model["markers"]]
        counts = tl.cluster_counts(np.asarray(X[:, cols]), model)
        total = int(counts.sum())
        frame = pd.DataFrame(
            {
                "sample": r.sample,
                **{k: r.metadata.get(k) for k in _OBS_META},
                **({"control": r.metadata.get("control")} if "control" in r.metadata else {}),
                "population": model.get("population", ""),
                "cluster": counts.index.astype(str),
                "label": [labels.get(c, "") for c in counts.index.astype(str)],
                "count": counts.to_numpy(),
                "pct": 100.0 * counts.to_numpy() / max(total, 1),
            }
        )
        rows.append(frame)
    columns = ["sample", *_OBS_META, "population", "cluster", "label", "count", "pct"]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)


def _is_control(result: SampleResult) -> bool:
    return bool(control_rows(pd.DataFrame([{"control": result.metadata.get("control")}])).iloc[0])


def _population_events(result: SampleResult):
    """Every event of a sample's clustered population (memory-mapped from its file where possible)."""
    cells = result.cells
    X = cells.get("events_X")
    path = cells.get("events_file")
    if X is None and path:
        try:
            X = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            logger.error("%s: cannot read its events for clustering (%s)", result.sample, err)
            return None
    expected = cells.get("n_population")
    if X is None or (expected is not None and len(X) != expected):
        logger.error("%s: its events for clustering are missing or stale", result.sample)
        return None
    return X


def write_run_report(
    tables: dict,
    results: list[SampleResult],
    settings: Settings,
    out: Path,
    clusters,
    da: pd.DataFrame | None = None,
    *,
    notes: dict | None = None,
) -> Path:
    """The self-contained ``report.html`` of the run; ``notes`` are run facts for the methods (strategy
    choice, pre-gated files, AUC window, absent optional markers)."""
    from .. import __version__, report

    gate_figures = {
        r.sample: out / "gates" / f"{r.sample}.png"
        for r in results
        if (out / "gates" / f"{r.sample}.png").is_file()
    }
    cluster_figures = (
        _cluster_figures(out, clusters, da, tables.get("populations"))
        if clusters is not None
        else None
    )
    methods = {
        "cytokit": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": _versions(),
        "panel": settings.panel or "markers recognised from each file's $PnS/$PnN",
        "strategy": ", ".join(sorted({r.strategy for r in results if r.strategy}))
        or settings.strategy,
        **(notes or {}),
        "transform": settings.transform,
        "seed": settings.seed,
        "events per sample for clustering": settings.cells_per_sample,
        "command": _command_line(),
    }
    return report.write_report(
        out,
        summary=tables["summary"].loc[
            ~control_rows(tables["summary"])
        ],  # trial figures: no controls
        stats=tables["stats"],
        qc=tables["qc"],
        populations=tables["populations"],
        gate_figures=gate_figures,
        methods=methods,
        clusters=clusters,
        cluster_figures=cluster_figures,
        da=da,
    )


#: UMAP panels coloured by marker in the report, where the panel has them (Treg phenotype and activation).
_KEY_MARKERS = ("CD25", "FOXP3", "CD127", "Ki67")


def _cluster_figures(
    out: Path, clusters: pd.DataFrame, da: pd.DataFrame | None = None, populations=None
) -> dict[str, bytes] | None:
    import anndata as ad

    from .. import pl
    from ..report import ABUNDANCE_CHANGE, CLUSTER_HEATMAP
    from ..report._html import figure_png

    path = out / "cells.h5ad"
    if not path.is_file():
        return None
    adata = ad.read_h5ad(path)
    names = clusters.drop_duplicates("cluster").set_index("cluster")["label"]
    names.index = names.index.astype(str)
    abundance = clusters.groupby(clusters["cluster"].astype(str))["pct"].mean()
    figures = {
        CLUSTER_HEATMAP: figure_png(
            pl.cluster_heatmap(adata, labels=names.to_dict(), abundance=abundance.to_dict()),
            dpi=80,
        )
    }
    if da is not None and len(da) and da["median_fold_change"].notna().any():
        figures[ABUNDANCE_CHANGE] = figure_png(pl.abundance_change(da), dpi=80)
    if "Treg" in set(adata.obs["population"].astype(str)):
        agreement = _gated_vs_clustered(adata, clusters, populations, "Treg")
        figures["Gated Tregs vs the Treg cluster(s), per sample"] = figure_png(
            pl.gate_cluster_agreement(agreement), dpi=80
        )
    for color in ("cluster", "timepoint", "population"):
        if color not in adata.obs:
            continue
        legend = names.to_dict() if color == "cluster" else None
        figures[f"UMAP coloured by {color}"] = figure_png(
            pl.umap(adata, color=color, legend_labels=legend), dpi=80
        )
    markers = [m for m in _KEY_MARKERS if m in adata.var_names]
    if markers:
        figures["UMAP coloured by key markers"] = figure_png(
            pl.umap(adata, color=markers, panel_size=3.0, ncols=4), dpi=72
        )
    return figures


def _gated_vs_clustered(adata, clusters: pd.DataFrame, populations, population: str):
    """Per sample, the gated population's % of the clustered population against its matching clusters' %,
    both over every event (``populations.csv``, ``clusters.csv``); the matching clusters are those mostly
    made of the gated population in the pooled events (``tl.gate_cluster_agreement``)."""
    from .. import tl

    pooled = tl.gate_cluster_agreement(adata, population)
    parent = str(clusters["population"].iloc[0]) if "population" in clusters else ""
    if populations is None or not parent or parent not in set(populations["population"]):
        return pooled
    counts = populations.pivot_table(index="sample", columns="population", values="count")
    if population not in counts:
        return pooled
    matching = pooled.attrs["clusters"]
    in_match = clusters.loc[clusters["cluster"].astype(str).isin(matching)]
    table = pd.DataFrame(
        {
            "gated_pct": 100.0 * counts[population] / counts[parent],
            "cluster_pct": in_match.groupby("sample")["pct"].sum(),
        }
    ).dropna(subset=["gated_pct"])
    table["cluster_pct"] = table["cluster_pct"].fillna(0.0)
    table = table.rename_axis("sample").reset_index()
    table.attrs.update(pooled.attrs, of=f"every {parent} event")
    if len(table) >= 3:
        from scipy.stats import spearmanr

        table.attrs["spearman"] = float(spearmanr(table["gated_pct"], table["cluster_pct"])[0])
    return table


def _command_line() -> str:
    """The command that started this run, as the user would type it (empty from Python)."""
    if not sys.argv or Path(sys.argv[0]).name not in {"cytokit", "cli.py", "__main__.py"}:
        return ""
    return " ".join(["cytokit", *sys.argv[1:]])


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("flowkit", "numpy", "scipy", "pandas", "scikit-learn", "anndata", "umap-learn"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found
