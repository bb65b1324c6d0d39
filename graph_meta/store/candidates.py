"""Graph queries for candidates: which items to consider for a user, and why.

Both stores produce the same *path rows* and share :func:`combine`, so their answers are
identical. With ``R`` the user's rated items (from the store and/or given pairs) and
``t`` the like threshold, the seeds ``S`` are the ``max_seeds`` items of ``R`` with the
highest rating (ties by id) among those rated ``>= t`` (all of ``R`` if none is). Rows:

* ``collaborative``: seed ``s`` -[CO_LIKED]-> item ``j`` (not in ``R``): the items most often
  liked by the users who liked ``s`` (precomputed top links, NPMI weight); the row's value
  is the link weight;
* ``category``: seed ``s`` -> category ``c`` <- item ``j``: among the ``category_pool`` most
  rated items of ``c`` (at least one rating; ties by id), the first ``per_category`` not in
  ``R``;
* ``cross_category``: ``s`` -> ``c`` -[CO_ENGAGED]-> ``c'`` <- ``j``: the ``cross_top``
  strongest links of ``c`` to categories outside the seeds' own, then the ``per_category``
  most rated items of ``c'``; the row's value is the link weight;
* ``cold_item``: items with no rating yet in ``c`` (value 1) or ``c'`` (the link weight),
  among the first ``category_pool`` by id, the first ``cold_per_category`` not in ``R``:
  new products get exposure;
* ``popular``: with no rated item at all, the ``k`` most rated items.

A candidate's score sums ``weight[kind] * value`` over its rows (rows in sorted order, so
the float sum is the same everywhere); its reason is the kind contributing most, its path
the first row of that kind. At least ``cold_share * k`` slots go to cold items when any
exist.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, NamedTuple

import numpy as np

from graph_meta.graph.build import like_threshold
from graph_meta.schema import CATEGORY, ITEM, USER
from graph_meta.store.base import Candidate

if TYPE_CHECKING:
    from graph_meta.store.embedded import EmbeddedGraphStore

KINDS = ("collaborative", "category", "cross_category", "cold_item", "popular")
_KIND_RANK = {kind: rank for rank, kind in enumerate(KINDS)}
Path = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class CandidateConfig:
    """Fan-out limits and weights of the candidate query (see the module docstring)."""

    like_threshold: float | None = None
    max_seeds: int = 10
    category_pool: ClassVar[int] = 200
    per_category: int = 20
    cross_top: int = 3
    cross_per_category: int = 10
    cold_per_category: int = 5
    cold_share: float = 0.1
    w_collaborative: float = 1.0
    w_category: float = 0.2
    w_cross_category: float = 0.2
    w_cold_item: float = 0.2
    w_popular: float = 1.0

    def threshold(self, rating_scale: tuple[float, float]) -> float:
        if self.like_threshold is not None:
            return self.like_threshold
        return like_threshold(rating_scale)

    def weight(self, kind: str) -> float:
        return float(getattr(self, f"w_{kind}"))


class PathRow(NamedTuple):
    """One path from a seed to a candidate item."""

    kind: str
    item_id: str
    path: Path
    value: float


def is_number(value: object) -> bool:
    """A real number (Python or numpy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def check_rating(item: str, rating: object, scale: tuple[float, float]) -> float:
    """``rating`` as a float, or ValueError naming the value and the item when it is not a
    finite number or off the scale."""
    lo, hi = scale
    if not (is_number(rating) and math.isfinite(rating)):
        raise ValueError(f"rating {rating!r} for item {item!r} is not a finite number")
    if not lo <= rating <= hi:
        raise ValueError(f"rating {rating!r} for item {item!r} is outside [{lo:g}, {hi:g}]")
    return float(rating)


def select_seeds(rated: dict[str, float], threshold: float, max_seeds: int) -> list[str]:
    """The seeds: highest-rated items (ties by id), liked ones only when there are any."""
    ordered = sorted(rated.items(), key=lambda kv: (-kv[1], kv[0]))
    liked = [i for i, r in ordered if r >= threshold]
    return (liked or [i for i, _ in ordered])[:max_seeds]


def combine(rows: Iterable[PathRow], k: int, config: CandidateConfig) -> list[Candidate]:
    """Merge path rows into at most ``k`` scored, explained candidates."""
    by_item: dict[str, list[PathRow]] = {}
    for row in sorted(set(rows), key=lambda r: (_KIND_RANK[r.kind], r.path, r.value)):
        by_item.setdefault(row.item_id, []).append(row)
    scored: list[Candidate] = []
    cold: set[str] = set()
    for item, item_rows in by_item.items():
        contrib: dict[str, float] = {}
        for row in item_rows:
            contrib[row.kind] = contrib.get(row.kind, 0.0) + config.weight(row.kind) * row.value
        score = round(math.fsum(contrib.values()), 9)
        reason = max(contrib, key=lambda kind: (round(contrib[kind], 9), -_KIND_RANK[kind]))
        path = next(r.path for r in item_rows if r.kind == reason)
        scored.append(Candidate(item, score, reason, path))
        if any(r.kind == "cold_item" for r in item_rows):
            cold.add(item)
    scored.sort(key=lambda c: (-c.score, c.item_id))
    top = scored[:k]
    quota = min(math.ceil(config.cold_share * k), len(cold)) if k > 0 else 0
    missing = quota - sum(c.item_id in cold for c in top)
    if missing > 0:
        extra = [c for c in scored[k:] if c.item_id in cold][:missing]
        warm = [c for c in top if c.item_id not in cold]
        drop = {c.item_id for c in warm[len(warm) - len(extra):]}
        top = [c for c in top if c.item_id not in drop] + extra
        top.sort(key=lambda c: (-c.score, c.item_id))
    return top


def category_rows(
    pairs: Sequence[tuple[int, str]],
    seeds: Sequence[str],
    links: dict[str, list[tuple[str, float]]],
    warm_by: dict[str, list[str]],
    cold_by: dict[str, list[str]],
    config: CandidateConfig,
) -> list[PathRow]:
    """Category, cross-category and cold-item rows, shared by both stores.

    ``pairs`` are (seed rank, category) edges of the seeds; each category contributes once,
    through its best-ranked seed, with a value multiplied by how many seeds it has.
    ``warm_by``/``cold_by`` list each category's rated / unrated items in query order.
    """
    first: dict[str, int] = {}
    count: dict[str, int] = {}
    for rank, cat in pairs:
        first[cat] = min(first.get(cat, rank), rank)
        count[cat] = count.get(cat, 0) + 1
    rows: list[PathRow] = []
    for cat, rank in first.items():
        head = ((ITEM, seeds[rank]), (CATEGORY, cat))
        n = float(count[cat])
        rows += [PathRow("category", j, (*head, (ITEM, j)), n) for j in warm_by.get(cat, [])]
        rows += [PathRow("cold_item", j, (*head, (ITEM, j)), n) for j in cold_by.get(cat, [])]
        for cat2, w in links.get(cat, []):
            via = (*head, (CATEGORY, cat2))
            rows += [PathRow("cross_category", j, (*via, (ITEM, j)), n * w)
                     for j in warm_by.get(cat2, [])[: config.cross_per_category]]
            rows += [PathRow("cold_item", j, (*via, (ITEM, j)), n * w)
                     for j in cold_by.get(cat2, [])]
    return rows


def embedded_candidates(
    store: EmbeddedGraphStore,
    *,
    user_id: str | None = None,
    rated: Sequence[tuple[str, float]] | None = None,
    k: int = 50,
    config: CandidateConfig | None = None,
) -> list[Candidate]:
    """The candidate query on the embedded store (numpy over its CSR indexes)."""
    config = config or CandidateConfig()
    rated_map, threshold = _rated_map(store, user_id, rated, config)
    rated_set = set(rated_map)
    item_ids = np.asarray(store._nodes[ITEM].ids, dtype=object)
    rated_csr_in = store.csr(store.schema.rated, "in")
    popularity = np.diff(rated_csr_in.indptr)
    popularity = np.concatenate([popularity, np.zeros(len(item_ids) - len(popularity), np.int64)])
    if not rated_map:
        order = np.lexsort((item_ids.astype(str), -popularity))[:k]
        rows = [PathRow("popular", str(item_ids[j]), ((ITEM, str(item_ids[j])),),
                        float(popularity[j])) for j in order]
        return combine(rows, k, config)
    seeds = select_seeds(rated_map, threshold, config.max_seeds)
    seed_idx = store.node_index(ITEM, seeds)
    rows: list[PathRow] = []

    # collaborative: seed -[CO_LIKED]-> item
    co_liked = store.schema.co_liked
    pos, nbr, eid = store.csr(co_liked, "out").gather(seed_idx)
    weights = store._edges[co_liked].props["weight"].view[eid].astype(np.float64)
    for s, j, w in zip(pos.tolist(), item_ids[nbr].tolist(), weights.tolist(), strict=True):
        if j not in rated_set:
            rows.append(PathRow("collaborative", j, ((ITEM, seeds[s]), (ITEM, j)), w))

    # categories of the seeds, their CO_ENGAGED neighbors, and items in both
    has_cat = [a.edge_type for a in store.schema.attribute_edges
               if a.owner == ITEM and a.edge_type.dst == CATEGORY]
    cat_ids = [str(c) for c in store._nodes[CATEGORY].ids] if has_cat else []
    co_type = store.schema.co_engaged
    for et in has_cat:
        spos, cats, _ = store.csr(et, "out").gather(seed_idx)
        pairs = sorted({(s, cat_ids[c]) for s, c in zip(spos.tolist(), cats.tolist(),
                                                         strict=True)})
        own = {c for _, c in pairs}
        link_by: dict[str, list[tuple[str, float]]] = {}
        if co_type is not None and pairs:
            ucats = np.unique(store.node_index(CATEGORY, sorted(own)))
            lpos, c2, leid = store.csr(co_type, "out").gather(ucats)
            weights = store._edges[co_type].props["weight"].view[leid].astype(np.float64)
            for c, j, w in zip(ucats[lpos].tolist(), c2.tolist(), weights.tolist(),
                               strict=True):
                if cat_ids[j] not in own:
                    link_by.setdefault(cat_ids[c], []).append((cat_ids[j], w))
            for lst in link_by.values():
                lst.sort(key=lambda x: (-x[1], x[0]))
                del lst[config.cross_top:]
        warm_pool, cold_pool = _category_pools(store, et, popularity, item_ids,
                                               config.category_pool)
        warm_by: dict[str, list[str]] = {}
        cold_by: dict[str, list[str]] = {}
        for cat in own | {c2 for lst in link_by.values() for c2, _ in lst}:
            warm_by[cat] = [j for j in warm_pool.get(cat, ())
                            if j not in rated_set][: config.per_category]
            cold_by[cat] = [j for j in cold_pool.get(cat, ())
                            if j not in rated_set][: config.cold_per_category]
        rows += category_rows(pairs, seeds, link_by, warm_by, cold_by, config)
    return combine(rows, k, config)


def _category_pools(store: EmbeddedGraphStore, et, popularity: np.ndarray,
                    item_ids: np.ndarray, pool: int
                    ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Per category: its ``pool`` most rated items (rating count desc, id asc) and its first
    ``pool`` unrated items by id, the lists Neo4j keeps on Category nodes. Cached on the
    store until a rating or category edge changes (their CSR indexes are rebuilt then)."""
    rated_in, cat_in = store.csr(store.schema.rated, "in"), store.csr(et, "in")
    cache = store.__dict__.setdefault("_category_pool_cache", {})
    hit = cache.get(et)
    if hit is not None and hit[0] is rated_in and hit[1] is cat_in and hit[2] == len(item_ids):
        return hit[3], hit[4]
    cat_ids = [str(c) for c in store._nodes[CATEGORY].ids]
    counts = np.diff(cat_in.indptr)
    cpos, members, _ = cat_in.gather(np.arange(len(counts)))
    names = item_ids[members].astype(str)
    pop = popularity[members]
    order = np.lexsort((names, -pop, cpos))
    warm: dict[str, list[str]] = {}
    cold: dict[str, list[str]] = {}
    for c, name, p in zip(cpos[order].tolist(), names[order].tolist(), pop[order].tolist(),
                          strict=True):
        target = warm if p > 0 else cold
        lst = target.setdefault(cat_ids[c], [])
        if len(lst) < pool:
            lst.append(name)
    cache[et] = (rated_in, cat_in, len(item_ids), warm, cold)
    return warm, cold


def _rated_map(store, user_id: str | None, rated: Sequence[tuple[str, float]] | None,
               config: CandidateConfig) -> tuple[dict[str, float], float]:
    """The user's rated items (store history overridden by given pairs) and the threshold."""
    lo, hi = store.spec.rating_scale
    out: dict[str, float] = {}
    if user_id is not None:
        if not store.has_node(USER, user_id):
            raise KeyError(f"unknown user {user_id!r}")
        for _, item, r in store.neighbors(USER, [user_id], store.schema.rated, "out"):
            out[item] = float(r)
    for item, r in rated or ():
        if not store.has_node(ITEM, item):
            raise KeyError(f"unknown item {item!r}")
        out[str(item)] = check_rating(item, r, (lo, hi))
    return out, config.threshold(store.spec.rating_scale)
