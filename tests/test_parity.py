"""Serving runs the learner that training trains: for every registered learner x adapt mode
x scenario, ``GraphMetaRecommender.adapt_user`` / ``predict`` equal the adapted parameters of
``GraphMetaNet.adapt_users`` (what ``user_loss`` trains on), computed in torch.

The nets are built, not fitted (random item states, priors, head, precisions and learner
weights stand in for trained ones; fitting only changes the values): one per learner x adapt
mode, on one graph. One learner is also fitted, end to end. The torch side runs in float64
on the predictor state's item states and priors, so the comparison is of the adaptation
itself (fold-in and inner loop), to 1e-9.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import pytest
import torch

from graph_meta.config import Config, ConfigError
from graph_meta.dataset import Dataset
from graph_meta.eval.protocol import training_view
from graph_meta.fitting.graphs import build_graph
from graph_meta.meta import NO_LEARNER, MetaLearner, learner_names, make_learner
from graph_meta.meta import base as meta_base
from graph_meta.model import GraphMetaRecommender
from graph_meta.nn.convs import conv_names
from graph_meta.nn.heads import score
from graph_meta.nn.net import GraphMetaNet
from graph_meta.nn.support import support_batch, support_loss, support_loss_grad
from graph_meta.sampling.episodes import RatingIndex
from graph_meta.serving.adapt import item_steps, new_item_state

LEARNERS = learner_names()
ADAPT = ("vector", "head", "head+vector")
# (meta.support_shrink, meta.ridge_on_support): the inner loss's scaling, and whether the
# support enters the fold-in
SETTINGS = ((5.0, True), (0.0, False))
SCENARIOS = ("warm user", "new user with support", "new user, K = 0", "unknown user")


def _cfg(learner: str, adapt: str, **over: Any) -> Config:
    base = {"model.dim": 6, "model.hidden": 8, "model.layers": 1, "model.neighbor_k": 0,
            "model.regression_l2": 0.0, "meta.learner": learner, "meta.adapt": adapt,
            "meta.inner_steps": 2, "meta.inner_lr": 0.07, "episodes.max_support": 20,
            "episodes.history_fanout": 32, "episodes.batch_users": 128,
            "episodes.batch_items": 16, "train.epochs": 1, "train.validate": False}
    base.update(over)
    return Config().replace(**base)


@pytest.fixture(scope="module")
def graph(catalog: Dataset) -> tuple[Any, RatingIndex]:
    data = build_graph(training_view(catalog), text_dim=Config().model.text_dim)
    return data, RatingIndex.from_graph(data)


def _built(graph: tuple[Any, RatingIndex], cfg: Config, seed: int = 0) -> GraphMetaRecommender:
    """A model whose net is built (not fitted) with non-trivial values everywhere."""
    data, index = graph
    torch.manual_seed(seed)
    model = GraphMetaRecommender(cfg)
    net = GraphMetaNet(data, model.config, mu=index.mean)  # one config object: tests edit it
    with torch.no_grad():
        net.item_trained[torch.as_tensor(np.unique(index.item))] = 1.0
        net.item_emb.weight.normal_(0.0, 0.3)
        net.user_base.normal_(0.0, 0.3)
        net.log_lam.add_(torch.randn_like(net.log_lam) * 0.3)
        if net.head0 is not None:
            net.head0.copy_(torch.tensor([0.15, -0.2]))
        for learner in (net.user_learner, net.item_learner):
            # every learned part of the rule away from its initial value (Meta-SGD's rates,
            # the LSTM's zero gate weights, LEO's zero encoder, the attention's zero scores)
            for name, weight in (learner.named_parameters() if learner is not None else ()):
                weight.add_(torch.randn_like(weight) * (0.5 if "raw" in name else 0.3))
    model.net = net
    model.build_cache(data, index)
    return model


def _task(model: GraphMetaRecommender, catalog: Dataset, scenario: str
          ) -> tuple[str, list[tuple[str, float]], list[str]]:
    if scenario == "warm user":
        task = catalog.tasks["warm"][0]
    else:
        task = next(t for t in catalog.tasks["user_cold"] if len(t.support) >= 3)
    support = [] if scenario == "new user, K = 0" else list(task.support[:8])
    user = "never-seen-user" if scenario == "unknown user" else task.user_id
    return user, support, [i for i, _ in task.query]


def _torch_path(model: GraphMetaRecommender, user: str, support: list[tuple[str, float]],
                query: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(theta, head, predictions)`` of training's torch path for one task, in float64:
    :meth:`GraphMetaNet.adapt_users` on episode tensors holding the user's whole history
    (an unknown user: a node with the mean prior and no history)."""
    assert model.net is not None
    net = copy.deepcopy(model.net).double()
    c = model.state
    items = torch.from_numpy(c.item_states)
    prior = torch.from_numpy(c.user_prior)
    u = model.user_pos.get(user)
    if u is None:
        prior = torch.cat([prior, prior.mean(0, keepdim=True)])
        u = len(prior) - 1
        hist_i, hist_y = np.zeros(0, np.int64), np.zeros(0)
    else:
        lo, hi = c.hist_indptr[u], c.hist_indptr[u + 1]
        hist_i, hist_y = c.hist_items[lo:hi], c.hist_y[lo:hi]

    def padded(pos: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, ...]:
        width = max(len(pos), 1)  # an empty set is one masked-out row, as episodes pad
        p, v, m = np.zeros(width, np.int64), np.zeros(width), np.zeros(width)
        p[:len(pos)], v[:len(pos)], m[:len(pos)] = pos, y, 1.0
        return tuple(torch.from_numpy(a)[None] for a in (p, v, m))

    s_pos = np.array([model.item_pos[i] for i, _ in support], np.int64)
    s_y = np.array([r for _, r in support], np.float64)
    ep: dict[str, torch.Tensor] = {"users": torch.tensor([u])}
    for name, (p, v, m) in (("hist", padded(hist_i, hist_y)),
                            ("support", padded(s_pos, s_y))):
        ep[f"{name}_items"], ep[f"{name}_y"], ep[f"{name}_mask"] = p, v, m
    with torch.no_grad():
        _, traj = net.adapt_users(ep, items, prior)
        last = traj[-1]
        theta = last["theta"][0]
        head = last["head"][0] if "head" in last else torch.zeros(2, dtype=torch.float64)
        q = torch.tensor([model.item_pos[i] for i in query])
        pred = score(net.mu, theta, items[q], head)
    return theta.detach().numpy(), head.detach().numpy(), pred.detach().numpy()


