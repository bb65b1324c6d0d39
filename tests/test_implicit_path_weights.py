"""The implicit prior's path weights learned for ranking new items (implicit_path_weights)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from graph_meta.eval.ranking import evaluate_implicit
from graph_meta.implicit import GraphMetaImplicit
from graph_meta.implicit_path_weights import PathEpisodes, fit_path_weights, tune_path_weights
from loaders.synthetic_implicit import planted_segments


def _recall(ep: PathEpisodes, v: np.ndarray, tau: float) -> float:
    s = ep.scores(torch.as_tensor(v, dtype=torch.float64), tau)
    top = torch.topk(s, 20, dim=1).indices
    return float(torch.gather(ep.hits, 1, top).sum(1).double().div(ep.hits.sum(1)).mean())


def test_the_fit_weighs_up_the_block_that_finds_the_query_items() -> None:
    """Three blocks: noise, the planted one (query items score high), noise; the prior's own
    score is noise too. The softmax fit gives the planted block the weight and the ranking
    finds the query items it could not find before."""
    rng = np.random.default_rng(0)
    n, t, p = 120, 3, 200
    hits = np.zeros((n, p), dtype=bool)
    for k in range(n):
        hits[k, rng.choice(p, 5, replace=False)] = True
    blocks = rng.normal(size=(n, t, p))
    blocks[:, 1] += 2.0 * hits
    ep = PathEpisodes(["a", "planted", "b"], blocks, rng.normal(size=(n, p)),
                      np.zeros((n, p)), hits, np.ones((n, p), dtype=bool))
    v, tau = fit_path_weights(ep)
    assert v[1] > 1.0 and v[1] > 5 * max(abs(v[0]), abs(v[2]))
    assert _recall(ep, v, tau) > _recall(ep, np.zeros(t), 1.0) + 0.4


def _no_graph_model(monkeypatch: pytest.MonkeyPatch) -> tuple[GraphMetaImplicit, object]:
    """The planted shop with a prior that cannot tell the categories apart: no graph in the
    mix and a side-feature map that says nothing (its rows replaced by seeded noise, the same
    on every rebuild)."""
    original = GraphMetaImplicit._item_priors

    def noisy(self, dataset, d, feats, y_trained, **kw):  # type: ignore[no-untyped-def]
        prior, (ridge, graph, pop_ridge, pop) = original(self, dataset, d, feats, y_trained, **kw)
        noise = np.random.default_rng(7).normal(0.0, 0.3, ridge.shape)
        return prior, (ridge + noise, graph, pop_ridge, pop)

    monkeypatch.setattr(GraphMetaImplicit, "_item_priors", noisy)
    ds = planted_segments()
    model = GraphMetaImplicit(factors=8, reg=1.0, alpha=5.0, tune=False, backend="numpy",
                              alpha_item=1e9, graph_mix=0.0).fit(ds)
    return model, ds


def test_setting_weights_moves_only_new_items_and_keeps_their_scale(tmp_path) -> None:
    ds = planted_segments()
    model = GraphMetaImplicit(factors=8, reg=1.0, alpha=5.0, tune=False, backend="numpy",
                              popularity_weight=0.5).fit(ds)
    trained = model.data.item_in_train
    y0, bias0 = model.y.copy(), model.cold_bias.copy()
    model.set_item_path_weights(ds, {"Item-Category-Item": 2.0}, 3.0)
    assert model.params["item_path_weights"] == {}  # params: what fit chose, not this call
    np.testing.assert_array_equal(model.y[trained], y0[trained])
    assert not np.allclose(model.y[~trained], y0[~trained])
    assert np.sqrt((model.y[~trained] ** 2).sum()) == pytest.approx(
        np.sqrt((y0[~trained] ** 2).sum()), rel=1e-9)
    k = model.item_prior_scale
    assert k != 1.0 and model.popularity_weight == 0.5  # gamma stays, the term scales
    np.testing.assert_allclose(model.cold_bias, k * 3.0 * bias0)
    # saved and loaded, and with products added later: the same factors for the same items
    back = GraphMetaImplicit.load(model.save(tmp_path / "m.pkl"))
    np.testing.assert_array_equal(back.y, model.y)
    extra = ds.items.iloc[[80, 100]].copy()  # a category A and a category B product
    extra.index = pd.Index(["a-new", "b-new"], name=extra.index.name)
    grown = dataclasses.replace(ds, items=pd.concat([ds.items, extra]))
    assert back.add_items(grown) == ["a-new", "b-new"]
    pos = back.item_pos
    np.testing.assert_allclose(back.y[pos["a-new"]], model.y[pos["i80"]], atol=1e-9)
    np.testing.assert_allclose(back.y[pos["b-new"]], model.y[pos["i100"]], atol=1e-9)
    # setting weights again never compounds: back to the prior as fitted, exactly
    model.set_item_path_weights(ds, {"Item-Category-Item": 2.0}, 3.0)
    model.set_item_path_weights(ds, {}, 1.0)
    np.testing.assert_allclose(model.y, y0, atol=1e-12)
    np.testing.assert_allclose(model.cold_bias, bias0, atol=1e-12)
    assert (model.item_prior_scale, model.item_path_tau, model.popularity_weight) == (1, 1, 0.5)
    # weights that cancel the factors are refused, the prior as fitted kept
    with pytest.raises(ValueError, match="cancel"):
        model.set_item_path_weights(ds, dict(zip(model.item_prior.names,  # graph mix 1: -beta
                                                 -model.item_prior.beta, strict=True)), 1.0)
    np.testing.assert_allclose(model.y, y0, atol=1e-12)


def test_a_model_pickled_before_path_weights_scores_and_grows_as_before() -> None:
    ds = planted_segments()
    model = GraphMetaImplicit(factors=8, reg=1.0, alpha=5.0, tune=False,
                              backend="numpy").fit(ds)
    for name in ("item_path_weights", "item_prior_scale", "item_path_tau"):
        del model.__dict__[name]  # what an older pickle lacks: the class defaults answer
    y0 = model.y.copy()
    extra = ds.items.iloc[[80]].copy()
    extra.index = pd.Index(["a-new"], name=extra.index.name)
    model.add_items(dataclasses.replace(ds, items=pd.concat([ds.items, extra])))
    np.testing.assert_allclose(model.y[:len(y0)], y0)
    np.testing.assert_allclose(model.y[model.item_pos["a-new"]], y0[80], atol=1e-9)


def test_tuning_brings_back_the_path_the_prior_left_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The category path is what tells a new item of the users' segment from the others; the
    prior here leaves it out. The weights learned on the item_cold episodes give it back,
    judged on held-out halves of the tasks before they are kept."""
    model, ds = _no_graph_model(monkeypatch)
    before = evaluate_implicit(model, ds, scenarios=["item_cold"], fit=False)
    report = tune_path_weights(model, ds, ["item_cold"], seed=0)
    after = evaluate_implicit(model, ds, scenarios=["item_cold"], fit=False)
    assert report["kept"] and report["cv_gain"] > 3 * report["cv_se"] > 0
    assert model.item_path_weights["Item-Category-Item"] > 0
    r0 = before["scenarios"]["item_cold"]["recall@20"]
    r1 = after["scenarios"]["item_cold"]["recall@20"]
    assert r0 < 0.5 and r1 > 0.9, (r0, r1)


