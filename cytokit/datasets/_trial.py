"""A whole simulated trial on disk: FCS files, ``manifest.csv`` and ``truth/``; reading the truth back."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from cytokit.datasets import _biology as bio
from cytokit.datasets._panel import SCATTER
from cytokit.datasets._simulate import Trial, control_marker, draw_trial, simulate_from, stream

logger = logging.getLogger("cytokit")

DEFAULT_EVENTS = 8_000
TRUTH_DIR = "truth"
TRUTH_CSV = "truth.csv"
_DISEASES = (
    "rheumatoid arthritis",
    "ankylosing spondylitis",
    "systemic lupus erythematosus",
    "psoriasis",
    "Behcet's disease",
    "granulomatosis with polyangiitis",
    "Takayasu's arteritis",
    "Crohn's disease",
    "ulcerative colitis",
    "autoimmune hepatitis",
    "sclerosing cholangitis",
)


def simulate_trial(
    out_dir: str | Path,
    *,
    n_patients: int = 6,
    timepoints: Sequence[str] = ("D0", "D8", "D15", "D29"),
    days: Sequence[float] = (0, 8, 15, 29),
    n_events: int = DEFAULT_EVENTS,
    seed: int = 0,
    drift: str = "mild",
    naming: str = "bd",
    missing: Sequence[str] = (),
    datatype: str = "F",
    byteorder: str = "<",
    compensated: bool = False,
    respell: float = 0.1,
    extra_scatter: bool = False,
    realism: str = "classic",
    panel: str = "treg",
    exported_from: str | None = None,
    design: str = "transreg",
    controls: Sequence[str] = (),
    platform: str = "flow",
) -> pd.DataFrame:
    """Write a simulated ld-IL2 trial: ``<patient>_<timepoint>.fcs``, ``manifest.csv`` and ``truth/``.

    Every file is :func:`simulate_sample` of its patient and day on one trial instrument and panel;
    event counts vary +-15 % around ``n_events``; ``respell`` is the chance that a file spells a stain
    differently from the panel (another operator's template). Options as in :func:`simulate_sample`;
    ``datatype``/``byteorder`` as in :func:`cytokit.io.write_fcs` (integer data are scaled to 16 bits).
    Truth: ``truth/truth.csv`` (one row per sample, readouts from the labels, see
    :func:`truth_readouts`) and ``truth/<sample>.npz`` (per-event labels and states).

    ``realism``, ``panel``, ``exported_from`` and ``design`` as in :func:`simulate_sample`. With
    ``naming="attune"`` the files name no markers, and ``panel.yaml`` (a cytokit panel mapping each
    channel to its marker) is written next to them. ``controls`` (e.g. ``("isotype:CD25",
    "unstained:CD25", "FMO:Ki67")``) adds, for every patient at the first timepoint, one control well
    of that blood per entry, named ``<patient>_<timepoint>_<kind>-<marker>.fcs`` and listed in the
    manifest's ``control`` column (empty for stained wells); its truth says the marker-positive
    population is absent. ``platform="mass"``: the same cells as a mass cytometer's ion counts.

    Returns
    -------
    The manifest (``file, patient, timepoint, day, disease, age, sex`` and ``control`` when there are
    controls), also written as ``manifest.csv``.
    """
    if len(timepoints) != len(days):
        raise ValueError(f"{len(timepoints)} timepoints but {len(days)} days")
    for c in controls:
        control_marker(c)  # a bad control is a ValueError before anything is written
    start = time.perf_counter()
    out = Path(out_dir)
    trial = draw_trial(
        seed,
        naming=naming,
        missing=tuple(missing),
        drift=drift,
        compensated=compensated,
        respell=respell,
        extra_scatter=extra_scatter,
        realism=realism,
        panel=panel,
        exported_from=exported_from,
        design=design,
    )
    absent = [c for c in controls if control_marker(c) not in trial.panel.markers]
    if absent:
        raise ValueError(f"controls {absent}: marker not on the panel {trial.panel.markers}")
    (out / TRUTH_DIR).mkdir(parents=True, exist_ok=True)
    rows, truths = [], []
    for p in range(n_patients):
        meta = _patient_meta(stream(seed, 4, p))
        patient = bio.draw_patient(stream(seed, 1, p), trial.structure)
        name = f"P{p + 1:02d}"
        for i, (tp, day) in enumerate(zip(timepoints, days, strict=True)):
            day = int(day) if float(day).is_integer() else float(day)
            wells = [(None, stream(seed, 2, p, day))]
            if i == 0:  # control wells of the baseline blood, each from its own stream
                wells += [(c, stream(seed, 6 + k, p, day)) for k, c in enumerate(controls)]
            for control, rng in wells:
                sample = f"{name}_{tp}" + (f"_{control.replace(':', '-')}" if control else "")
                n = round(n_events * stream(seed, 3, p, day).uniform(0.85, 1.15))
                sim = simulate_from(trial, patient, day=day, n_events=n, sample=sample, rng=rng,
                                    control=control, platform=platform)  # fmt: skip
                sim.write(out / f"{sample}.fcs", datatype=datatype, byteorder=byteorder)
                _write_event_truth(
                    out / TRUTH_DIR / f"{sample}.npz", sim.labels, sim.states, control
                )
                row = {"file": f"{sample}.fcs", "patient": name, "timepoint": tp, "day": day}
                row.update(meta)
                truth = {"sample": sample, "patient": name, "timepoint": tp, "day": day}
                if controls:
                    row["control"] = truth["control"] = control or ""
                rows.append(row)
                truths.append({**truth, **sim.truth})
    manifest = pd.DataFrame(rows)
    manifest.to_csv(out / "manifest.csv", index=False)
    if naming == "attune":
        write_panel_yaml(out / "panel.yaml", trial)
    pd.DataFrame(truths).to_csv(out / TRUTH_DIR / TRUTH_CSV, index=False, float_format="%.6g")
    logger.info("simulated %d files in %s (%.1f s)", len(rows), out, time.perf_counter() - start)
    return manifest


def _patient_meta(rng: np.random.Generator) -> dict:
    return {
        "disease": _DISEASES[rng.integers(len(_DISEASES))],
        "age": int(rng.integers(19, 71)),
        "sex": "F" if rng.random() < 0.6 else "M",
    }


def write_panel_yaml(path: Path, trial: Trial) -> Path:
    """A cytokit panel (see ``panels/``) naming the marker on each channel of the trial's files."""
    roles = {m: "lineage" for m in ("CD3", "CD4", "CD8", "CD25", "CD127", "FOXP3", "CD56")}
    roles["Viability"] = "viability"
    panel = trial.panel
    markers = [{"name": m, "channel": m, "role": "scatter"} for m in SCATTER]
    markers += [
        {"name": m, "channel": c, "role": roles.get(m, "functional")}
        for m, c in zip(panel.markers, panel.channels, strict=True)
    ]
    markers.append({"name": "Time", "channel": panel.time_name, "role": "time"})
    doc = {
        "name": f"simulated_{panel.naming}_{trial.seed}",
        "description": f"channels of the simulated {panel.cytometer} files (no $PnS) -> markers",
        "markers": markers,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _write_event_truth(
    path: Path, labels: np.ndarray, states: dict[str, np.ndarray], control: str | None = None
) -> None:
    arrays = {f"state_{k}": np.packbits(v) for k, v in states.items()}
    extra = {"control": np.array(control)} if control else {}
    np.savez_compressed(
        path,
        labels=labels.astype(np.uint8),
        label_names=np.array(bio.LABELS),
        n=np.array(labels.size),
        **arrays,
        **extra,
    )


def _truth_dir(folder: str | Path) -> Path:
    folder = Path(folder)
    return folder if (folder / TRUTH_CSV).exists() else folder / TRUTH_DIR


def load_truth(folder: str | Path) -> pd.DataFrame:
    """Per-sample truth readouts of a simulated trial (``truth/truth.csv``), indexed by sample."""
    path = _truth_dir(folder) / TRUTH_CSV
    if not path.exists():
        raise FileNotFoundError(f"{path}: no truth table (not a simulated trial folder?)")
    return pd.read_csv(path).set_index("sample")


def load_event_truth(folder: str | Path, sample: str) -> pd.DataFrame:
    """Per-event truth of one sample, one row per DATA row.

    Columns: ``label``; the contract's populations ``cd4``, ``treg``, ``teff``; ``treg_surface`` (the
    Tregs a CD25hi CD127lo gate should hold); the latent positive states of the panel's markers
    (``Ki67``, ``HLA-DR``, ``Helios``, ``CD45RA``: True = in the marker's positive component, so
    CD45RA- = ``~CD45RA``) and ``anomaly`` (acquired during a clog or burst). SLE design: helper
    subsets of memory Tconv ``Tfh``, ``Tfh_PD1hi``, ``Th1``, ``Th2``, ``Th17``, ``Th1_17`` and ``memory``
    (CD4 CD45RA- not Treg). In a CD25 or FOXP3 control well ``treg`` is all False (no Tregs to find).
    """
    path = _truth_dir(folder) / f"{sample}.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no per-event truth for sample {sample!r}")
    with np.load(path) as z:
        control = str(z["control"]) if "control" in z.files else None
        n = int(z["n"])
        names = [str(s) for s in z["label_names"]]
        labels = pd.Categorical.from_codes(z["labels"].astype(int), categories=names)
        df = pd.DataFrame({"label": labels})
        for key in z.files:
            if key.startswith("state_"):
                df[key[len("state_") :]] = np.unpackbits(z[key])[:n].astype(bool)
    lab = df["label"].astype(str)
    df["cd4"] = lab.isin(bio.CD4_LABELS)
    df["treg"] = lab.isin(bio.TREG_LABELS)
    if control_marker(control) in ("CD25", "FOXP3"):  # a control well of a Treg marker: no Tregs
        df["treg"] = False
    df["teff"] = df["cd4"] & ~df["treg"]
    cd127hi = df["CD127hi"] if "CD127hi" in df else False
    df["treg_surface"] = df["treg"] & ~cd127hi  # the CD25hi CD127lo (surface) definition
    if "Tfh" in df:  # helper subsets: memory = CD4 CD45RA- and not Treg
        df["memory"] = df["teff"] & ~df["CD45RA"] if "CD45RA" in df else df["teff"]
    return df
