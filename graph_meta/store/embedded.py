"""The embedded graph store: numpy edge arrays indexed by CSR, no server.

Edges of each type live in growable int64 arrays; two :class:`~graph_meta.sampling.CSR`
indexes (by source, by target) answer neighbor queries. Upserts append to a pending tail
that queries scan directly; the indexes are rebuilt once the tail outgrows a fraction of the
edges, so inserting items one by one between queries stays cheap at ten million edges.

The store is safe to share between threads: a readers-writer lock (:class:`_RWLock`) lets any
number of queries run together while every write (upserts, ``add_items``, ``add_ratings``,
``ingest``, ``refresh_derived_edges``) runs alone, so a query sees the graph either before or
after a write, never half of it. Writers go first: a waiting writer holds back new readers.
``iter_edges`` copies the edges it yields under the lock, so a consumer that stops early holds
nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import numpy as np
import pandas as pd

from graph_meta.dataset import Dataset
from graph_meta.graph.build import EdgeBatch, NodeBatch
from graph_meta.sampling.csr import CSR
from graph_meta.schema import CATEGORY, ITEM, USER, DatasetSpec, EdgeType, GraphSchema
from graph_meta.store.base import (
    Candidate,
    Direction,
    GraphCounts,
    GraphStore,
    check_node_ids,
    edge_weight_property,
)

_MIN_PENDING = 4096
_PENDING_FRACTION = 0.05
_T = TypeVar("_T")


class _RWLock:
    """Many readers or one writer, writers first; reentrant per thread (nested reads, reads
    inside the thread's own write, nested writes). A thread that is reading cannot start to
    write (that upgrade could deadlock): it gets a RuntimeError."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer: int | None = None
        self._writers_waiting = 0
        self._local = threading.local()

    def reading(self) -> int:
        """How deep the calling thread is in read sections (0: not reading)."""
        return getattr(self._local, "reads", 0)

    def writing(self) -> bool:
        """Whether the calling thread holds the write lock."""
        return self._writer == threading.get_ident()

    @contextmanager
    def read(self) -> Iterator[None]:
        depth = self.reading()
        if depth or self.writing():
            self._local.reads = depth + 1
            try:
                yield
            finally:
                self._local.reads = depth
            return
        with self._cond:
            while self._writer is not None or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        self._local.reads = 1
        try:
            yield
        finally:
            self._local.reads = 0
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        if self.writing():
            yield
            return
        if self.reading():
            raise RuntimeError("a thread that is reading the store cannot write to it")
        me = threading.get_ident()
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer is not None or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = me
        try:
            yield
        finally:
            with self._cond:
                self._writer = None
                self._cond.notify_all()


class _Growable:
    """An append-only numpy array with amortised O(1) growth."""

    def __init__(self, dtype: np.dtype | type, capacity: int = 1024) -> None:
        self.data = np.zeros(capacity, dtype=dtype)
        self.size = 0

    def extend(self, values: np.ndarray) -> None:
        n = len(values)
        if self.size + n > len(self.data):
            cap = max(self.size + n, 2 * len(self.data))
            grown = np.zeros(cap, dtype=self.data.dtype)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size : self.size + n] = values
        self.size += n

    @property
    def view(self) -> np.ndarray:
        return self.data[: self.size]


class _NodeTable:
    """Ids of one node type (position = node index) and, for users/items, properties."""

    def __init__(self, columns: dict[str, bool]) -> None:
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self.numeric = columns
        self.props: dict[str, list] = {c: [] for c in columns}

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, ids: Sequence[str]) -> np.ndarray:
        get = self.index.get
        return np.fromiter((get(str(i), -1) for i in ids), dtype=np.int64, count=len(ids))

    def upsert(self, ids: np.ndarray, props: dict[str, np.ndarray]) -> None:
        unknown = set(props) - set(self.props)
        if unknown:
            raise ValueError(f"unknown properties {sorted(unknown)}")
        for k, raw in enumerate(ids):
            node_id = str(raw)
            pos = self.index.get(node_id)
            if pos is None:
                pos = len(self.ids)
                self.index[node_id] = pos
                self.ids.append(node_id)
                for col, is_num in self.numeric.items():
                    self.props[col].append(np.nan if is_num else "")
            for col, values in props.items():
                v = values[k]
                self.props[col][pos] = float(v) if self.numeric[col] else str(v)


