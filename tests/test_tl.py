"""Unsupervised tools: SOM, FlowSOM, Leiden, UMAP, cluster labels and abundance, the embedding plot."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from cytokit import tl
from cytokit.errors import CytokitError, MarkerError

MARKERS = ["CD3", "CD4", "CD8", "CD25", "FOXP3", "CD56", "Ki67", "CD45RA"]


def _blobs(n_blobs: int = 6, seed: int = 0, sd: float = 0.03) -> tuple[ad.AnnData, np.ndarray]:
    """Separable Gaussian blobs on 8 markers (0..1 like logicle), plus scatter, viability and time."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.1, 0.9, (n_blobs, len(MARKERS)))
    sizes = rng.integers(150, 900, n_blobs)
    X = np.concatenate(
        [rng.normal(c, sd, (s, len(MARKERS))) for c, s in zip(centres, sizes, strict=True)]
    )
    truth = np.repeat(np.arange(n_blobs), sizes)
    extra = rng.uniform(0, 1, (len(X), 3))  # noise the default markers must leave out
    var = pd.DataFrame(
        {"role": ["lineage"] * 6 + ["functional"] * 2 + ["scatter", "viability", "time"]},
        index=[*MARKERS, "FSC-A", "Viability", "Time"],
    )
    adata = ad.AnnData(np.c_[X, extra].astype(np.float32), var=var)
    adata.obs["sample"] = np.where(np.arange(len(X)) % 3 == 0, "P01_D0", "P01_D8")
    return adata, truth


# --- SOM and FlowSOM -------------------------------------------------------------------------------


def test_som_learns_codes_near_the_data_and_predicts_its_own_labels():
    adata, _ = _blobs()
    X = adata[:, MARKERS].X
    som = tl.SOM((6, 6), n_iter=8, random_state=1).fit(X)
    assert som.codes_.shape == (36, len(MARKERS))
    np.testing.assert_array_equal(som.predict(X), som.labels_)
    # every event is close to its node (blob sd 0.03 in 8 dims: distance ~0.085)
    assert som.quantization_error_ < 0.15
    again = tl.SOM((6, 6), n_iter=8, random_state=1).fit(X)
    np.testing.assert_array_equal(som.codes_, again.codes_)
    with pytest.raises(ValueError):
        som.predict(X[:, :3])
    with pytest.raises(AttributeError):
        tl.SOM().predict(X)


@pytest.mark.parametrize("init", ["random", "pca"])
def test_som_neighbouring_nodes_have_similar_codes(init):
    # topology preservation: grid neighbours are closer in marker space than random node pairs
    adata, _ = _blobs(n_blobs=8, seed=3)
    som = tl.SOM((8, 8), init=init, random_state=0).fit(adata[:, MARKERS].X)
    codes, pos = som.codes_, som.positions_
    d = np.linalg.norm(codes[:, None] - codes[None], axis=-1)
    grid = np.abs(pos[:, None] - pos[None]).sum(-1)
    assert d[grid == 1].mean() < 0.5 * d[grid > 3].mean()


def test_consensus_metaclusters_groups_separated_codes():
    rng = np.random.default_rng(0)
    codes = np.concatenate([rng.normal(c, 0.02, (12, 4)) for c in (0.0, 0.5, 1.0)])
    labels = tl.consensus_metaclusters(codes, 3, seed=0)
    assert adjusted_rand_score(np.repeat([0, 1, 2], 12), labels) == 1.0
    with pytest.raises(ValueError):
        tl.consensus_metaclusters(codes, 40)


def test_flowsom_recovers_blobs_on_default_markers():
    adata, truth = _blobs()
    tl.flowsom(adata, n_clusters=6, grid=(7, 7), seed=0)
    labels = adata.obs["cluster"]
    assert isinstance(labels.dtype, pd.CategoricalDtype)
    assert list(labels.cat.categories) == [str(i) for i in range(1, 7)]
    assert adjusted_rand_score(truth, labels) > 0.95
    sizes = labels.value_counts().reindex(labels.cat.categories).to_numpy()
    assert (np.diff(sizes) <= 0).all()  # "1" is the largest cluster
    info = adata.uns["cluster"]
    assert info["markers"] == MARKERS  # scatter, viability and time left out
    assert info["codes"].shape == (49, len(MARKERS))
    assert set(info["node_cluster"]) <= set(labels.cat.categories) | {""}


