"""The protocol runner (no query leak, K truncation, JSON shape) and the baselines."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from graph_meta.baselines import BiasedMF, GlobalMean, ItemMeanUserBias
from graph_meta.dataset import ITEM_ID, RATING, USER_ID, Dataset, Task
from graph_meta.eval.metrics import METRICS
from graph_meta.eval.protocol import (
    PredictionError,
    carve_validation,
    evaluate,
    results_table,
    training_view,
    write_results,
)
from graph_meta.schema import SCENARIOS
from loaders.synthetic import generate_catalog

BLOCK_KEYS = {"tasks", *METRICS, "adapt_ms_p50", "adapt_ms_p99"}


@pytest.fixture(scope="module")
def catalog_small() -> Dataset:
    return generate_catalog(n_users=300, n_items=120, n_interactions=6000, seed=0)


@pytest.fixture(scope="module")
def marked(catalog_small: Dataset) -> tuple[Dataset, set[float]]:
    """The catalog with every query rating replaced by a distinctive, unique value."""
    ds = copy.copy(catalog_small)
    values: set[float] = set()
    tasks: dict[str, list[Task]] = {}
    j = 0
    for scenario, task_list in catalog_small.tasks.items():
        tasks[scenario] = []
        for task in task_list:
            query = []
            for item, _ in task.query:
                value = 1.123456789 + 1e-7 * j
                j += 1
                values.add(value)
                query.append((item, value))
            tasks[scenario].append(Task(task.user_id, list(task.support), query))
    ds.tasks = tasks
    return ds, values


class SpyModel:
    """Records everything it is given; predicts 3.0; vandalises the lists it receives."""

    name = "spy"

    def __init__(self) -> None:
        self.fit_dataset: Dataset | None = None
        self.calls: list[tuple[str, list[tuple[str, float]], list[str]]] = []

    def fit(self, dataset: Dataset) -> SpyModel:
        self.fit_dataset = dataset
        return self

    def predict(self, user_id: str, support: list[tuple[str, float]],
                query_items: list[str]) -> np.ndarray:
        self.calls.append((user_id, copy.deepcopy(support), list(query_items)))
        support.clear()  # must not reach the task
        query_items.append("junk")
        return np.full(len(query_items) - 1, 3.0)


def _floats(obj: Any) -> list[float]:
    if isinstance(obj, float):
        return [obj]
    if isinstance(obj, list | tuple):
        return [f for x in obj for f in _floats(x)]
    return []


def test_runner_never_passes_query_ratings(marked: tuple[Dataset, set[float]]) -> None:
    dataset, query_values = marked
    before = copy.deepcopy(dataset.tasks)
    spy = SpyModel()
    ks = (None, 0, 1, 3)
    res = evaluate(spy, dataset, support_k=ks)

    # fit saw no task and no folder through which task files could be read
    assert spy.fit_dataset is not None
    assert spy.fit_dataset.tasks == {}
    assert spy.fit_dataset.root is None
    train_values = set(spy.fit_dataset.train[RATING].astype(float).tolist())
    assert not train_values & query_values

    # predict got the query item ids, never a query rating
    seen = {f for call in spy.calls for f in _floats(list(call))}
    assert not seen & query_values
    for _, support, query_items in spy.calls:
        assert all(isinstance(i, str) for i in query_items)
        assert all(isinstance(p, tuple) and len(p) == 2 for p in support)

    # one call per task and K, each with the task's truncated support and its query ids
    expected = []
    for scenario in SCENARIOS:
        for k in ks:
            for task in dataset.tasks[scenario]:
                sup = task.support if k is None else task.support[:k]
                expected.append((task.user_id, [(i, float(r)) for i, r in sup],
                                 [i for i, _ in task.query]))
    assert sorted(map(repr, spy.calls)) == sorted(map(repr, expected))
    assert len(spy.calls) == len(ks) * sum(len(t) for t in dataset.tasks.values())
    # the model's vandalism did not reach the tasks
    assert dataset.tasks == before
    assert set(res["few_shot"]["warm"]) == {"all", "0", "1", "3"}


def test_k_truncation_changes_what_a_model_learns(catalog_small: Dataset) -> None:
    res = evaluate(ItemMeanUserBias(), catalog_small, support_k=(0, 3, None))
    fs = res["few_shot"]["user_cold"]
    assert fs["all"] == res["scenarios"]["user_cold"]
    # a new user with no support gets no user bias: worse than with the whole support set
    assert fs["0"]["rmse"] > fs["all"]["rmse"]


def test_results_shape_json_and_table(catalog_small: Dataset, tmp_path: Path) -> None:
    res = evaluate(GlobalMean(), catalog_small, support_k=(None, 0, 5))
    assert res["dataset"] == catalog_small.name
    assert res["model"] == "global mean"
    assert list(res["scenarios"]) == [s for s in SCENARIOS if s in catalog_small.tasks]
    for scenario, block in res["scenarios"].items():
        assert set(block) == BLOCK_KEYS
        assert block["tasks"] == len(catalog_small.tasks[scenario])
        assert all(np.isfinite(block[m]) for m in METRICS)
        assert block["adapt_ms_p99"] >= block["adapt_ms_p50"] >= 0
        assert set(res["few_shot"][scenario]) == {"all", "0", "5"}
        for sub in res["few_shot"][scenario].values():
            assert set(sub) == BLOCK_KEYS
    path = write_results(res, tmp_path / "out" / "global.json")
    assert json.loads(path.read_text()) == json.loads(json.dumps(res))
    assert not list(path.parent.glob(".*tmp"))
    # one size only: no few_shot block
    single = evaluate(GlobalMean(), catalog_small, scenarios=["warm"])
    assert "few_shot" not in single and list(single["scenarios"]) == ["warm"]
    table = results_table([res, single])
    assert "| global mean |" in table and "warm" in table and "nDCG@5" in table
    assert table.count("| global mean |") == 6  # two rows in each of the three tables
    with pytest.raises(KeyError):
        evaluate(GlobalMean(), catalog_small, scenarios=["nope"])


class _BadModel:
    name = "bad"

    def __init__(self, value: float, at: int) -> None:
        self.value, self.at, self.n = value, at, 0

    def fit(self, dataset: Dataset) -> _BadModel:
        return self

    def predict(self, user_id: str, support: list[tuple[str, float]],
                query_items: list[str]) -> np.ndarray:
        out = np.full(len(query_items), 3.0)
        if self.n == self.at:
            out[1] = self.value
        self.n += 1
        return out


def test_non_finite_prediction_is_an_error_naming_model_scenario_task(
        catalog_small: Dataset) -> None:
    with pytest.raises(PredictionError, match=r"'bad'.*'warm'.*task 2\b"):
        evaluate(_BadModel(float("nan"), 2), catalog_small, scenarios=["warm"])
    with pytest.raises(PredictionError, match="not finite"):
        evaluate(_BadModel(float("inf"), 0), catalog_small, scenarios=["warm"])


def test_predictions_are_clipped_into_the_scale(catalog_small: Dataset) -> None:
    res = evaluate(_BadModel(100.0, 0), catalog_small, scenarios=["warm"])
    assert res["clipped"]["warm"] == 1
    ref = evaluate(_BadModel(5.0, 0), catalog_small, scenarios=["warm"])
    assert res["scenarios"]["warm"]["rmse"] == pytest.approx(ref["scenarios"]["warm"]["rmse"])


def _support_mse(model: BiasedMF, tasks: list[Task]) -> np.ndarray:
    out = []
    for t in tasks:
        items = [i for i, _ in t.support]
        y = np.array([r for _, r in t.support])
        out.append(np.mean((model.predict(t.user_id, t.support, items) - y) ** 2))
    return np.array(out)


def test_mf_fold_in_adapts(catalog_small: Dataset) -> None:
    view = training_view(catalog_small)
    folded = BiasedMF(k=4, reg=2.0, reg_bias=2.0).fit(view)
    frozen = BiasedMF(k=4, reg=2.0, reg_bias=2.0, fold_in=False).fit(view)
    tasks = [t for s in ("warm", "user_cold") for t in catalog_small.tasks[s]
             if len(t.support) >= 5]
    assert len(tasks) >= 20
    diffs = [np.abs(folded.predict(t.user_id, t.support, [i for i, _ in t.query])
                    - frozen.predict(t.user_id, t.support, [i for i, _ in t.query])).mean()
             for t in tasks]
    assert np.mean(diffs) > 0.05  # adaptation measurably moves predictions
    with_fold, without = _support_mse(folded, tasks), _support_mse(frozen, tasks)
    assert with_fold.mean() < 0.9 * without.mean()  # and fits the support better
    assert (with_fold < without).mean() > 0.8
    # no support: fold-in of a training user is its trained vector
    t = catalog_small.tasks["warm"][0]
    query = [i for i, _ in t.query]
    np.testing.assert_allclose(folded.predict(t.user_id, [], query),
                               frozen.predict(t.user_id, [], query), atol=1e-8)


def test_mf_new_item_prior_uses_side_features(catalog_small: Dataset) -> None:
    view = training_view(catalog_small)
    with_prior = BiasedMF(k=4, alpha_item=3.0).fit(view)
    without = BiasedMF(k=4, alpha_item=None).fit(view)
    train_items = set(catalog_small.train[ITEM_ID].astype(str))
    cold = [i for t in catalog_small.tasks["item_cold"] for i, _ in t.query]
    assert cold and not set(cold) & train_items
    user = catalog_small.tasks["item_cold"][0].user_id
    a = with_prior.predict(user, [], cold)
    b = without.predict(user, [], cold)
    assert np.ptp(a) > 0.05  # cold items are told apart by their features
    assert np.ptp(b) < 1e-9  # without the prior every cold item looks the same


def test_mf_beats_global_mean(catalog_small: Dataset) -> None:
    mf = evaluate(BiasedMF(tune=True), catalog_small)
    gm = evaluate(GlobalMean(), catalog_small)
    ib = evaluate(ItemMeanUserBias(tune=True), catalog_small)
    for scenario in ("warm", "user_cold"):
        assert mf["scenarios"][scenario]["rmse"] < gm["scenarios"][scenario]["rmse"] - 0.05
    mean = {name: np.mean([b["rmse"] for b in r["scenarios"].values()])
            for name, r in (("mf", mf), ("gm", gm), ("ib", ib))}
    assert mean["mf"] < mean["gm"] and mean["ib"] < mean["gm"]
    assert mf["params"]["grid_scores"] and "tuned_on" in mf["params"]
    for block in mf["scenarios"].values():
        assert block["adapt_ms_p50"] < 5.0


def test_carve_validation_uses_train_only(catalog_small: Dataset) -> None:
    pseudo = carve_validation(catalog_small, seed=1)
    assert pseudo.root is None
    train = catalog_small.train
    rated = set(zip(train[USER_ID].astype(str), train[ITEM_ID].astype(str),
                    train[RATING].astype(float), strict=True))
    real_task_pairs = {(t.user_id, i) for ts in catalog_small.tasks.values() for t in ts
                       for i, _ in (*t.support, *t.query)}
    pseudo_train = set(zip(pseudo.train[USER_ID].astype(str),
                           pseudo.train[ITEM_ID].astype(str), strict=True))
    pseudo_users = {u for u, _ in pseudo_train}
    pseudo_items = {i for _, i in pseudo_train}
    n_tasks = 0
    for scenario, tasks in pseudo.tasks.items():
        for t in tasks:
            n_tasks += 1
            for i, r in (*t.support, *t.query):
                assert (t.user_id, i, float(r)) in rated  # carved out of train.csv
                assert (t.user_id, i) not in real_task_pairs
                assert (t.user_id, i) not in pseudo_train
            new_user = t.user_id not in pseudo_users
            assert new_user == (scenario in ("user_cold", "user_item_cold"))
            new_items = {i for i, _ in t.query} - pseudo_items
            assert bool(new_items) == (scenario in ("item_cold", "user_item_cold"))
    assert n_tasks > 0
    assert len(pseudo.train) < len(train)


def test_a_single_k_gets_its_own_block(catalog_small: Dataset) -> None:
    res = evaluate(ItemMeanUserBias(), catalog_small, scenarios=["user_cold"], support_k=(0,))
    assert set(res["few_shot"]["user_cold"]) == {"0"}
    assert res["support_k"] == ["0"]
    assert res["few_shot"]["user_cold"]["0"]["rmse"] != res["scenarios"]["user_cold"]["rmse"]