class _EdgeTable:
    """Edges of one type: endpoint arrays, properties, CSR indexes and a pending tail."""

    def __init__(self, edge_type: EdgeType, properties: dict[str, np.dtype | type]) -> None:
        self.edge_type = edge_type
        self.src = _Growable(np.int64)
        self.dst = _Growable(np.int64)
        self.props = {k: _Growable(dt) for k, dt in properties.items()}
        self.deleted = _Growable(bool)
        self.indexed = 0
        self.by_src: CSR | None = None
        self.by_dst: CSR | None = None
        self.pending: dict[tuple[int, int], int] = {}
        self.live = 0

    def __len__(self) -> int:
        return self.live

    def find(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        found = (self.by_src.find(src, dst) if self.by_src is not None
                 else np.full(len(src), -1, np.int64))
        if self.pending:
            get = self.pending.get
            tail = np.fromiter((get((int(s), int(d)), -1) for s, d in zip(src, dst, strict=True)),
                               dtype=np.int64, count=len(src))
            found = np.where(found >= 0, found, tail)
        return found

    def upsert(self, src: np.ndarray, dst: np.ndarray, props: dict[str, np.ndarray]) -> None:
        if len(src) == 0:
            return
        key = (src << np.int64(32)) | dst
        _, last = np.unique(key[::-1], return_index=True)
        keep = np.sort(len(key) - 1 - last)
        src, dst = src[keep], dst[keep]
        props = {k: np.asarray(v)[keep] for k, v in props.items()}
        eid = self.find(src, dst)
        old = eid >= 0
        for name, values in props.items():
            if name not in self.props:
                self.props[name] = _Growable(values.dtype)
                self.props[name].extend(np.zeros(self.src.size, dtype=values.dtype))
            self.props[name].data[eid[old]] = values[old]
        new = ~old
        start = self.src.size
        n_new = int(new.sum())
        self.src.extend(src[new])
        self.dst.extend(dst[new])
        self.deleted.extend(np.zeros(n_new, dtype=bool))
        for name, arr in self.props.items():
            arr.extend(props[name][new] if name in props else np.zeros(n_new, arr.data.dtype))
        self.pending.update(
            zip(zip(src[new].tolist(), dst[new].tolist(), strict=True),
                range(start, start + n_new), strict=True))
        self.live += n_new
        if len(self.pending) > max(_MIN_PENDING, _PENDING_FRACTION * self.src.size):
            self.reindex()

    @property
    def fresh(self) -> bool:
        """Whether the CSR indexes cover every edge (no pending tail)."""
        return self.by_src is not None and not self.pending

    def build(self, num_src: int | None = None, num_dst: int | None = None
              ) -> tuple[CSR, CSR]:
        """``(by_src, by_dst)`` over every live edge, without storing them."""
        src, dst = self.src.view, self.dst.view
        alive = ~self.deleted.view
        rows_s = int(src.max()) + 1 if len(src) else 0
        rows_d = int(dst.max()) + 1 if len(dst) else 0
        return (_csr_alive(src, dst, max(rows_s, num_src or 0), alive),
                _csr_alive(dst, src, max(rows_d, num_dst or 0), alive))

    def reindex(self, num_src: int | None = None, num_dst: int | None = None) -> None:
        self.by_src, self.by_dst = self.build(num_src, num_dst)
        self.indexed = self.src.size
        self.pending.clear()

    def clear(self) -> None:
        self.deleted.data[: self.deleted.size] = True
        self.live = 0
        self.reindex()

    def gather(self, rows: np.ndarray, direction: Direction) -> tuple[np.ndarray, ...]:
        """``(seed_position, neighbor, edge_id)`` of every live edge at ``rows``."""
        csr = self.by_src if direction == "out" else self.by_dst
        if csr is None:
            z = np.zeros(0, np.int64)
            pos, nbr, eid = z, z, z
        else:
            pos, nbr, eid = csr.gather(rows)
        if self.pending:
            here = (self.src if direction == "out" else self.dst).view[self.indexed:]
            there = (self.dst if direction == "out" else self.src).view[self.indexed:]
            order = np.argsort(rows, kind="stable")
            sorted_rows = rows[order]
            hit = np.isin(here, sorted_rows)
            tail_e = np.flatnonzero(hit)
            where = np.searchsorted(sorted_rows, here[tail_e])
            pos = np.concatenate([pos, order[where]])
            nbr = np.concatenate([nbr, there[tail_e]])
            eid = np.concatenate([eid, tail_e + self.indexed])
        return pos, nbr, eid


def _csr_alive(rows: np.ndarray, cols: np.ndarray, num_rows: int, alive: np.ndarray) -> CSR:
    if alive.all():
        return CSR.from_edges(rows, cols, num_rows)
    ids = np.flatnonzero(alive)
    csr = CSR.from_edges(rows[ids], cols[ids], num_rows)
    return CSR(csr.indptr, csr.indices, ids[csr.edge_ids], csr.keys)


class EmbeddedGraphStore(GraphStore):
    """The default store: the whole graph in memory, numpy arrays and CSR indexes.

    Example::

        store = EmbeddedGraphStore.from_dataset(read_dataset("data/movielens-1m"))
        store.add_items(new_items_frame)        # reachable at once
        store.neighborhood("Item", "42", hops=2, fanout=10)
    """

    def __init__(self, spec: DatasetSpec) -> None:
        self.spec = spec
        self.schema = GraphSchema.from_spec(spec)
        self._lock = _RWLock()
        self._nodes: dict[str, _NodeTable] = {}
        for nt in self.schema.node_types:
            table = spec.users if nt == USER else spec.items if nt == ITEM else None
            cols = ({c: s.type == "numeric" for c, s in table.columns.items()} if table
                    else {})
            self._nodes[nt] = _NodeTable(cols)
        self._edges: dict[EdgeType, _EdgeTable] = {}
        for et in self.schema.edge_types:
            props: dict[str, type] = {}
            if et.rel == "RATED":
                props = {"rating": np.float32, "timestamp": np.int64}
            elif et.rel in ("CO_ENGAGED", "CO_LIKED"):
                props = {"weight": np.float32, "users": np.int64}
            elif edge_weight_property(et) == "weight":
                props = {"weight": np.float32}
            self._edges[et] = _EdgeTable(et, props)

    @classmethod
    def from_dataset(cls, dataset: Dataset, *, progress: bool = False) -> EmbeddedGraphStore:
        store = cls(dataset.spec)
        store.ingest(dataset, progress=progress)
        return store

    # --- writing (each under the write lock) -------------------------------------------

    def upsert_nodes(self, batch: NodeBatch) -> None:
        self.schema.check_label(batch.node_type)
        check_node_ids(batch)
        with self._lock.write():
            self._nodes[batch.node_type].upsert(np.asarray(batch.ids, dtype=object),
                                                batch.properties)

    def upsert_edges(self, batch: EdgeBatch) -> None:
        et = self.schema.check_edge(batch.edge_type)
        with self._lock.write():
            src = self._nodes[et.src].lookup(batch.src)
            dst = self._nodes[et.dst].lookup(batch.dst)
            for ids, idx, label in ((batch.src, src, et.src), (batch.dst, dst, et.dst)):
                if (idx < 0).any():
                    missing = np.asarray(ids, dtype=object)[idx < 0][:3].tolist()
                    raise KeyError(f"{et}: unknown {label} id(s) {missing}")
            table = self._edges[et]
            unknown = set(batch.properties) - set(table.props)
            if unknown:
                raise ValueError(f"{et}: unknown edge properties {sorted(unknown)}")
            table.upsert(src, dst, batch.properties)

    def clear_edges(self, edge_type: EdgeType) -> None:
        et = self.schema.check_edge(edge_type)
        with self._lock.write():
            self._edges[et].clear()

    def ingest(self, dataset, *, progress: bool = False) -> GraphCounts:
        with self._lock.write():
            counts = super().ingest(dataset, progress=progress)
            for et, table in self._edges.items():
                table.reindex(len(self._nodes[et.src]), len(self._nodes[et.dst]))
            return counts

    def _add_owners(self, owner: str, frame: pd.DataFrame) -> None:
        with self._lock.write():  # the nodes and their attribute edges in one write
            super()._add_owners(owner, frame)

    def add_ratings(self, user_ids: Sequence[str], item_ids: Sequence[str],
                    ratings: Sequence[float], timestamps: Sequence[int] | None = None) -> None:
        with self._lock.write():
            super().add_ratings(user_ids, item_ids, ratings, timestamps)

    def refresh_derived_edges(self, **kw) -> dict[EdgeType, int]:
        with self._lock.write():
            return super().refresh_derived_edges(**kw)

    # --- reading (each under the read lock) --------------------------------------------

    def counts(self) -> GraphCounts:
        with self._lock.read():
            return GraphCounts({nt: len(t) for nt, t in self._nodes.items()},
                               {et: len(t) for et, t in self._edges.items()})

    def has_node(self, node_type: str, node_id: str) -> bool:
        table = self._nodes[self.schema.check_label(node_type)]
        with self._lock.read():
            return str(node_id) in table.index

    def node_ids(self, node_type: str) -> np.ndarray:
        table = self._nodes[self.schema.check_label(node_type)]
        with self._lock.read():
            ids = np.asarray(table.ids[: len(table)], dtype=object)
        return np.sort(ids)

    def node_frame(self, node_type: str) -> pd.DataFrame:
        table = self._nodes[self.schema.check_label(node_type)]
        with self._lock.read():
            frame = pd.DataFrame({c: list(v) for c, v in table.props.items()},
                                 index=pd.Index(list(table.ids), dtype=object, name="id"))
        for col, is_num in table.numeric.items():
            frame[col] = frame[col].astype(np.float64 if is_num else object)
        return frame.sort_index()

    def iter_edges(self, edge_type: EdgeType, batch_size: int = 100_000) -> Iterator[EdgeBatch]:
        table = self._edges[self.schema.check_edge(edge_type)]
        with self._lock.read():  # copied under the lock: the batches are a consistent cut
            alive = np.flatnonzero(~table.deleted.view)
            src = np.asarray(self._nodes[edge_type.src].ids, dtype=object)[table.src.view[alive]]
            dst = np.asarray(self._nodes[edge_type.dst].ids, dtype=object)[table.dst.view[alive]]
            props = {k: v.view[alive] for k, v in table.props.items()}
        for start in range(0, len(alive), batch_size):
            cut = slice(start, start + batch_size)
            yield EdgeBatch(edge_type, src[cut], dst[cut], {k: v[cut] for k, v in props.items()})

    def neighbors(
        self,
        node_type: str,
        ids: Sequence[str],
        edge_type: EdgeType,
        direction: Direction,
        limit: int | None = None,
    ) -> list[tuple[str, str, float | None]]:
        et, here, there = self._neighbor_ends(node_type, edge_type, direction)
        table = self._edges[et]
        wprop = edge_weight_property(et)
        with self._lock.read():
            rows = self._nodes[here].lookup(list(ids))
            present = rows >= 0
            rows = rows[present]
            pos, nbr, eid = table.gather(rows, direction)
            weight = (table.props[wprop].view[eid].astype(np.float64) if wprop
                      else np.zeros(len(eid)))
            nbr_ids = np.asarray(self._nodes[there].ids, dtype=object)[nbr]
        seed_ids = np.asarray(ids, dtype=object)[present][pos]
        frame = pd.DataFrame({"a": seed_ids.astype(str), "w": -weight, "b": nbr_ids.astype(str)})
        frame = frame.sort_values(["a", "w", "b"], kind="stable")
        if limit is not None:
            frame = frame.groupby("a", sort=False).head(limit)
        return [(a, b, (-w if wprop else None))
                for a, w, b in frame.itertuples(index=False, name=None)]

    def neighborhood(self, node_type: str, node_id: str, **kw):  # type: ignore[override]
        with self._lock.read():  # every hop from the same graph
            return super().neighborhood(node_type, node_id, **kw)

    def snapshot(self, *, text_dim: int = 256):
        with self._lock.read():  # nodes and edges from the same graph
            return super().snapshot(text_dim=text_dim)

    # --- index access for samplers -------------------------------------------------------

    def node_index(self, node_type: str, ids: Sequence[str]) -> np.ndarray:
        """Integer positions of ids (-1 for unknown), as used by :meth:`csr`."""
        table = self._nodes[self.schema.check_label(node_type)]
        with self._lock.read():
            return table.lookup(list(ids))

    def csr(self, edge_type: EdgeType, direction: Direction = "out") -> CSR:
        """The CSR index of an edge type (rebuilt first if upserts are pending).

        A CSR never changes once built (a rebuild makes a new one), so it stays valid for
        the caller; it covers the edges present when it was returned."""
        et = self.schema.check_edge(edge_type)
        table = self._edges[et]
        sizes = (len(self._nodes[et.src]), len(self._nodes[et.dst]))
        with self._lock.read():
            if table.fresh:
                return table.by_src if direction == "out" else table.by_dst  # type: ignore
            if self._lock.reading() > 1 and not self._lock.writing():
                # inside a caller's read section: an index of this moment, not stored
                built = table.build(*sizes)
                return built[0] if direction == "out" else built[1]
        with self._lock.write():
            if not table.fresh:
                table.reindex(len(self._nodes[et.src]), len(self._nodes[et.dst]))
            assert table.by_src is not None and table.by_dst is not None
            return table.by_src if direction == "out" else table.by_dst

    def _read_indexed(self, edge_types: Sequence[EdgeType], fn: Callable[[], _T]) -> _T:
        """``fn()`` under the read lock, with the CSR indexes of ``edge_types`` rebuilt first
        (under the write lock) when upserts are pending."""
        tables = [self._edges[et] for et in edge_types]
        for _ in range(3):
            with self._lock.read():
                if all(t.fresh for t in tables) or self._lock.reading() > 1:
                    return fn()
            with self._lock.write():
                for et, t in zip(edge_types, tables, strict=True):
                    if not t.fresh:
                        t.reindex(len(self._nodes[et.src]), len(self._nodes[et.dst]))
        with self._lock.read():  # writers kept coming: csr() builds what it needs
            return fn()

    def candidates(
        self,
        *,
        user_id: str | None = None,
        rated: Sequence[tuple[str, float]] | None = None,
        k: int = 50,
    ) -> list[Candidate]:
        from graph_meta.store.candidates import embedded_candidates

        types = [et for et in self.schema.edge_types
                 if et == self.schema.rated or et == self.schema.co_liked
                 or et == self.schema.co_engaged or et.dst == CATEGORY]
        return self._read_indexed(types, lambda: embedded_candidates(
            self, user_id=user_id, rated=rated, k=k))
