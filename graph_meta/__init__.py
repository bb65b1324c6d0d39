"""graph-meta: graph-based meta-learning recommender for cold start.

The library: dataset schema and tables (:mod:`graph_meta.schema`, :mod:`graph_meta.dataset`),
the heterogeneous graph (:mod:`graph_meta.graph`), the graph stores
(:mod:`graph_meta.store`) and neighborhood sampling (:mod:`graph_meta.sampling`).
"""

from graph_meta.errors import DataError, GraphMetaError, SchemaError

__version__ = "0.1.0"

__all__ = ["DataError", "GraphMetaError", "SchemaError", "__version__"]
