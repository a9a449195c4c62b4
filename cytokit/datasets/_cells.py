"""Drawing the events of one blood draw: live cells of every population, dead cells, debris, doublets.

Returns, per event in acquisition order: truth label, antigen abundance per marker (linear, before the
fluorochrome), scatter areas (FSC, SSC), pulse heights for doublets, autofluorescence scale and latent
states. :mod:`._instrument` turns these into what the cytometer records.
"""

from __future__ import annotations

import numpy as np

from cytokit.datasets import _biology as bio
from cytokit.datasets._panel import Panel
from cytokit.datasets._structure import Structure, helper_phenotype

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
    rng: np.random.Generator,
    panel: Panel,
    state: dict,
    label: str,
    n: int,
    structure: Structure | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Antigen (n x markers), states and scatter (FSC-A, SSC-A) of ``n`` live cells of one population."""
    spec = dict(bio.phenotypes(state, structure).get(label, {}))
    spec.setdefault("Viability", (1.0, 2.0, 0.3))  # fixable dyes stain live cells dimly
    subsets = structure.subsets.get(label) if structure is not None else None
    if subsets:  # the population is several subsets with their own levels
        antigen, states = _draw_subsets(rng, panel, spec, subsets, n)
    else:
        antigen, states = bio.draw_phenotype(rng, panel.markers, spec, n)
    if structure is not None and structure.helper_levels and label in bio.TEFF_LABELS:
        _helpers(rng, panel, structure, state, antigen, states)
    fsc, fsd, ssc, ssd = bio.scatter_profile(label)
    z1, z2 = rng.standard_normal(n), rng.standard_normal(n)
    fsc_a = fsc * np.exp(fsd * z1)
    ssc_a = ssc * np.exp(ssd * (0.4 * z1 + 0.92 * z2))  # bigger cells scatter more to the side too
    return antigen, states, np.column_stack([fsc_a, ssc_a])


def _draw_subsets(
    rng: np.random.Generator,
    panel: Panel,
    spec: dict,
    subsets: list[tuple[float, dict[str, float]]],
    n: int,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Cells of a population made of subsets: each subset shifts some markers' positive means."""
    counts = rng.multinomial(n, [w for w, _ in subsets])
    parts = []
    for k, (_, shifts) in zip(counts, subsets, strict=True):
        sub = {m: bio._with(v, shift=shifts.get(m, 0.0)) for m, v in spec.items()}
        parts.append(bio.draw_phenotype(rng, panel.markers, sub, int(k)))
    antigen = np.concatenate([a for a, _ in parts])
    keys = set().union(*(st.keys() for _, st in parts))
    states = {key: np.concatenate([st[key] for _, st in parts]) for key in keys}
    return antigen, states


def _helpers(
    rng: np.random.Generator,
    panel: Panel,
    structure: Structure,
    state: dict,
    antigen: np.ndarray,
    states: dict[str, np.ndarray],
) -> None:
    """Give memory (CD45RA-) Tconv their helper subset and its CXCR5/PD-1/CXCR3/CCR6/CCR4 levels."""
    n = antigen.shape[0]
    memory = ~states["CD45RA"] if "CD45RA" in states else np.ones(n, bool)
    levels, subset = helper_phenotype(rng, structure, state, int(memory.sum()))
    other = subset.pop("other")
    if "CCR4" not in panel.markers:  # Th2 = CXCR3- CCR6- (CCR4+ where measured)
        subset["Th2"] = subset["Th2"] | other
    for m, v in levels.items():
        if m in panel.markers:
            j = panel.markers.index(m)
            antigen[memory, j] = 10.0 ** (v + rng.normal(0, 0.05, v.size))
    for key, v in subset.items():
        full = np.zeros(n, bool)
        full[memory] = v
        states[key] = full


