"""From a :class:`~graph_meta.dataset.Dataset` to typed node and edge arrays.

:func:`graph_records` is the one place where tables become graph records; both stores
ingest what it yields, so they hold the same graph:

* ``User`` and ``Item`` nodes with their side-information properties;
* one node per distinct value of every node column (``Category``, ``Director``, ...);
* ``RATED`` edges from ``train.csv`` (one per (user, item): the last row wins);
* attribute edges ``HAS_<NODE>`` and the relation files' edges;
* ``CO_LIKED`` edges between items liked by the same users, from :func:`co_liked_batch`;
* ``CO_ENGAGED`` edges between categories, from :func:`co_engaged`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from graph_meta.dataset import ITEM_ID, RATING, TIMESTAMP, USER_ID, Dataset
from graph_meta.schema import CATEGORY, ITEM, USER, ColumnSpec, EdgeType, GraphSchema

DEFAULT_CO_ENGAGED_TOP_K = 10
DEFAULT_CO_ENGAGED_MIN_USERS = 5
DEFAULT_CO_LIKED_TOP_K = 20
DEFAULT_CO_LIKED_MIN_USERS = 10
DEFAULT_CO_LIKED_MAX_PER_USER = 200


@dataclass
class EdgeBatch:
    """Edges of one type as parallel arrays of string ids plus numeric properties."""

    edge_type: EdgeType
    src: np.ndarray
    dst: np.ndarray
    properties: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.src)


@dataclass
class NodeBatch:
    """Nodes of one type: ids, and for users/items their side-information properties."""

    node_type: str
    ids: np.ndarray
    properties: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


def split_multi(values: pd.Series, column: ColumnSpec) -> pd.Series:
    """Values of a node column as lists of non-empty, stripped strings."""
    s = values.fillna("").astype(str)
    if column.type == "multi":
        assert column.sep is not None
        return s.map(lambda v: [p.strip() for p in v.split(column.sep) if p.strip()])
    return s.map(lambda v: [v.strip()] if v.strip() else [])


def value_incidence(frame: pd.DataFrame, column, ids: pd.Index
                    ) -> tuple[sp.csr_matrix, list[str]]:
    """``(incidence, values)``: the owner x value incidence ``[len(ids), V]`` of one node
    column (rows in ``ids`` order, binary) and the value of each of its columns."""
    parts = split_multi(frame[column.name], column)
    owners = np.repeat(ids.get_indexer(parts.index.astype(str)),
                       parts.map(len).to_numpy())
    values = [v for p in parts for v in p]
    if not values:
        return sp.csr_matrix((len(ids), 0)), []
    codes, labels = pd.factorize(pd.Series(values, dtype=object))
    keep = owners >= 0
    m = sp.csr_matrix((np.ones(int(keep.sum())), (owners[keep], codes[keep])),
                      shape=(len(ids), len(labels)))
    m.data[:] = 1.0  # a value listed twice counts once
    return m, [str(v) for v in labels]


def attribute_edges(frame: pd.DataFrame, column: ColumnSpec, edge_type: EdgeType) -> EdgeBatch:
    """``HAS_<NODE>`` edges of one node column of ``users``/``items`` (index = owner id)."""
    parts = split_multi(frame[column.name], column)
    exploded = parts.explode().dropna()
    pairs = pd.DataFrame({"src": exploded.index.astype(str), "dst": exploded.to_numpy()})
    pairs = pairs.drop_duplicates()
    return EdgeBatch(edge_type, pairs["src"].to_numpy(dtype=object),
                     pairs["dst"].to_numpy(dtype=object))


def node_properties(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Side-information columns as arrays (numeric as float64, others as str)."""
    props = {}
    for col in frame.columns:
        values = frame[col]
        if values.dtype.kind == "f":
            props[col] = values.to_numpy(dtype=np.float64)
        else:
            props[col] = values.fillna("").astype(str).to_numpy(dtype=object)
    return props


def rated_edges(train: pd.DataFrame) -> EdgeBatch:
    """One ``RATED`` edge per (user, item) of ``train``; for duplicates the last row wins."""
    frame = train.drop_duplicates([USER_ID, ITEM_ID], keep="last")
    props = {RATING: frame[RATING].to_numpy(dtype=np.float32)}
    if TIMESTAMP in frame:
        props[TIMESTAMP] = frame[TIMESTAMP].to_numpy(dtype=np.int64)
    return EdgeBatch(
        EdgeType(USER, "RATED", ITEM),
        frame[USER_ID].astype(str).to_numpy(dtype=object),
        frame[ITEM_ID].astype(str).to_numpy(dtype=object),
        props,
    )


