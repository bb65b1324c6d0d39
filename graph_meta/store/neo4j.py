"""The Neo4j graph store: the same graph and the same answers as the embedded store, over Bolt.

Labels are the schema's node types and relationship types its edge types; every node has a
unique ``id`` string (a uniqueness constraint per label). Writes are batched
``UNWIND $rows ... MERGE`` statements in managed write transactions, which the driver retries
on transient errors, so an ingest can be rerun at any point and ends with exact counts.
Cypher text is built only from names that :class:`~graph_meta.schema.GraphSchema` accepts
(and backtick-quoted); every value travels as a parameter.

The store's own names are out of the columns' reach (:mod:`graph_meta.schema` refuses
column names ``id`` and ``gm_*`` and node types ``GraphMeta*``): the metadata node is
``(:GraphMetaDataset {key: 'dataset'})`` with the spec and the store's ``format``, an item's
rating count (the candidates' popularity) is ``gm_n_ratings``, a category's ranked item pools
``gm_top_<REL>``/``gm_cold_<REL>``, and constraints are named ``gm_*``. A database written by
an older format (popularity in ``n_ratings``, where an items column of that name was silently
overwritten) is refused with the command that re-ingests it.

Every call to the server goes through :class:`graph_meta.store.bolt.Bolt` and is bounded
(``timeout``, default :data:`DEFAULT_TIMEOUT` seconds, or
``$GRAPH_META_NEO4J_TIMEOUT``): the driver's connection, acquisition, write and retry
timeouts are set from it, each statement carries it as its server-side transaction timeout,
and each call runs in a worker thread that is waited for at most that long, so a server that
freezes (the Python driver has no read timeout of its own) or dies mid-query gives a
:class:`Neo4jUnavailable` error naming the server and the operation within the bound. Long
operations are cut into bounded calls: writes in batches, deletes in batches, reads of whole
node or edge sets streamed with one bound per fetched chunk. After a timeout the store
reconnects on its next call.

Credentials come from arguments or ``NEO4J_URI``, ``NEO4J_USER``, ``NEO4J_PASSWORD``; the
password is never logged or included in an error. A URI holding credentials
(``bolt://user:pw@host``) is refused, shown with them masked; the driver's errors are passed on
as :class:`~graph_meta.errors.GraphMetaError` with the password masked.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from graph_meta.errors import GraphMetaError
from graph_meta.graph.build import EdgeBatch, NodeBatch
from graph_meta.schema import CATEGORY, ITEM, USER, DatasetSpec, EdgeType, GraphSchema
from graph_meta.store.base import (
    Candidate,
    Direction,
    GraphCounts,
    GraphStore,
    check_node_ids,
    edge_weight_property,
)
from graph_meta.store.bolt import (
    DEFAULT_TIMEOUT,
    TIMEOUT_ENV,
    Bolt,
    Neo4jUnavailable,
    check_uri,
    resolve_timeout,
)
from graph_meta.store.candidates import (
    CandidateConfig,
    PathRow,
    category_rows,
    check_rating,
    combine,
    is_number,
    select_seeds,
)

__all__ = ["DEFAULT_TIMEOUT", "TIMEOUT_ENV", "Neo4jGraphStore", "Neo4jUnavailable",
           "resolve_timeout"]

log = logging.getLogger("graph_meta.neo4j")

META_LABEL = "GraphMetaDataset"
POPULARITY = "gm_n_ratings"  # an item's RATED in-degree, kept current by the store
FORMAT = 2  # of the store's own names; 1 (no format stored): popularity in ``n_ratings``
DEFAULT_BATCH = 5000
DELETE_BATCH = 10_000  # relationships or nodes deleted per transaction


def _q(name: str) -> str:
    """Backtick-quote a schema-checked identifier."""
    return "`" + name.replace("`", "``") + "`"


def _clean(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Neo4jGraphStore(GraphStore):
    """A dataset's heterogeneous graph in a Neo4j 5 database.

    Args:
        uri, user, password: Bolt address and credentials (default: the ``NEO4J_*``
            environment variables).
        spec: the dataset's spec; when omitted, the spec stored in the database by an earlier
            ingest is used.
        database: the Neo4j database name.
        batch_size: rows per write transaction.
        timeout: seconds every call to the server may take (default
            ``$GRAPH_META_NEO4J_TIMEOUT``, else :data:`DEFAULT_TIMEOUT`); past it, or when the
            connection is lost, a call raises :class:`Neo4jUnavailable` naming the server
            and the operation.
        read_only: open without writing anything (no constraints, no spec): the database
            must already hold the dataset from an earlier ingest (GraphMetaError otherwise).
            The workers of a distributed training run open the store so, each reading the
            same snapshot while none writes.
    """

    def __init__(
        self,
        spec: DatasetSpec | None = None,
        *,
        uri: str | None = None,
        user: str | None = None,
        password: str | None = None,
        database: str = "neo4j",
        batch_size: int = DEFAULT_BATCH,
        timeout: float | None = None,
        read_only: bool = False,
    ) -> None:
        uri = uri or os.environ.get("NEO4J_URI")
        user = user or os.environ.get("NEO4J_USER", "neo4j")
        password = password if password is not None else os.environ.get("NEO4J_PASSWORD")
        if not uri:
            raise GraphMetaError("no Neo4j URI: pass --neo4j-uri or set NEO4J_URI")
        if password is None:
            raise GraphMetaError("no Neo4j password: set NEO4J_PASSWORD")
        uri = check_uri(uri)
        self.uri = uri
        self.database = database
        self.batch_size = batch_size
        self.timeout = resolve_timeout(timeout)
        self.read_only = read_only
        self._bolt = Bolt(uri, user, password, database, self.timeout)
        try:
            self._open(spec)
        except BaseException:
            self._bolt.close()
            raise

    def _open(self, spec: DatasetSpec | None) -> None:
        uri = self.uri
        try:
            self._bolt.call("connecting", lambda d: d.verify_connectivity())
        except Neo4jUnavailable as exc:
            raise Neo4jUnavailable(str(exc).replace(": connection lost while connecting:",
                                                    " is unreachable:", 1)) from None
        stored, stored_format = self._stored_spec()
        if stored is not None and stored_format != FORMAT:
            raise GraphMetaError(
                f"the Neo4j database at {uri} was written by an older graph-meta (store format "
                f"{stored_format}, this one reads {FORMAT}: the store's own properties were "
                "renamed out of the columns' reach); re-ingest it with `graph-meta ingest "
                "DATASET --store neo4j --wipe`")
        if spec is None:
            if stored is None:
                raise GraphMetaError(f"the Neo4j database at {uri} holds no graph-meta dataset;"
                                     " run `graph-meta ingest DATASET --store neo4j` first")
            spec = stored
        elif stored is not None and stored.name != spec.name:
            raise GraphMetaError(
                f"the Neo4j database at {uri} holds dataset {stored.name!r}, not {spec.name!r};"
                " clear it first (Neo4jGraphStore.wipe, or graph-meta ingest --wipe)")
        if self.read_only and stored is None:
            raise GraphMetaError(f"the Neo4j database at {uri} holds no graph-meta dataset to "
                                 "read; run `graph-meta ingest DATASET --store neo4j` first")
        self.spec = spec
        self.schema = GraphSchema.from_spec(spec)
        if not self.read_only:
            self._ensure_schema()

    # --- plumbing: every call bounded (module docstring) ------------------------------------

    def _read(self, query: str, *, what: str = "reading the graph", **params: Any
              ) -> list[Any]:
        return self._bolt.query(what, query, params, read=True)

    def _write(self, query: str, *, what: str = "writing the graph", **params: Any
               ) -> list[Any]:
        return self._bolt.query(what, query, params)

    def _stream(self, query: str, *, what: str, **params: Any) -> Iterator[Any]:
        return self._bolt.stream(what, query, params)

    def _write_batches(self, query: str, rows: list[dict[str, Any]],
                       weight: Any = None, what: str = "writing the graph") -> int:
        """Run ``query`` over ``rows`` in managed write transactions of ``batch_size`` rows
        (or of rows weighing ``batch_size`` in all), each a bounded call; returns the sum of
        the counts returned."""
        total = 0
        chunk: list[dict[str, Any]] = []
        size = 0
        for k, row in enumerate(rows):
            chunk.append(row)
            size += weight(row) if weight else 1
            if size >= self.batch_size or k == len(rows) - 1:
                total += self._write(query, what=what, rows=chunk)[0][0]
                chunk, size = [], 0
        return total

    def _delete_batches(self, match: str, var: str, what: str) -> int:
        """``MATCH <match> ... DELETE`` (``DETACH DELETE`` of nodes) in transactions of
        :data:`DELETE_BATCH` until nothing matches; returns how many went."""
        verb = "DETACH DELETE" if var == "n" else "DELETE"
        total = 0
        while True:
            n = self._write(f"MATCH {match} WITH {var} LIMIT $n {verb} {var} RETURN count(*)",
                            what=what, n=DELETE_BATCH)[0][0]
            total += n
            if n < DELETE_BATCH:
                return total

    def _stored_spec(self) -> tuple[DatasetSpec | None, int | None]:
        """The spec an earlier ingest stored, and the store format it was written in."""
        rec = self._read(f"MATCH (m:{META_LABEL} {{key: 'dataset'}}) "
                         "RETURN m.spec AS spec, coalesce(m.format, 1) AS format",
                         what="reading the stored dataset spec")
        if not rec:
            return None, None
        return (DatasetSpec.from_json(json.loads(rec[0]["spec"]), source=f"{self.uri} (stored)"),
                rec[0]["format"])

    def _ensure_schema(self) -> None:
        what = "creating the constraints"
        self._write(f"CREATE CONSTRAINT gm_meta_key IF NOT EXISTS FOR (m:{META_LABEL}) "
                    "REQUIRE m.key IS UNIQUE", what=what)
        for label in self.schema.node_types:
            name = f"gm_{label.lower()}_id"
            self._write(f"CREATE CONSTRAINT {_q(name)} IF NOT EXISTS "
                        f"FOR (n:{_q(label)}) REQUIRE n.id IS UNIQUE", what=what)
        self._write(f"MERGE (m:{META_LABEL} {{key: 'dataset'}}) SET m.spec = $spec, "
                    "m.name = $name, m.format = $format", what="storing the dataset spec",
                    spec=json.dumps(self.spec.to_json()), name=self.spec.name, format=FORMAT)
        # in seconds, inside the call's own bound
        self._write("CALL db.awaitIndexes($t)", what="waiting for the indexes",
                    t=max(1, int(self.timeout) - 1))

    @staticmethod
    def wipe(*, uri: str | None = None, user: str | None = None, password: str | None = None,
             database: str = "neo4j", timeout: float | None = None) -> None:
        """Delete every node, relationship and graph-meta constraint of a database (in
        bounded transactions of :data:`DELETE_BATCH`, relationships first)."""
        uri = uri or os.environ.get("NEO4J_URI")
        user = user or os.environ.get("NEO4J_USER", "neo4j")
        password = password if password is not None else os.environ.get("NEO4J_PASSWORD")
        if not uri or password is None:
            raise GraphMetaError("set NEO4J_URI and NEO4J_PASSWORD")
        uri = check_uri(uri)
        bolt = Bolt(uri, user, password, database, resolve_timeout(timeout))
        try:
            what = "wiping the database"
            for match, var in (("()-[r]->()", "r"), ("(n)", "n")):
                while True:
                    verb = "DETACH DELETE" if var == "n" else "DELETE"
                    n = bolt.query(what, f"MATCH {match} WITH {var} LIMIT $n {verb} {var} "
                                   "RETURN count(*)", {"n": DELETE_BATCH})[0][0]
                    if n < DELETE_BATCH:
                        break
            for r in bolt.query(what, "SHOW CONSTRAINTS YIELD name", {}):
                if r["name"].startswith("gm_"):
                    bolt.query(what, f"DROP CONSTRAINT {_q(r['name'])} IF EXISTS", {})
        finally:
            bolt.close()

    def close(self) -> None:
        self._bolt.close()

    # --- writing -------------------------------------------------------------------------

    def upsert_nodes(self, batch: NodeBatch) -> None:
        label = _q(self.schema.check_label(batch.node_type))
        check_node_ids(batch)
        table = (self.spec.users if batch.node_type == USER
                 else self.spec.items if batch.node_type == ITEM else None)
        unknown = set(batch.properties) - set(table.columns if table else ())
        if unknown:  # as the embedded store: only the spec's columns become properties
            raise ValueError(f"unknown properties {sorted(unknown)}")
        names = list(batch.properties)
        columns = [batch.properties[n] for n in names]
        rows = [{"id": str(i), "p": {n: _clean(col[k]) for n, col in zip(names, columns,
                                                                          strict=True)}}
                for k, i in enumerate(batch.ids)]
        self._write_batches(
            f"UNWIND $rows AS row MERGE (n:{label} {{id: row.id}}) SET n += row.p "
            "RETURN count(*)", rows, what=f"writing {batch.node_type} nodes")

    def upsert_edges(self, batch: EdgeBatch) -> None:
        et = self.schema.check_edge(batch.edge_type)
        if len(batch) == 0:
            return
        src = np.asarray(batch.src, dtype=object).astype(str)
        dst = np.asarray(batch.dst, dtype=object).astype(str)
        key = pd.DataFrame({"s": src, "d": dst})
        keep = ~key.duplicated(keep="last").to_numpy()
        names = list(batch.properties)
        columns = [np.asarray(batch.properties[n])[keep] for n in names]
        src, dst = src[keep], dst[keep]
        # One row per source node with its edges: the source is looked up once per batch,
        # which halves the time of a RATED ingest.
        order = np.argsort(src, kind="stable")
        rows: list[dict[str, Any]] = []
        for k in order:
            edge = {"d": dst[k], "p": {n: _clean(c[k]) for n, c in zip(names, columns,
                                                                       strict=True)}}
            if rows and rows[-1]["s"] == src[k]:
                rows[-1]["e"].append(edge)
            else:
                rows.append({"s": src[k], "e": [edge]})
        query = (f"UNWIND $rows AS row MATCH (a:{_q(et.src)} {{id: row.s}}) "
                 f"UNWIND row.e AS e MATCH (b:{_q(et.dst)} {{id: e.d}}) "
                 f"MERGE (a)-[r:{_q(et.rel)}]->(b) SET r += e.p RETURN count(r)")
        written = self._write_batches(query, rows, weight=lambda row: len(row["e"]),
                                      what=f"writing {et} edges")
        if written != len(src):
            missing = self._missing_ends(et, src, dst)
            raise KeyError(f"{et}: unknown id(s) {missing[:3]}")
        if et == self.schema.rated:
            self._update_popularity(sorted(set(dst.tolist())))
        elif et in self._category_edges:
            self._refresh_rankings(et, sorted(set(dst.tolist())))

    @property
    def _category_edges(self) -> list[EdgeType]:
        return [a.edge_type for a in self.schema.attribute_edges
                if a.owner == ITEM and a.edge_type.dst == CATEGORY]

    def _refresh_rankings(self, et: EdgeType, category_ids: list[str] | None) -> None:
        """Store each category's ranked item pools (see ``CandidateConfig.category_pool``).

        ``gm_top_<REL>``: the most rated items (ties by id); ``gm_cold_<REL>``: the unrated
        items by id; ``category_pool`` of each. Kept current on every RATED and category
        edge upsert, so candidate queries read two short lists instead of scanning.
        """
        top, cold = _q(f"gm_top_{et.rel}"), _q(f"gm_cold_{et.rel}")
        ids = ([str(c) for c in self.node_ids(CATEGORY)] if category_ids is None
               else category_ids)
        for start in range(0, len(ids), 500):  # bounded calls
            self._refresh_some_rankings(et, top, cold, ids[start:start + 500])

    def _refresh_some_rankings(self, et: EdgeType, top: str, cold: str, ids: list[str]) -> None:
        self._write(
            "UNWIND $ids AS cid MATCH (c:Category {id: cid}) CALL (c) { "
            f"  OPTIONAL MATCH (c)<-[:{_q(et.rel)}]-(j:Item) "
            f"  WITH j.id AS jid, coalesce(j.{POPULARITY}, 0) AS pop ORDER BY pop DESC, jid "
            "  WITH collect([jid, pop]) AS js "
            f"  SET c.{top} = [x IN js WHERE x[0] IS NOT NULL AND x[1] > 0 | x[0]][..$pool], "
            f"      c.{cold} = [x IN js WHERE x[0] IS NOT NULL AND x[1] = 0 | x[0]][..$pool] "
            "} RETURN count(*)", what="refreshing the category pools", ids=ids,
            pool=CandidateConfig.category_pool)

    def _update_popularity(self, item_ids: list[str] | None) -> None:
        """Keep ``Item.gm_n_ratings`` (the candidate queries' popularity) equal to the
        degree."""
        what = "updating the item popularity"
        if item_ids is None:
            rows = [{"id": str(i)} for i in self.node_ids(ITEM)]
            self._write_batches("UNWIND $rows AS row MATCH (i:Item {id: row.id}) "
                                f"SET i.{POPULARITY} = COUNT {{ (i)<-[:RATED]-(:User) }} "
                                "RETURN count(i)", rows, what=what)
            return
        rows = [{"id": i} for i in item_ids]
        self._write_batches("UNWIND $rows AS row MATCH (i:Item {id: row.id}) "
                            f"SET i.{POPULARITY} = COUNT {{ (i)<-[:RATED]-(:User) }} "
                            "RETURN count(i)", rows, what=what)
        for et in self._category_edges:
            cats = self._read(f"UNWIND $ids AS id MATCH (:Item {{id: id}})-[:{_q(et.rel)}]->"
                              "(c:Category) RETURN DISTINCT c.id AS c",
                              what="reading the categories of items", ids=item_ids)
            self._refresh_rankings(et, sorted(r["c"] for r in cats))

    def _missing_ends(self, et: EdgeType, src: np.ndarray, dst: np.ndarray) -> list[str]:
        out = []
        for label, ids in ((et.src, src), (et.dst, dst)):
            uniq = sorted(set(ids.tolist()))
            rec = self._read(f"UNWIND $ids AS id OPTIONAL MATCH (n:{_q(label)} {{id: id}}) "
                             "WITH id, n WHERE n IS NULL RETURN id", what="looking up edge ends",
                             ids=uniq)
            out += [f"{label} {r['id']!r}" for r in rec]
        return out

    def clear_edges(self, edge_type: EdgeType) -> None:
        et = self.schema.check_edge(edge_type)
        self._delete_batches(f"(:{_q(et.src)})-[r:{_q(et.rel)}]->(:{_q(et.dst)})", "r",
                             f"deleting {et} edges")
        if et == self.schema.rated:
            self._update_popularity(None)
            for cat_et in self._category_edges:
                self._refresh_rankings(cat_et, None)
        elif et in self._category_edges:
            self._refresh_rankings(et, None)

    # --- reading -------------------------------------------------------------------------

    def counts(self) -> GraphCounts:
        what = "counting nodes and edges"
        nodes = {nt: self._read(f"MATCH (n:{_q(nt)}) RETURN count(n) AS c", what=what)[0]["c"]
                 for nt in self.schema.node_types}
        edges = {et: self._read(f"MATCH {self._count_pattern(et)} RETURN count(r) AS c",
                                what=what)[0]["c"]
                 for et in self.schema.edge_types}
        return GraphCounts(nodes, edges)

    def _count_pattern(self, et: EdgeType) -> str:
        """A pattern of ``et``'s edges that Neo4j counts from its count store (one labelled
        end) when no other edge type shares the relationship type and that end."""
        rel = _q(et.rel)
        others = [e for e in self.schema.edge_types if e.rel == et.rel and e != et]
        if not any(e.src == et.src for e in others):
            return f"(:{_q(et.src)})-[r:{rel}]->()"
        if not any(e.dst == et.dst for e in others):
            return f"()-[r:{rel}]->(:{_q(et.dst)})"
        return f"(:{_q(et.src)})-[r:{rel}]->(:{_q(et.dst)})"

    def has_node(self, node_type: str, node_id: str) -> bool:
        label = _q(self.schema.check_label(node_type))
        return bool(self._read(f"MATCH (n:{label} {{id: $id}}) RETURN count(n) AS c",
                               what="looking up a node", id=str(node_id))[0]["c"])

    def node_ids(self, node_type: str) -> np.ndarray:
        label = _q(self.schema.check_label(node_type))
        ids = [r[0] for r in self._stream(f"MATCH (n:{label}) RETURN n.id AS id",
                                           what=f"reading {node_type} ids")]
        return np.sort(np.asarray(ids, dtype=object))

    def node_frame(self, node_type: str) -> pd.DataFrame:
        label = _q(self.schema.check_label(node_type))
        table = self.spec.users if node_type == USER else self.spec.items
        rec = list(self._stream(f"MATCH (n:{label}) RETURN n.id AS id, properties(n) AS p",
                                what=f"reading {node_type} properties"))
        ids = [r["id"] for r in rec]
        frame = pd.DataFrame(index=pd.Index(ids, dtype=object, name="id"))
        for col, cspec in table.columns.items():
            values = [r["p"].get(col) for r in rec]
            if cspec.type == "numeric":
                frame[col] = np.asarray([np.nan if v is None else v for v in values],
                                        dtype=np.float64)
            else:
                frame[col] = pd.Series(["" if v is None else str(v) for v in values],
                                       index=frame.index, dtype=object)
        return frame.sort_index()

    def iter_edges(self, edge_type: EdgeType, batch_size: int = 100_000) -> Iterator[EdgeBatch]:
        et = self.schema.check_edge(edge_type)
        props = _edge_properties(et)
        ret = ", ".join(f"r.{_q(p)} AS {_q(p)}" for p in props)
        query = (f"MATCH (a:{_q(et.src)})-[r:{_q(et.rel)}]->(b:{_q(et.dst)}) "
                 f"RETURN a.id AS s, b.id AS d" + (f", {ret}" if ret else ""))
        chunk: list[Any] = []
        for record in self._stream(query, what=f"reading {et} edges"):
            chunk.append(record.values())
            if len(chunk) >= batch_size:
                yield _edge_chunk(et, props, chunk)
                chunk = []
        if chunk:
            yield _edge_chunk(et, props, chunk)

    def neighbors(
        self,
        node_type: str,
        ids: Sequence[str],
        edge_type: EdgeType,
        direction: Direction,
        limit: int | None = None,
    ) -> list[tuple[str, str, float | None]]:
        et, here, there = self._neighbor_ends(node_type, edge_type, direction)
        arrow = (f"-[r:{_q(et.rel)}]->" if direction == "out" else f"<-[r:{_q(et.rel)}]-")
        wprop = edge_weight_property(et)
        weight = f"toFloat(r.{_q(wprop)})" if wprop else "0.0"
        query = (f"UNWIND $ids AS id MATCH (n:{_q(here)} {{id: id}}){arrow}(m:{_q(there)}) "
                 f"WITH n.id AS a, m.id AS b, {weight} AS w ORDER BY a, w DESC, b "
                 "WITH a, collect([b, w]) AS nb "
                 "UNWIND (CASE WHEN $limit IS NULL THEN nb ELSE nb[..$limit] END) AS x "
                 "RETURN a, x[0] AS b, x[1] AS w")
        rec = self._read(query, what="reading neighbours", ids=[str(i) for i in ids], limit=limit)
        out = [(r["a"], r["b"], (r["w"] if wprop else None)) for r in rec]
        out.sort(key=lambda t: (t[0], -(t[2] or 0.0), t[1]))
        return out

    # --- candidates ----------------------------------------------------------------------

    def candidates(
        self,
        *,
        user_id: str | None = None,
        rated: Sequence[tuple[str, float]] | None = None,
        k: int = 50,
        config: CandidateConfig | None = None,
    ) -> list[Candidate]:
        """One Cypher statement (one Bolt round trip) in the usual case: the user's ratings,
        the seeds, CO_LIKED links, seed categories, CO_ENGAGED links and the per-category
        item pools (``gm_top_*``/``gm_cold_*`` on Category nodes) come back together."""
        config = config or CandidateConfig()
        threshold = config.threshold(self.spec.rating_scale)
        given = {str(i): r for i, r in rated or ()}
        if user_id is None and not given:
            return self._popular(k, config)
        params = {"given": [[i, float(r) if is_number(r) else 0.0]
                            for i, r in given.items()],
                  "given_ids": list(given), "t": threshold, "max_seeds": config.max_seeds,
                  "cross_top": config.cross_top, "per": config.per_category,
                  "cold_n": config.cold_per_category}
        uid = None if user_id is None else str(user_id)
        what = "querying candidates"
        row = self._read(self._candidate_query(explicit_seeds=False), what=what, uid=uid,
                         **params)[0]
        if user_id is not None and not row["known"]:
            raise KeyError(f"unknown user {user_id!r}")
        missing = set(row["missing"])
        for item, r in (rated or ()):
            if str(item) in missing:
                raise KeyError(f"unknown item {item!r}")
            check_rating(item, r, self.spec.rating_scale)
        if row["n_rated"] == 0:
            return self._popular(k, config)
        # the best-rated items with every tie at the cut: enough to pick the seeds here
        seeds = select_seeds({i: float(r) for i, r in row["tops"]}, threshold,
                             config.max_seeds)
        if seeds != row["seeds"]:  # Cypher and Python ordered ties differently: pin the seeds
            row = self._read(self._candidate_query(explicit_seeds=True), what=what, uid=uid,
                             seeds=seeds, **params)[0]
        rows = [PathRow("collaborative", j, ((ITEM, seeds[si]), (ITEM, j)), w)
                for si, j, w in row["colik"]]
        for n, _ in enumerate(self._category_rels()):
            pairs, cl, members = row[f"pairs{n}"], row[f"cl{n}"], row[f"members{n}"]
            links = {c: [(c2, float(w)) for c2, w in lk] for c, lk in cl}
            rows += category_rows([(si, c) for si, c in pairs], seeds, links,
                                  {m: warm for m, warm, _ in members},
                                  {m: cold for m, _, cold in members}, config)
        return combine(rows, k, config)

    def _popular(self, k: int, config: CandidateConfig) -> list[Candidate]:
        rec = self._read(f"MATCH (i:Item) WITH i, coalesce(i.{POPULARITY}, 0) AS pop "
                         "ORDER BY pop DESC, i.id LIMIT $k RETURN i.id AS id, pop",
                         what="querying popular items", k=k)
        return combine([PathRow("popular", r["id"], ((ITEM, r["id"]),), float(r["pop"]))
                        for r in rec], k, config)

    def _category_rels(self) -> list[str]:
        return [a.edge_type.rel for a in self.schema.attribute_edges
                if a.owner == ITEM and a.edge_type.dst == CATEGORY]

    def _candidate_query(self, *, explicit_seeds: bool) -> str:
        """The candidate statement for this schema (built once per kind, then cached)."""
        cache = self.__dict__.setdefault("_candidate_queries", {})
        if explicit_seeds in cache:
            return cache[explicit_seeds]
        # the user's history (given pairs override it), ordered by rating then id; the seeds
        # are the best-rated liked items (all rated items if none is liked)
        seeds = ("$seeds" if explicit_seeds else
                 "[r IN base[..$max_seeds] | r[0]]")
        head = (
            "OPTIONAL MATCH (u:User {id: $uid}) "
            "CALL (u) { OPTIONAL MATCH (u)-[r:RATED]->(i:Item) "
            "  WHERE NOT i.id IN $given_ids "
            "  RETURN collect([i.id, toFloat(r.rating)]) AS hist } "
            "CALL () { UNWIND $given AS g MATCH (i:Item {id: g[0]}) "
            "  RETURN collect(g) AS found } "
            "WITH u IS NOT NULL AS known, [f IN found | f[0]] AS found_ids, "
            "  [h IN hist WHERE h[0] IS NOT NULL] + found AS rated "
            "CALL (rated) { UNWIND rated AS r WITH r ORDER BY r[1] DESC, r[0] "
            "  RETURN collect(r) AS ordered } "
            "WITH known, found_ids, rated, ordered, "
            "  [r IN ordered WHERE r[1] >= $t] AS liked "
            "WITH known, found_ids, rated, "
            "  CASE WHEN size(liked) > 0 THEN liked ELSE ordered END AS base "
            "WITH known, [g IN $given_ids WHERE NOT g IN found_ids] AS missing, "
            "  size(rated) AS n_rated, [r IN rated | r[0]] AS rated_ids, "
            "  [r IN base WHERE size(base) = 0 "
            "   OR r[1] >= base[CASE WHEN size(base) < $max_seeds THEN size(base) "
            "   ELSE $max_seeds END - 1][1]] AS tops, "
            f"  {seeds} AS seeds ")
        parts = [head,
                 "CALL (seeds, rated_ids) { "
                 "  UNWIND range(0, size(seeds) - 1) AS si "
                 "  MATCH (s:Item {id: seeds[si]})-[l:CO_LIKED]->(j:Item) "
                 "  WHERE NOT j.id IN rated_ids "
                 "  RETURN collect([si, j.id, toFloat(l.weight)]) AS colik } "]
        outs = ["known", "missing", "n_rated", "tops", "seeds", "colik"]
        links = ("MATCH (c)-[l:CO_ENGAGED]->(c2:Category) WHERE NOT c2 IN cats "
                 "WITH c2, toFloat(l.weight) AS w ORDER BY w DESC, c2.id LIMIT $cross_top "
                 "RETURN collect([c2.id, w]) AS links, collect(c2) AS lnodes"
                 if self.schema.co_engaged is not None else "RETURN [] AS links, [] AS lnodes")
        for n, has_rel in enumerate(self._category_rels()):
            rel = _q(self.schema.check_edge((ITEM, has_rel, CATEGORY)).rel)
            top, cold = _q(f"gm_top_{has_rel}"), _q(f"gm_cold_{has_rel}")
            parts.append(
                "CALL (seeds, rated_ids) { "
                "  UNWIND range(0, size(seeds) - 1) AS si "
                f"  MATCH (s:Item {{id: seeds[si]}})-[:{rel}]->(c:Category) "
                "  WITH collect([si, c.id]) AS pairs, collect(DISTINCT c) AS cats "
                "  CALL (cats) { UNWIND cats AS c "
                "    CALL (c, cats) { " + links + " } "
                "    RETURN collect([c.id, links]) AS cl, collect(lnodes) AS lnested } "
                "  CALL (cats, lnested, rated_ids) { "
                "    UNWIND cats + reduce(a = [], x IN lnested | a + x) AS m "
                "    WITH DISTINCT m "
                f"    RETURN collect([m.id, [x IN coalesce(m.{top}, []) "
                "      WHERE NOT x IN rated_ids][..$per], "
                f"      [x IN coalesce(m.{cold}, []) WHERE NOT x IN rated_ids][..$cold_n]]) "
                "      AS members } "
                f"  RETURN pairs AS pairs{n}, cl AS cl{n}, members AS members{n} }} ")
            outs += [f"pairs{n}", f"cl{n}", f"members{n}"]
        cache[explicit_seeds] = "".join(parts) + "RETURN " + ", ".join(outs)
        return cache[explicit_seeds]


def _edge_properties(et: EdgeType) -> list[str]:
    if et.rel == "RATED":
        return ["rating", "timestamp"]
    if et.rel in ("CO_ENGAGED", "CO_LIKED"):
        return ["weight", "users"]
    if edge_weight_property(et) == "weight":
        return ["weight"]
    return []


_PROP_DTYPES = {"rating": np.float32, "timestamp": np.int64, "weight": np.float32,
                "users": np.int64}


def _edge_chunk(et: EdgeType, props: list[str], rows: list[list[Any]]) -> EdgeBatch:
    cols = list(zip(*rows, strict=True))
    out = {}
    for k, p in enumerate(props):
        values = [0 if v is None else v for v in cols[2 + k]]
        out[p] = np.asarray(values, dtype=_PROP_DTYPES[p])
    return EdgeBatch(et, np.asarray(cols[0], dtype=object), np.asarray(cols[1], dtype=object),
                     out)
