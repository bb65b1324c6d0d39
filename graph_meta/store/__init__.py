"""Graph stores: one interface (:class:`GraphStore`), an embedded and a Neo4j implementation."""

from graph_meta.store.base import Candidate, GraphCounts, GraphStore, Neighborhood
from graph_meta.store.embedded import EmbeddedGraphStore

__all__ = ["Candidate", "EmbeddedGraphStore", "GraphCounts", "GraphStore", "Neighborhood"]
