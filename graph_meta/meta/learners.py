r"""Gradient-based meta-learners on ``torch.func``: MAML, FOMAML, Meta-SGD, Reptile.

A task is a *pytree batch* (a dict of tensors) and a loss ``loss_fn(params, batch) -> scalar``
where ``params`` is a dict of tensors (the *fast weights*: whatever the inner loop adapts).
The inner loop of every learner is

.. math:: \theta_{t+1} = \theta_t - \alpha_t \odot \nabla_\theta
          \mathcal{L}_{\text{support}}(\theta_t),\qquad t = 0..T-1,

with

* **MAML** (Finn et al. 2017): scalar :math:`\alpha`, gradients kept in the graph (second
  order: the outer gradient flows through :math:`\nabla_\theta \mathcal{L}`);
* **FOMAML**: the same with :math:`\nabla_\theta \mathcal{L}` detached (first order);
* **Meta-SGD** (Li et al. 2017): :math:`\alpha_t` a learned tensor per parameter (and,
  optionally, per step), positive through ``softplus``; second order unless
  ``first_order=True``. ``multi_step_loss`` returns every :math:`\theta_t` so that the outer
  loss can weight all steps (MAML++, Antoniou et al. 2019);
* **Reptile** (Nichol et al. 2018): the same inner loop without second-order terms; the
  outer update is :math:`\theta_0 \leftarrow \theta_0 + \epsilon(\theta_T - \theta_0)`
  (training adds :math:`\tfrac12\lVert\theta_0 - \mathrm{sg}(\theta_T)\rVert^2` to the
  query loss, whose gradient :math:`\theta_0 - \theta_T` any torch optimizer applies:
  :meth:`graph_meta.nn.net.GraphMetaNet.user_loss`).

``adapt`` solves one task; ``adapt_batch`` maps it over a leading task dimension with
:func:`torch.func.vmap` (every tensor of the batch has that leading dimension; support sets of
different sizes are padded to a fixed ``K`` with a ``mask`` the loss honours). The parameters
either carry the task dimension too (``params_batched=True``: per-task starting points, e.g.
a graph prior per user) or are shared.

A learn2learn-like use::

    learner = MetaSGD(loss_fn, shapes={"theta": (33,)}, steps=2, init_lr=0.1)
    fast = learner.adapt_batch({"theta": theta0}, support_batch, params_batched=True)
    query_loss = loss_fn_batched(fast, query_batch)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn
from torch.func import grad, vmap

Params = dict[str, Tensor]
LossFn = Callable[[Params, Mapping[str, Tensor]], Tensor]

__all__ = ["FOMAML", "MAML", "MetaLearner", "MetaSGD", "Reptile", "make_learner"]


class MetaLearner(nn.Module):
    """Base: an inner loop of ``steps`` gradient steps on ``loss_fn``.

    Subclasses define :meth:`step_size` (the :math:`\\alpha_t` of step ``t`` for parameter
    ``name``) and whether gradients are detached (first order).
    """

    first_order: bool = False

    def __init__(self, loss_fn: LossFn, *, steps: int = 1) -> None:
        super().__init__()
        if steps < 0:
            raise ValueError("steps must be >= 0")
        self.loss_fn = loss_fn
        self.steps = int(steps)

    def step_size(self, name: str, step: int) -> Tensor | float:
        raise NotImplementedError

    def _trajectory(self, params: Params, batch: Mapping[str, Tensor],
                    steps: int) -> list[Params]:
        out = [params]
        g_fn = grad(self.loss_fn)
        for t in range(steps):
            g = g_fn(params, batch)
            if self.first_order:
                g = {k: v.detach() for k, v in g.items()}
            params = {k: v - self.step_size(k, t) * g[k] for k, v in params.items()}
            out.append(params)
        return out

    def adapt(self, params: Params, batch: Mapping[str, Tensor], steps: int | None = None,
              *, return_trajectory: bool = False) -> Params | list[Params]:
        """Adapt ``params`` to one task's ``batch``; the last (or every) fast-weight dict."""
        traj = self._trajectory(params, batch, self.steps if steps is None else steps)
        return traj if return_trajectory else traj[-1]

    def adapt_batch(self, params: Params, batch: Mapping[str, Tensor],
                    steps: int | None = None, *, params_batched: bool = False,
                    return_trajectory: bool = False) -> Params | list[Params]:
        """:meth:`adapt` vmapped over the leading (task) dimension of ``batch``."""
        n = self.steps if steps is None else steps

        def one(p: Params, b: Mapping[str, Tensor]) -> list[Params]:
            return self._trajectory(p, b, n)

        in_dims = (0 if params_batched else None, 0)
        traj = vmap(one, in_dims=in_dims)(params, dict(batch))
        return traj if return_trajectory else traj[-1]


