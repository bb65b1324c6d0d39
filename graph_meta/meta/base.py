r"""The learner interface: an inner loop that training runs in torch and serving in numpy.

A task is a *pytree batch* (a dict of tensors) and a loss ``loss_fn(params, batch) -> scalar``
where ``params`` is a dict of tensors (the *fast weights*: whatever the inner loop adapts).
The inner loop of every gradient-based learner is

.. math:: \theta_{t+1} = \theta_t - \alpha_t \odot \nabla_\theta
          \mathcal{L}_{\text{support}}(\theta_t),\qquad t = 0..T-1,

one loop (:func:`inner_trajectory`) and one update (:func:`sgd_step`) for both backends. A
learner owns its inner update: which parameters it adapts (:attr:`MetaLearner.shapes`), its
step sizes :math:`\alpha_t` (:meth:`MetaLearner.step_size`), whether the outer loop sees
second-order terms, and any term it adds to the outer loss (:meth:`MetaLearner.outer_loss`).
Training runs :meth:`MetaLearner.adapt_batch` (``torch.func``); serving runs
:meth:`MetaLearner.serving_rule`, the same loop and update with the step sizes exported to
numpy arrays (zero for a parameter the learner does not adapt) and the support loss's
gradient in numpy (:func:`graph_meta.nn.support.support_loss_grad`, tested equal to
``torch.func.grad`` of :func:`graph_meta.nn.support.support_loss`).

``adapt`` solves one task; ``adapt_batch`` maps it over a leading task dimension with
:func:`torch.func.vmap` (every tensor of the batch has that leading dimension; support sets of
different sizes are padded to a fixed ``K`` with a ``mask`` the loss honours). The parameters
either carry the task dimension too (``params_batched=True``: per-task starting points, e.g.
a graph prior per user) or are shared.

**Registry.** A learner registers under its config name with :func:`register_learner`;
``meta.learner`` accepts :func:`learner_names` (plus ``"none"``: no inner loop) and
:func:`make_learner` builds one. Adding a learner is its own module, its import in
:mod:`graph_meta.meta` and its test.

A learn2learn-like use::

    learner = MetaSGD(loss_fn, shapes={"theta": (33,)}, steps=2, init_lr=0.1)
    fast = learner.adapt_batch({"theta": theta0}, support_batch, params_batched=True)
    query_loss = loss_fn_batched(fast, query_batch)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import grad, vmap

Params = dict[str, Any]
LossFn = Callable[[Mapping[str, Tensor], Mapping[str, Tensor]], Tensor]
GradFn = Callable[[Params, Mapping[str, Any]], Params]

__all__ = ["NO_LEARNER", "InnerRule", "MetaLearner", "inner_trajectory", "learner_names",
           "make_learner", "register_learner", "sgd_step"]

#: the ``meta.learner`` value without an inner loop (ridge fold-in only)
NO_LEARNER = "none"

_LEARNERS: dict[str, type[MetaLearner]] = {}


def sgd_step(params: Mapping[str, Any], grads: Mapping[str, Any],
             rates: Mapping[str, Any]) -> Params:
    r""":math:`\theta - \alpha \odot g` for every parameter (tensors or numpy arrays)."""
    return {k: v - rates[k] * grads[k] for k, v in params.items()}


def inner_trajectory(params: Params, batch: Mapping[str, Any], steps: int, grad_fn: GradFn,
                     update: Callable[[Params, Params, int], Params]) -> list[Params]:
    """``[params_0, ..., params_T]``: ``steps`` times ``update(params, grad_fn(params, batch),
    t)``; the loop of training (torch) and of serving (numpy) alike."""
    out = [params]
    for t in range(steps):
        params = update(params, grad_fn(params, batch), t)
        out.append(params)
    return out


class MetaLearner(nn.Module):
    """Base: an inner loop of ``steps`` gradient steps on ``loss_fn``.

    Subclasses define :meth:`step_size` (the :math:`\\alpha_t` of step ``t`` for parameter
    ``name``), whether gradients are detached (:attr:`first_order`) and
    :meth:`from_config`. ``shapes`` (name -> shape of one task's parameter) names the
    parameters the learner adapts; None adapts whatever it is given.
    """

    first_order: bool = False

    def __init__(self, loss_fn: LossFn, *, steps: int = 1,
                 shapes: Mapping[str, tuple[int, ...]] | None = None) -> None:
        super().__init__()
        if steps < 0:
            raise ValueError("steps must be >= 0")
        self.loss_fn = loss_fn
        self.steps = int(steps)
        self.shapes = None if shapes is None else {k: tuple(v) for k, v in shapes.items()}

    @classmethod
    def from_config(cls, loss_fn: LossFn, *, shapes: Mapping[str, tuple[int, ...]],
                    steps: int, inner_lr: float, first_order: bool = False) -> MetaLearner:
        """The learner ``meta.learner`` names, from the ``[meta]`` settings."""
        raise NotImplementedError

    def adapts(self, name: str) -> bool:
        """Whether the inner loop adapts parameter ``name``."""
        return self.shapes is None or name in self.shapes

    def step_size(self, name: str, step: int) -> Tensor | float:
        raise NotImplementedError

    def update(self, params: Params, grads: Params, step: int) -> Params:
        """The inner update of step ``step``: :func:`sgd_step` with :meth:`step_size`."""
        return sgd_step(params, grads, {k: self.step_size(k, step) for k in params})

    def outer_loss(self, start: Mapping[str, Tensor], final: Mapping[str, Tensor]) -> Tensor:
        """A term the learner adds to the outer (query) loss of a batch of tasks, from the
        start and the end of their inner loops; 0 for the gradient-through-the-loop
        learners."""
        return torch.zeros((), device=start["theta"].device)

    def _grad_fn(self) -> GradFn:
        g_fn = grad(self.loss_fn)
        if not self.first_order:
            return g_fn
        return lambda p, b: {k: v.detach() for k, v in g_fn(p, b).items()}

    def _trajectory(self, params: Params, batch: Mapping[str, Tensor],
                    steps: int) -> list[Params]:
        return inner_trajectory(params, batch, steps, self._grad_fn(), self.update)

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

    @torch.no_grad()
    def serving_rule(self, sizes: Mapping[str, int]) -> InnerRule:
        """This learner's inner loop for serving: for every parameter of ``sizes`` (name ->
        length), the step sizes ``[steps, length]`` that :meth:`update` applies, zero for a
        parameter it does not adapt (computed in float64 from the learner's parameters)."""
        exact = copy.deepcopy(self).double()
        rates = {}
        for name, size in sizes.items():
            rows = np.zeros((self.steps, size))
            if self.adapts(name):
                for t in range(self.steps):
                    rate = exact.step_size(name, t)
                    if isinstance(rate, Tensor):
                        rate = rate.detach().double().cpu().numpy()
                    rows[t] = np.broadcast_to(np.asarray(rate, dtype=np.float64), (size,))
            rates[name] = rows
        return InnerRule(rates)


@dataclass(frozen=True)
class InnerRule:
    """A learner's inner loop in numpy (:meth:`MetaLearner.serving_rule`): ``rates`` maps each
    parameter to its step sizes ``[T, size]`` (zeros: not adapted). Steps past ``T`` (only
    :meth:`graph_meta.model.GraphMetaRecommender.adaptation_curve` asks for them) reuse the
    last rate, or ``fallback`` for every parameter when there is none."""

    rates: Mapping[str, np.ndarray]
    fallback: float = 0.0

    @property
    def steps(self) -> int:
        return min((len(r) for r in self.rates.values()), default=0)

    def rate(self, name: str, step: int) -> np.ndarray:
        rows = self.rates[name]
        if self.steps:
            return rows[min(step, self.steps - 1)]
        return np.full(rows.shape[1], self.fallback)

    def update(self, params: Params, grads: Params, step: int) -> Params:
        """:meth:`MetaLearner.update` with the exported rates."""
        return sgd_step(params, grads, {k: self.rate(k, step) for k in params})

    def trajectory(self, params: Params, batch: Mapping[str, Any], grad_fn: GradFn,
                   steps: int | None = None) -> list[Params]:
        """``[params_0, ..., params_T]`` of :func:`inner_trajectory` (``steps``: default
        ``T``)."""
        return inner_trajectory(params, batch, self.steps if steps is None else steps,
                                grad_fn, self.update)


def register_learner(name: str) -> Callable[[type[MetaLearner]], type[MetaLearner]]:
    """Class decorator: ``meta.learner = name`` builds this learner."""
    if name == NO_LEARNER:
        raise ValueError(f"{NO_LEARNER!r} is reserved (no inner loop)")

    def deco(cls: type[MetaLearner]) -> type[MetaLearner]:
        if _LEARNERS.get(name, cls) is not cls:
            raise ValueError(f"meta-learner {name!r} is registered twice")
        _LEARNERS[name] = cls
        return cls

    return deco


def learner_names() -> tuple[str, ...]:
    """The values of ``meta.learner``: every registered learner, then ``"none"``."""
    return (*_LEARNERS, NO_LEARNER)


def make_learner(kind: str, loss_fn: LossFn, *, shapes: Mapping[str, tuple[int, ...]],
                 steps: int, inner_lr: float, first_order: bool = False) -> MetaLearner:
    """The registered learner ``kind`` (:func:`learner_names`, less ``"none"``)."""
    cls = _LEARNERS.get(kind)
    if cls is None:
        raise ValueError(f"unknown meta-learner {kind!r}; expected one of "
                         f"{', '.join(_LEARNERS)}")
    return cls.from_config(loss_fn, shapes=shapes, steps=steps, inner_lr=inner_lr,
                           first_order=first_order)