@pytest.mark.parametrize("adapt", ADAPT)
@pytest.mark.parametrize("learner", LEARNERS)
def test_served_adaptation_equals_the_torch_path(graph, catalog: Dataset, learner: str,
                                                 adapt: str) -> None:
    model = _built(graph, _cfg(learner, adapt))
    moved = 0.0
    for shrink, ridge_on_support in SETTINGS:
        model.config.meta.support_shrink = shrink
        model.config.meta.ridge_on_support = ridge_on_support
        for scenario in SCENARIOS:
            user, support, query = _task(model, catalog, scenario)
            theta, head, pred = _torch_path(model, user, support, query)
            got_theta, got_head = model.adapt_user(user, support)
            np.testing.assert_allclose(got_theta, theta, atol=1e-9, err_msg=scenario)
            np.testing.assert_allclose(got_head, head, atol=1e-9, err_msg=scenario)
            np.testing.assert_allclose(model.predict(user, support, query), pred, atol=1e-9,
                                       err_msg=scenario)
            if scenario == "new user with support":
                assert user in model.user_pos and user not in {
                    str(u) for u in catalog.train["user_id"]}
            _, start_theta, start_head = next(model._adaptation(user, support))  # fold-in
            moved += float(np.abs(got_theta - start_theta).sum()
                           + np.abs(got_head - start_head).sum())
    # what the learner adapts moves (and only that: the comparison above)
    if learner != NO_LEARNER:
        assert moved > 1e-3


@pytest.mark.parametrize("learner", ["maml", "metasgd"])
def test_a_fitted_model_serves_what_it_trained(catalog: Dataset, learner: str) -> None:
    """End to end (fit, then serve): MAML with ``meta.adapt = "vector"`` used to adapt the
    head at serving, which training never did."""
    torch.manual_seed(0)
    model = GraphMetaRecommender(_cfg(learner, "vector")).fit(catalog)
    assert not model.state.lr_head.any()  # the head is not adapted
    for scenario in SCENARIOS:
        user, support, query = _task(model, catalog, scenario)
        theta, head, _ = _torch_path(model, user, support, query)
        got_theta, got_head = model.adapt_user(user, support)
        np.testing.assert_allclose(got_theta, theta, atol=1e-9, err_msg=scenario)
        np.testing.assert_allclose(got_head, head, atol=1e-9, err_msg=scenario)


@pytest.mark.parametrize("learner", [n for n in LEARNERS if n != NO_LEARNER])
def test_new_item_steps_equal_the_item_learner(graph, learner: str) -> None:
    """The item learner's steps that ``observe`` gives a never-rated item equal those of the
    torch item tasks (``meta.adapt = "vector"``: no head)."""
    model = _built(graph, _cfg(learner, "vector"), seed=1)
    net = copy.deepcopy(model.net).double()
    rng = np.random.default_rng(0)
    raters = rng.normal(0.0, 0.4, (7, model.state.d_state))
    y = rng.integers(1, 6, 7).astype(np.float64)
    theta0 = rng.normal(0.0, 0.2, model.state.d_state)
    shrink = model.config.meta.support_shrink
    got = item_steps(model.state, theta0, raters, y, shrink=shrink)
    with torch.no_grad():
        want = net.adapt(torch.from_numpy(theta0)[None], torch.from_numpy(raters)[None],
                         torch.from_numpy(y)[None], torch.ones(1, 7, dtype=torch.float64),
                         net.item_learner, head0=None)[-1]["theta"][0].numpy()
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert np.abs(got - theta0).sum() > 1e-3