def test_flowsom_is_deterministic_for_a_seed_and_copy_leaves_input(tmp_path):
    adata, _ = _blobs(seed=5)
    a = tl.flowsom(adata, MARKERS[:5], n_clusters=5, seed=7, copy=True)
    b = tl.flowsom(adata, MARKERS[:5], n_clusters=5, seed=7, copy=True)
    assert "cluster" not in adata.obs
    np.testing.assert_array_equal(a.obs["cluster"].to_numpy(), b.obs["cluster"].to_numpy())
    np.testing.assert_array_equal(a.uns["cluster"]["codes"], b.uns["cluster"]["codes"])
    c = tl.flowsom(adata, MARKERS[:5], n_clusters=5, seed=8, copy=True)
    assert not np.array_equal(a.uns["cluster"]["codes"], c.uns["cluster"]["codes"])
    a.write_h5ad(tmp_path / "cells.h5ad")  # uns must stay writable for cells.h5ad
    back = ad.read_h5ad(tmp_path / "cells.h5ad")
    assert back.obs["cluster"].equals(a.obs["cluster"])


def test_flowsom_rejects_unknown_markers_and_too_few_events():
    adata, _ = _blobs()
    with pytest.raises(MarkerError):
        tl.flowsom(adata, ["CD3", "NOPE"])
    with pytest.raises(CytokitError, match="at least"):
        tl.flowsom(adata[:5].copy(), n_clusters=10)


def test_default_markers_without_roles_drop_scatter_time_viability():
    adata, _ = _blobs()
    del adata.var["role"]
    tl.flowsom(adata, n_clusters=4, grid=(4, 4))
    assert adata.uns["cluster"]["markers"] == MARKERS


# --- Leiden and UMAP -------------------------------------------------------------------------------


def test_leiden_recovers_blobs_and_is_deterministic():
    adata, truth = _blobs(seed=2)
    a = tl.leiden(adata, n_neighbors=10, resolution=0.5, seed=3, key_added="leiden", copy=True)
    b = tl.leiden(adata, n_neighbors=10, resolution=0.5, seed=3, key_added="leiden", copy=True)
    assert adjusted_rand_score(truth, a.obs["leiden"]) > 0.95
    np.testing.assert_array_equal(a.obs["leiden"].to_numpy(), b.obs["leiden"].to_numpy())
    assert a.uns["leiden"]["method"] == "leiden"


def test_jaccard_graph_is_symmetric_and_weights_shared_neighbours():
    from cytokit.tl._neighbors import jaccard_graph, knn

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3)).astype(np.float32)
    idx, dist = knn(X, 6)
    assert (idx[:, 0] == np.arange(200)).all() and (dist[:, 0] == 0).all()
    g = jaccard_graph(idx)
    assert abs(g - g.T).max() < 1e-6
    assert g.diagonal().sum() == 0
    assert 0 < g.data.min() and g.data.max() <= 1


@pytest.mark.slow  # umap-learn compiles with numba on first use (~10-30 s)
def test_umap_embeds_blobs_apart_and_is_deterministic():
    adata, truth = _blobs(n_blobs=3, seed=4)
    adata = adata[::3].copy()
    truth = truth[::3]
    a = tl.umap(adata, n_neighbors=10, n_epochs=100, seed=1, copy=True)
    b = tl.umap(adata, n_neighbors=10, n_epochs=100, seed=1, copy=True)
    Y = a.obsm["X_umap"]
    assert Y.shape == (adata.n_obs, 2)
    np.testing.assert_array_equal(Y, b.obsm["X_umap"])
    centres = np.array([Y[truth == k].mean(0) for k in range(3)])
    spread = max(Y[truth == k].std(0).max() for k in range(3))
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1)[np.triu_indices(3, 1)]
    assert gaps.min() > 2 * spread


