"""The implicit protocol: metrics against brute force, candidate pools, no query leak."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from graph_meta.dataset import ITEM_ID, USER_ID, Dataset, Task
from graph_meta.eval.protocol import results_table, training_view, write_results
from graph_meta.eval.ranking import (
    RANKING_METRICS,
    CandidatePools,
    RankingError,
    evaluate_implicit,
    hit_at_k,
    ndcg_at_k_binary,
    ranking_metrics,
    recall_at_k,
    top_k,
)
from loaders.implicit import make_implicit
from loaders.synthetic import generate_catalog


@pytest.fixture(scope="module")
def implicit_small() -> Dataset:
    return make_implicit(generate_catalog(n_users=300, n_items=120, n_interactions=6000,
                                          seed=0), min_rating=4)


# ---------------------------------------------------------------------------------------------
# metrics


def _brute(top: list[str], relevant: set[str], k: int) -> tuple[float, float, float]:
    """The definitions of PROTOCOL.md, written out with loops."""
    top = top[:k]
    hits = [1 if t in relevant else 0 for t in top]
    m = min(k, len(relevant))
    recall = sum(hits) / m
    dcg = 0.0
    for rank, h in enumerate(hits, start=1):
        dcg += h / math.log2(rank + 1)
    idcg = sum(1.0 / math.log2(rank + 1) for rank in range(1, m + 1))
    return recall, dcg / idcg, 1.0 if any(hits) else 0.0


def test_metrics_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    universe = [f"i{j}" for j in range(60)]
    hits_rows, n_rel, expected = [], [], []
    for _ in range(300):
        n_q = int(rng.integers(1, 30))
        relevant = set(rng.choice(universe, n_q, replace=False).tolist())
        length = int(rng.integers(0, 21))
        top = rng.choice(universe, length, replace=False).tolist()
        want = _brute(top, relevant, 20)
        assert recall_at_k(top, relevant) == pytest.approx(want[0])
        assert ndcg_at_k_binary(top, relevant) == pytest.approx(want[1])
        assert hit_at_k(top, relevant) == want[2]
        row = np.zeros(20, dtype=bool)
        row[:length] = [t in relevant for t in top]
        hits_rows.append(row)
        n_rel.append(len(relevant))
        expected.append(want)
    got = ranking_metrics(np.array(hits_rows), n_rel)
    exp = np.array(expected)
    np.testing.assert_allclose(got["recall@20"], exp[:, 0])
    np.testing.assert_allclose(got["ndcg@20"], exp[:, 1])
    np.testing.assert_allclose(got["hit@20"], exp[:, 2])
    assert set(got) == set(RANKING_METRICS)


def test_ndcg_equals_sklearn_on_a_whole_pool_ranking() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        n = int(rng.integers(25, 200))
        scores = rng.permutation(n).astype(float)  # distinct: no ties
        truth = np.zeros(n)
        truth[rng.choice(n, int(rng.integers(1, 40)), replace=False)] = 1
        best = top_k(scores, np.arange(n), 20)
        ids = [str(j) for j in range(n)]
        relevant = {ids[j] for j in np.flatnonzero(truth)}
        ours = ndcg_at_k_binary([ids[j] for j in best], relevant)
        assert ours == pytest.approx(ndcg_score(truth[None], scores[None], k=20))


def test_top_k_breaks_ties_by_the_key() -> None:
    scores = np.array([1.0, 3.0, 3.0, 2.0, 3.0])
    key = np.array([0, 4, 1, 2, 3])
    assert top_k(scores, key, 4).tolist() == [2, 4, 1, 3]
    assert top_k(scores, key, 10).tolist() == [2, 4, 1, 3, 0]


def test_metrics_refuse_bad_input() -> None:
    with pytest.raises(ValueError):
        ranking_metrics(np.ones((1, 3), dtype=bool), [2])  # more hits than relevant
    with pytest.raises(ValueError):
        recall_at_k(["a"], set())


# ---------------------------------------------------------------------------------------------
# pools


def test_pools_follow_the_protocol(implicit_small: Dataset) -> None:
    ds = implicit_small
    pools = CandidatePools(ds)
    train_items = set(ds.train[ITEM_ID].astype(str))
    history: dict[str, set[str]] = {}
    for u, i in zip(ds.train[USER_ID].astype(str), ds.train[ITEM_ID].astype(str),
                    strict=True):
        history.setdefault(u, set()).add(i)
    all_items = set(ds.items.index.astype(str))
    checked = 0
    for scenario, tasks in ds.tasks.items():
        for task in tasks:
            pool = set(pools.ids(pools.pool(scenario, task.user_id,
                                            [i for i, _ in task.support])))
            support = {i for i, _ in task.support}
            assert not pool & support
            assert not pool & history.get(task.user_id, set())
            if scenario in ("warm", "user_cold"):
                assert pool == train_items - support - history.get(task.user_id, set())
            else:
                assert pool == all_items - train_items - support
            checked += 1
    assert checked > 50


def test_pools_never_depend_on_queries(implicit_small: Dataset) -> None:
    ds = implicit_small
    other = dataclasses.replace(ds, tasks={
        s: [Task(t.user_id, t.support, [(i, 1.0) for i in list(ds.items.index[:3])])
            for t in ts] for s, ts in ds.tasks.items()})
    a, b = CandidatePools(ds), CandidatePools(other)
    for scenario, tasks in ds.tasks.items():
        for task in tasks[:20]:
            sup = [i for i, _ in task.support]
            assert (a.pool(scenario, task.user_id, sup)
                    == b.pool(scenario, task.user_id, sup)).all()


# ---------------------------------------------------------------------------------------------
# the runner


class SpyRanker:
    """Records what it is given, scores at random, vandalises the lists it receives."""

    name = "spy"

    def __init__(self) -> None:
        self.fit_dataset: Dataset | None = None
        self.calls: list[tuple[str, list[str], list[str]]] = []
        self.rng = np.random.default_rng(0)

    def fit(self, dataset: Dataset) -> SpyRanker:
        self.fit_dataset = dataset
        return self

    def score_items(self, user_id: str, support_items: list[str],
                    candidate_item_ids: list[str]) -> np.ndarray:
        self.calls.append((user_id, list(support_items), list(candidate_item_ids)))
        n = len(candidate_item_ids)
        support_items.clear()
        candidate_item_ids.clear()
        return self.rng.random(n)


def test_no_query_reaches_the_model(implicit_small: Dataset) -> None:
    ds = implicit_small
    spy = SpyRanker()
    ks = [0, 2, None]
    res = evaluate_implicit(spy, ds, support_k=ks)
    assert spy.fit_dataset is not None
    assert spy.fit_dataset.tasks == {} and spy.fit_dataset.root is None
    pools = CandidatePools(ds)
    expected = []  # the runner's order: scenario by scenario, K within, tasks in file order
    for scenario, tasks in ds.tasks.items():
        for k in ks:
            for task in tasks:
                sup = [i for i, _ in task.support]
                shown = sup if k is None else sup[:k]
                expected.append((task.user_id, shown,
                                 pools.ids(pools.pool(scenario, task.user_id, sup))))
    assert spy.calls == expected
    # no query item is ever shown as support; the candidate lists are the pools, which
    # the previous test shows are the same whatever the queries are
    queries = {(t.user_id, i) for tasks in ds.tasks.values() for t in tasks for i, _ in t.query}
    for user, support, _ in spy.calls:
        assert not {(user, i) for i in support} & queries
    assert set(res["scenarios"]) == set(ds.tasks)
    for block in res["scenarios"].values():
        assert set(RANKING_METRICS) <= set(block)
        assert {"tasks", "adapt_ms_p50", "adapt_ms_p99", "pool_size"} <= set(block)
    assert set(res["few_shot"]["warm"]) == {"0", "2", "all"}


def test_random_scores_give_chance_and_oracle_gives_the_ceiling(
        implicit_small: Dataset) -> None:
    ds = implicit_small

    class Oracle:
        name = "oracle"

        def __init__(self) -> None:
            self.query: set[str] = set()

        def fit(self, dataset: Dataset) -> Oracle:
            return self

        def score_items(self, user_id, support_items, candidates):
            return np.array([1.0 if c in self.query else 0.0 for c in candidates])

    oracle = Oracle()
    pools = CandidatePools(ds)
    for scenario, tasks in ds.tasks.items():
        for task in tasks[:10]:
            oracle.query = {i for i, _ in task.query}
            res = evaluate_implicit(oracle, dataclasses.replace(ds, tasks={scenario: [task]}),
                                    fit=False)
            pool = set(pools.ids(pools.pool(scenario, task.user_id,
                                            [i for i, _ in task.support])))
            reachable = len(oracle.query & pool)
            want = min(reachable, 20) / min(20, len(oracle.query))
            assert res["scenarios"][scenario]["recall@20"] == pytest.approx(want)
    spy = SpyRanker()
    res = evaluate_implicit(spy, ds, fit=False)
    for block in res["scenarios"].values():
        # random ranking: expected recall@20 is 20 / pool (capped at 1)
        assert block["recall@20"] < 3 * min(1.0, 20 / block["pool_size"]) + 0.1


def test_bad_scores_are_refused(implicit_small: Dataset) -> None:
    class Bad:
        name = "bad"

        def fit(self, dataset):
            return self

        def score_items(self, user_id, support_items, candidates):
            s = np.zeros(len(candidates))
            s[0] = np.nan
            return s

    with pytest.raises(RankingError, match="not finite"):
        evaluate_implicit(Bad(), implicit_small, fit=False)


def test_rating_models_rank_through_predict(implicit_small: Dataset) -> None:
    class Rater:
        name = "rater"

        def fit(self, dataset):
            return self

        def predict(self, user_id, support, query_items):
            assert all(r == 1.0 for _, r in support)
            return np.arange(len(query_items), dtype=float)

    res = evaluate_implicit(Rater(), implicit_small, fit=False, support_k=[0, None])
    assert set(res["scenarios"]) == set(implicit_small.tasks)


def test_results_json_and_table(implicit_small: Dataset, tmp_path) -> None:
    res = evaluate_implicit(SpyRanker(), implicit_small)
    path = write_results(res, tmp_path / "r.json")
    back = json.loads(path.read_text())
    assert back["protocol"] == "implicit" and back["model"] == "spy"
    table = results_table([res, copy.deepcopy(res)])
    assert "recall@20" in table and "ndcg@20" in table and "hit@20" in table
    assert "RMSE" not in table
    assert training_view(implicit_small).tasks == {}
