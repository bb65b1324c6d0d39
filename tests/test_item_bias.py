"""The warm item states' biases re-solved with their empirical-Bayes precision
(graph_meta.fitting.als.bias_precision / rebiased_items, ``train.item_bias_eb``): the
method-of-moments precision sigma^2 / tau^2 matches the one planted, a thinly rated item's
bias is shrunk less, a well-rated one hardly moves, and training scores items with them
while the priors keep the ALS states."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from graph_meta.config import Config
from graph_meta.dataset import Dataset
from graph_meta.fitting.als import (
    PRECISION_GRID,
    als_ratings,
    bias_precision,
    choose_precision,
    factor_precision,
    rebiased_items,
)
from graph_meta.model import GraphMetaRecommender


def _biased_ratings(seed: int, tau2: float, sigma2: float):
    """Ratings mu + b_u + b_i + noise: users and items with 2 to 60 ratings each."""
    rng = np.random.default_rng(seed)
    n_u, n_i = 800, 500
    b_u, b_i = rng.normal(0, 0.4, n_u), rng.normal(0, np.sqrt(tau2), n_i)
    per_item = rng.integers(2, 61, n_i)
    item = np.repeat(np.arange(n_i), per_item)
    user = rng.integers(0, n_u, len(item))
    rating = 3.5 + b_u[user] + b_i[item] + rng.normal(0, np.sqrt(sigma2), len(item))
    index = SimpleNamespace(user=user, item=item, rating=rating, num_users=n_u,
                            num_items=n_i)
    return index, b_i, per_item


def _fit(index, reg: float):
    d = 3
    items0 = np.zeros((index.num_items, d))
    items0[:, 1:] = np.random.default_rng(0).normal(0, 0.1, (index.num_items, d - 1))
    mu = float(index.rating.mean())
    items, users = als_ratings(index.user, index.item, index.rating, index.num_users,
                               index.num_items, reg, 5, items0, mu=mu)
    return mu, items, users


def test_the_bias_precision_is_the_planted_noise_over_the_bias_spread() -> None:
    for tau2, sigma2 in ((0.25, 0.5), (0.1, 0.8)):
        index, _, _ = _biased_ratings(1, tau2, sigma2)
        mu, items, users = _fit(index, 10.0)
        got = bias_precision(index, mu, items, users, ceiling=100.0)
        assert 0.6 * sigma2 / tau2 < got < 1.5 * sigma2 / tau2, (tau2, sigma2, got)
    # capped by the fit's own precision
    index, _, _ = _biased_ratings(2, 0.01, 1.0)
    mu, items, users = _fit(index, 10.0)
    assert bias_precision(index, mu, items, users, ceiling=10.0) == 10.0


def test_rebiased_items_shrink_thin_items_less() -> None:
    index, planted, per_item = _biased_ratings(3, 0.25, 0.5)
    mu, _, users = _fit(index, 10.0)
    again = rebiased_items(index, mu, users, 10.0, 10.0)
    np.testing.assert_allclose(again[:, 1:], rebiased_items(index, mu, users, 10.0, 2.0)[:, 1:],
                               atol=0.05)  # the vectors barely move
    low = rebiased_items(index, mu, users, 10.0, 2.0)
    thin, thick = per_item <= 5, per_item >= 50
    err = {k: np.mean((v[thin, 0] - (planted[thin] - planted.mean())) ** 2)
           for k, v in (("plain", again), ("eb", low))}
    assert err["eb"] < 0.8 * err["plain"], err
    moved = np.abs(low[:, 0] - again[:, 0])
    assert moved[thick].mean() < 0.4 * moved[thin].mean()  # well-rated biases hardly move
    # a subset of the ratings: the same as the solve on that subset alone
    keep = np.random.default_rng(0).random(len(index.item)) < 0.7
    sub = SimpleNamespace(user=index.user[keep], item=index.item[keep],
                          rating=index.rating[keep], num_users=index.num_users,
                          num_items=index.num_items)
    np.testing.assert_allclose(rebiased_items(index, mu, users, 10.0, 2.0, edges=keep),
                               rebiased_items(sub, mu, users, 10.0, 2.0))


def _tiny_config() -> Config:
    """A small model, one epoch, no validation phase: fits the test catalogue in seconds."""
    return Config().replace(**{"model.dim": 8, "model.hidden": 16, "model.layers": 1,
                               "train.epochs": 1, "train.validate": False,
                               "episodes.batch_users": 128, "episodes.batch_items": 16})


def test_training_scores_items_with_the_rebiased_states(catalog: Dataset) -> None:
    cfg = _tiny_config()
    states = {}
    for eb in (True, False):
        torch.manual_seed(0)
        model = GraphMetaRecommender(cfg.replace(**{"train.item_bias_eb": eb})).fit(catalog)
        states[eb] = (model.net.item_emb.weight.detach().double().numpy(),
                      model.prior_targets, model.fit_info.get("item_bias_precision"))
    emb, targets, precision = states[True]
    assert precision is not None and 0 < precision < cfg.meta.init_precision
    np.testing.assert_allclose(states[False][1], targets)  # the priors' ALS states alike
    np.testing.assert_allclose(states[False][0], targets, atol=1e-6)  # off: ALS states
    assert np.abs(emb[:, 0] - targets[:, 0]).max() > 0.01  # on: biases re-solved
    # ... and shrunk less where an item has few ratings
    ids = list(model.item_ids)  # the rows' order
    counts = catalog.train["item_id"].astype(str).value_counts().reindex(ids, fill_value=0)
    thin = ((counts > 0) & (counts <= 5)).to_numpy()
    assert thin.sum() >= 5
    assert np.abs(emb[thin, 0]).mean() > 1.2 * np.abs(targets[thin, 0]).mean()
    assert states[False][2] is None


def _factor_ratings(seed: int, tau2: float, sigma2: float, per_item: int = 40):
    """Ratings mu + <v_u, v_i> + noise, the users' factors known: items with planted factors
    of variance ``tau2`` per coordinate."""
    rng = np.random.default_rng(seed)
    n_u, n_i, d = 600, 400, 3
    v_u = rng.normal(0, 1.0, (n_u, d))
    v_i = rng.normal(0, np.sqrt(tau2), (n_i, d))
    item = np.repeat(np.arange(n_i), per_item)
    user = rng.integers(0, n_u, len(item))
    rating = 3.5 + np.einsum("nd,nd->n", v_u[user], v_i[item]) + rng.normal(
        0, np.sqrt(sigma2), len(item))
    index = SimpleNamespace(user=user, item=item, rating=rating, num_users=n_u, num_items=n_i)
    users = np.hstack([np.zeros((n_u, 1)), v_u])
    items = np.hstack([np.zeros((n_i, 1)), v_i])
    return index, users, items


def test_the_factor_precision_is_the_planted_noise_over_the_factor_spread() -> None:
    for tau2, sigma2 in ((0.25, 0.25), (0.1, 0.8)):
        index, users, items = _factor_ratings(4, tau2, sigma2)
        got = factor_precision(index, 3.5, items, users, ceiling=100.0)
        assert 0.7 * sigma2 / tau2 < got < 1.4 * sigma2 / tau2, (tau2, sigma2, got)
    # capped by the fit's own precision; too few ratings per item to read it: the ceiling
    index, users, items = _factor_ratings(5, 0.01, 1.0)
    assert factor_precision(index, 3.5, items, users, ceiling=10.0) == 10.0
    index, users, items = _factor_ratings(6, 0.25, 0.25, per_item=5)
    assert factor_precision(index, 3.5, items, users, ceiling=10.0) == 10.0


def test_training_with_factor_eb_scores_items_with_less_shrunk_factors(catalog: Dataset) -> None:
    cfg = _tiny_config()
    emb = {}
    for eb in (False, True):
        torch.manual_seed(0)
        model = GraphMetaRecommender(cfg.replace(**{"train.item_factor_eb": eb})).fit(catalog)
        emb[eb] = model.net.item_emb.weight.detach().double().numpy()
        if eb:
            precision = model.fit_info["item_factor_precision"]
            assert 0 < precision < cfg.meta.init_precision
        else:
            assert "item_factor_precision" not in model.fit_info
    # a lower precision: the factors grow, the priors' ALS targets stay
    assert np.linalg.norm(emb[True][:, 1:]) > 1.05 * np.linalg.norm(emb[False][:, 1:])


def _low_rank_ratings(seed: int, per_item: int):
    """Ratings 3.5 + b_u + b_i + <v_u, v_i> + noise with strong factors, as codes."""
    rng = np.random.default_rng(seed)
    n_u, n_i, d = 400, 300, 3
    v_u, v_i = rng.normal(0, 0.8, (n_u, d)), rng.normal(0, 0.8, (n_i, d))
    item = np.repeat(np.arange(n_i), per_item)
    user = rng.integers(0, n_u, len(item))
    rating = (3.5 + rng.normal(0, 0.3, n_u)[user] + rng.normal(0, 0.3, n_i)[item]
              + np.einsum("nd,nd->n", v_u[user], v_i[item]) + rng.normal(0, 0.4, len(item)))
    return user, item, rating


def test_the_precision_search_moves_off_the_default_only_when_it_predicts_better() -> None:
    """A catalogue with 20 ratings per item and strong factors: 10 shrinks them too far, a
    smaller precision predicts held-out ratings more than 5 % better and is chosen; with the
    best as the default, or a margin nothing can beat, the default stays; a seed is a seed."""
    user, item, rating = _low_rank_ratings(7, per_item=20)
    grid = (1.0, 2.0, 5.0, 10.0, 20.0)
    chosen, scores = choose_precision(user, item, rating, 3, grid, 10, 0, default=10.0)
    assert set(scores) == set(grid)
    assert chosen < 10.0 and scores[chosen] < 0.95 * scores[10.0], scores
    assert chosen == min(scores, key=scores.__getitem__)
    assert choose_precision(user, item, rating, 3, grid, 10, 0, default=chosen)[0] == chosen
    assert choose_precision(user, item, rating, 3, grid, 10, 0, default=10.0,
                            margin=0.99)[0] == 10.0
    assert choose_precision(user, item, rating, 3, grid, 10, 0, default=10.0) == (
        chosen, scores)
    # a default off the grid is tried too
    assert 7.0 in choose_precision(user, item, rating, 3, grid, 10, 0, default=7.0)[1]


def test_fit_records_the_searched_precision_and_trains_with_it(catalog: Dataset) -> None:
    cfg = _tiny_config()
    model = GraphMetaRecommender(cfg).fit(catalog)
    chosen = model.fit_info["init_precision"]
    assert set(model.fit_info["precision_search"]) >= set(PRECISION_GRID)
    assert model.config.meta.init_precision == chosen  # what the net was built with
    assert model.fit_info["configured_init_precision"] == cfg.meta.init_precision
    # fitted again, the model searches from the value configured, not from its last choice
    model.config = model.config.replace(**{"meta.init_precision": 50.0})
    model.fit_info["configured_init_precision"] = cfg.meta.init_precision
    again = model.fit(catalog)
    assert again.fit_info["init_precision"] == chosen
    assert again.fit_info["configured_init_precision"] == cfg.meta.init_precision
    off = GraphMetaRecommender(cfg.replace(**{"train.precision_search": False})).fit(catalog)
    assert "init_precision" not in off.fit_info
    assert off.config.meta.init_precision == cfg.meta.init_precision


def test_the_prior_target_pulls_thin_items_toward_their_side_feature_prior(
        catalog: Dataset) -> None:
    """``train.item_prior_target``: the warm items' re-solve shrinks toward ``item_base`` (the
    side-feature prior) instead of 0: an item without ratings is its prior, a thinly rated
    item's bias moves more than a well-rated one's (the solve itself: the test below)."""
    cfg = _tiny_config().replace(**{"train.precision_search": False})
    got = {}
    for on in (False, True):
        torch.manual_seed(0)
        model = GraphMetaRecommender(cfg.replace(**{"train.item_prior_target": on})
                                     ).fit(catalog)
        got[on] = (model.net.item_emb.weight.detach().double().numpy(),
                   model.net.item_base.detach().double().numpy())
    (plain, base), (pulled, base_on) = got[False], got[True]
    np.testing.assert_allclose(base, base_on, atol=1e-5)  # the prior itself is the same
    ids = [str(i) for i in model.item_ids]
    counts = catalog.train["item_id"].astype(str).value_counts().reindex(ids, fill_value=0)
    thin = ((counts > 0) & (counts <= 5)).to_numpy()
    thick = (counts >= 40).to_numpy()
    assert thin.sum() >= 5 and thick.sum() >= 5
    unrated = (counts == 0).to_numpy()
    assert unrated.sum() >= 5  # the catalogue's new items
    np.testing.assert_allclose(pulled[unrated], base[unrated], atol=1e-5)  # the prior, not 0
    assert np.abs(plain[unrated]).max() < 1e-6
    moved = np.abs(pulled[:, 0] - plain[:, 0])  # the biases: their precision is small
    assert moved[thick].mean() < 0.5 * moved[thin].mean()
    # item states that training learned (not frozen) are served as learned
    torch.manual_seed(0)
    learned = GraphMetaRecommender(cfg.replace(**{"train.freeze_item_emb": False})
                                   ).fit(catalog).net.item_emb.weight.detach().double().numpy()
    assert np.abs(learned[unrated] - base[unrated]).max() > 1e-3  # not the prior rows


def test_rebiased_items_toward_a_target_is_the_ridge_solve_with_that_prior_mean() -> None:
    index, users, _ = _factor_ratings(8, 0.25, 0.25, per_item=6)
    n_i = index.num_items
    target = np.random.default_rng(1).normal(0, 0.3, (n_i, users.shape[1]))
    seen = np.ones(n_i, bool)
    seen[:5] = False  # items without ratings get their target
    keep = seen[index.item]
    got = rebiased_items(index, 3.5, users, 10.0, 2.0, edges=keep, target=target)
    np.testing.assert_allclose(got[:5], target[:5])
    lam = np.diag([2.0] + [10.0] * (users.shape[1] - 1))
    for j in (5, 17, 200):
        rows = np.flatnonzero(keep & (index.item == j))
        x = np.hstack([np.ones((len(rows), 1)), users[index.user[rows], 1:]])
        t = index.rating[rows] - 3.5 - users[index.user[rows], 0]
        want = np.linalg.solve(x.T @ x + lam, x.T @ t + lam @ target[j])
        np.testing.assert_allclose(got[j], want, atol=1e-8)
