"""Neural pieces: the heterogeneous graph encoder and the prior/score heads."""

from graph_meta.nn.encoder import HeteroEncoder, encoder_edge_types
from graph_meta.nn.heads import PriorHead, ridge_solve, score

__all__ = ["HeteroEncoder", "PriorHead", "encoder_edge_types", "ridge_solve", "score"]