@pytest.mark.slow  # umap-learn's own graph is compiled by numba (a few seconds)
def test_umap_fuzzy_graph_is_umap_learns():
    """The numpy fuzzy graph has umap-learn's memberships (sigma bisection, rho, fuzzy union)."""
    import warnings

    from umap.umap_ import fuzzy_simplicial_set

    from cytokit.tl._neighbors import knn
    from cytokit.tl._umap import fuzzy_graph

    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(0, 1, (150, 4)), rng.normal(4, 0.3, (150, 4))]).astype(np.float32)
    X[7] = X[8]  # a duplicated event: zero distance to a neighbour
    idx, dist = knn(X, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = fuzzy_simplicial_set(
            X, 10, np.random.RandomState(0), "euclidean", knn_indices=idx, knn_dists=dist
        )[0]
    ours = fuzzy_graph(idx, dist)
    assert ours.nnz == theirs.nnz
    assert abs(ours.tocsr() - theirs.tocsr()).max() < 1e-5


# --- labels, abundance, overlap --------------------------------------------------------------------


def test_positivity_threshold_falls_between_two_modes():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(0.2, 0.04, 9000), rng.normal(0.6, 0.05, 1000)]
    assert 0.3 < tl.positivity_threshold(x) < 0.5
    # a unimodal marker: threshold in the upper tail, not through the middle of the peak
    assert 0.35 < tl.positivity_threshold(rng.normal(0.3, 0.05, 5000)) < 0.5


def test_label_clusters_names_positive_markers_from_the_data():
    rng = np.random.default_rng(1)
    # CD3+ T (CD4 or CD8; a CD25hi FOXP3+ subset), CD3- CD56+ NK; negative level 0.2, positive 0.6
    kinds = {
        "cd4": dict(CD3=0.6, CD4=0.6, n=3000),
        "treg": dict(CD3=0.6, CD4=0.6, CD25=0.75, FOXP3=0.6, n=300),
        "act": dict(CD3=0.6, CD4=0.6, CD25=0.4, n=600),
        "cd8": dict(CD3=0.6, CD8=0.6, n=2000),
        "nk": dict(CD56=0.6, n=1000),
    }
    blocks, truth = [], []
    for name, spec in kinds.items():
        centre = [spec.get(m, 0.2) for m in MARKERS]
        blocks.append(rng.normal(centre, 0.03, (spec["n"], len(MARKERS))))
        truth += [name] * spec["n"]
    adata = ad.AnnData(np.concatenate(blocks).astype(np.float32), var=pd.DataFrame(index=MARKERS))
    adata.obs["cluster"] = pd.Categorical(truth)
    table = tl.label_clusters(adata)
    label = table["label"]
    assert label["treg"] == "CD4+ CD25hi FOXP3+"
    assert label["act"] == "CD4+ CD25+"
    assert label["cd8"] == "CD8+"
    assert label["nk"] == "CD3- CD56+"
    assert label["cd4"] == "CD4+"
    assert table.loc["treg", "count"] == 300
    assert table["pct"].sum() == pytest.approx(100)
    assert table.loc["nk", "CD56"] == pytest.approx(0.6, abs=0.01)
    # a notebook prints it; a frame too wide for the console is truncated, and pandas then compares
    # attrs (a Series there raised "truth value of a Series is ambiguous")
    with pd.option_context("display.max_columns", 3):
        assert "CD4+ CD25hi FOXP3+" in repr(table)


def test_cluster_abundance_rows_cover_every_sample_and_cluster():
    adata, _ = _blobs()
    tl.flowsom(adata, n_clusters=6, grid=(6, 6))
    adata.obs.loc[adata.obs["cluster"] == "6", "sample"] = (
        "P02_D0"  # a sample with one cluster only
    )
    rows = tl.cluster_abundance(adata)
    assert list(rows.columns) == ["sample", "cluster", "count", "pct", "label"]
    assert len(rows) == 3 * 6
    assert rows.groupby("sample")["pct"].sum().to_numpy() == pytest.approx([100, 100, 100])
    assert rows["count"].sum() == adata.n_obs
    p02 = rows[rows["sample"] == "P02_D0"].set_index("cluster")["count"]
    assert p02["6"] == (adata.obs["cluster"] == "6").sum() and p02.drop("6").eq(0).all()
    assert rows["label"].str.len().gt(0).all()


