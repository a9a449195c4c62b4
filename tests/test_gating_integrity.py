"""Engine integrity: fits see the whole acquisition, one marker lookup, placements that say how sure
they are. Hand-made transformed samples (``synthetic_sample`` of the engine tests), a few thousand events."""

from __future__ import annotations

import numpy as np
import pytest
from test_gating_engine import synthetic_sample, treg_pct, truth_pct

from cytokit import _keys as K
from cytokit.gating import _engine, gate

LYMPH = ["dead", "B/NK", "CD8", "DN", "Treg", "Teff"]


def drifting_sample(n: int, *, seed: int, scatter: float = 0.35, marker: float = 0.08):
    """A file whose populations move during acquisition (scatter grows by ``scatter`` x, CD3, CD4,
    CD25 and FOXP3 rise by ``marker``) with a clog (FSC burst at 60-64 % of the run)."""
    ad = synthetic_sample(n=n, seed=seed, time_anomaly=True)
    t = ad[:, "Time"].X.ravel().copy()
    for d in ("FSC-A", "FSC-H", "SSC-A"):
        ad.X[:, ad.var_names.get_loc(d)] *= 1 + scatter * t
    for d in ("CD3", "CD4", "CD25", "FOXP3"):
        ad.X[:, ad.var_names.get_loc(d)] += marker * t
    return ad, t


@pytest.mark.parametrize("seed", [0, 1])
def test_lymphocyte_gate_follows_the_whole_acquisition(seed):
    # regression: the scatter mixture was fitted on the first 2000 events of the file (its first
    # tenth): as the cloud moved, the last quarter of the run lost half its lymphocytes
    ad, t = drifting_sample(12000, seed=seed)
    gate(ad)
    truth = ad.obs["truth"].astype(str).to_numpy()
    lym = ad.obsm[K.POPULATIONS]["lymphocytes"].to_numpy()
    true_lym = np.isin(truth, LYMPH)
    for a in (0.0, 0.25, 0.5, 0.75):
        quarter = true_lym & (t >= a) & (t < a + 0.25)
        assert (lym & quarter).sum() / quarter.sum() > 0.95, a
    assert (lym & ~true_lym & (truth != "time_anomaly")).sum() / true_lym.sum() < 0.03
    assert abs(treg_pct(ad) - truth_pct(ad)) < 1.0


def test_mixture_fits_draw_their_events_from_the_whole_file(monkeypatch):
    # the FOXP3 guide mixture (4000 events of ~11000 CD4) and the scatter mixture (2000 events) took
    # the first events of their parent: the first third / tenth of the acquisition
    ad, t = drifting_sample(30000, seed=3)
    seen: dict[str, np.ndarray] = {}
    window, mixture = _engine.M2.mixture_window, _engine.M2.scatter_mixture

    def spy_window(X, **kw):
        seen["guide"] = np.asarray(X)[:, 1]  # FOXP3 values
        return window(X, **kw)

    def spy_mixture(X, **kw):
        seen["scatter"] = np.asarray(X)[:, 0]  # FSC-A values
        return mixture(X, **kw)

    monkeypatch.setattr(_engine.M2, "mixture_window", spy_window)
    monkeypatch.setattr(_engine.M2, "scatter_mixture", spy_mixture)
    gate(ad)
    for key, dim in (("guide", "FOXP3"), ("scatter", "FSC-A")):
        column = ad[:, dim].X.ravel()
        where = {float(v): i for i, v in enumerate(column)}
        times = t[[where[float(v)] for v in seen[key]]]
        # a uniform draw over the run: as many fitted events in its last third as in its first
        assert 0.25 < (times > 2 / 3).mean() < 0.42, key
        assert 0.25 < (times < 1 / 3).mean() < 0.42, key


def test_marker_found_by_gating_is_found_by_readouts_and_figures():
    # CD25 named only by its stain ("CD25 PE-Cy7" on channel PE-Cy7-A): gating found it, the
    # readouts' own lookup ignored the stain column and left treg_cd25_median empty
    from cytokit import pl, readouts
    from cytokit.gating._engine import resolve_dims
    from cytokit.panels import find_var

    ad = synthetic_sample(n=8000, seed=6)
    names = list(ad.var_names)
    ad.var[K.STAIN] = [f"{n} PE-Cy7" if n == "CD25" else n for n in names]
    ad.var[K.MARKER] = ["" if n == "CD25" else n for n in names]
    ad.var_names = ["PE-Cy7-A" if n == "CD25" else n for n in names]
    assert find_var(ad, "CD25") == "PE-Cy7-A"
    assert resolve_dims(ad, ["CD25"])["CD25"] == ad.var_names.get_loc("PE-Cy7-A")
    gate(ad)
    row = readouts.sample_readouts(ad)
    treg = ad.obsm[K.POPULATIONS]["Treg"].to_numpy()
    expected = float(np.median(ad[:, "PE-Cy7-A"].X.ravel()[treg]))
    assert row["treg_cd25_median"] == pytest.approx(expected, abs=1e-6)
    fig = pl.gating_path(ad)
    titles = " ".join(a.get_title() for a in fig.axes)
    assert "Treg" in titles
