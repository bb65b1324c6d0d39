"""The heterogeneous graph: records built from a dataset, features, PyG ``HeteroData``."""

from graph_meta.graph.build import EdgeBatch, GraphRecords, NodeBatch, graph_records

__all__ = ["EdgeBatch", "GraphRecords", "NodeBatch", "graph_records"]
