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

**Serving rules.** What :meth:`MetaLearner.serving_rule` exports is a :class:`ServingRule`:
its numpy trajectory ``rule.trajectory(params, batch, grad_fn)`` equals the learner's torch
trajectory. The gradient-step learners export an :class:`InnerRule` (step sizes only, the fast
path, saved as ``lr_theta`` / ``lr_head`` / ``lr_item``); a learner with a learned update
(an LSTM, a latent decoder, an attention) exports its own rule class, registered by
:func:`register_rule` under its ``kind`` and saved as float64 arrays named
``rule.<role>.<kind>.<array>`` beside the predictor state (:func:`rule_arrays`,
:func:`rule_from_arrays`).

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
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import grad, vmap

Params = dict[str, Any]
LossFn = Callable[[Mapping[str, Tensor], Mapping[str, Tensor]], Tensor]
GradFn = Callable[[Params, Mapping[str, Any]], Params]

__all__ = ["NO_LEARNER", "InnerRule", "MetaLearner", "ServingRule", "inner_trajectory",
           "learner_names", "make_learner", "register_learner", "register_rule",
           "rule_arrays", "rule_from_arrays", "sgd_step", "to_numpy"]

#: the ``meta.learner`` value without an inner loop (ridge fold-in only)
NO_LEARNER = "none"

_LEARNERS: dict[str, type[MetaLearner]] = {}
_RULES: dict[str, type[ServingRule]] = {}


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
        """The learner ``meta.learner`` names, from the ``[meta]`` settings: by default a
        learner whose step sizes are learned, starting at ``inner_lr`` (its ``init_lr``);
        a learner with other arguments overrides this."""
        return cls(loss_fn, shapes=shapes, steps=steps, init_lr=inner_lr,
                   first_order=first_order)

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
    def serving_rule(self, sizes: Mapping[str, int]) -> ServingRule:
        """This learner's inner loop for serving (an :class:`InnerRule` here): for every
        parameter of ``sizes`` (name -> length), the step sizes ``[steps, length]`` that
        :meth:`update` applies, zero for a parameter it does not adapt (computed in float64
        from the learner's parameters). A learner whose update is not a step size times the
        gradient returns its own :class:`ServingRule`."""
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


class ServingRule:
    """A learner's inner loop in numpy (:meth:`MetaLearner.serving_rule`): the same
    trajectory as the learner's torch one, for one task without a task dimension.

    ``params`` holds every parameter the scorer reads (serving passes ``theta`` ``[D]`` and
    ``head`` ``[2]``); a rule changes only those it adapts and passes the others through.
    Steps past :attr:`steps` (only :meth:`graph_meta.model.GraphMetaRecommender.
    adaptation_curve` asks for them) repeat the last trained step's definition.

    A subclass sets :attr:`kind` (its name in saved files, :func:`register_rule`) and
    implements :attr:`steps`, :meth:`trajectory`, :meth:`arrays` and :meth:`from_arrays`.
    """

    kind: ClassVar[str] = ""

    @property
    def steps(self) -> int:
        """``T``: the trained number of inner steps."""
        raise NotImplementedError

    def trajectory(self, params: Params, batch: Mapping[str, Any], grad_fn: GradFn,
                   steps: int | None = None) -> list[Params]:
        """``[params_0, ..., params_T]`` (``steps``: default ``T``); ``grad_fn`` is the
        numpy gradient of the support loss (:func:`graph_meta.nn.support.support_loss_grad`)."""
        raise NotImplementedError

    def arrays(self) -> dict[str, np.ndarray]:
        """The rule as float64 arrays by name (what is saved)."""
        raise NotImplementedError

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> ServingRule:
        """The rule from :meth:`arrays`."""
        raise NotImplementedError


def register_rule(cls: type[ServingRule]) -> type[ServingRule]:
    """Class decorator: saved arrays ``rule.<role>.<cls.kind>.*`` load as ``cls``."""
    if not cls.kind or "." in cls.kind:
        raise ValueError(f"a serving rule needs a kind without dots, got {cls.kind!r}")
    if _RULES.get(cls.kind, cls) is not cls:
        raise ValueError(f"serving rule {cls.kind!r} is registered twice")
    _RULES[cls.kind] = cls
    return cls


def rule_arrays(role: str, rule: ServingRule) -> dict[str, np.ndarray]:
    """``{"rule.<role>.<kind>.<name>": array}``: ``rule`` as saved arrays (``role``:
    ``"user"`` or ``"item"``)."""
    return {f"rule.{role}.{rule.kind}.{k}": np.asarray(v, dtype=np.float64)
            for k, v in rule.arrays().items()}


def rule_from_arrays(role: str, arrays: Mapping[str, Any]) -> ServingRule | None:
    """The rule :func:`rule_arrays` saved for ``role`` among ``arrays`` (any mapping of names
    to arrays), or None when there is none (a gradient-step learner, or an older file)."""
    prefix = f"rule.{role}."
    found: dict[str, dict[str, np.ndarray]] = {}
    for key in arrays:
        if key.startswith(prefix):
            kind, _, name = key[len(prefix):].partition(".")
            found.setdefault(kind, {})[name] = np.asarray(arrays[key], dtype=np.float64)
    if not found:
        return None
    if len(found) > 1:
        raise ValueError(f"more than one {role} serving rule: {', '.join(sorted(found))}")
    ((kind, parts),) = found.items()
    if kind not in _RULES:
        raise ValueError(f"unknown serving rule {kind!r} (saved by a newer version?); known: "
                         f"{', '.join(_RULES)}")
    return _RULES[kind].from_arrays(parts)


def to_numpy(t: Tensor) -> np.ndarray:
    """A learner weight as a float64 numpy array (a copy)."""
    return t.detach().double().cpu().numpy().copy()


@dataclass(frozen=True)
class InnerRule(ServingRule):
    """The serving rule of the gradient-step learners: ``rates`` maps each parameter to its
    step sizes ``[T, size]`` (zeros: not adapted). Steps past ``T`` reuse the last rate, or
    ``fallback`` for every parameter when there is none. Saved as the predictor state's
    ``lr_theta`` / ``lr_head`` / ``lr_item`` fields, not through :func:`rule_arrays`."""

    kind: ClassVar[str] = "sgd"
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

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=np.float64) for k, v in self.rates.items()}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> InnerRule:
        return cls(dict(arrays))


register_rule(InnerRule)


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
