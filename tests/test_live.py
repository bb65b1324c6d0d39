"""Ratings that arrive after training flow through the graph into predictions, without
retraining: the log, the closed-form updates, ``observe``/``observe_store``, the online replay
of PROTOCOL.md, both stores and ``graph-meta ingest-ratings``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from graph_meta import live_kernels
from graph_meta.baselines import BiasedMF, ItemMeanUserBias
from graph_meta.config import Config
from graph_meta.dataset import Dataset
from graph_meta.eval.protocol import evaluate, evaluate_online, replay_order, training_view
from graph_meta.live import LiveRatings, posterior_update
from graph_meta.model import GraphMetaRecommender
from graph_meta.serving.adapt import new_item_state
from training.cli import main as cli

_SMALL = {"model.dim": 8, "model.hidden": 16, "model.layers": 1, "train.epochs": 1,
          "train.validate": False, "episodes.batch_users": 128, "episodes.batch_items": 16}


@pytest.fixture(scope="module")
def trained(catalog: Dataset) -> GraphMetaRecommender:
    torch.manual_seed(0)
    return GraphMetaRecommender(Config().replace(**_SMALL)).fit(training_view(catalog))


@pytest.fixture
def model(trained: GraphMetaRecommender) -> GraphMetaRecommender:
    """The trained model, its observed ratings forgotten after each test."""
    trained.reset_observed()
    yield trained
    trained.reset_observed()


def _cold_items(catalog: Dataset) -> list[str]:
    rated = set(catalog.train["item_id"].astype(str))
    return [i for i in catalog.items.index.astype(str) if i not in rated]


def _warm_users(catalog: Dataset) -> list[str]:
    return sorted(set(catalog.train["user_id"].astype(str)))


def _new_ratings(catalog: Dataset) -> list[tuple[str, str, float]]:
    """Ratings of warm users on cold and warm items, and of a brand-new user."""
    cold, users = _cold_items(catalog), _warm_users(catalog)
    warm_items = sorted(set(catalog.train["item_id"].astype(str)))
    rng = np.random.default_rng(3)
    out = [(users[k], cold[k % 3], float(rng.integers(1, 6))) for k in range(12)]
    out += [(users[k], warm_items[k], float(rng.integers(1, 6))) for k in range(20, 26)]
    new_user = catalog.tasks["user_cold"][0].user_id
    out += [(str(new_user), cold[0], 5.0), (str(new_user), warm_items[3], 2.0)]
    return out


def test_the_log_keeps_one_rating_per_pair() -> None:
    log = LiveRatings()
    assert log.add([("u", "i", 4)]) == [("u", "i", 4.0)]
    assert log.add([("u", "i", 4.0)]) == []  # the same rating twice is one rating
    assert log.add([("u", "i", 2), ("v", "i", 5)]) == [("u", "i", 2.0), ("v", "i", 5.0)]
    assert log.user("u") == {"i": 2.0} and log.item("i") == {"u": 2.0, "v": 5.0}
    assert len(log) == 2 and sorted(log) == [("u", "i", 2.0), ("v", "i", 5.0)]
    for bad, message in ((("u", "i"),), "rating 0: expected"), ((("u", "i", "x"),),
                                                                "not a number"), (
            (("u", "", 3),), "empty user or item id"), ((("u", "i", float("nan")),),
                                                        "not finite"):
        with pytest.raises(ValueError, match=message):
            log.add(bad)
    assert len(log) == 2


def test_posterior_update_is_the_ridge_over_old_and_new_ratings() -> None:
    rng = np.random.default_rng(0)
    d = 5
    lam = np.diag(rng.uniform(1, 10, d))
    prior = rng.normal(size=d)
    old_x, old_t = rng.normal(size=(30, d)), rng.normal(size=30)
    new_x, new_t = rng.normal(size=(7, d)), rng.normal(size=7)

    def ridge(x: np.ndarray, t: np.ndarray) -> np.ndarray:
        return np.linalg.solve(x.T @ x + lam, x.T @ t + lam @ prior)

    theta_old = ridge(old_x, old_t)
    got = posterior_update(theta_old, lam + old_x.T @ old_x, new_x, new_t)
    np.testing.assert_allclose(got, ridge(np.vstack([old_x, new_x]), np.r_[old_t, new_t]),
                               atol=1e-10)
    np.testing.assert_allclose(posterior_update(prior, np.diag(lam), new_x[:0], new_t[:0]),
                               prior)


def test_a_new_rating_moves_that_item_for_other_users_and_nothing_unrelated(
        model: GraphMetaRecommender, catalog: Dataset) -> None:
    cold = _cold_items(catalog)
    users = _warm_users(catalog)
    item, reader, raters = cold[0], users[-1], users[:6]
    other = [i for i in model.item_ids if i != item][:40]
    states = model.cache["item_states"].copy()
    before = model.predict(reader, [], [item, *other])
    assert model.observe([(u, item, 5.0) for u in raters]) == len(raters)
    high = model.predict(reader, [], [item, *other])
    assert high[0] > before[0] + 0.05  # five-star ratings pull the cold item up for others
    np.testing.assert_array_equal(high[1:], before[1:])  # nothing unrelated moved
    moved = np.flatnonzero((model.cache["item_states"] != states).any(1))
    assert [model.item_ids[p] for p in moved] == [item]
    assert model.observe([(u, item, 5.0) for u in raters]) == 0  # idempotent
    np.testing.assert_array_equal(model.predict(reader, [], [item]), high[:1])
    assert model.observe([(u, item, 1.0) for u in raters]) == len(raters)  # replaces
    assert model.predict(reader, [], [item])[0] < high[0] - 0.1
    model.reset_observed()
    np.testing.assert_array_equal(model.predict(reader, [], [item, *other]), before)
    np.testing.assert_array_equal(model.cache["item_states"], states)


def test_a_users_observed_ratings_join_their_history(model: GraphMetaRecommender,
                                                     catalog: Dataset) -> None:
    task = catalog.tasks["user_cold"][0]
    query = [i for i, _ in task.query]
    blind = model.predict(task.user_id, [], query)
    model.observe([(task.user_id, i, r) for i, r in task.support])
    informed = model.predict(task.user_id, [], query)
    assert not np.allclose(informed, blind)
    # observed ratings act as history, the support as history plus inner steps: same direction
    model.reset_observed()
    with_support = model.predict(task.user_id, task.support, query)
    assert np.corrcoef(informed - blind, with_support - blind)[0, 1] > 0.5


def test_an_item_update_reads_each_rater_without_their_rating_of_it(
        model: GraphMetaRecommender, catalog: Dataset) -> None:
    """As in an item task, where the task item's ratings are hidden from every history its
    raters are folded in from: a new item's live state is the item-task path over raters
    whose states leave out their own rating of it."""
    ratings = _new_ratings(catalog)
    item = _cold_items(catalog)[0]
    pos = model.item_pos[item]
    model.observe(ratings)
    raters = model.live.item(item)
    y = np.fromiter(raters.values(), np.float64, len(raters))
    assert len(raters) >= 3 and str(catalog.tasks["user_cold"][0].user_id) in raters
    live = model.live_state
    without = live.rater_states_without(pos, list(raters), y)
    with_own = np.stack([live.rater_state(u) for u in raters])
    state = model.state.item_states[pos].copy()
    model.reset_observed()
    model.observe([r for r in ratings if r[1] != item])
    expected = np.stack([live.rater_state(u) for u in raters])
    np.testing.assert_allclose(without, expected, atol=1e-9)
    assert np.abs(with_own - expected).max() > 1e-3  # the new user's one rating weighs
    path = new_item_state(model.state, model.state.item_states[pos], expected, y,
                          shrink=model.config.meta.support_shrink,
                          precision=live.item_prior_precision(pos))
    np.testing.assert_allclose(state, path, atol=1e-9)


def test_raters_states_kept_per_item_grow_linearly_with_its_raters(
        model: GraphMetaRecommender, catalog: Dataset) -> None:
    """An item observed from n raters one at a time keeps n rater states of D numbers, not
    the n arrays of 1, 2, ..., n rows its n updates solved (the online replay of
    movielens-1m held 3 GB of those)."""
    item, users = _cold_items(catalog)[0], _warm_users(catalog)[:60]
    for k, user in enumerate(users):
        model.observe([(user, item, float(1 + k % 5))])
    pos, d_state = model.item_pos[item], model.state.item_states.shape[1]
    kept = [model.live_state._rater_fold(u)[3][pos] for u in users]
    held = {id(a if a.base is None else a.base): (a if a.base is None else a.base).nbytes
            for a in kept}
    assert sum(held.values()) == len(users) * d_state * 8


def test_observation_order_does_not_matter(model: GraphMetaRecommender,
                                           catalog: Dataset) -> None:
    ratings = _new_ratings(catalog)
    probe_users = [*_warm_users(catalog)[-3:], str(catalog.tasks["user_cold"][0].user_id)]
    probe_items = model.item_ids[:30] + _cold_items(catalog)[:3]
    for r in ratings:
        model.observe([r])
    one_by_one = [model.predict(u, [], probe_items) for u in probe_users]
    model.reset_observed()
    model.observe(list(reversed(ratings)))
    for u, expected in zip(probe_users, one_by_one, strict=True):
        np.testing.assert_allclose(model.predict(u, [], probe_items), expected, atol=1e-9)


def test_a_saved_model_plus_the_stores_ratings_predicts_like_the_live_model(
        model: GraphMetaRecommender, catalog: Dataset, store, tmp_path: Path) -> None:
    ratings = _new_ratings(catalog)
    path = model.save(tmp_path / "model.pt")
    observed = model.observe(ratings)  # less any pair that repeats its training rating
    assert 0 < observed <= len(ratings)
    users = [*_warm_users(catalog)[:4], str(catalog.tasks["user_cold"][0].user_id)]
    items = model.item_ids[:25] + _cold_items(catalog)[:3]
    live = [model.predict(u, [], items) for u in users]
    audience = model.score_all_users(_cold_items(catalog)[0])

    restarted = GraphMetaRecommender.load(path)
    assert restarted.observe_store(store) == 0  # the store holds the training ratings only
    store.add_ratings([u for u, _, _ in ratings], [i for _, i, _ in ratings],
                      [r for _, _, r in ratings])
    assert restarted.observe_store(store) == observed
    assert restarted.observe_store(store) == 0  # nothing new the second time
    for u, expected in zip(users, live, strict=True):
        np.testing.assert_allclose(restarted.predict(u, [], items), expected, atol=1e-6)
    np.testing.assert_allclose(restarted.score_all_users(_cold_items(catalog)[0]), audience,
                               atol=1e-6)


class _Spy:
    """Records what the replay hands over; predicts the global mean."""

    name = "spy"

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def fit(self, dataset: Dataset) -> _Spy:
        return self

    def predict(self, user_id: str, support: list, query_items: list) -> np.ndarray:
        self.calls.append(("predict", (user_id, list(support), list(query_items))))
        return np.full(len(query_items), 3.0)

    def observe(self, ratings: list) -> int:
        self.calls.append(("observe", list(ratings)))
        return len(ratings)


def test_the_replay_never_exposes_a_query_rating(catalog: Dataset) -> None:
    order = replay_order(catalog)
    assert sorted(order) == sorted((s, j) for s, ts in catalog.tasks.items()
                                   for j in range(len(ts)))
    assert order == replay_order(catalog)  # one fixed order
    spy = _Spy()
    res = evaluate_online(spy, catalog, fit=False)
    predicts = [c for c in spy.calls if c[0] == "predict"]
    assert len(predicts) == len(order)
    seen: set[tuple[str, str, float]] = set()
    calls = iter(spy.calls)
    for scenario, j in order:
        task = catalog.tasks[scenario][j]
        kind, (user, support, query) = next(calls)
        assert kind == "predict" and user == task.user_id
        assert support == [(str(i), float(r)) for i, r in task.support]
        assert query == [str(i) for i, _ in task.query]  # ids only
        if task.support:
            kind, observed = next(calls)
            assert kind == "observe"
            assert observed == [(task.user_id, str(i), float(r)) for i, r in task.support]
            seen.update(observed)
    query_pairs = {(t.user_id, str(i)) for ts in catalog.tasks.values() for t in ts
                   for i, _ in t.query}
    assert seen and not {(u, i) for u, i, _ in seen} & query_pairs
    assert res["observed"] == sum(len(t.support) for ts in catalog.tasks.values() for t in ts)
    assert res["online"] and set(res["scenarios"]) == set(catalog.tasks)


def test_online_replay_beats_offline_where_items_are_new(trained: GraphMetaRecommender,
                                                         catalog: Dataset) -> None:
    offline = evaluate(trained, catalog, fit=False)["scenarios"]
    online = evaluate_online(trained, catalog, fit=False)["scenarios"]
    for scenario in ("item_cold", "user_item_cold"):
        assert online[scenario]["rmse"] < offline[scenario]["rmse"] - 0.01, scenario
    # and the model leaves the replay as it came
    again = evaluate(trained, catalog, fit=False)["scenarios"]
    assert again["item_cold"]["rmse"] == offline["item_cold"]["rmse"]


@pytest.mark.parametrize("baseline", [ItemMeanUserBias, BiasedMF])
def test_baselines_read_the_new_ratings(baseline, catalog: Dataset) -> None:
    m = baseline().fit(training_view(catalog))
    offline = evaluate(m, catalog, fit=False)["scenarios"]["item_cold"]["rmse"]
    online = evaluate_online(m, catalog, fit=False)["scenarios"]["item_cold"]["rmse"]
    assert online < offline - 0.01
    assert evaluate(m, catalog, fit=False)["scenarios"]["item_cold"]["rmse"] == offline


def test_cli_ingest_ratings_then_audience_reads_them(trained: GraphMetaRecommender,
                                                     catalog_dir: Path,
                                                     tmp_path: Path) -> None:
    folder = tmp_path / "shop"
    shutil.copytree(catalog_dir, folder)
    run = tmp_path / "run"
    trained.reset_observed()
    trained.save(run / "model.pt")
    data = pd.read_csv(folder / "train.csv", dtype=str)
    rated = set(data["item_id"])
    items = pd.read_csv(folder / "items.csv", dtype=str)
    cold = next(i for i in items["item_id"] if i not in rated)
    users = sorted(set(data["user_id"]))[:8]
    runner = CliRunner()
    before = runner.invoke(cli, ["audience", str(folder), "--run", str(run), "--item", cold,
                                 "--json"])
    assert before.exit_code == 0, before.output
    new = tmp_path / "new.csv"
    new.write_text("user_id,item_id,rating\n" + "".join(f"{u},{cold},5\n" for u in users))
    res = runner.invoke(cli, ["ingest-ratings", str(folder), str(new)])
    assert res.exit_code == 0, res.output
    assert "8 new and 0 changed" in res.output
    again = runner.invoke(cli, ["ingest-ratings", str(folder), str(new)])
    assert "0 new and 0 changed" in again.output
    after = runner.invoke(cli, ["audience", str(folder), "--run", str(run), "--item", cold,
                                "--json"])
    assert after.exit_code == 0, after.output
    assert "8 rating(s) in the graph are newer than the model" in after.output
    top_before = json.loads(before.stdout)
    top_after = json.loads(after.stdout[after.stdout.index("["):])
    assert [u["predicted_rating"] for u in top_after] != [u["predicted_rating"]
                                                         for u in top_before]
    assert not {u["user_id"] for u in top_after} & set(users)  # raters are not an audience
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item_id,rating\nno-such-user,x,3\n")
    res = runner.invoke(cli, ["ingest-ratings", str(folder), str(bad)])
    assert res.exit_code == 2 and "bad.csv" in res.output and "line 2" in res.output


def test_new_items_get_co_rating_neighbours_from_their_observed_raters(
        model: GraphMetaRecommender, catalog: Dataset) -> None:
    cold, users = _cold_items(catalog), _warm_users(catalog)
    item = cold[1]
    model.observe([(u, item, 4.0) for u in users[:9]] + [(users[0], cold[2], 2.0)])
    pos = model.item_pos[item]
    row = model.live_state.corating(np.array([pos])).toarray()[0]
    # brute force: cosine of rater sets over training and observed ratings
    raters: dict[str, set[str]] = {}
    for u, i in zip(catalog.train["user_id"].astype(str), catalog.train["item_id"].astype(str),
                    strict=True):
        raters.setdefault(i, set()).add(u)
    for u, i, _ in model.live:
        raters.setdefault(i, set()).add(u)
    m = model.config.model
    expected = np.zeros(len(model.item_ids))
    for h, who in raters.items():
        if h != item and h in model.item_pos:
            cos = len(who & raters[item]) / np.sqrt(len(who) * len(raters[item]))
            expected[model.item_pos[h]] = m.neighbor_rated_weight * cos ** m.neighbor_power
    assert 5 < (expected > 0).sum() <= m.neighbor_k  # every neighbour is kept: exact match
    np.testing.assert_allclose(row, expected, atol=1e-9)
    warm_item = sorted(set(catalog.train["item_id"].astype(str)))[0]
    model.observe([(users[-1], warm_item, 5.0)])
    # an item with training ratings keeps its training lists
    assert model.live_state.corating(np.array([model.item_pos[warm_item]])).nnz == 0


def test_every_scoring_path_reads_the_observed_ratings_alike(model: GraphMetaRecommender,
                                                            catalog: Dataset) -> None:
    ratings = _new_ratings(catalog)
    model.observe(ratings)
    cold = _cold_items(catalog)
    users = _warm_users(catalog)
    for user in (users[0], users[-1], str(catalog.tasks["user_cold"][0].user_id)):
        np.testing.assert_allclose(model.score_all_items(user, []),
                                   model.predict(user, [], model.item_ids), atol=1e-9)
    for item in (cold[0], cold[2], model.item_ids[3]):
        every = model.score_all_users(item)
        for user in (users[0], users[5], users[-1]):
            expected = model.predict(user, [], [item])[0]
            assert abs(every[model.user_pos[user]] - expected) < 1e-9, (user, item)


def test_items_added_after_their_ratings_equal_items_added_before(
        catalog: Dataset) -> None:
    import dataclasses

    rated = set(catalog.train["item_id"].astype(str))
    ids = catalog.items.index.astype(str)
    new = [i for i in ids if i not in rated][:4]
    before = dataclasses.replace(training_view(catalog), items=catalog.items.loc[~ids.isin(new)])
    torch.manual_seed(0)
    trained = GraphMetaRecommender(Config().replace(**_SMALL)).fit(before)
    users = _warm_users(catalog)
    ratings = [(users[k], new[k % 4], float(1 + k % 5)) for k in range(16)]
    ratings += [(users[k], sorted(rated)[k], 4.0) for k in range(3)]
    first, second = GraphMetaRecommender(trained.config), GraphMetaRecommender(trained.config)
    for m in (first, second):
        m.cache = {k: v.copy() for k, v in trained.cache.items()}
        m.item_ids, m.item_pos = list(trained.item_ids), dict(trained.item_pos)
        m.user_pos, m.fit_info = dict(trained.user_pos), dict(trained.fit_info)
    first.add_items(catalog)
    first.observe(ratings)
    second.observe(ratings)  # the new items are unknown yet: the log keeps their ratings
    second.add_items(catalog)
    probe = users[:5]
    for user in probe:
        np.testing.assert_allclose(second.predict(user, [], first.item_ids),
                                   first.predict(user, [], first.item_ids), atol=1e-9)
    np.testing.assert_allclose(second.score_all_users(new[0]), first.score_all_users(new[0]),
                               atol=1e-9)


def test_a_changed_training_rating_replaces_the_old_one_on_both_sides(
        model: GraphMetaRecommender, catalog: Dataset) -> None:
    row = catalog.train.iloc[0]
    user, item, old = str(row["user_id"]), str(row["item_id"]), float(row["rating"])
    new = 1.0 if old >= 3 else 5.0
    states = model.cache["item_states"].copy()
    reader = _warm_users(catalog)[-1]
    before = model.predict(reader, [], [item])
    assert model.observe([(user, item, old)]) == 0  # the training rating itself: nothing new
    assert model.observe([(user, item, new), (user, item, old)]) == 0  # the last one counts
    assert model.observe([(user, item, new)]) == 1
    moved = model.predict(reader, [], [item])
    assert (moved - before)[0] * (new - old) > 0  # the item moves toward the new rating
    assert model.observe([(user, item, old)]) == 1  # back to the training rating: forgotten
    assert not len(model.live)
    np.testing.assert_allclose(model.cache["item_states"], states, atol=1e-9)
    np.testing.assert_allclose(model.predict(reader, [], [item]), before, atol=1e-9)


def test_incremental_audience_scores_equal_the_from_scratch_path_after_every_update(
        model: GraphMetaRecommender, catalog: Dataset) -> None:
    """score_all_users keeps per-item fold-in blocks and per-rating residuals between calls
    (graph_meta.live_cache); after every kind of update (a new pair, a changed rating, a
    training rating replaced, then set back, a forgotten log) it must equal predict, which
    recomputes each user's fold-in and residuals from the log."""
    cold, users = _cold_items(catalog), _warm_users(catalog)
    row = catalog.train.iloc[0]
    t_user, t_item, t_old = str(row["user_id"]), str(row["item_id"]), float(row["rating"])
    rng = np.random.default_rng(11)
    updates: list[list[tuple[str, str, float]]] = [
        [(users[k], cold[k % 4], float(rng.integers(1, 6))) for k in range(8)],
        [(users[2], cold[2], 1.0), (users[3], cold[3], 5.0)],  # changed ratings
        [(t_user, t_item, 1.0 if t_old >= 3 else 5.0)],  # replaces a training rating
        [(users[40], cold[0], 4.0), (users[41], t_item, 2.0)],
        [(t_user, t_item, t_old)],  # set back to the training value: dropped from the log
    ]
    probe_users = [users[0], users[2], users[41], t_user, users[-1]]
    probe_items = [cold[0], cold[2], t_item, cold[5]]

    def check() -> None:
        for item in probe_items:
            every = model.score_all_users(item)
            for user in probe_users:
                expected = model.predict(user, [], [item])[0]
                assert abs(every[model.user_pos[user]] - expected) < 1e-9, (user, item)

    check()  # builds the caches before any update, so every later update is incremental
    for batch in updates:
        model.observe(batch)
        check()
    assert model.live_state.training_rating(t_user, t_item) == t_old
    assert t_item not in model.live.user(t_user)
    model.reset_observed()
    check()
    fresh = GraphMetaRecommender(model.config)
    fresh.cache = {k: v.copy() for k, v in model.cache.items()}
    fresh.item_ids, fresh.item_pos = list(model.item_ids), dict(model.item_pos)
    fresh.user_pos, fresh.fit_info = dict(model.user_pos), dict(model.fit_info)
    for batch in updates:
        model.observe(batch)
    fresh.observe([r for batch in updates for r in batch])  # one batch, caches built after
    for item in probe_items:
        np.testing.assert_allclose(model.score_all_users(item), fresh.score_all_users(item),
                                   atol=1e-9)