def npmi_top_k(
    engaged: sp.spmatrix,
    *,
    top_k: int,
    min_users: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r"""Strongest co-occurrence links between the columns of a binary user x thing matrix.

    With :math:`B \in \{0,1\}^{U \times C}`, :math:`n_{ab} = (B^\top B)_{ab}` and
    :math:`p = n / U` (``U`` counting users with at least one 1), the weight is the
    normalised PMI

    .. math:: w_{ab} = \log\frac{p_{ab}}{p_a p_b} \Big/ -\log p_{ab} \in (0, 1].

    Keeps, for each ``a``, the ``top_k`` columns ``b != a`` with :math:`n_{ab} \ge`
    ``min_users`` and :math:`w_{ab} > 0`, ties broken by the index of ``b``.

    Returns:
        ``(src, dst, weight, users)`` sorted by ``src`` then descending weight.
    """
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32),
             np.zeros(0, np.int64))
    engaged = sp.csc_matrix(engaged, dtype=np.float32)
    engaged.data[:] = 1.0
    active = np.asarray(engaged.sum(axis=1)).ravel() > 0
    n_users = int(active.sum())
    if n_users == 0 or engaged.shape[1] < 2:
        return empty
    co = (engaged.T @ engaged).tocoo()
    a, b, n_ab = co.row.astype(np.int64), co.col.astype(np.int64), co.data.astype(np.float64)
    n_a = np.asarray(engaged.sum(axis=0)).ravel().astype(np.float64)
    keep = (a != b) & (n_ab >= min_users)
    a, b, n_ab = a[keep], b[keep], n_ab[keep]
    p_ab = n_ab / n_users
    pmi = np.log(p_ab / ((n_a[a] / n_users) * (n_a[b] / n_users)))
    with np.errstate(divide="ignore", invalid="ignore"):
        npmi = np.where(p_ab < 1.0, pmi / -np.log(p_ab), 1.0)
    keep = npmi > 1e-9
    a, b, n_ab, npmi = a[keep], b[keep], n_ab[keep], npmi[keep]
    order = np.lexsort((b, -npmi, a))
    a, b, n_ab, npmi = a[order], b[order], n_ab[order], npmi[order]
    starts = np.r_[0, np.flatnonzero(a[1:] != a[:-1]) + 1]
    rank = np.arange(len(a)) - np.repeat(starts, np.diff(np.r_[starts, len(a)]))
    sel = rank < top_k
    return a[sel], b[sel], npmi[sel].astype(np.float32), n_ab[sel].astype(np.int64)


