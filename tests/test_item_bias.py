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
from graph_meta.fitting.als import als_ratings, bias_precision, factor_precision, rebiased_items
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