@pytest.mark.parametrize("learner", [n for n in LEARNERS if n != NO_LEARNER])
@pytest.mark.parametrize("adapt", ADAPT)
def test_new_item_state_is_the_item_task_path(graph, learner: str, adapt: str) -> None:
    """A never-rated item's state after its first ratings, as ``observe`` serves it (ridge
    fold-in toward its prior, then the item learner's steps, through the users' ``head0``),
    equals the torch path item tasks train (:meth:`GraphMetaNet.adapt_items`), for every
    learner and adapt mode, and the head moves it when there is one."""
    model = _built(graph, _cfg(learner, adapt), seed=1)
    net = copy.deepcopy(model.net).double()
    rng = np.random.default_rng(0)
    raters = rng.normal(0.0, 0.4, (7, model.state.d_state))
    y = rng.integers(1, 6, 7).astype(np.float64)
    prior = rng.normal(0.0, 0.2, model.state.d_state)
    shrink = model.config.meta.support_shrink
    got = new_item_state(model.state, prior, raters, y, shrink=shrink)
    with torch.no_grad():
        want = net.adapt_items(torch.from_numpy(prior)[None], torch.from_numpy(raters)[None],
                               torch.from_numpy(y)[None], torch.ones(1, 7, dtype=torch.float64))
    np.testing.assert_allclose(got, want[-1]["theta"][0].numpy(), atol=1e-9)
    if adapt != "vector":
        headless = dataclasses.replace(model.state, head0=np.zeros(2))
        assert np.abs(new_item_state(headless, prior, raters, y, shrink=shrink) - got).max() > 1e-3


@pytest.mark.parametrize("keys", [("theta",), ("head",), ("theta", "head")])
@pytest.mark.parametrize("with_head", [True, False])
@pytest.mark.parametrize("kappa", [None, 5.0])
def test_numpy_support_gradient_is_the_torch_gradient(keys, with_head: bool,
                                                      kappa: float | None) -> None:
    if "head" in keys and not with_head:
        return
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(6, 5)), rng.integers(1, 6, 6).astype(np.float64)
    mask = np.array([1, 1, 1, 0, 1, 0], np.float64)
    theta, head = rng.normal(size=5) * 0.3, np.array([0.2, -0.3])
    b = support_batch(x, y, mu=3.4, theta=theta, head=head if with_head else None,
                      shrink=kappa or 0.0)
    b["mask"] = mask
    params = {k: {"theta": theta, "head": head}[k] for k in keys}
    got = support_loss_grad(params, b)
    tb = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in b.items()}
    tp = {k: torch.from_numpy(v) for k, v in params.items()}
    want = torch.func.grad(support_loss)(tp, tb)
    assert set(got) == set(want)
    for k in keys:
        np.testing.assert_allclose(got[k], want[k].numpy(), atol=1e-12)


def test_config_choices_come_from_the_registries() -> None:
    for name in learner_names():
        Config().replace(**{"meta.learner": name})
    for name in conv_names():
        Config().replace(**{"model.conv": name})
    with pytest.raises(ConfigError, match=r"meta\.learner"):
        Config().replace(**{"meta.learner": "anil"})
    with pytest.raises(ConfigError, match=r"model\.conv"):
        Config().replace(**{"model.conv": "gat"})


def test_a_new_learner_is_its_class_and_its_registration(graph, catalog: Dataset) -> None:
    """A learner registered elsewhere (here: plain SGD at twice ``meta.inner_lr``) is a config
    choice, trains and is served with its own step sizes, with nothing else to touch."""

    class DoubleRate(MetaLearner):
        first_order = True

        @classmethod
        def from_config(cls, loss_fn, *, shapes, steps, inner_lr, first_order=False):
            out = cls(loss_fn, steps=steps, shapes=shapes)
            out.rate = 2.0 * inner_lr
            return out

        def step_size(self, name: str, step: int) -> float:
            return self.rate

    meta_base.register_learner("double-rate-test")(DoubleRate)
    try:
        assert "double-rate-test" in learner_names()
        cfg = _cfg("double-rate-test", "head+vector")
        assert isinstance(make_learner("double-rate-test", support_loss, shapes={},
                                       steps=1, inner_lr=0.1), DoubleRate)
        model = _built(graph, cfg)
        np.testing.assert_allclose(model.state.lr_theta, 2 * cfg.meta.inner_lr)
        user, support, query = _task(model, catalog, "warm user")
        theta, head, _ = _torch_path(model, user, support, query)
        got_theta, got_head = model.adapt_user(user, support)
        np.testing.assert_allclose(got_theta, theta, atol=1e-9)
        np.testing.assert_allclose(got_head, head, atol=1e-9)
    finally:
        meta_base._LEARNERS.pop("double-rate-test", None)