def test_errors_name_the_missing_step():
    adata, _ = _blobs()
    with pytest.raises(CytokitError, match="flowsom"):
        tl.label_clusters(adata)
    tl.flowsom(adata, n_clusters=3, grid=(4, 4))
    with pytest.raises(CytokitError, match="gate"):
        tl.cluster_population_overlap(adata)


# --- mapping new events onto a fitted model --------------------------------------------------------


def test_map_clusters_puts_new_events_of_the_same_blobs_in_the_same_clusters(tmp_path):
    train, truth = _blobs(seed=3)
    tl.flowsom(train, n_clusters=6, grid=(7, 7), seed=0)
    # the training events map back to exactly the clusters flowsom gave them
    again = train.copy()
    tl.map_clusters(again, train)
    assert (again.obs["cluster"] == train.obs["cluster"]).all()
    # a new sample from the same blobs, markers in another order and with other spellings of the panel
    new, new_truth = _blobs(seed=3, sd=0.035)
    new = new[:, ["CD8", "CD3", "CD45RA", "FOXP3", "CD4", "CD25", "CD56", "Ki67"]].copy()
    path = tl.write_cluster_model(train.uns["cluster"], tmp_path / "model.json")
    tl.map_clusters(new, path)
    truth_to_cluster = pd.crosstab(truth, train.obs["cluster"]).idxmax(axis=1)
    expected = truth_to_cluster.reindex(new_truth).to_numpy()
    assert (new.obs["cluster"].astype(str).to_numpy() == expected).mean() > 0.98
    assert list(new.obs["cluster"].cat.categories) == [str(i) for i in range(1, 7)]
    model = tl.read_cluster_model(path)
    counts = tl.cluster_counts(tl._utils.matrix(new, model["markers"]), model)
    assert counts.sum() == new.n_obs
    assert counts.to_dict() == new.obs["cluster"].value_counts().to_dict()


def test_map_clusters_maps_only_the_chosen_population():
    train, _ = _blobs(seed=1)
    tl.flowsom(train, n_clusters=4, grid=(5, 5), seed=0)
    model = dict(train.uns["cluster"], population="live")
    new, _ = _blobs(seed=2)
    live = np.arange(new.n_obs) % 4 != 0
    new.obsm["populations"] = pd.DataFrame(
        {"live": live, "CD4": live & (np.arange(new.n_obs) % 2 == 0)}, index=new.obs_names
    )
    tl.map_clusters(new, model)  # the model's population by default
    assert new.obs["cluster"].notna().to_numpy().tolist() == live.tolist()
    assert (new.obs["cluster_node"].to_numpy()[~live] == -1).all()
    tl.map_clusters(new, model, population="CD4")
    assert new.obs["cluster"].notna().sum() == new.obsm["populations"]["CD4"].sum()
    with pytest.raises(CytokitError, match="no gated population 'Treg'"):
        tl.map_clusters(new, model, population="Treg")
    with pytest.raises(MarkerError):
        tl.map_clusters(new[:, ["CD3", "CD4"]].copy(), model)
    with pytest.raises(CytokitError, match="not a fitted cluster model"):
        tl.map_clusters(new, {"markers": ["CD3"]})


def test_nodes_of_an_empty_metacluster_join_their_nearest_named_cluster():
    from cytokit.tl._flowsom import _name_empty_nodes

    codes = np.array([[0.0, 0.0], [0.1, 0.0], [1.0, 1.0], [0.9, 1.0]], dtype=np.float32)
    named = _name_empty_nodes(np.array(["1", "", "2", ""]), codes)
    assert named.tolist() == ["1", "1", "2", "2"]


# --- simulated trial data: the Treg cluster holds the gated Tregs -----------------------------------


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    import cytokit as ck
    from cytokit.datasets import simulate_sample

    folder = tmp_path_factory.mktemp("sim")
    parts = []
    for patient, day in ((0, 0), (1, 8)):
        path = simulate_sample(12_000, seed=11, patient=patient, day=day).write(
            folder / f"P{patient}_D{day}.fcs"
        )
        adata = ck.read_fcs(path)
        ck.pp.compensate(adata)
        ck.pp.transform(adata)
        ck.gate(adata)
        adata.obs["sample"] = path.stem
        # as a run pools them: live singlet lymphocytes
        drop = ["dead", "debris", "doublet", "non-lymphocyte", "time_anomaly"]
        keep = ~adata.obs["population"].isin(drop).to_numpy()
        obs = adata.obs.loc[keep, ["sample", "population"]]
        parts.append(ad.AnnData(adata.X[keep], obs=obs, var=adata.var[["role"]]))
    return ad.concat(parts, index_unique="-", merge="same")