def co_engaged(
    user_index: np.ndarray,
    item_index: np.ndarray,
    item_category_item: np.ndarray,
    item_category_cat: np.ndarray,
    num_users: int,
    num_items: int,
    num_categories: int,
    *,
    top_k: int = DEFAULT_CO_ENGAGED_TOP_K,
    min_users: int = DEFAULT_CO_ENGAGED_MIN_USERS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cross-category links: :func:`npmi_top_k` over "the user rated an item of the category"."""
    if num_categories < 2 or len(user_index) == 0:
        return npmi_top_k(sp.csc_matrix((0, 0)), top_k=top_k, min_users=min_users)
    ratings = sp.csr_matrix(
        (np.ones(len(user_index), np.float32), (user_index, item_index)),
        shape=(num_users, num_items))
    item_cat = sp.csr_matrix(
        (np.ones(len(item_category_item), np.float32), (item_category_item, item_category_cat)),
        shape=(num_items, num_categories))
    return npmi_top_k(ratings @ item_cat, top_k=top_k, min_users=min_users)


def co_liked_batch(
    rated: EdgeBatch,
    threshold: float,
    *,
    top_k: int = DEFAULT_CO_LIKED_TOP_K,
    min_users: int = DEFAULT_CO_LIKED_MIN_USERS,
    max_per_user: int = DEFAULT_CO_LIKED_MAX_PER_USER,
) -> EdgeBatch:
    """``CO_LIKED`` item links: :func:`npmi_top_k` over "the user rated the item >= threshold".

    Each user counts with at most ``max_per_user`` liked items (highest rated, ties by item
    id), which bounds the cost of :math:`B^\top B` on heavy users.
    """
    rating = np.asarray(rated.properties["rating"], dtype=np.float64)
    liked = rating >= threshold
    users, u_idx = np.unique(rated.src[liked].astype(str), return_inverse=True)
    items, i_idx = np.unique(rated.dst[liked].astype(str), return_inverse=True)
    r = rating[liked]
    order = np.lexsort((i_idx, -r, u_idx))
    u_sorted = u_idx[order]
    starts = np.r_[0, np.flatnonzero(u_sorted[1:] != u_sorted[:-1]) + 1] if len(order) else (
        np.zeros(0, np.int64))
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    keep = order[rank < max_per_user]
    matrix = sp.csc_matrix((np.ones(len(keep), np.float32), (u_idx[keep], i_idx[keep])),
                           shape=(len(users), len(items)))
    src, dst, weight, n = npmi_top_k(matrix, top_k=top_k, min_users=min_users)
    return EdgeBatch(EdgeType(ITEM, "CO_LIKED", ITEM), items[src].astype(object),
                     items[dst].astype(object), {"weight": weight, "users": n})


def like_threshold(rating_scale: tuple[float, float]) -> float:
    """The rating from which an interaction counts as a like: 75 % up the scale."""
    lo, hi = rating_scale
    return lo + 0.75 * (hi - lo)


def co_engaged_batch(
    rated: EdgeBatch,
    item_categories: EdgeBatch,
    *,
    top_k: int = DEFAULT_CO_ENGAGED_TOP_K,
    min_users: int = DEFAULT_CO_ENGAGED_MIN_USERS,
) -> EdgeBatch:
    """:func:`co_engaged` over string-id edge batches; returns ``CO_ENGAGED`` edges."""
    users, u_idx = np.unique(rated.src.astype(str), return_inverse=True)
    items, i_idx = np.unique(np.concatenate([rated.dst, item_categories.src]).astype(str),
                             return_inverse=True)
    cats, c_idx = np.unique(item_categories.dst.astype(str), return_inverse=True)
    src, dst, weight, n = co_engaged(
        u_idx, i_idx[: len(rated)], i_idx[len(rated):], c_idx,
        len(users), len(items), len(cats), top_k=top_k, min_users=min_users)
    return EdgeBatch(
        EdgeType(CATEGORY, "CO_ENGAGED", CATEGORY),
        cats[src].astype(object), cats[dst].astype(object),
        {"weight": weight, "users": n},
    )


@dataclass
class GraphRecords:
    """All nodes and edges of a dataset's graph, ready to be ingested by a store."""

    schema: GraphSchema
    nodes: dict[str, NodeBatch]
    edges: dict[EdgeType, EdgeBatch]

    def iter_edges(self) -> Iterator[EdgeBatch]:
        yield from self.edges.values()


def graph_records(
    dataset: Dataset,
    *,
    co_engaged_top_k: int = DEFAULT_CO_ENGAGED_TOP_K,
    co_engaged_min_users: int = DEFAULT_CO_ENGAGED_MIN_USERS,
) -> GraphRecords:
    """Every node and edge of ``dataset``'s heterogeneous graph (training ratings only)."""
    schema = dataset.schema
    nodes: dict[str, NodeBatch] = {
        USER: NodeBatch(USER, dataset.users.index.astype(str).to_numpy(dtype=object),
                        node_properties(dataset.users)),
        ITEM: NodeBatch(ITEM, dataset.items.index.astype(str).to_numpy(dtype=object),
                        node_properties(dataset.items)),
    }
    edges: dict[EdgeType, EdgeBatch] = {}
    rated = rated_edges(dataset.train)
    edges[rated.edge_type] = rated
    attr_values: dict[str, list[np.ndarray]] = {}
    for attr in schema.attribute_edges:
        frame = dataset.users if attr.owner == USER else dataset.items
        column = (dataset.spec.users if attr.owner == USER else dataset.spec.items).columns[
            attr.column]
        batch = attribute_edges(frame, column, attr.edge_type)
        edges[attr.edge_type] = batch
        attr_values.setdefault(attr.edge_type.dst, []).append(batch.dst)
    for rel in schema.relations:
        frame = dataset.relations[rel.type]
        batch = EdgeBatch(rel.edge_type, frame["src"].astype(str).to_numpy(dtype=object),
                          frame["dst"].astype(str).to_numpy(dtype=object),
                          {"weight": frame["weight"].to_numpy(dtype=np.float32)})
        edges[rel.edge_type] = batch
        for end, node_type in (("src", rel.src), ("dst", rel.dst)):
            if node_type not in (USER, ITEM):
                attr_values.setdefault(node_type, []).append(getattr(batch, end))
    for node_type in schema.node_types:
        if node_type in (USER, ITEM):
            continue
        values = attr_values.get(node_type, [])
        ids = (pd.unique(np.concatenate(values)) if values else np.zeros(0, dtype=object))
        nodes[node_type] = NodeBatch(node_type, np.asarray(ids, dtype=object))
    edges[schema.co_liked] = co_liked_batch(rated, like_threshold(dataset.spec.rating_scale))
    co_type = schema.co_engaged
    if co_type is not None:
        item_cats = [edges[a.edge_type] for a in schema.attribute_edges
                     if a.owner == ITEM and a.edge_type.dst == CATEGORY]
        if item_cats:
            merged = EdgeBatch(item_cats[0].edge_type,
                               np.concatenate([b.src for b in item_cats]),
                               np.concatenate([b.dst for b in item_cats]))
            edges[co_type] = co_engaged_batch(rated, merged, top_k=co_engaged_top_k,
                                              min_users=co_engaged_min_users)
    return GraphRecords(schema, nodes, edges)