def _draw_mixed(
    rng: np.random.Generator,
    panel: Panel,
    state: dict,
    types: np.ndarray,
    structure: Structure | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Antigen and scatter of cells whose live types are given per cell (indices into LIVE_CELLS)."""
    a = np.empty((types.size, len(panel.markers)))
    sc = np.empty((types.size, 2))
    for i in np.unique(types):
        sel = types == i
        a[sel], _, sc[sel] = draw_live(rng, panel, state, LIVE_CELLS[i], int(sel.sum()), structure)
    return a, sc


def _dead(
    rng: np.random.Generator,
    panel: Panel,
    state: dict,
    types: np.ndarray,
    structure: Structure | None = None,
) -> dict:
    """Dead cells of any type: dimmer, sticky (unspecific binding), bright in the dye, smaller FSC."""
    a, sc = _draw_mixed(rng, panel, state, types, structure)
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
    rng: np.random.Generator,
    panel: Panel,
    state: dict,
    live_p: np.ndarray,
    k: int,
    structure: Structure | None = None,
) -> dict:
    """Two live cells in one pulse: areas and fluorescence add, heights do not double."""
    pair = rng.choice(len(LIVE_CELLS), size=(2, k), p=live_p)
    a1, s1 = _draw_mixed(rng, panel, state, pair[0], structure)
    a2, s2 = _draw_mixed(rng, panel, state, pair[1], structure)
    overlap = rng.uniform(0, 0.35, k)[:, None]  # how much the two pulses overlap
    height = np.maximum(s1, s2) + overlap * np.minimum(s1, s2)  # FSC and SSC heights
    return _part("doublet", a1 + a2, s1 + s2, np.full(k, 2.0), height=height)


def draw_cells(
    rng: np.random.Generator,
    panel: Panel,
    patient: bio.Patient,
    state: dict,
    n: int,
    structure: Structure | None = None,
    exported_from: str | None = None,
) -> dict:
    """Every event's label, antigen, scatter area, heights, autofluorescence scale and states.

    ``exported_from="CD4"``: the file holds only the events of a CD3+CD4+ gate (as FlowJo or Diva
    export a population), so every event is a live single CD4 T cell.
    """
    fr = bio.event_fractions(patient, state, rng)
    if exported_from is not None:
        if exported_from != "CD4":
            raise ValueError(f"exported_from must be None or 'CD4', got {exported_from!r}")
        fr = {k: (v if k in bio.CD4_LABELS else 0.0) for k, v in fr.items()}
        total = sum(fr.values())
        fr = {k: v / total for k, v in fr.items()}
    counts = dict(zip(bio.LABELS, rng.multinomial(n, [fr[k] for k in bio.LABELS]), strict=True))
    live_p = np.array([fr[k] for k in LIVE_CELLS])
    live_p /= live_p.sum()
    parts = []
    for label in LIVE_CELLS:
        if counts[label]:
            a, s, sc = draw_live(rng, panel, state, label, counts[label], structure)
            parts.append(
                _part(label, a, sc, np.full(counts[label], bio.autofluorescence(label)), s)
            )
    if exported_from is None:
        dead_types = rng.choice(len(LIVE_CELLS), size=counts["dead"], p=live_p)
        parts.append(_dead(rng, panel, state, dead_types, structure))
        parts.append(_debris(rng, panel, counts["debris"]))
    if counts["doublet"]:
        parts.append(_doublets(rng, panel, state, live_p, counts["doublet"], structure))
    return _concat_shuffled(rng, parts, n)


def _concat_shuffled(rng: np.random.Generator, parts: list[dict], n: int) -> dict:
    """Join the populations and put the events in a random (acquisition) order."""
    order = rng.permutation(n)
    out = {
        key: np.concatenate([p[key] for p in parts])[order]
        for key in ("label", "antigen", "scatter", "af", "height")
    }
    out["labels"] = out.pop("label").astype(np.uint8)
    seen = {key for p in parts for key in p["states"]}
    measured = [key for key in bio.STATES if key in seen] + sorted(seen - set(bio.STATES))
    zeros = [np.zeros(len(p["label"]), bool) for p in parts]
    out["states"] = {  # states of markers on the panel; False for debris, dead cells and doublets
        key: np.concatenate([p["states"].get(key, z) for p, z in zip(parts, zeros, strict=True)])[
            order
        ]
        for key in measured
    }
    return out
