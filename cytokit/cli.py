"""The `cytokit` command line: `cytokit run` for a trial, `cytokit inspect` for one file, `cytokit panel`
for a panel template from a file's channels.

Exit status: 0 all samples succeeded; 2 usage error (bad option, missing folder, unreadable manifest);
3 the run finished but one or more samples failed (see qc.csv). No traceback for bad input (`--debug` shows one).
"""

from __future__ import annotations

import atexit
import gc
import logging
import sys
from pathlib import Path

import click

from . import __version__
from .errors import CytokitError

logger = logging.getLogger("cytokit")

EXIT_USAGE = 2
EXIT_SAMPLES_FAILED = 3

#: Set by :func:`main`: this process is the ``cytokit`` command's own (not a caller of ``cli`` in a test
#: or a notebook), so its garbage collector may be tuned for one run and exit.
_own_process = False

_KEY_KEYWORDS = (
    "$FIL",
    "$CYT",
    "$CYTSN",
    "$DATE",
    "$BTIM",
    "$ETIM",
    "$SRC",
    "$TIMESTEP",
    "$DATATYPE",
    "$BYTEORD",
)


class _Fail(click.ClickException):
    """A one-line error with the contract's exit status."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.exit_code = code

    def show(self, file=None) -> None:
        click.echo(f"cytokit: error: {self.message}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cytokit")
@click.option("--debug", is_flag=True, help="Show debug logs and full tracebacks on errors.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bar.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """cytokit: flow cytometry immunomonitoring, from FCS files to Treg/Teff readouts and a report."""
    ctx.obj = {"debug": debug, "quiet": quiet}
    _setup_logging(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)


@cli.command("run")
@click.argument("input", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("results"),
    show_default=True,
    help="Output folder. A rerun into the same folder reuses samples whose file and settings "
    "did not change.",
)
@click.option(
    "--manifest",
    type=click.Path(path_type=Path),
    help="Manifest CSV (columns file, patient, timepoint, optional day and any metadata). "
    "Default: INPUT/manifest.csv if present, else <patient>_<timepoint>.fcs file names.",
)
@click.option(
    "--panel",
    metavar="NAME|PATH",
    help="Panel definition (a shipped name from panels/ or a YAML path). Default: markers are "
    "recognised from each file's $PnS/$PnN names.",
)
@click.option(
    "--strategy",
    metavar="NAME|PATH",
    help="Gating strategy: a shipped name from gating/, a YAML path, or a GatingML 2.0 / FlowJo .wsp "
    "file of fixed gates. Default: chosen from each file's markers, treg with FOXP3, treg_surface "
    "(CD25hi CD127lo) with CD25 and CD127 but no FOXP3; the choice is logged and in the report.",
)
@click.option(
    "--start-at",
    metavar="POPULATION",
    help="The files were exported from this gate of the strategy (e.g. CD4 for a CD3+CD4+ export): "
    "every event belongs to it and the gates above it are skipped.",
)
@click.option(
    "--auc-window",
    metavar="START:END",
    callback=lambda ctx, param, value: _auc_window(value),
    help="Days over which the Treg change AUC (treg_change_auc) is integrated, e.g. 0:84 for "
    "course-based dosing. Default: each patient's whole follow-up.",
)
@click.option(
    "--overrides",
    type=click.Path(path_type=Path),
    metavar="YAML",
    help="A reviewer's corrections: a list of {sample, gate, marker, value} (a threshold in "
    "transformed units) or {sample, gate, fixed: {gate}} entries. Applied to that sample's gate, its "
    "descendants re-placed, marked 'manual' in qc.csv, populations.csv, the figures and GatingML; "
    "other samples are reused from the cache.",
)
@click.option(
    "--jobs", type=click.IntRange(min=1), help="Local worker processes (default: all cores)."
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Send per-sample work to a running Dask distributed scheduler (e.g. tcp://host:8786) "
    "instead of local processes; results are identical.",
)
@click.option(
    "--no-cluster", is_flag=True, help="Skip pooled clustering and UMAP (cells.h5ad, clusters.csv)."
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Random seed of subsampling, clustering and UMAP.",
)
@click.option(
    "--cells-per-sample",
    type=click.IntRange(min=0),
    default=500,
    show_default=True,
    help="Events per sample pooled for clustering and UMAP (live lymphocytes).",
)
@click.option(
    "--cluster-population",
    default="live",
    show_default=True,
    metavar="POPULATION",
    help="Gated population clustered: pooled subsample for FlowSOM/UMAP, then every one of its events "
    "mapped to the clusters (clusters.csv), e.g. CD4.",
)
@click.option(
    "--clusters",
    "n_clusters",
    type=click.IntRange(min=2),
    default=15,
    show_default=True,
    help="FlowSOM metaclusters.",
)
@click.option(
    "--da-method",
    type=click.Choice(["auto", "wilcoxon", "glm"]),
    default="auto",
    show_default=True,
    help="p-values of da.csv: signed-rank on cluster %, or quasi-binomial GLM on counts with patient "
    "blocks (needs statsmodels); auto = glm when statsmodels is installed.",
)
@click.option("--no-figures", is_flag=True, help="Do not draw per-sample gating figures (faster).")
@click.option(
    "--consistency",
    type=click.Choice(["sample", "patient"]),
    default="sample",
    show_default=True,
    help="Gate placement: on each sample's own data, or re-placed with the patient's consensus "
    "placement (all timepoints) as a prior.",
)
@click.pass_context
def run_command(
    ctx: click.Context,
    input: Path,
    out: Path,
    manifest,
    panel,
    strategy,
    jobs,
    start_at,
    auc_window,
    overrides,
    scheduler,
    no_cluster: bool,
    seed: int,
    cells_per_sample: int,
    cluster_population: str,
    n_clusters: int,
    da_method: str,
    no_figures: bool,
    consistency: str,
) -> None:
    """Process a folder of FCS files (or a manifest CSV) INPUT into gated populations, per-sample summaries,
    paired statistics versus baseline, clusters and an HTML report in --out."""
    from .pipeline import run

    if not input.exists():
        raise _Fail(f"{input}: no such file or folder", EXIT_USAGE)
    progress, close = _progress(ctx.obj["quiet"])
    if _own_process:  # what is imported so far lives as long as the process (_frozen_after_first)
        gc.freeze()
        progress = _frozen_after_first(progress)
    try:
        result = run(
            input,
            out,
            manifest=manifest,
            panel=panel,
            strategy=strategy,
            jobs=jobs,
            scheduler=scheduler,
            cluster=not no_cluster,
            seed=seed,
            cells_per_sample=cells_per_sample,
            cluster_population=cluster_population,
            n_clusters=n_clusters,
            da_method=da_method,
            figures=not no_figures,
            consistency=consistency,
            start_at=start_at,
            auc_window=auc_window,
            overrides=overrides,
            progress=progress,
        )
    except CytokitError as err:  # only raised before any sample runs: a usage error
        raise _Fail(str(err), EXIT_USAGE) from None
    except Exception as err:
        if ctx.obj["debug"]:
            raise
        raise _Fail(
            f"internal error: {type(err).__name__}: {err} (rerun with --debug)", 1
        ) from None
    finally:
        close()
    n_failed = result.n_failed
    click.echo(
        f"{len(result.qc) - n_failed}/{len(result.qc)} samples done; results in {result.out}",
        err=True,
    )
    if n_failed:
        raise _Fail(
            f"{n_failed} sample(s) failed; see {result.out / 'qc.csv'}", EXIT_SAMPLES_FAILED
        )


@cli.command("inspect")
@click.argument("file", type=click.Path(path_type=Path))
@click.pass_context
def inspect_command(ctx: click.Context, file: Path) -> None:
    """Show one FCS file: channels, markers, event count, spillover and key keywords."""
    from .io import read_fcs

    if not file.is_file():
        raise _Fail(f"{file}: no such file", EXIT_USAGE)
    try:
        adata = read_fcs(file)
    except CytokitError as err:
        if ctx.obj["debug"]:
            raise
        raise _Fail(str(err), EXIT_USAGE) from None
    click.echo(describe(adata))


def _auc_window(value: str | None):
    from .pipeline._run import parse_auc_window

    try:
        return parse_auc_window(value)
    except CytokitError as err:
        raise click.BadParameter(err.message) from None


@cli.command("panel")
@click.argument("file", type=click.Path(path_type=Path))
@click.pass_context
def panel_command(ctx: click.Context, file: Path) -> None:
    """Write a panel YAML template from FILE's channels to standard output.

    Markers are filled in where the file names them; a channel without a marker name gets its channel
    name as a placeholder, marked FILL IN: replace it with the marker (e.g. `name: CD25`), then pass the
    file as --panel:

        cytokit panel plate_01.fcs > my_panel.yaml   # edit the FILL IN lines
        cytokit run plates/ --panel my_panel.yaml
    """
    from ._panel_template import panel_template

    if not file.is_file():
        raise _Fail(f"{file}: no such file", EXIT_USAGE)
    try:
        text = panel_template(file)
    except CytokitError as err:
        if ctx.obj["debug"]:
            raise
        raise _Fail(str(err), EXIT_USAGE) from None
    click.echo(text, nl=False)


def describe(adata) -> str:
    """Plain-text description of a loaded FCS file (the `cytokit inspect` output)."""
    from . import _keys as K

    kw = adata.uns.get(K.FCS, {})
    info = adata.uns.get(K.SAMPLE_INFO, {})
    lines = [
        f"file       {info.get('file', '')}",
        f"version    FCS {info.get('version', '?')}",
        f"events     {adata.n_obs}",
        f"parameters {adata.n_vars}",
        "",
        f"{'#':>3}  {'channel ($PnN)':<22} {'stain ($PnS)':<28} {'marker':<12} {'role':<11} range",
    ]
    var = adata.var
    for i, name in enumerate(adata.var_names):
        row = var.iloc[i]
        lines.append(
            f"{i + 1:>3}  {row.get(K.CHANNEL, name)!s:<22} {row.get(K.STAIN, '')!s:<28} "
            f"{row.get(K.MARKER, '')!s:<12} {row.get(K.ROLE, '')!s:<11} "
            f"{row.get(K.RANGE, '')}"
        )
    spill = adata.uns.get(K.SPILLOVER)
    lines.append("")
    if spill is None:
        lines.append("spillover  none")
    else:
        lines.append(f"spillover  {spill.shape[0]} x {spill.shape[1]}")
        lines.append(spill.round(4).to_string())
    lines.append("")
    for key in _KEY_KEYWORDS:
        if key in kw:
            lines.append(f"{key:<10} {kw[key]}")
    for warning in info.get("warnings", []):
        lines.append(f"warning    {warning}")
    return "\n".join(lines)


def _setup_logging(level: int) -> None:
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, show_time=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def _progress(quiet: bool):
    """A progress bar (samples done / total) on a terminal; plain log lines otherwise."""
    if quiet:
        return None, lambda: None
    if not sys.stderr.isatty():

        def log_line(done: int, total: int, result) -> None:
            why = f": {result.message}" if result.status == "warning" else ""
            logger.info(
                "[%d/%d] %s: %s (%.1f s)%s",
                done,
                total,
                result.sample,
                result.status,
                result.seconds,
                why,
            )

        return log_line, lambda: None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("samples"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        transient=False,
    )
    task = bar.add_task("", total=None)
    bar.start()

    def update(done: int, total: int, result) -> None:
        bar.update(
            task, completed=done, total=total, description=f"{result.sample}: {result.status}"
        )

    return update, bar.stop


def _frozen_after_first(progress):
    """``progress``, and once the first sample is done, the objects alive then moved out of the garbage
    collector's sight (``gc.freeze``, after a collection so no garbage is kept): the modules imported
    so far (pandas, anndata, scipy, scikit-learn) stay for the whole process, and every full collection
    of the run walked them again (~0.2 s CPU of a 4 x 1M-event run). Only in the command's own process:
    a caller's objects are never frozen."""
    frozen = False

    def done_one(n_done: int, total: int, result) -> None:
        nonlocal frozen
        if not frozen:
            frozen = True
            gc.collect()
            gc.freeze()
        if progress is not None:
            progress(n_done, total, result)

    return done_one


def main() -> None:
    """Console entry point."""
    global _own_process
    _own_process = True
    # Registered first, so it runs last of the exit handlers: the interpreter's final collection then
    # skips what is still alive (~0.05 s CPU after a 4 x 1M-event run, for nothing).
    atexit.register(gc.freeze)
    cli(prog_name="cytokit")


if __name__ == "__main__":
    main()
