"""Tools: unsupervised analysis of events (FlowSOM, Leiden, UMAP) and cluster labels."""

from ._flowsom import consensus_metaclusters, flowsom
from ._labels import (
    cluster_abundance,
    cluster_population_overlap,
    gate_cluster_agreement,
    label_clusters,
    positivity_threshold,
)
from ._leiden import leiden
from ._map import cluster_counts, map_clusters, map_events, read_cluster_model, write_cluster_model
from ._som import SOM
from ._umap import umap

#: Events drawn at random from each sample into the pooled set a run clusters and embeds (cells.h5ad).
#: 24 samples x 500 = 12,000 events: FlowSOM + labels + UMAP in a fresh process take 24 CPU s (imports and
#: numba compilation ~13 s, UMAP ~10 s, FlowSOM 0.3 s; benchmarks/bench_cluster.py), and a population of 4 %
#: of live lymphocytes (Tregs) still brings ~500 events to the pool. UMAP time grows linearly with events.
EVENTS_PER_SAMPLE = 500
#: Cap on the pooled events of a run (large trials take fewer events per sample).
MAX_POOLED_EVENTS = 20_000

__all__ = [
    "EVENTS_PER_SAMPLE",
    "MAX_POOLED_EVENTS",
    "SOM",
    "cluster_abundance",
    "cluster_counts",
    "cluster_population_overlap",
    "consensus_metaclusters",
    "flowsom",
    "gate_cluster_agreement",
    "label_clusters",
    "leiden",
    "map_clusters",
    "map_events",
    "positivity_threshold",
    "read_cluster_model",
    "umap",
    "write_cluster_model",
]
