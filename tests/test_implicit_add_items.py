"""Products added after training join the implicit model's catalogue without retraining
(``GraphMetaImplicit.add_items``, ``graph-meta add-items`` on an implicit run): a new item
gets the state an item without training positives gets at fit time, and nothing else moves."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from graph_meta.dataset import Dataset
from graph_meta.errors import UnknownItemError
from graph_meta.implicit import GraphMetaImplicit
from graph_meta.implicit_baselines import ImplicitALS
from graph_meta.store.embedded import EmbeddedGraphStore
from loaders.folder import write_dataset
from loaders.synthetic_implicit import generate_implicit_catalog
from training.cli import main as cli
from training.implicit_cli import IMPLICIT_MODEL, load_run_model

#: no tuning (a fit is deterministic given the catalogue), but a popularity weight, a mix of
#: ridge map and graph prior and (set after the fit) a mixed-list offset, so that every part
#: of a new item's score is exercised
_SETTINGS = {"factors": 16, "quick": True, "tune": False, "backend": "numpy",
             "popularity_weight": 0.1, "graph_mix": 0.5}
_OFFSET = 0.05


@pytest.fixture(scope="module")
def shop() -> Dataset:
    return generate_implicit_catalog(n_users=400, n_items=150, n_interactions=6000,
                                     seed=3).dataset


@pytest.fixture(scope="module")
def split(shop: Dataset) -> tuple[Dataset, list[str]]:
    """``(the shop before half its items without positives arrived, those items)``."""
    taken = set(shop.train["item_id"].astype(str))
    ids = [str(i) for i in shop.items.index]
    new = [i for i in ids if i not in taken][::2]
    before = shop.items.loc[[i for i in ids if i not in new]]
    return dataclasses.replace(shop, items=before, tasks={}), new


def _fit(data: Dataset) -> GraphMetaImplicit:
    model = GraphMetaImplicit(**_SETTINGS).fit(data)
    model.mixed_offset = _OFFSET
    return model


@pytest.fixture(scope="module")
def trained(split: tuple[Dataset, list[str]]) -> GraphMetaImplicit:
    return _fit(split[0])


def _in_model_order(shop: Dataset, model: GraphMetaImplicit) -> Dataset:
    """The shop with items.csv in the model's order: its items, then the others."""
    ids = list(model.item_pos)
    rest = [str(i) for i in shop.items.index if str(i) not in model.item_pos]
    return dataclasses.replace(shop, items=shop.items.loc[ids + rest], tasks={})


def _built_with_the_same_factors(model: GraphMetaImplicit, data: Dataset) -> GraphMetaImplicit:
    """What fitting on ``data`` gives when the ALS ends at ``model``'s factors (an item
    without positives at 0): the fit's own ``_build`` over ``data``'s catalogue."""
    ref = GraphMetaImplicit(**_SETTINGS)
    for key in ("factors", "reg", "alpha", "alpha_item", "alpha_user"):
        setattr(ref, key, getattr(model, key))
    als = ImplicitALS(ref.factors, ref.reg, ref.alpha, alpha_item=ref.alpha_item,
                      alpha_user=ref.alpha_user, backend="numpy")
    als._prepare(data)
    n = len(als.data.item_ids)
    assert list(als.data.item_ids[:len(model.y_trained)]) == list(model.item_pos)
    als.x, als.gram = model.x, model.gram
    als.y_trained = np.vstack([model.y_trained,
                               np.zeros((n - len(model.y_trained), model.factors))])
    ref._build(data, als)
    ref.mixed_offset = _OFFSET
    return ref


