"""recommend() and audience() on both stores: ranking, explaining paths that exist, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from graph_meta.config import Config
from graph_meta.dataset import Dataset
from graph_meta.model import GraphMetaRecommender
from graph_meta.recommend import audience, recommend
from graph_meta.schema import CATEGORY, ITEM, USER


@pytest.fixture(scope="module")
def model(catalog: Dataset) -> GraphMetaRecommender:
    torch.manual_seed(0)
    cfg = Config().replace(**{"model.dim": 8, "model.hidden": 16, "model.layers": 1,
                              "episodes.batch_users": 128, "train.epochs": 2,
                              "train.validate": False})
    return GraphMetaRecommender(cfg).fit(catalog)


def _new_user(catalog: Dataset) -> list[tuple[str, float]]:
    task = next(t for t in catalog.tasks["user_cold"] if len(t.support) >= 5)
    return [(str(i), float(r)) for i, r in task.support[:5]]


def _unrated_item(catalog: Dataset) -> str:
    rated = set(catalog.train["item_id"].astype(str))
    return next(str(i) for i in catalog.items.index if str(i) not in rated)


def _nodes(store, items: list[str]) -> list[tuple[str, str]]:
    """The attribute nodes (label, id) of items, through their HAS_* edges."""
    out = []
    for et in store.schema.edge_types:
        if et.src == ITEM and et.rel.startswith("HAS_") and items:
            out += [(et.dst, b) for _, b, _ in store.neighbors(ITEM, items, et, "out")]
    return out


def test_recommend_ranks_graph_candidates_by_the_adapted_model(store, model, catalog) -> None:
    rated = _new_user(catalog)
    recs = recommend(store, model, rated=rated, k=10, pool=60)
    assert len(recs) == 10
    assert not {i for i, _ in rated} & {r.item_id for r in recs}
    scores = [r.score for r in recs]
    assert scores == sorted(scores, reverse=True)
    pool = {c.item_id: c for c in store.candidates(rated=rated, k=60)}
    expected = model.predict("someone-new", rated, list(pool))
    assert scores[0] == pytest.approx(float(np.max(expected)))
    lo, hi = catalog.spec.rating_scale
    for r in recs:
        assert lo <= r.predicted <= hi
        assert (r.reason, r.path) == (pool[r.item_id].reason, pool[r.item_id].path)
        assert r.path[0][1] in {i for i, _ in rated} and r.path[-1] == (ITEM, r.item_id)

    cold = recommend(store, model, k=5)  # no support at all: popular items, model-ranked
    assert len(cold) == 5 and {r.reason for r in cold} == {"popular"}
    with pytest.raises(KeyError, match="no-such-item"):
        recommend(store, model, rated=[("no-such-item", 4.0)])
    numpy_rated = [(i, np.float32(r)) for i, r in rated]  # ratings straight from a frame
    assert recommend(store, model, rated=numpy_rated, k=10, pool=60) == recs
    with pytest.raises(ValueError, match="outside"):
        recommend(store, model, rated=[(rated[0][0], 9.0)])
    with pytest.raises(KeyError, match="no-such-user"):
        recommend(store, model, user_id="no-such-user")


def test_audience_of_a_new_item_with_paths_that_exist(store, model, catalog) -> None:
    item = _unrated_item(catalog)
    fans = audience(store, model, item, k=8)
    assert len(fans) == 8 and len({f.user_id for f in fans}) == 8
    all_scores = model.score_all_users(item)
    assert [f.score for f in fans] == sorted(all_scores, reverse=True)[:8]
    schema = store.schema
    explained = 0
    for fan in fans:
        if fan.reason == "taste":
            assert fan.path == ()
            continue
        explained += 1
        (u_label, user), (i_label, rated_item) = fan.path[:2]
        assert (u_label, user, i_label) == (USER, fan.user_id, ITEM)
        assert rated_item in {b for _, b, _ in store.neighbors(USER, [user], schema.rated, "out")}
        assert fan.path[-1] == (ITEM, item)
        ratings = {b: r for _, b, r in store.neighbors(USER, [user], schema.rated, "out")}
        liked = [i for i, r in ratings.items() if r >= 4.0]  # 75 % up the 1..5 scale
        if ratings[rated_item] < 4.0:  # a disliked item only when no liked one connects
            assert not set(_nodes(store, liked)) & set(_nodes(store, [item]))
        if fan.reason == "cross_category":
            (_, c_rated), (_, c_item) = fan.path[2], fan.path[3]
            assert c_item in {b for _, b, _ in store.neighbors(
                CATEGORY, [c_rated], schema.co_engaged, "out")}
            assert (CATEGORY, c_rated) in _nodes(store, [rated_item])
            assert (CATEGORY, c_item) in _nodes(store, [item])
        else:
            label, node = fan.path[2]
            assert fan.reason == f"same {label.lower()}"
            et = next(e for e in schema.edge_types if e.src == ITEM and e.dst == label)
            for end in (rated_item, item):
                assert node in {b for _, b, _ in store.neighbors(ITEM, [end], et, "out")}
    assert explained > 0

    warm = str(catalog.train["item_id"].value_counts().index[0])
    raters = {u for _, u, _ in store.neighbors(ITEM, [warm], schema.rated, "in")}
    assert not raters & {f.user_id for f in audience(store, model, warm, k=20)}
    with pytest.raises(KeyError, match="no-such-item"):
        audience(store, model, "no-such-item")