class MAML(MetaLearner):
    """Second-order MAML with one scalar inner learning rate (fixed, not learned)."""

    def __init__(self, loss_fn: LossFn, *, steps: int = 1, inner_lr: float = 0.1) -> None:
        super().__init__(loss_fn, steps=steps)
        self.inner_lr = float(inner_lr)

    def step_size(self, name: str, step: int) -> float:
        return self.inner_lr


class FOMAML(MAML):
    """First-order MAML: the inner gradients are treated as constants by the outer loop."""

    first_order = True


class MetaSGD(MetaLearner):
    """Meta-SGD: a learned, positive step size per parameter entry (and per step).

    Args:
        shapes: parameter name -> shape of one task's parameter (no task dimension).
        steps: inner steps.
        init_lr: initial step size.
        per_step: one step-size tensor per step (MAML++'s per-step rates) or one shared.
        first_order: detach inner gradients.
    """

    def __init__(self, loss_fn: LossFn, *, shapes: Mapping[str, tuple[int, ...]],
                 steps: int = 1, init_lr: float = 0.1, per_step: bool = True,
                 first_order: bool = False) -> None:
        super().__init__(loss_fn, steps=steps)
        self.first_order = bool(first_order)
        self.per_step = bool(per_step)
        n = max(1, steps) if per_step else 1
        raw = _softplus_inverse(init_lr)
        self.raw_lr = nn.ParameterDict({
            k: nn.Parameter(torch.full((n, *shape), raw)) for k, shape in shapes.items()})

    def lr(self, name: str, step: int) -> Tensor:
        """The positive step size of parameter ``name`` at inner step ``step``."""
        raw = self.raw_lr[name]
        return nn.functional.softplus(raw[step if self.per_step else 0])

    def step_size(self, name: str, step: int) -> Tensor:
        return self.lr(name, step)


class Reptile(FOMAML):
    """Reptile: first-order inner loop; the outer direction is ``theta_0 - theta_T`` (the
    term :meth:`graph_meta.nn.net.GraphMetaNet.user_loss` adds for this learner)."""


def make_learner(kind: str, loss_fn: LossFn, *, shapes: Mapping[str, tuple[int, ...]],
                 steps: int, inner_lr: float, first_order: bool = False) -> MetaLearner:
    """A learner by name: ``maml``, ``fomaml``, ``metasgd``, ``reptile``."""
    if kind == "maml":
        return MAML(loss_fn, steps=steps, inner_lr=inner_lr)
    if kind == "fomaml":
        return FOMAML(loss_fn, steps=steps, inner_lr=inner_lr)
    if kind == "metasgd":
        return MetaSGD(loss_fn, shapes=shapes, steps=steps, init_lr=inner_lr,
                       first_order=first_order)
    if kind == "reptile":
        return Reptile(loss_fn, steps=steps, inner_lr=inner_lr)
    raise ValueError(f"unknown meta-learner {kind!r}; expected maml, fomaml, metasgd, reptile")


def _softplus_inverse(y: float) -> float:
    y = float(y)
    if y <= 0:
        raise ValueError("init_lr must be > 0")
    return float(torch.log(torch.expm1(torch.tensor(y))))