def test_the_compiled_rescoring_loop_equals_the_numpy_path(
        model: GraphMetaRecommender, catalog: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    """score_all_users through graph_meta/_kernels.c (built by pip install where a C
    compiler is found) and through numpy alone give the same scores, before and after
    observed ratings (new pairs, a replaced training rating), with the residual caches
    shared between the two."""
    if shutil.which("cc") or shutil.which("gcc"):
        assert live_kernels.available(), "pip install built no graph_meta._kernels"
    if not live_kernels.available():
        pytest.skip("no compiled kernel here")
    cold, users = _cold_items(catalog), _warm_users(catalog)
    row = catalog.train.iloc[3]
    probe = [cold[0], cold[1], str(row["item_id"]), str(catalog.train["item_id"].iloc[7])]

    def both() -> None:
        for item in probe:
            fast = model.score_all_users(item)
            with monkeypatch.context() as m:
                m.setattr(live_kernels, "_NEIGHBOUR_SUMS", None)
                slow = model.score_all_users(item)
            np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-10, err_msg=item)

    both()
    model.observe([(users[k], cold[k % 3], float(1 + k % 5)) for k in range(12)])
    both()
    model.observe([(str(row["user_id"]), str(row["item_id"]),
                    1.0 if float(row["rating"]) >= 3 else 5.0)])
    both()