def test_weights_that_do_not_help_are_not_kept() -> None:
    """With the category path already in the prior, the ranking is right: no weights kept,
    the model as it was, weights it had before included."""
    ds = planted_segments()
    model = GraphMetaImplicit(factors=8, reg=1.0, alpha=5.0, tune=False,
                              backend="numpy").fit(ds)
    y0, bias0 = model.y.copy(), model.cold_bias.copy()
    report = tune_path_weights(model, ds, ["item_cold"], seed=0)
    assert not report["kept"] and report["tasks"] == len(ds.tasks["item_cold"])
    assert model.item_path_weights == {} and model.item_prior_scale == 1.0
    np.testing.assert_allclose(model.y, y0, atol=1e-12)
    np.testing.assert_allclose(model.cold_bias, bias0, atol=1e-12)
    model.set_item_path_weights(ds, {"Item-Category-Item": 0.5}, 2.0)
    y1, bias1 = model.y.copy(), model.cold_bias.copy()
    assert not tune_path_weights(model, ds, ["item_cold"], seed=0)["kept"]
    assert model.item_path_weights == {"Item-Category-Item": 0.5} and model.item_path_tau == 2.0
    np.testing.assert_allclose(model.y, y1, atol=1e-12)
    np.testing.assert_allclose(model.cold_bias, bias1, atol=1e-12)
    assert not np.allclose(y1, y0)


def test_fit_reports_the_path_weight_choice() -> None:
    from loaders.synthetic_implicit import generate_implicit_catalog

    shop = generate_implicit_catalog(seed=6).dataset
    model = GraphMetaImplicit(quick=True, backend="numpy", seed=1).fit(shop)
    fit = model.params["path_weight_fit"]
    assert isinstance(fit["kept"], bool) and fit["tasks"] >= 0
    assert model.params["item_path_weights"] == (
        {k: round(v, 4) for k, v in model.item_path_weights.items()})
    assert bool(model.item_path_weights) == fit["kept"]
