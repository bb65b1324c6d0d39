"""The graph store interface that the embedded store and the Neo4j store both implement.

A store holds one dataset's heterogeneous graph (:class:`~graph_meta.schema.GraphSchema`):
it ingests a dataset, takes incremental upserts of users, items, attribute nodes and
ratings, answers typed neighborhood and candidate queries, and exports a PyG ``HeteroData``
snapshot. The same test suite runs against both implementations.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from graph_meta.dataset import Dataset
from graph_meta.graph.build import (
    DEFAULT_CO_ENGAGED_MIN_USERS,
    DEFAULT_CO_ENGAGED_TOP_K,
    EdgeBatch,
    GraphRecords,
    NodeBatch,
    attribute_edges,
    co_engaged_batch,
    co_liked_batch,
    graph_records,
    like_threshold,
    node_properties,
)
from graph_meta.schema import (
    CATEGORY,
    ITEM,
    MAX_ID_BYTES,
    USER,
    DatasetSpec,
    EdgeType,
    GraphSchema,
    id_too_long,
    long_id_message,
)

Direction = str  # "out" (node is the edge's source) or "in" (node is its target)


@dataclass(frozen=True)
class GraphCounts:
    """Node count per node type and edge count per edge type."""

    nodes: dict[str, int]
    edges: dict[EdgeType, int]

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {"nodes": dict(self.nodes), "edges": {str(k): v for k, v in self.edges.items()}}


@dataclass(frozen=True)
class Neighborhood:
    """A typed k-hop neighborhood: node ids per type and edges as (rel, src id, dst id)."""

    nodes: dict[str, frozenset[str]]
    edges: frozenset[tuple[str, str, str]]


@dataclass(frozen=True)
class Candidate:
    """An item proposed for a user, with its score and the graph path that found it.

    ``path`` lists the nodes the path went through as ``(label, id)``, starting at the user's
    rated item and ending at the candidate; ``reason`` names the path type: ``collaborative``,
    ``category``, ``cross_category`` or ``cold_item``.
    """

    item_id: str
    score: float
    reason: str
    path: tuple[tuple[str, str], ...]


def check_node_ids(batch: NodeBatch) -> None:
    """ValueError naming the node type unless every id of ``batch`` has at most
    :data:`~graph_meta.schema.MAX_ID_BYTES` UTF-8 bytes (what Neo4j can index; both stores
    refuse longer ids alike, before writing anything)."""
    for node_id in batch.ids:
        text = str(node_id)
        if len(text) > MAX_ID_BYTES // 4 and id_too_long(text):
            raise ValueError(f"{batch.node_type} {long_id_message(text)}")


def edge_weight_property(edge_type: EdgeType) -> str | None:
    """The property that orders an edge type's neighbors (heaviest first), if any."""
    if edge_type.rel == "RATED":
        return "rating"
    if edge_type.rel in ("CO_ENGAGED", "CO_LIKED") or not edge_type.rel.startswith("HAS_"):
        return "weight"
    return None


