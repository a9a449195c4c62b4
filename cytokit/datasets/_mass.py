"""The same blood acquired on a mass cytometer (CyTOF): ion counts instead of light.

A simulated flow file is turned into what a CyTOF would record of the same cells, so the same per-event
truth scores a mass-cytometry strategy: each event's noise-free antibody signal (metal isotopes barely
spill, and there is no autofluorescence) becomes a Poisson count of ions over a background of a few
counts, a bright population at tens to a few thousand (Bendall et al. 2011, Science 332:687); Fluidigm's
software adds U(-1, 0) to every non-zero count ("randomisation"). There is no scatter: every event gets
the iridium DNA intercalator (Ir191/Ir193 at a 37:63 abundance ratio), doublets twice a cell's DNA and a
longer Event_length, debris little DNA; CD45 (89Y) is bright on lymphocytes and monocytes, dim on
granulocytes.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

# lanthanide isotopes in the order a panel designer assigns them (one marker each)
_ISOTOPES = (
    "141Pr", "142Nd", "143Nd", "144Nd", "145Nd", "146Nd", "147Sm", "148Nd", "149Sm", "150Nd",
    "151Eu", "152Sm", "153Eu", "154Sm", "155Gd", "156Gd", "158Gd", "159Tb", "160Gd", "161Dy",
)  # fmt: skip
_CELL_DNA = 400.0  # Ir191 counts of one nucleated cell (order of magnitude of CyTOF DNA channels)
_IR193_RATIO = 63.0 / 37.0  # natural abundance 193Ir : 191Ir
# CD45 counts by population (lymphocytes brightest, granulocytes dimmest: Bendall 2011, Fig. 1)
_CD45 = {"granulocyte": 60.0, "monocyte": 250.0, "debris": 8.0}
_CD45_LYMPH = 400.0


def to_mass_cytometry(sample, expected: np.ndarray, rng: np.random.Generator):
    """``sample`` (a :class:`SimulatedSample` of flow) as a mass cytometer records the same events.

    ``expected`` (events x stains, the panel's order) is each event's noise-free stain signal with the
    file's detector gains and run trend: ions are counted from it, not from the flow detectors' values
    (whose photon noise, autofluorescence, spillover and baseline offsets a mass cytometer lacks).
    """
    channels = list(sample.channels)
    fl = [j for j, c in enumerate(channels) if sample.markers.get(c) not in (None, "Time")]
    fl = [j for j in fl if not sample.markers[channels[j]].startswith(("FSC", "SSC"))]
    label = np.asarray(sample.label_names, dtype=object)[sample.labels]
    debris, doublet = label == "debris", label == "doublet"
    n = len(sample.events)

    # per marker: a bright event (99.5th percentile) at 80-1,500 ions, the rest in proportion, over a
    # background of 0.1-2 ions (metal contamination, oxides: Bendall 2011, Ornatsky 2010)
    signal = np.clip(np.asarray(expected, dtype=float), 0, None)
    top = np.percentile(signal, 99.5, axis=0)
    counts_top = np.exp(rng.uniform(np.log(80.0), np.log(1500.0), len(fl)))
    background = np.exp(rng.uniform(np.log(0.1), np.log(2.0), len(fl)))
    lam = signal * (counts_top / np.maximum(top, 1e-9)) + background
    dna = _CELL_DNA * np.exp(rng.normal(0, 0.12, n)) * np.where(doublet, 2.0, 1.0)
    dna = np.where(debris, _CELL_DNA * 0.1 * np.exp(rng.normal(0, 0.8, n)), dna)
    cd45 = np.array([_CD45.get(str(lab), _CD45_LYMPH) for lab in label]) * np.exp(
        rng.normal(0, 0.25, n)
    )
    length = np.where(doublet, rng.normal(38, 8, n), rng.normal(22, 5, n))
    length = np.clip(np.where(debris, rng.normal(14, 4, n), length), 10, 75).round()

    ions = rng.poisson(np.column_stack([dna, dna * _IR193_RATIO, cd45, lam])).astype(float)
    ions -= (ions > 0) * rng.uniform(0, 1, ions.shape)  # Fluidigm's randomisation
    time = sample.events[:, channels.index("Time")] if "Time" in channels else np.arange(n)
    events = np.column_stack([length, ions, time]).astype(np.float32)

    markers = [sample.markers[channels[j]] for j in fl]
    isotopes = iter(_ISOTOPES)
    metals = ["195Pt" if m == "Viability" else next(isotopes) for m in markers]
    new_channels = ["Event_length", "Ir191Di", "Ir193Di", "Y89Di"]
    new_channels += [f"{iso[-2:].strip('0123456789')}{iso[:3]}Di" for iso in metals] + ["Time"]
    stains = ["", "191Ir_DNA1", "193Ir_DNA2", "89Y_CD45"]
    stains += [
        f"{iso}_{'Cisplatin' if m == 'Viability' else m}"
        for iso, m in zip(metals, markers, strict=True)
    ]
    stains += [""]
    keywords = {k: v for k, v in sample.keywords.items() if not k.startswith("$P")}
    keywords["$CYT"] = "Helios"
    names = ["Event_length", "DNA1", "DNA2", "CD45", *markers, "Time"]
    return replace(
        sample,
        events=events,
        channels=new_channels,
        stains=stains,
        spillover=None,
        keywords=keywords,
        markers=dict(zip(new_channels, names, strict=True)),
        ranges=mass_ranges(events),
    )


def mass_ranges(events: np.ndarray) -> list[float]:
    """``$PnR`` of a mass-cytometry file: the next power of two above each channel's largest count."""
    top = np.nanmax(np.abs(events), axis=0, initial=1.0)
    return [float(2 ** int(np.ceil(np.log2(max(t, 2.0) + 1)))) for t in top]