def test_auto_live_precision_is_chosen_on_held_out_items_and_kept(catalog: Dataset,
                                                                  tmp_path: Path) -> None:
    """model.live_precision = 0: the scale of the item precision in live updates is chosen
    at fit time on the carved validation's held-out items (graph_meta.live_tuning), used by
    observe, and saved with the model."""
    from graph_meta.live_tuning import SCALES, choose_live_precision

    cfg = Config().replace(**{**_SMALL, "train.validate": True, "train.epochs": 1,
                              "train.val_new_item_fraction": 0.3,
                              "model.live_precision": 0.0})
    torch.manual_seed(0)
    model = GraphMetaRecommender(cfg).fit(training_view(catalog))
    chosen = model.fit_info.get("live_precision")
    assert chosen in SCALES
    assert model.live_state.precision_scale() == chosen
    model.save(tmp_path / "m.pt")
    back = GraphMetaRecommender.load(tmp_path / "m.pt")
    assert back.live_state.precision_scale() == chosen
    # an explicit value wins over the chosen one
    fixed = GraphMetaRecommender.load(tmp_path / "m.pt")
    fixed.config.model.live_precision = 2.5
    assert fixed.live_state.precision_scale() == 2.5
    # the choice reads held-out items only: on the full training view there are none
    assert choose_live_precision(model, training_view(catalog)) is None