def _treg_cluster(adata) -> tuple[str, float, float]:
    """The cluster holding most gated Tregs, the fraction of Tregs in it, the fraction of it that is Treg."""
    overlap = tl.cluster_population_overlap(adata)
    assert overlap.sum(axis=0).to_numpy() == pytest.approx(1.0)
    cluster = overlap["Treg"].idxmax()
    purity = (adata.obs.loc[adata.obs["cluster"] == cluster, "population"] == "Treg").mean()
    return cluster, overlap.loc[cluster, "Treg"], purity


def test_flowsom_on_simulated_samples_finds_the_gated_tregs(simulated):
    # With 10 metaclusters for ~13 cell types some merge: in about 1 of 20 pools x seeds the Tregs join
    # a CD4 cluster, so ask it of most seeds rather than of one.
    adata = simulated.copy()
    found = 0
    for seed in range(3):
        tl.flowsom(adata, n_clusters=10, seed=seed)
        cluster, share, purity = _treg_cluster(adata)
        if share > 0.6 and purity > 0.6:
            found += 1
            label = tl.label_clusters(adata)["label"][cluster]
            assert "CD4" in label and "CD25" in label and "FOXP3+" in label
    assert found >= 2
    rows = tl.cluster_abundance(adata)
    assert rows.groupby("sample")["pct"].sum().to_numpy() == pytest.approx([100, 100])


# --- plot ------------------------------------------------------------------------------------------


def test_umap_plot_returns_a_figure_per_colour():
    from matplotlib.figure import Figure

    from cytokit.pl._embedding import umap as plot_umap

    adata, truth = _blobs()
    adata.obs["cluster"] = pd.Categorical(truth.astype(str))
    adata.obsm["X_umap"] = np.random.default_rng(0).normal(size=(adata.n_obs, 2))
    fig = plot_umap(adata, color=["cluster", "CD4"], legend_labels={"0": "CD3- CD56+"})
    assert isinstance(fig, Figure)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[0] == "0  CD3- CD56+" and legend[1] == "1"
    assert sum(ax.get_visible() for ax in fig.axes) == 3  # two panels and one colour bar
    with pytest.raises(CytokitError):
        plot_umap(ad.AnnData(np.zeros((3, 2), dtype=np.float32)))


def test_gate_cluster_agreement_tracks_the_matching_cluster():
    from anndata import AnnData

    rng = np.random.default_rng(0)
    samples, clusters, pops = [], [], []
    for i, share in enumerate([0.02, 0.05, 0.08, 0.12]):
        n = 1000
        is_treg = rng.random(n) < share
        samples += [f"S{i}"] * n
        pops += np.where(is_treg, "Treg", "Teff").tolist()
        # the Treg cluster holds every Treg and a few Teff; the rest is one big cluster
        stray = (~is_treg) & (rng.random(n) < 0.002)
        clusters += np.where(is_treg | stray, "7", "1").tolist()
    adata = AnnData(
        np.zeros((len(samples), 1), np.float32),
        obs=pd.DataFrame({"sample": samples, "population": pops, "cluster": clusters}),
    )
    table = tl.gate_cluster_agreement(adata, "Treg")
    assert table.attrs["clusters"] == ["7"]
    assert table.attrs["spearman"] == pytest.approx(1.0)
    assert (table["cluster_pct"] >= table["gated_pct"]).all()
    assert (table["cluster_pct"] - table["gated_pct"]).max() < 1.0
    # a population that is nowhere the majority of a cluster has no matching cluster
    none = tl.gate_cluster_agreement(adata, "Teff", min_purity=1.01)
    assert none.attrs["clusters"] == [] and (none["cluster_pct"] == 0).all()
