"""The exposure weight of a new item's live step (:mod:`graph_meta.implicit_exposure`): the
item step it weighs (:func:`graph_meta.ials.fold_in`'s ``gram_weight``), its choice on the
carve, what the saved model keeps, and implicit ALS's."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from graph_meta.dataset import Dataset
from graph_meta.eval.protocol import training_view
from graph_meta.eval.ranking import evaluate_implicit, evaluate_implicit_online
from graph_meta.ials import fold_in
from graph_meta.implicit import GraphMetaImplicit
from graph_meta.implicit_baselines import ImplicitALS
from graph_meta.implicit_exposure import FALLBACK, WEIGHTS, choose_exposure_weight


def _system(n: int = 40, f: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    states = rng.normal(size=(n, f))
    takers = np.array([3, 17, 29])
    conf = np.array([5.0, 10.0, 2.5])
    prior = rng.normal(size=f)
    return states, takers, conf, prior


def test_weight_one_is_the_ials_step_bit_for_bit() -> None:
    states, takers, conf, prior = _system()
    gram, reg = states.T @ states, 0.7
    y = states[takers]
    plain = np.linalg.solve(gram + reg * np.eye(5) + (y * conf[:, None]).T @ y,
                            y.T @ (1.0 + conf) + reg * prior)
    np.testing.assert_array_equal(fold_in(states, gram, reg, takers, conf, prior,
                                          gram_weight=1.0), plain)
    np.testing.assert_array_equal(fold_in(states, gram, reg, takers, conf, prior), plain)


def test_weight_zero_is_a_ridge_over_the_takers_toward_the_prior() -> None:
    states, takers, conf, prior = _system()
    reg = 0.7
    y = states[takers]
    c = 1.0 + conf  # a taker's whole confidence; nobody else counts
    ridge = np.linalg.solve((y * c[:, None]).T @ y + reg * np.eye(5), y.T @ c + reg * prior)
    for gram in (states.T @ states, np.eye(5) * 1e3):  # the non-takers' term is gone
        np.testing.assert_allclose(fold_in(states, gram, reg, takers, conf, prior,
                                           gram_weight=0.0), ridge, rtol=1e-10)


@pytest.mark.parametrize("omega", [0.03, 0.5])
def test_weight_is_the_confidence_of_every_non_taker(omega: float) -> None:
    """Against the sum over every user: a non-taker weighs ``omega`` (preference 0), a taker
    ``1 + alpha w`` (preference 1)."""
    states, takers, conf, prior = _system()
    reg = 0.7
    c = np.full(len(states), omega)
    c[takers] = 1.0 + conf
    p = np.zeros(len(states))
    p[takers] = 1.0
    direct = np.linalg.solve((states * c[:, None]).T @ states + reg * np.eye(5),
                             states.T @ (c * p) + reg * prior)
    np.testing.assert_allclose(fold_in(states, states.T @ states, reg, takers, conf, prior,
                                       gram_weight=omega), direct, rtol=1e-10)
    with pytest.raises(ValueError, match="gram_weight"):
        fold_in(states, states.T @ states, reg, takers, conf, prior, gram_weight=1.5)


def _new_item_and_takers(model, n: int = 1) -> tuple[int, str, np.ndarray]:
    d = model.data
    new = int(np.flatnonzero(~d.item_in_train)[0])
    return new, str(d.item_ids[new]), np.flatnonzero(d.user_in_train)[:n]


def test_graph_meta_live_item_step_carries_the_chosen_weight(
        planted_ours: GraphMetaImplicit) -> None:
    d = planted_ours.data
    new, item, users = _new_item_and_takers(planted_ours, 3)
    prior = planted_ours.y[new].copy()
    states = np.where(d.user_in_train[:, None], planted_ours.x, planted_ours.x0)
    conf = planted_ours.alpha * np.ones(len(users))
    omega = planted_ours.exposure_weight
    try:
        planted_ours.observe([(str(d.user_ids[u]), item) for u in users])
        np.testing.assert_allclose(
            planted_ours.y[new],
            fold_in(states, planted_ours.x.T @ planted_ours.x, planted_ours.reg, users, conf,
                    prior, gram_weight=omega), atol=1e-12)
        planted_ours.exposure_weight = 1.0  # today's step, exactly
        planted_ours._refresh_live_items([item])
        np.testing.assert_array_equal(
            planted_ours.y[new],
            fold_in(states, planted_ours.x.T @ planted_ours.x, planted_ours.reg, users, conf,
                    prior))
    finally:
        planted_ours.exposure_weight = omega
        planted_ours.reset_observed()
    np.testing.assert_array_equal(planted_ours.y[new], prior)


def test_the_weight_is_chosen_on_the_carve_and_below_one_on_the_shop(
        planted_ours: GraphMetaImplicit) -> None:
    p = planted_ours.params
    assert p["exposure_weight"] == planted_ours.exposure_weight
    assert planted_ours.exposure_weight in WEIGHTS
    scores = {float(w): v for w, v in p["pseudo_online_recall@20"].items()}
    assert set(scores) == set(WEIGHTS)
    # the shop's new items sink with the plain step: the carve tells a smaller weight apart
    assert planted_ours.exposure_weight < 1.0
    assert scores[1.0] < scores[planted_ours.exposure_weight] - p["pseudo_online_recall@20_se"]


def test_one_taker_keeps_a_new_item_nearer_its_prior_than_the_plain_step(
        planted_ours: GraphMetaImplicit) -> None:
    d = planted_ours.data
    omega = planted_ours.exposure_weight
    new = np.flatnonzero(~d.item_in_train)[:20]
    users = np.flatnonzero(d.user_in_train)
    rng = np.random.default_rng(0)
    moved = {}
    try:
        for w in (omega, 1.0):
            planted_ours.exposure_weight = w
            dist = []
            for p in new.tolist():
                prior = planted_ours.y[p].copy()
                planted_ours.observe([(str(d.user_ids[rng.choice(users)]), str(d.item_ids[p]))])
                dist.append(np.linalg.norm(planted_ours.y[p] - prior) / np.linalg.norm(prior))
                planted_ours.reset_observed()
            moved[w] = np.array(dist)
    finally:
        planted_ours.exposure_weight = omega
        planted_ours.reset_observed()
    assert (moved[omega] < moved[1.0]).mean() >= 0.9
    assert np.median(moved[omega]) < 0.5 * np.median(moved[1.0])


def test_the_weight_survives_save_and_load_and_old_pickles_step_as_before(
        planted_ours: GraphMetaImplicit, tmp_path: Path) -> None:
    d = planted_ours.data
    new, item, users = _new_item_and_takers(planted_ours, 2)
    rows = [(str(d.user_ids[u]), item) for u in users]
    back = GraphMetaImplicit.load(planted_ours.save(tmp_path / "m.pkl"))
    assert back.exposure_weight == planted_ours.exposure_weight < 1.0
    try:
        planted_ours.observe(rows)
        back.observe(rows)
        np.testing.assert_array_equal(back.y[new], planted_ours.y[new])
    finally:
        planted_ours.reset_observed()
    # a model pickled before the weight existed has no attribute: the plain iALS step
    del back.__dict__["exposure_weight"]
    old = GraphMetaImplicit.load(back.save(tmp_path / "old.pkl"))
    assert old.exposure_weight == 1.0
    prior = old.y[new].copy()
    old.reset_observed()
    old.observe(rows)
    states = np.where(d.user_in_train[:, None], old.x, old.x0)
    np.testing.assert_array_equal(
        old.y[new], fold_in(states, old.x.T @ old.x, old.reg, users,
                            old.alpha * np.ones(len(users)), prior))


def test_a_carve_without_enough_new_item_tasks_falls_back(planted_ours: GraphMetaImplicit,
                                                          planted_shop: Dataset) -> None:
    omega = planted_ours.exposure_weight
    few = dataclasses.replace(planted_shop,
                              tasks={"item_cold": planted_shop.tasks["item_cold"][:3]})
    try:
        chosen, report = choose_exposure_weight(planted_ours, few)
        assert chosen == FALLBACK == planted_ours.exposure_weight
        assert report["exposure_tuning"].startswith("fallback")
    finally:
        planted_ours.exposure_weight = omega


@pytest.mark.parametrize("online", [True, False])
def test_per_task_recall(planted_ours: GraphMetaImplicit, planted_shop: Dataset,
                         online: bool) -> None:
    res = (evaluate_implicit_online(planted_ours, planted_shop, fit=False, per_task=True)
           if online else evaluate_implicit(planted_ours, planted_shop, fit=False,
                                            per_task=True, support_k=[1, None]))
    for block in res["scenarios"].values():
        assert len(block["recall@20_per_task"]) == block["tasks"]
        assert np.mean(block["recall@20_per_task"]) == pytest.approx(block["recall@20"])
    for blocks in res.get("few_shot", {}).values():  # the truncated supports' too
        for block in blocks.values():
            assert len(block["recall@20_per_task"]) == block["tasks"]
            assert np.mean(block["recall@20_per_task"]) == pytest.approx(block["recall@20"])


def test_implicit_als_keeps_the_plain_step_unless_asked(planted_shop: Dataset) -> None:
    view = training_view(planted_shop)
    plain = ImplicitALS(factors=16, backend="numpy", iters=3)
    assert plain.exposure_weight == 1.0 and not plain.choose_exposure
    chosen = ImplicitALS(factors=16, backend="numpy", iters=3, exposure_weight=None).fit(view)
    assert chosen.params["exposure_weight"] == chosen.exposure_weight in WEIGHTS
    assert "pseudo_online_recall@20" in chosen.params
    fixed = ImplicitALS(factors=16, backend="numpy", iters=3, exposure_weight=0.1).fit(view)
    assert fixed.params["exposure_weight"] == 0.1 and "pseudo_online_recall@20" not in (
        fixed.params)
    d = fixed.data
    new, item, users = _new_item_and_takers(fixed, 2)
    prior = fixed.y[new].copy()
    fixed.observe([(str(d.user_ids[u]), item) for u in users])
    states = np.where(d.user_in_train[:, None], fixed.x, fixed.x0)
    np.testing.assert_allclose(
        fixed.y[new], fold_in(states, fixed.x.T @ fixed.x, fixed.reg, users,
                              fixed.alpha * np.ones(len(users)), prior, gram_weight=0.1),
        atol=1e-12)
    with pytest.raises(ValueError, match="exposure_weight"):
        ImplicitALS(exposure_weight=2.0)