class GraphStore(ABC):
    """One dataset's heterogeneous graph, embedded or in Neo4j."""

    spec: DatasetSpec
    schema: GraphSchema

    # --- writing -------------------------------------------------------------------------

    @abstractmethod
    def upsert_nodes(self, batch: NodeBatch) -> None:
        """Create missing nodes, update the properties of existing ones (idempotent)."""

    @abstractmethod
    def upsert_edges(self, batch: EdgeBatch) -> None:
        """Create missing edges, update existing ones; both ends must exist (idempotent)."""

    @abstractmethod
    def clear_edges(self, edge_type: EdgeType) -> None:
        """Delete every edge of one type (used to recompute ``CO_ENGAGED``)."""

    def ingest(self, dataset: Dataset | GraphRecords, *, progress: bool = False) -> GraphCounts:
        """Load a whole dataset's graph; rerunning it changes nothing."""
        records = dataset if isinstance(dataset, GraphRecords) else graph_records(dataset)
        self._check_schema(records.schema)
        for batch in records.nodes.values():  # before anything is written
            check_node_ids(batch)
        from tqdm.auto import tqdm

        steps = [*records.nodes.values(), *records.edges.values()]
        for batch in tqdm(steps, desc="ingest", unit="type", disable=not progress):
            if isinstance(batch, NodeBatch):
                self.upsert_nodes(batch)
            else:
                self.upsert_edges(batch)
        return self.counts()

    def _check_schema(self, schema: GraphSchema) -> None:
        if schema != self.schema:
            raise ValueError("the records' schema differs from the store's schema")

    def add_items(self, items: pd.DataFrame) -> None:
        """Upsert items with their categories and attributes; reachable at once."""
        self._add_owners(ITEM, items)

    def _add_owners(self, owner: str, frame: pd.DataFrame) -> None:
        table = self.spec.users if owner == USER else self.spec.items
        frame = frame.copy()
        frame.index = frame.index.astype(str)
        for col, cspec in table.columns.items():
            if col not in frame:
                frame[col] = np.nan if cspec.type == "numeric" else ""
        unknown = [c for c in frame.columns if c not in table.columns]
        if unknown:
            raise ValueError(f"unknown {owner} column(s) {unknown}; known: {list(table.columns)}")
        frame = frame[list(table.columns)]
        for col, cspec in table.columns.items():
            if cspec.type == "numeric":
                frame[col] = pd.to_numeric(frame[col], errors="raise").astype(np.float64)
        owners = NodeBatch(owner, frame.index.to_numpy(dtype=object), node_properties(frame))
        attrs = []
        for attr in self.schema.attribute_edges:
            if attr.owner != owner:
                continue
            batch = attribute_edges(frame, table.columns[attr.column], attr.edge_type)
            attrs.append((NodeBatch(attr.edge_type.dst, pd.unique(batch.dst)), batch))
        for nodes in (owners, *(n for n, _ in attrs)):  # before anything is written
            check_node_ids(nodes)
        self.upsert_nodes(owners)
        for nodes, batch in attrs:
            self.upsert_nodes(nodes)
            self.upsert_edges(batch)

    def add_ratings(
        self,
        user_ids: Sequence[str],
        item_ids: Sequence[str],
        ratings: Sequence[float],
        timestamps: Sequence[int] | None = None,
    ) -> None:
        """Upsert ``RATED`` edges between existing users and items."""
        lo, hi = self.spec.rating_scale
        r = np.asarray(ratings, dtype=np.float32)
        if len(r) and (not np.isfinite(r).all() or r.min() < lo or r.max() > hi):
            raise ValueError(f"ratings must be finite and within [{lo:g}, {hi:g}]")
        props: dict[str, np.ndarray] = {"rating": r}
        if timestamps is not None:
            props["timestamp"] = np.asarray(timestamps, dtype=np.int64)
        self.upsert_edges(EdgeBatch(self.schema.rated, np.asarray(user_ids, dtype=object),
                                    np.asarray(item_ids, dtype=object), props))

    def refresh_derived_edges(
        self, *, top_k: int = DEFAULT_CO_ENGAGED_TOP_K,
        min_users: int = DEFAULT_CO_ENGAGED_MIN_USERS,
    ) -> dict[EdgeType, int]:
        """Recompute ``CO_LIKED`` and ``CO_ENGAGED`` from the ratings now in the store.

        Incremental rating upserts do not move these links; call this after a batch of them.
        Returns the new edge count per type.
        """
        rated = self.edge_batch(self.schema.rated)
        derived = [co_liked_batch(rated, like_threshold(self.spec.rating_scale))]
        co_type = self.schema.co_engaged
        if co_type is not None:
            cats = [self.edge_batch(a.edge_type) for a in self.schema.attribute_edges
                    if a.owner == ITEM and a.edge_type.dst == CATEGORY]
            merged = EdgeBatch(cats[0].edge_type, np.concatenate([c.src for c in cats]),
                               np.concatenate([c.dst for c in cats]))
            derived.append(co_engaged_batch(rated, merged, top_k=top_k, min_users=min_users))
        for batch in derived:
            self.clear_edges(batch.edge_type)
            self.upsert_edges(batch)
        return {b.edge_type: len(b) for b in derived}

    # --- reading -------------------------------------------------------------------------

    @abstractmethod
    def counts(self) -> GraphCounts:
        """Node and edge counts per type."""

    @abstractmethod
    def node_ids(self, node_type: str) -> np.ndarray:
        """All ids of one node type, sorted."""

    @abstractmethod
    def node_frame(self, node_type: str) -> pd.DataFrame:
        """User or item side information, indexed by id, sorted by id."""

    @abstractmethod
    def iter_edges(self, edge_type: EdgeType, batch_size: int = 100_000) -> Iterator[EdgeBatch]:
        """All edges of one type, in batches (streamed, never all copied at once in Neo4j)."""

    def edge_batch(self, edge_type: EdgeType) -> EdgeBatch:
        """All edges of one type in one batch."""
        parts = list(self.iter_edges(edge_type))
        if not parts:
            return EdgeBatch(edge_type, np.zeros(0, object), np.zeros(0, object))
        keys = parts[0].properties.keys()
        return EdgeBatch(edge_type, np.concatenate([p.src for p in parts]),
                         np.concatenate([p.dst for p in parts]),
                         {k: np.concatenate([p.properties[k] for p in parts]) for k in keys})

    @abstractmethod
    def neighbors(
        self,
        node_type: str,
        ids: Sequence[str],
        edge_type: EdgeType,
        direction: Direction,
        limit: int | None = None,
    ) -> list[tuple[str, str, float | None]]:
        """Neighbors along one edge type and direction, for each of ``ids``.

        Returns ``(id, neighbor id, weight)`` triples. With ``limit``, each node keeps its
        ``limit`` neighbors of largest weight (rating or weight property), ties by neighbor
        id, the order both stores share; triples are sorted by (id, -weight, neighbor id).
        """

    def _neighbor_ends(self, node_type: str, edge_type: EdgeType,
                       direction: Direction) -> tuple[EdgeType, str, str]:
        """The checked edge type and the node types at this end and the other end."""
        et = self.schema.check_edge(edge_type)
        here, there = (et.src, et.dst) if direction == "out" else (et.dst, et.src)
        if node_type != here:
            raise ValueError(f"{et} does not start at {node_type} in direction {direction!r}")
        return et, here, there

    def neighborhood(
        self,
        node_type: str,
        node_id: str,
        *,
        hops: int = 2,
        fanout: int | Sequence[int] | None = 10,
        edge_types: Sequence[EdgeType] | None = None,
    ) -> Neighborhood:
        """The typed ``hops``-hop neighborhood of one node, edges followed both ways.

        ``fanout`` limits the neighbors kept per node, edge type and direction at each hop
        (a list gives one limit per hop; ``None`` keeps all).
        """
        self.schema.check_label(node_type)
        if not self.has_node(node_type, node_id):
            raise KeyError(f"no {node_type} node with id {node_id!r}")
        types = [self.schema.check_edge(e) for e in (edge_types or self.schema.edge_types)]
        limits = (list(fanout) if isinstance(fanout, Sequence) else [fanout] * hops)
        if len(limits) != hops:
            raise ValueError(f"fanout has {len(limits)} entries for {hops} hops")
        seen: dict[str, set[str]] = {node_type: {node_id}}
        frontier: dict[str, set[str]] = {node_type: {node_id}}
        edges: set[tuple[str, str, str]] = set()
        for limit in limits:
            nxt: dict[str, set[str]] = {}
            for et in types:
                for direction, here, there in (("out", et.src, et.dst), ("in", et.dst, et.src)):
                    ids = frontier.get(here)
                    if not ids:
                        continue
                    for a, b, _ in self.neighbors(here, sorted(ids), et, direction, limit):
                        edges.add((et.rel, a, b) if direction == "out" else (et.rel, b, a))
                        if b not in seen.setdefault(there, set()):
                            nxt.setdefault(there, set()).add(b)
            for t, ids in nxt.items():
                seen[t] |= ids
            frontier = nxt
        return Neighborhood({t: frozenset(v) for t, v in seen.items()}, frozenset(edges))

    @abstractmethod
    def has_node(self, node_type: str, node_id: str) -> bool:
        """Whether a node exists."""

    def snapshot(self, *, text_dim: int = 256):
        """The whole graph as a PyG ``HeteroData`` with encoded features and reverse edges."""
        from graph_meta.graph.hetero import store_snapshot

        return store_snapshot(self, text_dim=text_dim)

    @abstractmethod
    def candidates(
        self,
        *,
        user_id: str | None = None,
        rated: Sequence[tuple[str, float]] | None = None,
        k: int = 50,
    ) -> list[Candidate]:
        """Items to consider for a user, with scores and explaining paths."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the embedded store has none."""

    def __enter__(self) -> GraphStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
