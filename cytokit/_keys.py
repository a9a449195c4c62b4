"""Names of the AnnData keys cytokit reads and writes, kept in one place."""

# var
CHANNEL = "channel"  # $PnN
MARKER = "marker"  # canonical marker name ("CD25") or "" where none
STAIN = "stain"  # raw $PnS as written in the file
RANGE = "range"  # $PnR as float
ROLE = "role"  # scatter / time / viability / lineage / functional / "" (from the panel)

# obs
EVENT = "event"  # 0-based row in the FCS DATA segment
SAMPLE = "sample"
POPULATION = "population"
CLUSTER = "cluster"

# obsm
POPULATIONS = "populations"  # bool DataFrame, one column per population of the strategy
UMAP = "X_umap"

# uns
FCS = "fcs"  # keywords, str -> str
SPILLOVER = "spillover"  # pandas DataFrame, index = source channels, columns = detector channels
COMPENSATION = "compensation"  # {"source": "FCS"|"user", "matrix": DataFrame}
TRANSFORM = "transform"  # {var_name: {"kind": "logicle", "T":, "W":, "M":, "A":} | ...}
UMAP_PARAMS = "umap"  # {"markers": [...], "params": {...}} of tl.umap
GATING = "gating"  # {"strategy": str, "gates": {gate_id: {...}}, "warnings": [...]}
SAMPLE_INFO = (
    "sample_info"  # {"file": str, "sample": str, "n_events_header": int, "warnings": [...]}
)
