"""Tools: unsupervised analysis of events (FlowSOM, Leiden, UMAP) and cluster labels."""

from ._flowsom import consensus_metaclusters, flowsom
from ._leiden import leiden
from ._som import SOM
from ._umap import umap

__all__ = ["SOM", "consensus_metaclusters", "flowsom", "leiden", "umap"]