def test_added_items_score_as_never_taken_items_of_the_fit_and_nothing_else_moves(
        trained: GraphMetaImplicit, split: tuple[Dataset, list[str]], shop: Dataset) -> None:
    new = split[1]
    assert len(new) >= 10 and not set(new) & set(trained.item_pos)
    model = copy.deepcopy(trained)
    old = list(model.item_pos)
    users = model.user_ids[::40]
    old_item = next(i for i in old if model.data.item_in_train[model.item_pos[i]])
    cold_item = next(i for i in old if not model.data.item_in_train[model.item_pos[i]])
    before = {u: model.score_all_items(u, []) for u in users}
    audiences = {i: model.score_all_users(i) for i in (old_item, cold_item)}
    with pytest.raises(UnknownItemError, match="add-items"):
        model.score_all_users(new[0])

    assert model.add_items(shop) == new
    assert list(model.item_pos) == old + new
    n_old = len(old)
    # nothing unrelated moved: the old items' factors, biases and scores, the users' states
    np.testing.assert_array_equal(model.y[:n_old], trained.y)
    np.testing.assert_array_equal(model.cold_bias[:n_old], trained.cold_bias)
    for u in users:
        np.testing.assert_array_equal(model.score_all_items(u, [])[:n_old], before[u])
    for item, scores in audiences.items():
        np.testing.assert_array_equal(model.score_all_users(item), scores)
    # a new item is ranked as an item without training positives (the new-item state)
    assert not model.data.item_in_train[n_old:].any()
    # ... with exactly the state the fit gives such an item when the catalogue held it
    ref = _built_with_the_same_factors(trained, _in_model_order(shop, trained))
    assert list(ref.item_pos) == list(model.item_pos)
    np.testing.assert_allclose(model.y[n_old:], ref.y[n_old:], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(model.cold_bias[n_old:], ref.cold_bias[n_old:], rtol=1e-12,
                               atol=1e-14)
    for u in users:
        got = model.score_items(u, ["i000"], new)
        np.testing.assert_allclose(got, ref.score_items(u, ["i000"], new), rtol=1e-10,
                                   atol=1e-12)
        assert np.ptp(got) > 1e-3  # not one constant state
    for item in new[:3]:
        np.testing.assert_allclose(model.score_all_users(item), ref.score_all_users(item),
                                   rtol=1e-10, atol=1e-12)
    # a full refit differs only by its ALS start (random factors for every catalogue item)
    refit = _fit(_in_model_order(shop, trained))
    for u in users[:3]:
        np.testing.assert_allclose(model.score_items(u, [], new),
                                   refit.score_items(u, [], new), atol=1e-3)
    # the same items again: nothing added, nothing moved
    y = model.y.copy()
    assert model.add_items(shop) == []
    assert list(model.item_pos) == old + new
    np.testing.assert_array_equal(model.y, y)
    assert model.params["items_added"] == len(new)


def test_added_items_survive_save_and_load(trained: GraphMetaImplicit, shop: Dataset,
                                           tmp_path: Path) -> None:
    model = copy.deepcopy(trained)
    new = model.add_items(shop)
    back = GraphMetaImplicit.load(model.save(tmp_path / "m.pkl"))
    assert list(back.item_pos) == list(model.item_pos)
    user = model.user_ids[0]
    np.testing.assert_array_equal(back.score_all_items(user, []),
                                  model.score_all_items(user, []))
    np.testing.assert_array_equal(back.score_all_users(new[0]), model.score_all_users(new[0]))
    assert back.add_items(shop) == []


def test_positives_on_an_added_item_count_once_it_joins(
        trained: GraphMetaImplicit, split: tuple[Dataset, list[str]], shop: Dataset) -> None:
    """A product taken before it was added to the model: ``observe`` refuses it and the
    graph's positives on it are skipped; once it is added they are observed, exactly as
    ``observe`` takes them (its factors and its takers' states move, nothing else)."""
    model = copy.deepcopy(trained)
    item = split[1][0]
    d = model.data
    takers = [str(u) for u in d.user_ids[d.user_in_train]][:5]
    with pytest.raises(UnknownItemError):
        model.observe([(takers[0], item)])
    store = EmbeddedGraphStore.from_dataset(shop)
    store.add_ratings(takers, [item] * len(takers), np.ones(len(takers)))
    assert model.observe_store(store) == 0  # not in the catalogue yet
    model.add_items(shop)
    unobserved = copy.deepcopy(model)
    assert model.observe_store(store) == len(takers)
    at = [model.user_ids.index(u) for u in takers]
    before, after = unobserved.score_all_users(item), model.score_all_users(item)
    p = model.item_pos[item]
    assert not np.allclose(model.y[p], unobserved.y[p])  # the item step over its takers
    assert not np.allclose(after, before)
    for u in takers:  # the takers' states took it in
        assert not np.allclose(model.user_factors(u, []), unobserved.user_factors(u, []))
    other = next(i for i in model.item_pos if model.data.item_in_train[model.item_pos[i]])
    rest = [k for k in range(len(model.user_ids)) if k not in at]
    np.testing.assert_array_equal(model.score_all_users(other)[rest],
                                  unobserved.score_all_users(other)[rest])
    unobserved.observe([(u, item) for u in takers])
    np.testing.assert_allclose(unobserved.score_all_users(item), after)


def test_add_items_errors_leave_the_model_as_it_was(
        trained: GraphMetaImplicit, split: tuple[Dataset, list[str]], shop: Dataset) -> None:
    model = copy.deepcopy(trained)
    gone = list(model.item_pos)[3]
    partial = dataclasses.replace(shop, items=shop.items.drop(index=gone))
    with pytest.raises(KeyError, match=f"item '{gone}' of the model is not in the dataset"):
        model.add_items(partial)
    assert list(model.item_pos) == list(trained.item_pos)  # nothing half-added
    assert model.y.shape == trained.y.shape and model.data.by_user.shape[1] == len(trained.y)
    with pytest.raises(RuntimeError, match="not fitted"):
        GraphMetaImplicit().add_items(shop)
    del model._cold
    with pytest.raises(RuntimeError, match="older version"):
        model.add_items(shop)


def test_cli_add_items_audience_recommend_and_evaluate_on_an_implicit_run(
        trained: GraphMetaImplicit, split: tuple[Dataset, list[str]], shop: Dataset,
        tmp_path: Path) -> None:
    new = split[1]
    folder = write_dataset(shop, tmp_path / "shop")
    run = tmp_path / "run"
    trained.save(run / IMPLICIT_MODEL)
    runner = CliRunner()
    fans = runner.invoke(cli, ["audience", str(folder), "--run", str(run), "--item", new[0],
                               "-k", "3", "--json"])
    assert fans.exit_code == 0, fans.output
    assert f"{len(new)} item(s) of {folder} are newer than the model; scored" in fans.output
    evaluated = runner.invoke(cli, ["evaluate", str(folder), "--run", str(run), "--out",
                                    str(tmp_path / "results.json")])
    assert evaluated.exit_code == 0, evaluated.output
    assert f"{len(new)} item(s) of {folder} are newer than the model; scored" in evaluated.output
    added = runner.invoke(cli, ["add-items", str(folder), "--run", str(run)])
    assert added.exit_code == 0, added.output
    assert f"added {len(new)} item(s)" in added.output
    assert list(load_run_model(run).item_pos)[-len(new):] == new
    assert not list(run.glob("*.tmp"))
    again = runner.invoke(cli, ["add-items", str(folder), "--run", str(run)])
    assert again.exit_code == 0 and "no new items" in again.output
    quiet = runner.invoke(cli, ["audience", str(folder), "--run", str(run), "--item", new[0],
                                "-k", "3", "--json"])
    assert quiet.exit_code == 0 and "newer than the model" not in quiet.output
    assert json.loads(quiet.output) == json.loads(fans.output[fans.output.index("["):])
    user = trained.user_ids[0]
    top = runner.invoke(cli, ["recommend", str(folder), "--run", str(run), "--user", user,
                              "-k", "5", "--json"])
    assert top.exit_code == 0 and "newer than the model" not in top.output, top.output
