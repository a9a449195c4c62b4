"""Drawing the events of one blood draw: live cells of every population, dead cells, debris, doublets.

Returns, per event in acquisition order: truth label, antigen abundance per marker (linear, before the
fluorochrome), scatter areas (FSC, SSC), pulse heights for doublets, autofluorescence scale and latent
states. :mod:`._instrument` turns these into what the cytometer records.
"""

from __future__ import annotations

import numpy as np

from cytokit.datasets import _biology as bio
from cytokit.datasets._panel import Panel

LIVE_CELLS = tuple(lab for lab in bio.LABELS if lab not in ("debris", "doublet", "dead"))


def _part(
    label: str, antigen: np.ndarray, sc: np.ndarray, af: np.ndarray, states=None, height=None
) -> dict:
    k = antigen.shape[0]
    return {
        "label": np.full(k, bio.LABELS.index(label)),
        "antigen": antigen,
        "scatter": sc,
        "af": af,
        "states": states or {},
        "height": np.full((k, 2), np.nan) if height is None else height,
    }


def draw_live(
    rng: np.random.Generator, panel: Panel, state: dict, label: str, n: int
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Antigen (n x markers), states and scatter (FSC-A, SSC-A) of ``n`` live cells of one population."""
    spec = dict(bio.phenotypes(state).get(label, {}))
    spec.setdefault("Viability", (1.0, 2.0, 0.3))  # fixable dyes stain live cells dimly
    antigen, states = bio.draw_phenotype(rng, panel.markers, spec, n)
    fsc, fsd, ssc, ssd = bio.scatter_profile(label)
    z1, z2 = rng.standard_normal(n), rng.standard_normal(n)
    fsc_a = fsc * np.exp(fsd * z1)
    ssc_a = ssc * np.exp(ssd * (0.4 * z1 + 0.92 * z2))  # bigger cells scatter more to the side too
    return antigen, states, np.column_stack([fsc_a, ssc_a])


def _draw_mixed(
    rng: np.random.Generator, panel: Panel, state: dict, types: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Antigen and scatter of cells whose live types are given per cell (indices into LIVE_CELLS)."""
    a = np.empty((types.size, len(panel.markers)))
    sc = np.empty((types.size, 2))
    for i in np.unique(types):
        sel = types == i
        a[sel], _, sc[sel] = draw_live(rng, panel, state, LIVE_CELLS[i], int(sel.sum()))
    return a, sc


def _dead(rng: np.random.Generator, panel: Panel, state: dict, types: np.ndarray) -> dict:
    """Dead cells of any type: dimmer, sticky (unspecific binding), bright in the dye, smaller FSC."""
    a, sc = _draw_mixed(rng, panel, state, types)
    a = a * 10 ** rng.normal(-0.25, 0.2, a.shape) + 10 ** rng.normal(2.1, 0.35, a.shape)
    a[:, panel.markers.index("Viability")] = 10 ** rng.normal(4.0, 0.3, types.size)
    sc = sc * np.array([0.62, 1.25]) * np.exp(rng.normal(0, 0.12, sc.shape))
    return _part("dead", a, sc, np.full(types.size, bio.autofluorescence("dead")))


def _debris(rng: np.random.Generator, panel: Panel, k: int) -> dict:
    """Debris: small, dim and unspecific; half of it is bright in the viability dye."""
    a = 10 ** rng.normal(1.8, 0.5, (k, len(panel.markers)))
    dyed = rng.random(k) < 0.5
    a[dyed, panel.markers.index("Viability")] = 10 ** rng.normal(3.6, 0.4, dyed.sum())
    sc = np.column_stack([10 ** rng.normal(4.0, 0.22, k), 10 ** rng.normal(3.6, 0.35, k)])
    return _part("debris", a, sc, rng.uniform(0.2, 1.2, k))


def _doublets(
    rng: np.random.Generator, panel: Panel, state: dict, live_p: np.ndarray, k: int
) -> dict:
    """Two live cells in one pulse: areas and fluorescence add, heights do not double."""
    pair = rng.choice(len(LIVE_CELLS), size=(2, k), p=live_p)
    a1, s1 = _draw_mixed(rng, panel, state, pair[0])
    a2, s2 = _draw_mixed(rng, panel, state, pair[1])
    overlap = rng.uniform(0, 0.35, k)[:, None]  # how much the two pulses overlap
    height = np.maximum(s1, s2) + overlap * np.minimum(s1, s2)  # FSC and SSC heights
    return _part("doublet", a1 + a2, s1 + s2, np.full(k, 2.0), height=height)


def draw_cells(
    rng: np.random.Generator, panel: Panel, patient: bio.Patient, state: dict, n: int
) -> dict:
    """Every event's label, antigen, scatter area, heights, autofluorescence scale and states."""
    fr = bio.event_fractions(patient, state, rng)
    counts = dict(zip(bio.LABELS, rng.multinomial(n, [fr[k] for k in bio.LABELS]), strict=True))
    live_p = np.array([fr[k] for k in LIVE_CELLS])
    live_p /= live_p.sum()
    parts = []
    for label in LIVE_CELLS:
        if counts[label]:
            a, s, sc = draw_live(rng, panel, state, label, counts[label])
            parts.append(
                _part(label, a, sc, np.full(counts[label], bio.autofluorescence(label)), s)
            )
    parts.append(
        _dead(rng, panel, state, rng.choice(len(LIVE_CELLS), size=counts["dead"], p=live_p))
    )
    parts.append(_debris(rng, panel, counts["debris"]))
    if counts["doublet"]:
        parts.append(_doublets(rng, panel, state, live_p, counts["doublet"]))
    return _concat_shuffled(rng, parts, n)


def _concat_shuffled(rng: np.random.Generator, parts: list[dict], n: int) -> dict:
    """Join the populations and put the events in a random (acquisition) order."""
    order = rng.permutation(n)
    out = {
        key: np.concatenate([p[key] for p in parts])[order]
        for key in ("label", "antigen", "scatter", "af", "height")
    }
    out["labels"] = out.pop("label").astype(np.uint8)
    measured = [key for key in bio.STATES if any(key in p["states"] for p in parts)]
    zeros = [np.zeros(len(p["label"]), bool) for p in parts]
    out["states"] = {  # states of markers on the panel; False for debris, dead cells and doublets
        key: np.concatenate([p["states"].get(key, z) for p, z in zip(parts, zeros, strict=True)])[
            order
        ]
        for key in measured
    }
    return out
