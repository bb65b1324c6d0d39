"""Checks every learner with its own serving rule passes (used by ``test_meta_lstm.py``,
``test_meta_leo.py``, ``test_meta_proto.py``): the numpy rule equals the torch trajectory on
random tasks, the rule survives its saved arrays, and a model fitted with the learner serves
what it trained, saves and loads it, and beats the global mean."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from test_parity import SCENARIOS, _cfg, _task, _torch_path

from graph_meta.baselines import GlobalMean
from graph_meta.dataset import Dataset
from graph_meta.eval.protocol import evaluate
from graph_meta.meta import MetaLearner, make_learner
from graph_meta.meta.base import rule_arrays, rule_from_arrays
from graph_meta.model import GraphMetaRecommender
from graph_meta.nn.support import support_batch, support_loss, support_loss_grad

D = 5


def random_tasks(n: int = 4, k: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    """A float64 batch of ``n`` support sets (``k`` rows, some masked out) with a head."""
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(n, k, generator=g) > 0.3).double()
    mask[:, 0] = 1.0
    return {"items": torch.randn(n, k, D, generator=g, dtype=torch.float64) * 0.5,
            "y": torch.randint(1, 6, (n, k), generator=g).double(), "mask": mask,
            "theta": torch.randn(n, D, generator=g, dtype=torch.float64) * 0.2,
            "head": torch.randn(n, 2, generator=g, dtype=torch.float64) * 0.1,
            "mu": torch.full((n,), 3.5, dtype=torch.float64),
            "kappa": torch.full((n,), 2.0, dtype=torch.float64)}


def perturbed(kind: str, shapes: dict[str, tuple[int, ...]], steps: int = 3,
              seed: int = 0) -> MetaLearner:
    """Learner ``kind`` in float64 with every weight moved off its initial value."""
    torch.manual_seed(seed)
    learner = make_learner(kind, support_loss, shapes=shapes, steps=steps, inner_lr=0.1)
    with torch.no_grad():
        for weight in learner.parameters():
            weight.add_(torch.randn_like(weight) * 0.3)
    return learner.double()


def check_rule_equals_torch(kind: str) -> None:
    """The numpy rule (also after its saved arrays) equals the torch trajectory, step by
    step, for each adapted subset (theta, head, both), on tasks of which one has an empty
    support (nothing moves); and the vmapped batch equals the per-task loop."""
    batch = random_tasks()
    batch["mask"][1] = 0.0  # an empty support
    for shapes in ({"theta": (D,)}, {"head": (2,)}, {"theta": (D,), "head": (2,)}):
        learner = perturbed(kind, shapes)
        start = {k: batch[k] for k in shapes}
        with torch.no_grad():
            traj = learner.adapt_batch(start, batch, params_batched=True,
                                       return_trajectory=True)
        rule = learner.serving_rule({"theta": D, "head": 2})
        again = rule_from_arrays("user", rule_arrays("user", rule))
        assert type(again) is type(rule) and again.steps == rule.steps == 3
        for task in range(len(batch["y"])):
            keep = batch["mask"][task].numpy() > 0
            b = support_batch(batch["items"][task].numpy()[keep], batch["y"][task].numpy()[keep],
                              mu=3.5, theta=batch["theta"][task].numpy(),
                              head=batch["head"][task].numpy(), shrink=2.0)
            p0 = {"theta": b["theta"], "head": b["head"]}
            for served in (rule, again):
                steps = served.trajectory(p0, b, support_loss_grad)
                assert len(steps) == len(traj) == 4
                for got, want in zip(steps, traj, strict=True):
                    for name in ("theta", "head"):
                        expect = (want[name][task] if name in want else batch[name][task])
                        np.testing.assert_allclose(got[name], expect.numpy(), atol=1e-12)
            if not keep.any():  # no support: the state stays
                np.testing.assert_array_equal(steps[-1]["theta"], b["theta"])
            # steps past the trained ones (adaptation_curve) run
            assert len(rule.trajectory(p0, b, support_loss_grad, steps=5)) == 6
        one = learner.adapt({k: v[0] for k, v in start.items()},
                            {k: v[0] for k, v in batch.items()})
        for name in shapes:
            torch.testing.assert_close(one[name], traj[-1][name][0])


def check_gradient_reaches(kind: str, first: tuple[str, ...]) -> None:
    """The outer (query) loss's gradient reaches the weights ``first`` at initialisation
    (the zero-initialised output, so training leaves the initial rule), and every weight once
    they are off their initial values."""
    batch = {k: v.float() for k, v in random_tasks(seed=1).items()}
    for moved in (False, True):
        torch.manual_seed(0)
        learner = make_learner(kind, support_loss, shapes={"theta": (D,), "head": (2,)},
                               steps=2, inner_lr=0.1)
        if moved:
            with torch.no_grad():
                for weight in learner.parameters():
                    weight.add_(torch.randn_like(weight) * 0.3)
        fast = learner.adapt_batch({"theta": batch["theta"], "head": batch["head"]}, batch,
                                   params_batched=True)
        loss = sum(support_loss({k: v[t] for k, v in fast.items() if k in ("theta", "head")},
                                {k: v[t] for k, v in batch.items()}) for t in range(4))
        (loss + learner.outer_loss({"theta": batch["theta"]}, fast)).backward()
        for name, weight in learner.named_parameters():
            if moved or name in first:
                assert weight.grad is not None and weight.grad.abs().sum() > 0, name


def check_fitted(kind: str, catalog: Dataset, tmp_path: Path, moved: tuple[str, ...]) -> None:
    """Fit with learner ``kind`` (``meta.adapt = "head+vector"``): the weights ``moved``
    (zero at initialisation) were trained; the served adaptation equals the torch path for
    every scenario, also after save and load; the saved model carries the rule, not step
    sizes; RMSE beats the global mean on the warm and the new-user tasks."""
    torch.manual_seed(0)
    model = GraphMetaRecommender(_cfg(kind, "head+vector", **{"train.epochs": 2}))
    model.fit(catalog)
    net = model.net
    assert net is not None
    for name in moved:
        assert dict(net.user_learner.named_parameters())[name].abs().sum() > 0, name
    assert model.state.lr_theta is None and model.state.lr_item is None
    assert any(k.startswith(f"rule.user.{kind}.") for k in model.state)
    assert any(k.startswith(f"rule.item.{kind}.") for k in model.state)
    path = model.save(tmp_path / "model.pt")
    loaded = GraphMetaRecommender.load(path)
    for scenario in SCENARIOS:
        user, support, query = _task(model, catalog, scenario)
        theta, head, _ = _torch_path(model, user, support, query)
        for served in (model, loaded):
            got_theta, got_head = served.adapt_user(user, support)
            np.testing.assert_allclose(got_theta, theta, atol=1e-9, err_msg=scenario)
            np.testing.assert_allclose(got_head, head, atol=1e-9, err_msg=scenario)
        np.testing.assert_allclose(loaded.predict(user, support, query),
                                   model.predict(user, support, query), atol=1e-12)
        if scenario == "new user with support":
            assert np.abs(got_theta - next(model._adaptation(user, support))[1]).sum() > 1e-4
    curve = model.adaptation_curve(*_task(model, catalog, "warm user"))
    assert curve["trained_steps"] == model.config.meta.inner_steps
    ours = evaluate(model, catalog, fit=False)["scenarios"]
    base = evaluate(GlobalMean(), catalog)["scenarios"]
    for scenario in ("warm", "user_cold"):
        assert ours[scenario]["rmse"] < base[scenario]["rmse"] - 0.1, (
            scenario, ours[scenario]["rmse"], base[scenario]["rmse"])
