"""Recommendations from a store and a trained model: top items for a user, a new item's audience.

:func:`recommend` asks the graph for candidates (:meth:`GraphStore.candidates`: collaborative,
category, cross-category and cold-item paths), scores them with the model adapted to the user
(an existing user's history and/or a new user's ``(item, rating)`` pairs) and keeps the best
``k``, each with the path that explains it.

:func:`audience` goes the other way for one item, typically a new one with no rating: the
model scores it for every known user (:meth:`GraphMetaRecommender.score_all_users`) and, for
each of the top ``k``, the graph says why: an item the user liked that shares a node with it
(same category, brand, director, ...), else one whose category is linked to the item's by
``CO_ENGAGED``.

Both work on either store (embedded or Neo4j) through the :class:`GraphStore` interface, and
with either kind of model: a rating model (:class:`~graph_meta.model.GraphMetaRecommender`:
``predicted`` is a rating on the dataset's scale) or an implicit one (one with ``score_items``,
e.g. :class:`~graph_meta.implicit.GraphMetaImplicit`: the user gives ``positives``, item ids
they took, instead of ratings, and ``predicted`` is None: ``score`` is the item's relevance, a
ranking score with no scale).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from graph_meta.errors import UnknownItemError
from graph_meta.graph.build import like_threshold
from graph_meta.schema import CATEGORY, ITEM, USER, EdgeType
from graph_meta.store.base import GraphStore

__all__ = ["AudienceMember", "Recommendation", "audience", "is_implicit_model",
           "recommend"]

#: The id the model sees for a user who is not in the training data.
NEW_USER = "graph-meta:new-user"

Path = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Recommendation:
    """An item for a user: the model's predicted rating (clipped to the scale; None for an
    implicit model, which predicts no rating), the raw score it was ranked by (an implicit
    model's relevance), and the graph path that proposed it."""

    item_id: str
    predicted: float | None
    score: float
    reason: str
    path: Path


@dataclass(frozen=True)
class AudienceMember:
    """A user an item would be recommended to, with the path that connects them
    (``predicted``, ``score``: as :class:`Recommendation`'s)."""

    user_id: str
    predicted: float | None
    score: float
    reason: str
    path: Path


def is_implicit_model(model: Any) -> bool:
    """Whether ``model`` ranks implicit feedback (it has ``score_items``: positives in,
    relevance out) rather than predicting ratings."""
    return callable(getattr(model, "score_items", None))


def _unknown_item(model: Any, item: str) -> UnknownItemError:
    return UnknownItemError(item, hint=getattr(model, "unknown_item_hint", None))


def recommend(store: GraphStore, model: Any, *, user_id: str | None = None,
              rated: Sequence[tuple[str, float]] = (), positives: Sequence[str] = (),
              k: int = 10, pool: int = 200) -> list[Recommendation]:
    """Top ``k`` of ``pool`` graph candidates for a user, ranked by the adapted model.

    ``user_id`` is an existing user (their history is used), ``rated`` a new user's ratings
    (or extra ratings of an existing one) for a rating model, ``positives`` the items a new
    user took (viewed, bought, ...) for an implicit model (:func:`is_implicit_model`; each
    seeds the graph's candidates as a top-of-scale rating would); with neither, the pure cold
    case: popular items ranked by the model's prior. Raises ``KeyError`` for an unknown user
    or item (an item the model lacks: :class:`~graph_meta.errors.UnknownItemError`) and
    ``ValueError`` for a rating that is not a finite number or off the dataset's scale, for
    ``rated`` given to an implicit model or ``positives`` to a rating model. Candidates the
    model cannot score (products added to the graph after training and not to the model)
    are left out.
    """
    if k < 1 or pool < 1:
        raise ValueError(f"k and pool must be >= 1, got k={k}, pool={pool}")
    implicit = is_implicit_model(model)
    if implicit and rated:
        raise ValueError("rated: an implicit model takes no ratings; give the items the user "
                         "took as positives")
    if not implicit and positives:
        raise ValueError("positives: a rating model needs ratings; give (item, rating) pairs "
                         "as rated")
    took = [str(i) for i in positives]
    top_rating = store.spec.rating_scale[1]
    pairs = [(i, top_rating) for i in took] if implicit else [(str(i), r) for i, r in rated]
    known = getattr(model, "item_pos", None)  # the model's catalogue, where it has one
    if known is not None:
        for item, _ in pairs:
            if item not in known:
                raise _unknown_item(model, item)
    found = store.candidates(user_id=user_id, rated=pairs, k=max(pool, k))
    if known is not None:
        found = [c for c in found if c.item_id in known]
    if not found:
        raise ValueError("the graph proposes no candidates for this user")
    ids = [c.item_id for c in found]
    if implicit:
        raw = np.asarray(model.score_items(user_id or NEW_USER, took, ids), dtype=np.float64)
    else:
        raw = np.asarray(model.predict(user_id or NEW_USER, pairs, ids), dtype=np.float64)
    order = np.argsort(-raw, kind="stable")[:k]
    return [Recommendation(found[i].item_id, _predicted(store, raw[i], implicit),
                           float(raw[i]), found[i].reason, found[i].path) for i in order]


def _predicted(store: GraphStore, raw: float, implicit: bool) -> float | None:
    """A rating model's raw prediction clipped to the scale; None for an implicit model."""
    if implicit:
        return None
    lo, hi = store.spec.rating_scale
    return float(np.clip(raw, lo, hi))


def audience(store: GraphStore, model: Any, item_id: str, *, k: int = 10
             ) -> list[AudienceMember]:
    """The ``k`` users the model rates ``item_id`` highest for (an implicit model: finds it
    most relevant for), each with an explaining path; users who already rated or took it are
    left out.

    The path starts at an item the user liked (rated at or above the like threshold, 75 % of
    the scale, which every implicit positive is; a lower-rated one only when no liked item
    connects) and runs
    ``User -> rated Item -> shared node -> item`` (reason ``same <label>``; the most specific
    shared node, i.e. the one with the fewest items, then the highest rating), or
    ``User -> rated Item -> Category -[CO_ENGAGED]-> Category -> item`` (``cross_category``,
    strongest link first), or is empty when the user's ratings do not reach the item that way
    (``taste``: the model's latent factors alone).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    item_id = str(item_id)
    if not store.has_node(ITEM, item_id):
        raise KeyError(f"unknown item {item_id!r}")
    raw = np.asarray(model.score_all_users(item_id), dtype=np.float64)
    users = list(model.user_ids)
    already = {u for _, u, _ in store.neighbors(ITEM, [item_id], store.schema.rated, "in")}
    implicit = is_implicit_model(model)
    top: list[tuple[str, float]] = []
    for i in np.argsort(-raw, kind="stable"):
        if users[i] not in already:
            top.append((users[i], float(raw[i])))
            if len(top) == k:
                break
    paths = _audience_paths(store, item_id, [u for u, _ in top])
    return [AudienceMember(u, _predicted(store, s, implicit), s, *paths[u]) for u, s in top]


def _attribute_types(store: GraphStore) -> list[EdgeType]:
    return [et for et in store.schema.edge_types
            if et.src == ITEM and et.rel.startswith("HAS_")]


def _audience_paths(store: GraphStore, item_id: str, users: list[str]
                    ) -> dict[str, tuple[str, Path]]:
    schema = store.schema
    attr_types = _attribute_types(store)
    liked_at = like_threshold(store.spec.rating_scale)
    target: dict[tuple[str, str], int] = {}  # (label, node) -> items sharing it
    for et in attr_types:
        nodes = [n for _, n, _ in store.neighbors(ITEM, [item_id], et, "out")]
        sharing: dict[str, int] = {}
        for node, _, _ in (store.neighbors(et.dst, nodes, et, "in") if nodes else []):
            sharing[node] = sharing.get(node, 0) + 1
        for node in nodes:
            target[(et.dst, node)] = sharing.get(node, 1)
    linked: dict[str, tuple[str, float]] = {}  # other -[CO_ENGAGED]-> item's category, weight
    co = schema.co_engaged
    item_categories = sorted(n for (label, n) in target if label == CATEGORY)
    if co is not None and item_categories:
        for c, other, w in store.neighbors(CATEGORY, item_categories, co, "in"):
            if other not in item_categories and (other not in linked
                                                 or (w or 0.0) > linked[other][1]):
                linked[other] = (c, float(w or 0.0))
    history = store.neighbors(USER, users, schema.rated, "out") if users else []
    rated_items = sorted({i for _, i, _ in history})
    item_nodes: dict[str, list[tuple[str, str]]] = {}
    for et in attr_types:
        for i, node, _ in (store.neighbors(ITEM, rated_items, et, "out") if rated_items
                           else []):
            item_nodes.setdefault(i, []).append((et.dst, node))
    by_user: dict[str, list[tuple[str, float]]] = {}
    for u, i, r in history:
        by_user.setdefault(u, []).append((i, float(r or 0.0)))
    out: dict[str, tuple[str, Path]] = {}
    for u in users:
        best: tuple[tuple[float, ...], str, Path] | None = None  # lowest key wins
        for i, r in by_user.get(u, []):
            for label, node in item_nodes.get(i, []):
                disliked = float(r < liked_at)
                if (label, node) in target:
                    key = (disliked, 0.0, float(target[(label, node)]), -r)
                    path = ((USER, u), (ITEM, i), (label, node), (ITEM, item_id))
                    reason = f"same {label.lower()}"
                elif label == CATEGORY and node in linked:
                    c, w = linked[node]
                    key = (disliked, 1.0, -w, -r)
                    path = ((USER, u), (ITEM, i), (CATEGORY, node), (CATEGORY, c),
                            (ITEM, item_id))
                    reason = "cross_category"
                else:
                    continue
                if best is None or (key, path) < (best[0], best[2]):
                    best = (key, reason, path)
        out[u] = ("taste", ()) if best is None else (best[1], best[2])
    return out
