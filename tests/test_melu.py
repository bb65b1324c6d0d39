"""The MeLU-style baseline (attributes + MLP + MAML, no graph) on the synthetic catalog."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from graph_meta.baselines import GlobalMean
from graph_meta.dataset import ITEM_ID, Dataset
from graph_meta.eval.protocol import ColdStartModel, evaluate, training_view
from graph_meta.melu import MeLUStyle

torch.set_num_threads(1)

EPOCHS = 20


@pytest.fixture(scope="module")
def fitted(catalog: Dataset) -> tuple[MeLUStyle, dict[str, Any]]:
    """A model fitted and evaluated through the protocol runner."""
    model = MeLUStyle(epochs=EPOCHS, seed=0)
    return model, evaluate(model, catalog)


def _tasks(catalog: Dataset, scenario: str, n: int = 20) -> list:
    return [t for t in catalog.tasks[scenario] if len(t.support) >= 2][:n]


def test_beats_global_mean(catalog: Dataset, fitted: tuple[MeLUStyle, dict]) -> None:
    model, res = fitted
    assert isinstance(model, ColdStartModel)
    base = evaluate(GlobalMean(), catalog)
    for scenario in ("warm", "user_cold"):
        ours, mean = res["scenarios"][scenario]["rmse"], base["scenarios"][scenario]["rmse"]
        assert ours < mean - 0.08, (scenario, ours, mean)
    for block in res["scenarios"].values():
        assert np.isfinite(block["rmse"]) and np.isfinite(block["mae"])
    p = model.params
    assert p["epochs_run"] == EPOCHS and p["meta_tasks"] > 0 and p["tasks_per_s"] > 0
    assert p["fit_s"] > 0
    # every training user with >= 2 ratings is a task user; the rest are counted
    counts = training_view(catalog).train.groupby("user_id", observed=True).size()
    assert p["task_users"] == int((counts >= 2).sum())
    assert p["skipped"]["users_with_1_rating"] == int((counts == 1).sum())


def test_adaptation_lowers_support_loss_and_moves_predictions(
        catalog: Dataset, fitted: tuple[MeLUStyle, dict]) -> None:
    model, _ = fitted
    before_loss, after_loss, moves = [], [], []
    for task in _tasks(catalog, "user_cold") + _tasks(catalog, "warm"):
        items = [i for i, _ in task.support]
        y = np.array([r for _, r in task.support])
        query = [i for i, _ in task.query]
        before = model.predict(task.user_id, [], items)
        after = model.predict(task.user_id, list(task.support), items)
        before_loss.append(np.mean((before - y) ** 2))
        after_loss.append(np.mean((after - y) ** 2))
        moves.append(np.abs(model.predict(task.user_id, list(task.support), query)
                            - model.predict(task.user_id, [], query)).mean())
    before_loss, after_loss = np.array(before_loss), np.array(after_loss)
    # MeLU's published step size moved predictions by 4e-4 on average: a no-op
    assert after_loss.mean() < 0.8 * before_loss.mean(), (after_loss.mean(), before_loss.mean())
    assert (after_loss < before_loss).mean() > 0.8
    assert np.mean(moves) > 0.05, np.mean(moves)


@pytest.mark.parametrize("learner", ["maml", "metasgd"])
def test_every_input_receives_gradient(catalog: Dataset, learner: str) -> None:
    model = MeLUStyle(epochs=0, learner=learner, seed=1).fit(training_view(catalog))
    net = model.net
    assert net is not None and model.learner is not None
    # a fresh model predicts the global mean (zero last layer)
    task = catalog.tasks["user_cold"][0]
    fresh = model.predict(task.user_id, [], [i for i, _ in task.query])
    np.testing.assert_allclose(fresh, model.mu, atol=1e-5)

    rng = np.random.default_rng(0)
    users = rng.choice(model.params["task_users"], size=32, replace=False)
    eligible = np.flatnonzero(np.diff(model._indptr) >= 2)[users]
    batch = model._task_batch(eligible, np.diff(model._indptr), model._shuffled(rng), rng)
    model._outer_loss(batch).backward()
    for name, p in [*net.named_parameters(), *model.learner.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # every column of both tables (user profile features included) gets gradient
    for emb in (net.user_emb, net.item_emb):
        assert emb.bags.n_cols == len(emb.bags.dims) > 0
        grad = emb.table.weight.grad
        start = 0
        for col, d in zip(emb.bags.columns, emb.bags.dims, strict=True):
            assert grad[start: start + d].abs().sum() > 0, col
            start += d


def test_predict_keeps_no_state(catalog: Dataset, fitted: tuple[MeLUStyle, dict]) -> None:
    model, _ = fitted
    assert model.net is not None
    state = {k: v.clone() for k, v in model.net.state_dict().items()}
    a, b = catalog.tasks["user_cold"][0], catalog.tasks["warm"][1]
    args_a = (a.user_id, list(a.support), [i for i, _ in a.query])
    first = model.predict(*args_a)
    second = model.predict(*args_a)
    np.testing.assert_array_equal(first, second)
    model.predict(b.user_id, list(b.support), [i for i, _ in b.query])
    np.testing.assert_array_equal(model.predict(*args_a), first)
    for k, v in model.net.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_unknown_user_and_unrated_items_are_finite(catalog: Dataset,
                                                   fitted: tuple[MeLUStyle, dict]) -> None:
    model, _ = fitted
    rated = set(training_view(catalog).train[ITEM_ID].astype(str))
    never = [i for i in catalog.items.index.astype(str) if i not in rated][:5]
    assert never
    known = sorted(rated)[:3]
    query = [*never, "no-such-item", *known]
    for user, support in [("no-such-user", [(known[0], 5.0), (never[0], 1.0)]),
                          ("no-such-user", []),
                          (catalog.tasks["warm"][0].user_id, [("no-such-item", 4.0)])]:
        pred = model.predict(user, support, list(query))
        assert pred.shape == (len(query),) and np.isfinite(pred).all()
    assert model.predict("no-such-user", [], []).shape == (0,)


def test_time_budget_stops_training(catalog: Dataset) -> None:
    model = MeLUStyle(epochs=50, max_train_s=0.0, seed=0).fit(training_view(catalog))
    assert model.params["stopped_by_time"] and model.params["meta_batches"] == 1
