"""The online replay on the implicit protocol (PROTOCOL.md, "Online replay"): the order, what
``observe`` gets (never a query positive), the pools, the models' observed positives, and the
``evaluate --online`` / ``benchmark --online`` commands on an implicit folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from graph_meta.dataset import Dataset
from graph_meta.eval.protocol import replay_order, training_view
from graph_meta.eval.ranking import (
    CandidatePools,
    evaluate_implicit,
    evaluate_implicit_online,
)
from graph_meta.ials import fold_in
from graph_meta.implicit import GraphMetaImplicit
from graph_meta.implicit_baselines import ContentProfile, ImplicitALS, Popularity
from loaders.folder import write_dataset
from loaders.synthetic_implicit import generate_implicit_catalog
from training.cli import main
from training.implicit_benchmark import run_implicit_benchmark
from training.implicit_cli import IMPLICIT_MODEL

METRICS = ("recall@20", "ndcg@20", "hit@20", "pool_size", "query_items",
           "query_outside_pool", "tasks")


class _Spy:
    """Records what the replay hands over; scores by a fixed random key."""

    name = "spy"

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[tuple[str, object]] = []
        self.fail_at = fail_at

    def fit(self, dataset: Dataset) -> _Spy:
        return self

    def score_items(self, user_id: str, support_items: list, candidates: list) -> np.ndarray:
        n = sum(1 for c in self.calls if c[0] == "score")
        if n == self.fail_at:
            raise RuntimeError("boom")
        self.calls.append(("score", (user_id, list(support_items), list(candidates))))
        return np.array([hash(c) % 1000 for c in candidates], dtype=np.float64)

    def observe(self, positives: list) -> int:
        self.calls.append(("observe", list(positives)))
        return len(positives)

    def reset_observed(self) -> None:
        self.calls.append(("reset", None))


def test_the_replay_never_hands_a_query_positive_to_observe(planted_shop: Dataset) -> None:
    order = replay_order(planted_shop)
    assert sorted(order) == sorted((s, j) for s, ts in planted_shop.tasks.items()
                                   for j in range(len(ts)))
    spy = _Spy()
    res = evaluate_implicit_online(spy, planted_shop, fit=False)
    pools = CandidatePools(planted_shop)
    calls = iter(spy.calls)
    assert next(calls) == ("reset", None)  # starts from training
    seen: set[tuple[str, str]] = set()
    for scenario, j in order:
        task = planted_shop.tasks[scenario][j]
        kind, (user, support, candidates) = next(calls)
        assert kind == "score" and user == task.user_id
        assert support == [str(i) for i, _ in task.support]
        # the pool is the protocol's, whatever was observed before: the catalogue's
        expected = pools.ids(pools.pool(scenario, task.user_id, support))
        assert candidates == expected
        if task.support:
            kind, observed = next(calls)
            assert kind == "observe"
            assert observed == [(task.user_id, str(i), 1.0) for i, _ in task.support]
            seen.update((u, i) for u, i, _ in observed)
    assert next(calls) == ("reset", None)  # and leaves as it came
    assert next(calls, None) is None
    query_pairs = {(t.user_id, str(i)) for ts in planted_shop.tasks.values() for t in ts
                   for i, _ in t.query}
    assert seen and not seen & query_pairs
    assert res["observed"] == sum(len(t.support) for ts in planted_shop.tasks.values() for t in ts)
    assert res["online"] and res["reads_graph"] and res["protocol"] == "implicit"
    assert set(res["scenarios"]) == set(planted_shop.tasks)
    assert res["observe_ms_p50"] >= 0
    received = res["by_item_positives"]["item_cold"]
    assert sum(b["n"] for b in received.values()) == sum(
        len(t.query) for t in planted_shop.tasks["item_cold"])


def test_the_model_is_reset_even_when_the_replay_fails(planted_shop: Dataset) -> None:
    spy = _Spy(fail_at=5)
    with pytest.raises(RuntimeError, match="boom"):
        evaluate_implicit_online(spy, planted_shop, fit=False)
    assert spy.calls[0] == ("reset", None) and spy.calls[-1] == ("reset", None)


def test_a_blind_model_scores_online_exactly_as_offline(planted_shop: Dataset) -> None:
    """A model without ``observe`` learns nothing in the replay: each task is ranked as the
    offline protocol ranks it (same support, same pool, same tie-breaking)."""
    model = ContentProfile().fit(training_view(planted_shop))
    assert not hasattr(model, "observe")
    offline = evaluate_implicit(model, planted_shop, fit=False)["scenarios"]
    online = evaluate_implicit_online(model, planted_shop, fit=False)
    assert not online["reads_graph"] and online["observed"] == 0
    for scenario, block in offline.items():
        for key in METRICS:
            assert online["scenarios"][scenario][key] == block[key], (scenario, key)


class _Recorder:
    """Forwards to a model and keeps the scores it gave, in call order."""

    def __init__(self, model) -> None:
        self.model, self.name, self.scores = model, model.name, []

    def score_items(self, user_id, support, candidates):
        s = self.model.score_items(user_id, support, candidates)
        self.scores.append(np.array(s))
        return s

    def observe(self, positives):
        return self.model.observe(positives)

    def reset_observed(self):
        self.model.reset_observed()


@pytest.mark.parametrize("which", ["graph-meta", "ials", "popularity"])
def test_each_task_is_ranked_by_the_model_that_observed_the_supports_before_it(
        planted_shop: Dataset, planted_ours: GraphMetaImplicit, which: str) -> None:
    """The replay's scores of task t are the model's after observing exactly the supports of
    tasks 1 .. t-1; afterwards the model ranks as trained."""
    model = {"graph-meta": lambda: planted_ours,
             "ials": lambda: ImplicitALS(factors=16, backend="numpy", iters=5).fit(
                 training_view(planted_shop)),
             "popularity": lambda: Popularity().fit(training_view(planted_shop))}[which]()
    order = replay_order(planted_shop)
    before = evaluate_implicit(model, planted_shop, fit=False)["scenarios"]
    rec = _Recorder(model)
    online = evaluate_implicit_online(rec, planted_shop, fit=False)["scenarios"]
    pools = CandidatePools(planted_shop)
    cold = [t for t, (s, _) in enumerate(order) if s == "item_cold"]
    for t in [0, cold[len(cold) // 2], cold[-1], len(order) - 1]:
        model.reset_observed()
        for s, j in order[:t]:
            task = planted_shop.tasks[s][j]
            if task.support:
                model.observe([(task.user_id, str(i), 1.0) for i, _ in task.support])
        s, j = order[t]
        task = planted_shop.tasks[s][j]
        support = [str(i) for i, _ in task.support]
        candidates = pools.ids(pools.pool(s, task.user_id, support))
        np.testing.assert_allclose(model.score_items(task.user_id, support, candidates),
                                   rec.scores[t], rtol=1e-9, atol=1e-9)
    model.reset_observed()
    after = evaluate_implicit(model, planted_shop, fit=False)["scenarios"]
    assert {s: {k: b[k] for k in METRICS} for s, b in after.items()} == {
        s: {k: b[k] for k in METRICS} for s, b in before.items()}
    # the supports moved the new items: the replay's item_cold ranking is not the offline one
    assert online["item_cold"]["recall@20"] != before["item_cold"]["recall@20"]


def test_popularity_counts_grow_with_observed_takers(planted_shop: Dataset) -> None:
    model = Popularity().fit(training_view(planted_shop))
    d = model.data
    new = int(np.flatnonzero(~d.item_in_train)[0])
    old = int(np.flatnonzero(d.item_in_train)[0])
    item, old_item = str(d.item_ids[new]), str(d.item_ids[old])
    took = d.by_user[:, old].toarray().ravel() != 0
    takers = [str(u) for u in d.user_ids[~took][:3]]
    trained_taker = str(d.user_ids[took][0])
    b, n = model.scores[new], d.item_count[old]
    assert model.observe([(u, item) for u in takers]) == 3
    assert model.observe([(u, item) for u in takers]) == 0  # the same positive is one
    model.observe([(takers[0], old_item), (trained_taker, old_item)])  # one is a training pair
    assert model.scores[new] == pytest.approx(np.log1p(np.expm1(b) + 3))
    assert model.scores[old] == pytest.approx(np.log1p(n + 1))
    model.reset_observed()
    assert model.scores[new] == b and model.scores[old] == np.log1p(n)


def test_ials_gives_a_new_item_the_item_step_over_its_takers(planted_shop: Dataset) -> None:
    model = ImplicitALS(factors=16, backend="numpy", iters=5).fit(training_view(planted_shop))
    d = model.data
    new = int(np.flatnonzero(~d.item_in_train)[0])
    item = str(d.item_ids[new])
    users = np.flatnonzero(d.user_in_train)[:4]
    prior = model.y[new].copy()
    u0 = str(d.user_ids[users[0]])
    x_before = model.user_factors(u0, [])
    model.observe([(str(d.user_ids[u]), item, 2.0) for u in users])
    expected = fold_in(model.x, model.x.T @ model.x, model.reg, users,
                       model.alpha * np.full(len(users), 2.0), prior)
    np.testing.assert_allclose(model.y[new], expected, atol=1e-10)
    hist, w = d.history(u0)  # the taker's state takes the new positive in
    np.testing.assert_allclose(
        model.user_factors(u0, []),
        fold_in(model.y, model.gram, model.reg, np.r_[hist, new],
                model.alpha * np.r_[w, 2.0], model.x0[users[0]]), atol=1e-10)
    model.reset_observed()
    np.testing.assert_array_equal(model.y[new], prior)
    np.testing.assert_array_equal(model.user_factors(u0, []), x_before)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    cat = generate_implicit_catalog(n_users=400, n_items=120, n_interactions=7000, seed=7)
    root = tmp_path_factory.mktemp("online")
    folder = write_dataset(cat.dataset, root / "shop")
    run = root / "run"
    run.mkdir()
    GraphMetaImplicit(quick=True, backend="numpy", tune=False).fit(
        training_view(cat.dataset)).save(run / IMPLICIT_MODEL)
    return folder, run


def test_evaluate_online_on_an_implicit_run_writes_the_replay(small_run, tmp_path) -> None:
    folder, run = small_run
    out = tmp_path / "online.json"
    r = CliRunner().invoke(main, ["evaluate", str(folder), "--run", str(run), "--out",
                                  str(out), "--online"])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["online"] is True and res["protocol"] == "implicit"
    assert res["model"] == "graph-meta" and res["reads_graph"] and res["observed"] > 0
    assert set(res["scenarios"]) == {"warm", "user_cold", "item_cold", "user_item_cold"}
    assert "recall@20" in r.output and "RMSE" not in r.output


def test_benchmark_online_on_an_implicit_folder(small_run, tmp_path) -> None:
    folder, _ = small_run
    from loaders.folder import read_dataset

    out = tmp_path / "bench"
    rows = run_implicit_benchmark(read_dataset(folder), out, support_k=(None,),
                                  progress=False, online=True,
                                  models=[Popularity(), ContentProfile()])
    assert [r["model"] for r in rows] == ["popularity", "content profile",
                                          "popularity online", "content profile online"]
    res = json.loads((out / "results" / "popularity_online.json").read_text())
    assert res["online"] and res["reads_graph"] and res["observed"] > 0
    blind = json.loads((out / "results" / "content_profile_online.json").read_text())
    assert not blind["reads_graph"] and blind["observed"] == 0
    md = (out / "online.md").read_text()
    assert "| popularity online |" in md and "| content profile online |" in md
