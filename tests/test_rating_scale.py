"""A dataset rated on another scale than 1 to 5 trains on 1 to 5 and answers on its own
(:mod:`graph_meta.rating_scale`): the same catalogue on [0, 100] gives the same model, its
predictions, observed ratings, explanations and saved copy on the [0, 100] scale."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from graph_meta.config import Config
from graph_meta.dataset import RATING, Dataset, Task
from graph_meta.eval.protocol import training_view
from graph_meta.fitting.graphs import build_graph
from graph_meta.model import GraphMetaRecommender
from graph_meta.rating_scale import INTERNAL_SCALE, RatingMap
from graph_meta.serving.explain import path_contributions

SLOPE, LOW = 25.0, 0.0  # stars 1..5 -> 0..100


def _hundred(r: float) -> float:
    return SLOPE * (r - 1.0) + LOW


def _on_hundred(dataset: Dataset) -> Dataset:
    train = dataset.train.copy()
    train[RATING] = _hundred(train[RATING].to_numpy(np.float64)).astype(np.float32)
    tasks = {s: [Task(t.user_id, [(i, _hundred(r)) for i, r in t.support],
                      [(i, _hundred(r)) for i, r in t.query]) for t in ts]
             for s, ts in dataset.tasks.items()}
    spec = dataclasses.replace(dataset.spec, rating_scale=(0.0, 100.0))
    return dataclasses.replace(dataset, train=train, tasks=tasks, spec=spec)


def _fit(dataset: Dataset) -> GraphMetaRecommender:
    torch.manual_seed(0)
    cfg = Config().replace(**{"model.dim": 4, "model.hidden": 8, "model.layers": 1,
                              "episodes.batch_users": 128, "train.epochs": 1,
                              "train.validate": False})
    return GraphMetaRecommender(cfg).fit(training_view(dataset))


@pytest.fixture(scope="module")
def pair(catalog: Dataset) -> tuple[GraphMetaRecommender, GraphMetaRecommender, Dataset]:
    hundred = _on_hundred(catalog)
    return _fit(catalog), _fit(hundred), hundred


def test_the_map_sends_the_scale_onto_stars_and_back() -> None:
    m = RatingMap.for_scale((0.0, 100.0))
    assert m.to_internal(np.array([0.0, 50.0, 100.0])).tolist() == [1.0, 3.0, 5.0]
    assert m.to_external(m.to_internal(37.5)) == pytest.approx(37.5)
    assert m.difference_to_external(0.04) == pytest.approx(1.0)
    for same in (RatingMap.for_scale(INTERNAL_SCALE), RatingMap.for_scale((0, 100), implicit=True),
                 RatingMap.for_scale((3, 3)), RatingMap.from_info(None)):
        assert same.identity
    assert RatingMap.for_scale((-10, 10)).to_internal(-10.0) == 1.0


def test_a_hundred_point_catalogue_predicts_what_stars_predict(pair, catalog) -> None:
    stars, hundred, data = pair
    assert stars.rating_map.identity and stars.fit_info["rating_scale"] == [1.0, 5.0]
    assert hundred.fit_info["rating_scale"] == [0.0, 100.0]
    assert hundred.fit_info["rating_map"] == pytest.approx([0.04, 1.0])
    for t_star, t_hundred in zip(catalog.tasks["user_cold"][:20], data.tasks["user_cold"][:20],
                                 strict=True):
        query = [i for i, _ in t_star.query]
        want = _hundred(stars.predict(t_star.user_id, t_star.support, query))
        got = hundred.predict(t_hundred.user_id, t_hundred.support, query)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    item = str(catalog.items.index[0])
    np.testing.assert_allclose(hundred.score_all_users(item),
                               _hundred(stars.score_all_users(item)), rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="outside"):  # the raw scale is what is checked
        hundred.predict(t_hundred.user_id, [(t_hundred.support[0][0], 120.0)], query)
    hundred.predict(t_hundred.user_id, [(t_hundred.support[0][0], 80.0)], query)


def test_observed_ratings_curves_and_explanations_are_on_the_datasets_scale(
        pair, catalog, tmp_path: Path) -> None:
    stars, hundred, data = pair
    task = catalog.tasks["user_cold"][0]
    user, (item, r), query = task.user_id, task.support[0], [i for i, _ in task.query]
    stars.observe([(user, item, r)])
    hundred.observe([(user, item, _hundred(r))])
    try:
        np.testing.assert_allclose(hundred.predict(user, [], query),
                                   _hundred(stars.predict(user, [], query)),
                                   rtol=1e-4, atol=1e-3)
        curve_s = stars.adaptation_curve(user, task.support, query)
        curve_h = hundred.adaptation_curve(user, [(i, _hundred(v)) for i, v in task.support],
                                           query)
        np.testing.assert_allclose(curve_h["query"], _hundred(curve_s["query"]), rtol=1e-4,
                                   atol=1e-3)
        graph = build_graph(training_view(catalog))
        parts_s = path_contributions(stars, graph, user, task.support, query[0])
        parts_h = path_contributions(hundred, graph, user,
                                     [(i, _hundred(v)) for i, v in task.support], query[0])
        assert parts_h["prediction"] == pytest.approx(_hundred(parts_s["prediction"]),
                                                      rel=1e-4, abs=1e-3)
        shares = [k for k in parts_s if k not in ("base", "prediction")]
        for k in shares:  # a share of the prediction scales with the scale's width
            assert parts_h[k] == pytest.approx(SLOPE * parts_s[k], rel=1e-3, abs=1e-3)
        assert parts_h["base"] + sum(parts_h[k] for k in shares) == pytest.approx(
            parts_h["prediction"])
    finally:
        stars.reset_observed()
        hundred.reset_observed()
    loaded = GraphMetaRecommender.load(hundred.save(tmp_path / "model.pt"))
    np.testing.assert_allclose(loaded.predict(user, data.tasks["user_cold"][0].support, query),
                               hundred.predict(user, data.tasks["user_cold"][0].support, query))


def _store(kind: str, data: Dataset, request: pytest.FixtureRequest):
    if kind == "embedded":
        from graph_meta.store.embedded import EmbeddedGraphStore

        return EmbeddedGraphStore.from_dataset(data)
    store = request.getfixturevalue("neo4j_store_factory")(data.spec)
    store.ingest(data)
    return store


@pytest.mark.parametrize("kind", ["embedded", "neo4j"])
def test_a_store_on_a_hundred_point_scale_trains_and_feeds_observe_store(
        pair, kind: str, request: pytest.FixtureRequest) -> None:
    """The store holds the dataset's own ratings: training on its snapshot and
    ``observe_store`` map them as ``fit`` and ``observe`` do, on both stores."""
    _, hundred, data = pair
    store = _store(kind, data, request)
    torch.manual_seed(0)
    on_store = GraphMetaRecommender(hundred.config).fit(training_view(data), store=store)
    assert on_store.fit_info["rating_map"] == hundred.fit_info["rating_map"]
    task = data.tasks["user_cold"][0]
    query = [i for i, _ in task.query]
    np.testing.assert_allclose(on_store.predict(task.user_id, task.support, query),
                               hundred.predict(task.user_id, task.support, query),
                               rtol=1e-4, atol=1e-3)
    assert on_store.observe_store(store) == 0  # every stored rating is a training one
    user, item = str(data.train["user_id"].iat[0]), str(data.items.index[-1])
    store.add_ratings([user], [item], [90.0])
    assert on_store.observe_store(store) == 1
    assert on_store.live_state.training_rating(user, str(data.train["item_id"].iat[0])) == \
        pytest.approx(hundred.rating_map.to_internal(float(data.train[RATING].iat[0])))


def test_a_store_that_differs_from_train_csv_is_named_on_the_datasets_scale(pair) -> None:
    from graph_meta.store.embedded import EmbeddedGraphStore

    _, hundred, data = pair
    store = EmbeddedGraphStore.from_dataset(data)
    user, item = str(data.train["user_id"].iat[0]), str(data.train["item_id"].iat[0])
    was = float(data.train[RATING].iat[0])
    now = 0.0 if was else 100.0
    store.add_ratings([user], [item], [now])
    with pytest.raises(ValueError, match=rf"store {now:g}, train\.csv {was:g}; re-ingest"):
        GraphMetaRecommender(hundred.config).fit(training_view(data), store=store)
