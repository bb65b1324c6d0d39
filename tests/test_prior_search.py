"""The new items' side-feature prior (ridge and lean toward new releases) chosen by a
backtest on the newest rated items' ALS states (:mod:`graph_meta.fitting.prior_search`)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from graph_meta.config import Config
from graph_meta.dataset import Dataset, training_view
from graph_meta.fitting.prior_search import ALPHAS, HELD_OUT, NEWEST_BIASES, choose_item_prior
from graph_meta.fitting.priors import (
    DRIFT_MIN_RHO,
    DRIFT_P,
    linear_prior,
    release_drift,
    release_weights,
)
from graph_meta.model import GraphMetaRecommender
from loaders.synthetic import generate_catalog

_CFG = {"model.dim": 8, "model.hidden": 16, "model.layers": 1, "train.epochs": 1,
        "train.val_max_tasks": 80, "train.prior_search": True,
        "episodes.batch_users": 128, "episodes.batch_items": 16}


@pytest.fixture(scope="module")
def shop() -> Dataset:
    return generate_catalog(n_users=1200, n_items=300, n_interactions=30000, seed=3)


def _states(shop: Dataset) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Item ids, training counts and stand-in states: a bias from the brand plus noise."""
    view = training_view(shop)
    ids = [str(i) for i in view.items.index]
    counts = view.train["item_id"].astype(str).value_counts().reindex(ids).fillna(0)
    rng = np.random.default_rng(0)
    brand = pd.factorize(view.items["brand"])[0]
    effect = rng.normal(0, 0.5, brand.max() + 1)
    targets = np.zeros((len(ids), 3))
    targets[:, 0] = effect[brand] + rng.normal(0, 0.2, len(ids))
    targets[:, 1:] = rng.normal(0, 0.1, (len(ids), 2))
    return ids, counts.to_numpy(dtype=np.float64), targets


def test_the_chosen_pair_predicts_the_newest_rated_items_best(shop: Dataset) -> None:
    view = training_view(shop)
    ids, counts, targets = _states(shop)
    cfg = Config()
    chosen = choose_item_prior(view, cfg, ids, counts, targets)
    assert chosen is not None
    tried = chosen["tried"]
    assert {(t["alpha"], t["bias"]) for t in tried} == {(a, b) for a in ALPHAS
                                                        for b in NEWEST_BIASES}
    best = min(tried, key=lambda t: t["error"])
    assert (chosen["linear_prior_alpha"], chosen["prior_newest_bias"]) == (best["alpha"],
                                                                          best["bias"])
    assert np.ptp([t["error"] for t in tried]) > 0
    # one pair by hand: the newest rated tenth held out, fitted on the rest, weighted error
    rated = counts > 0
    n_held = int(np.floor(HELD_OUT * rated.sum()))
    assert chosen["held_out"] == n_held
    q = release_weights(view, ids, 1.0)
    newest = np.flatnonzero(rated)[np.argsort(-q[rated], kind="stable")][:n_held]
    held = np.zeros(len(ids), bool)
    held[newest] = True
    frame = view.items.loc[ids]
    pred = linear_prior(view.spec.items, frame, np.where(held, 0.0, counts), targets, 30.0,
                        weight=cfg.train.prior_weight,
                        row_weights=release_weights(view, ids, 4.0))
    err = ((pred[held] - targets[held]) ** 2).sum(axis=1)
    want = (err * counts[held]).sum() / counts[held].sum()
    got = next(t["error"] for t in tried if (t["alpha"], t["bias"]) == (30.0, 4.0))
    assert got == pytest.approx(want, rel=1e-9)


def _no_order(view: Dataset) -> Dataset:
    """``view`` without a release column or timestamps."""
    return dataclasses.replace(
        view, items=view.items.drop(columns=["release"]),
        train=view.train.drop(columns=["timestamp"]),
        spec=dataclasses.replace(view.spec, items=dataclasses.replace(
            view.spec.items, columns={k: v for k, v in view.spec.items.columns.items()
                                      if k != "release"})))


