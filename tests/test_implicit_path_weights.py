"""The implicit prior's path weights learned for ranking new items (implicit_path_weights)."""

from __future__ import annotations

import numpy as np
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

    def noisy(self, dataset, d, feats, y_trained):  # type: ignore[no-untyped-def]
        prior, (ridge, graph, pop_ridge, pop) = original(self, dataset, d, feats, y_trained)
        noise = np.random.default_rng(7).normal(0.0, 0.3, ridge.shape)
        return prior, (ridge + noise, graph, pop_ridge, pop)

    monkeypatch.setattr(GraphMetaImplicit, "_item_priors", noisy)
    ds = planted_segments()
    model = GraphMetaImplicit(factors=8, reg=1.0, alpha=5.0, tune=False, backend="numpy",
                              alpha_item=1e9, graph_mix=0.0).fit(ds)
    return model, ds


def test_setting_weights_moves_only_new_items_and_keeps_their_scale() -> None:
    ds = planted_segments()
    model = GraphMetaImplicit(factors=8, reg=1.0, alpha=5.0, tune=False,
                              backend="numpy").fit(ds)
    trained = model.data.item_in_train
    y0 = model.y.copy()
    model.set_item_path_weights(ds, {"Item-Category-Item": 2.0}, 3.0, 0.5)
    assert model.params["item_path_weights"] == {}  # params: what fit chose, not this call
    np.testing.assert_array_equal(model.y[trained], y0[trained])
    assert not np.allclose(model.y[~trained], y0[~trained])
    assert np.sqrt((model.y[~trained] ** 2).sum()) == pytest.approx(
        np.sqrt((y0[~trained] ** 2).sum()), rel=1e-9)
    k = model.item_prior_scale
    assert k != 1.0 and model.popularity_weight == pytest.approx(k * 3.0 * 0.5)
    model.set_item_path_weights(ds, {}, 1.0, 0.0)  # back to the prior as fitted
    np.testing.assert_allclose(model.y, y0, atol=1e-12)
    assert model.item_prior_scale == 1.0 and model.popularity_weight == 0.0


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
    the model unchanged."""
    ds = planted_segments()
    model = GraphMetaImplicit(factors=8, reg=1.0, alpha=5.0, tune=False,
                              backend="numpy").fit(ds)
    y0, gamma = model.y.copy(), model.popularity_weight
    report = tune_path_weights(model, ds, ["item_cold"], seed=0)
    assert not report["kept"] and report["tasks"] == len(ds.tasks["item_cold"])
    assert model.item_path_weights == {} and model.popularity_weight == gamma
    np.testing.assert_allclose(model.y, y0, atol=1e-12)
