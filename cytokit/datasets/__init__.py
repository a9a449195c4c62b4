"""Simulated low-dose IL-2 trials written as FCS 3.1 files, with per-event truth.

The test bed of cytokit's accuracy claims: every file is drawn from known cell populations (debris,
doublets, dead cells, granulocytes, monocytes, B, NK CD56dim/bright, CD8, DN and DP T, CD4 naive / memory /
activated Tconv, naive and memory Treg) on a 12-colour Treg panel, acquired by a simulated instrument
(spillover, autofluorescence, photon and electronic noise, gain drift, clogs), so gated readouts can be
compared with the truth computed from the labels.

Truth definitions (the contract's): CD4 = live singlet lymphocyte CD3+CD4+CD8- T cells (labels
``CD4_*`` and ``Treg_*``); Treg = the Treg cell type (CD25+FOXP3+; ``Treg_naive``, ``Treg_memory``);
Teff = conventional CD4 (``CD4_naive``, ``CD4_memory``, ``CD4_activated``, i.e. FOXP3-).

The shipped ``sample_data/`` is made by exactly this command with its defaults::

    python -m cytokit.datasets sample_data

(seed 0, 6 patients x D0/D8/D15/D29, ~8,000 events per file, mild drift, BD channel names, float32
little-endian, the classic fixed population structure). ``python -m cytokit.datasets --help`` lists the
options (seed, drift, naming, ...).

Beyond the classic structure (every seed the same blood, other fractions), ``realism="drawn"`` draws
marker levels, spreads, overlaps and CD4 subsets per seed within literature ranges (held-out seeds are
held-out structures), ``"overlap"`` adds real-blood overlap (dim FOXP3 on Tregs, FOXP3lo CD25+
activated Tconv, a CD25 smear) and ``"real"`` makes continua (no 1-D valley on CD25 or CD127, Tregs 2-5 %
of CD4 in the CD25hi CD127lo corner); see :mod:`cytokit.datasets._structure`. Files can also come from a
plate cytometer without marker names (``naming="attune"``, with a ``panel.yaml``), be exported from a
CD3+CD4+ gate (``exported_from="CD4"``), use a surface panel without FOXP3 (``panel="surface"``), include
control wells (``controls=("isotype:CD25", "unstained:CD25", "FMO:Ki67")``, manifest column
``control``), or follow the SLE trial (``design="sle"``: weeks 0-12, CXCR5/PD-1/CXCR3/CCR6/CCR4).

Truth: ``truth/truth.csv`` columns are named as ``summary.csv``'s readouts (:data:`TRUTH_READOUTS`,
:data:`HELPER_TRUTH_READOUTS`; see :func:`truth_readouts`); ``truth/<sample>.npz`` holds per-event labels and states
(:func:`load_event_truth`).

Examples
--------
>>> from cytokit.datasets import simulate_sample
>>> sim = simulate_sample(5_000, seed=1, day=8)
>>> sim.events.shape[1] == len(sim.channels)
True
"""

from cytokit.datasets._biology import CD4_LABELS, LABELS, TEFF_LABELS, TREG_LABELS, treatment_effect
from cytokit.datasets._simulate import (
    HELPER_TRUTH_READOUTS,
    TRUTH_READOUTS,
    SimulatedSample,
    simulate_sample,
    truth_readouts,
)
from cytokit.datasets._structure import REALISMS
from cytokit.datasets._trial import load_event_truth, load_truth, simulate_trial

__all__ = [
    "CD4_LABELS",
    "HELPER_TRUTH_READOUTS",
    "LABELS",
    "REALISMS",
    "TEFF_LABELS",
    "TREG_LABELS",
    "TRUTH_READOUTS",
    "SimulatedSample",
    "load_event_truth",
    "load_truth",
    "simulate_sample",
    "simulate_trial",
    "treatment_effect",
    "truth_readouts",
]