def test_without_a_release_order_only_the_ridge_is_chosen(shop: Dataset) -> None:
    view = training_view(shop)
    no_order = _no_order(view)
    ids, counts, targets = _states(shop)
    assert release_weights(no_order, ids, 1.0) is None
    chosen = choose_item_prior(no_order, Config(), ids, counts, targets)
    assert chosen is not None
    assert {t["bias"] for t in chosen["tried"]} == {Config().train.prior_newest_bias}
    assert {t["alpha"] for t in chosen["tried"]} == set(ALPHAS)


def test_too_few_rated_items_or_no_prior_choose_nothing(shop: Dataset) -> None:
    view = training_view(shop)
    ids, counts, targets = _states(shop)
    few = np.where(np.arange(len(ids)) < 50, counts, 0.0)
    assert choose_item_prior(view, Config(), ids, few, targets) is None
    off = Config().replace(**{"train.linear_prior_alpha": 0.0})
    assert choose_item_prior(view, off, ids, counts, targets) is None


def test_fit_trains_and_saves_with_the_chosen_pair(shop: Dataset, tmp_path) -> None:
    torch.manual_seed(0)
    model = GraphMetaRecommender(Config().replace(**_CFG)).fit(shop)
    chosen = model.fit_info["item_prior"]
    pair = (chosen["linear_prior_alpha"], chosen["prior_newest_bias"])
    t = model.config.train
    assert (t.linear_prior_alpha, t.prior_newest_bias) == pair
    again = GraphMetaRecommender.load(model.save(tmp_path / "model.pt"))
    assert (again.config.train.linear_prior_alpha,
            again.config.train.prior_newest_bias) == pair


def test_the_search_is_off_by_default(shop: Dataset) -> None:
    assert Config().train.prior_search is False
    torch.manual_seed(0)
    model = GraphMetaRecommender(Config().replace(**{
        **_CFG, "train.prior_search": False, "train.prior_lean": "always"}))
    model.fit(shop)
    assert "item_prior" not in model.fit_info and "release_drift" not in model.fit_info
    assert (model.config.train.linear_prior_alpha, model.config.train.prior_newest_bias) == (
        10.0, 16.0)


def _drifted(shop: Dataset, slope: float) -> Dataset:
    """``shop`` with every training rating moved by ``slope`` times its item's release
    quantile (rounded, clipped to 1..5): newer items rated lower for a negative slope."""
    view = training_view(shop)
    ids = [str(i) for i in view.items.index]
    q = pd.Series(np.log(release_weights(view, ids, 1.0)), index=ids)
    train = view.train.copy()
    moved = train["rating"] + slope * q.reindex(train["item_id"].astype(str)).to_numpy()
    train["rating"] = np.clip(np.round(moved), 1.0, 5.0)
    return dataclasses.replace(view, train=train)


def test_the_release_lean_needs_drift(shop: Dataset, tmp_path) -> None:
    view = training_view(shop)
    ids = [str(i) for i in view.items.index]
    flat = release_drift(view, ids)
    assert flat is not None and flat["drift"] is False and abs(flat["rho"]) < DRIFT_MIN_RHO
    drifting = release_drift(_drifted(shop, -2.0), ids)
    assert drifting["drift"] is True and drifting["rho"] < -DRIFT_MIN_RHO
    assert drifting["p"] < DRIFT_P and drifting["items"] == flat["items"]
    assert release_drift(_no_order(view), ids) is None
    # at fit: no drift, no lean (and the saved config says so, for add_items); drift: the lean
    cfg = Config().replace(**{**_CFG, "train.prior_search": False})
    torch.manual_seed(0)
    model = GraphMetaRecommender(cfg).fit(view)
    assert model.fit_info["release_drift"]["drift"] is False
    assert model.config.train.prior_newest_bias == 0.0
    again = GraphMetaRecommender.load(model.save(tmp_path / "model.pt"))
    assert again.config.train.prior_newest_bias == 0.0
    torch.manual_seed(0)
    leaning = GraphMetaRecommender(cfg).fit(_drifted(shop, -2.0))
    assert leaning.fit_info["release_drift"]["drift"] is True
    assert leaning.config.train.prior_newest_bias == 16.0
