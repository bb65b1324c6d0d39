"""Meta-learners on torch.func: vmap equals a loop, second order is exact, rates learn."""

from __future__ import annotations

import pytest
import torch

from graph_meta.meta import FOMAML, MAML, MetaSGD, make_learner
from graph_meta.nn.support import support_loss as _inner_loss


def _quad(params, b):
    # 0.5 * a * (theta - c)^2 summed: a convex support loss with a known gradient
    return 0.5 * (b["a"] * (params["theta"] - b["c"]) ** 2).sum()


def _tasks(n: int = 5, k: int = 7, d: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    items = torch.randn(n, k, d, generator=g)
    y = torch.randn(n, k, generator=g) + 3.5
    mask = (torch.rand(n, k, generator=g) > 0.3).float()
    mask[:, 0] = 1.0
    theta = torch.randn(n, d, generator=g) * 0.1
    return {"items": items, "y": y, "mask": mask, "theta": theta,
            "mu": torch.full((n,), 3.5)}


@pytest.mark.parametrize("kind", ["maml", "fomaml", "metasgd", "reptile"])
def test_vmapped_batch_equals_per_task_loop(kind: str) -> None:
    batch = _tasks()
    learner = make_learner(kind, _inner_loss, shapes={"theta": (4,)}, steps=3, inner_lr=0.1)
    start = {"theta": batch["theta"].clone().requires_grad_(True)}
    fast = learner.adapt_batch(start, batch, params_batched=True)["theta"]
    loop = torch.stack([
        learner.adapt({"theta": start["theta"][t]}, {k: v[t] for k, v in batch.items()})[
            "theta"] for t in range(5)])
    torch.testing.assert_close(fast, loop, rtol=1e-5, atol=1e-6)
    # the outer gradients agree as well
    g1 = torch.autograd.grad(fast.square().sum(), start["theta"])[0]
    g2 = torch.autograd.grad(loop.square().sum(), start["theta"])[0]
    torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-6)


def test_adaptation_lowers_the_support_loss() -> None:
    batch = _tasks()
    learner = MetaSGD(_inner_loss, shapes={"theta": (4,)}, steps=5, init_lr=0.05)
    before = torch.stack([_inner_loss({"theta": batch["theta"][t]},
                                      {k: v[t] for k, v in batch.items()}) for t in range(5)])
    fast = learner.adapt_batch({"theta": batch["theta"]}, batch, params_batched=True)
    after = torch.stack([_inner_loss({"theta": fast["theta"][t]},
                                     {k: v[t] for k, v in batch.items()}) for t in range(5)])
    assert (after < before).all()
    assert (fast["theta"] - batch["theta"]).abs().mean() > 1e-2


def test_second_order_gradient_is_exact_and_first_order_drops_it() -> None:
    a, c, b, d, lr = 2.0, 1.0, 3.0, -1.0, 0.1
    batch = {"a": torch.tensor([a]), "c": torch.tensor([c])}
    for learner, factor in ((MAML(_quad, steps=1, inner_lr=lr), 1 - lr * a),
                            (FOMAML(_quad, steps=1, inner_lr=lr), 1.0)):
        theta = torch.tensor([0.5], requires_grad=True)
        fast = learner.adapt({"theta": theta}, batch)["theta"]
        (0.5 * b * (fast - d) ** 2).sum().backward()
        expect = b * (fast.detach() - d) * factor
        torch.testing.assert_close(theta.grad, expect)


def test_metasgd_rates_receive_gradient_and_are_per_parameter() -> None:
    batch = _tasks()
    learner = MetaSGD(_inner_loss, shapes={"theta": (4,)}, steps=2, init_lr=0.05)
    fast = learner.adapt_batch({"theta": batch["theta"]}, batch, params_batched=True)
    traj = learner.adapt_batch({"theta": batch["theta"]}, batch, params_batched=True,
                               return_trajectory=True)
    assert len(traj) == 3  # MAML++ multi-step loss: every step is available
    loss = sum(_inner_loss({"theta": fast["theta"][t]}, {k: v[t] for k, v in batch.items()})
               for t in range(5))
    loss.backward()
    grad = learner.raw_lr["theta"].grad
    assert grad is not None and grad.shape == (2, 4) and (grad != 0).all()


def test_unknown_learner_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown meta-learner"):
        make_learner("anil", _inner_loss, shapes={}, steps=1, inner_lr=0.1)
