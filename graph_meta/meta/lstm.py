r"""The LSTM meta-learner (Ravi & Larochelle 2017), coordinate-wise (Andrychowicz et al. 2016):
a learned update rule in place of the inner SGD step.

Every adapted coordinate :math:`j` (of ``theta`` and ``head`` alike) runs one small LSTM cell
with weights shared by all coordinates. At inner step :math:`t` with support gradient
:math:`g = \nabla_\theta \mathcal{L}_S(\theta_t)` and displacement
:math:`\delta_t = \theta_t - \theta_0` (:math:`\delta_0 = 0`), its input is

.. math:: u_{t,j} = \big(\log(|g_j| + \epsilon) / 10,\ \operatorname{sign}(g_j),\
          \theta_{t,j},\ \delta_{t,j}\big) \in \mathbb{R}^4

(the gradient enters preprocessed and as a constant, as in Andrychowicz et al.), the cell
:math:`(h_{t+1}, c_{t+1}) = \operatorname{LSTM}(u_t, (h_t, c_t))` (hidden size :math:`H`,
:math:`h_0 = c_0 = 0`) gives an input and a forget gate

.. math:: i_t = \operatorname{softplus}(b_{t,i} + w_i^\top h_{t+1}), \qquad
          f_t = \sigma(b_{t,f} + w_f^\top h_{t+1}),

and the update is Ravi & Larochelle's cell-state update on the displacement,

.. math:: \delta_{t+1} = f_t \odot \delta_t - i_t \odot g, \qquad
          \theta_{t+1} = \theta_0 + \delta_{t+1}.

With :math:`w_i = w_f = 0`, :math:`b_i = \operatorname{softplus}^{-1}(\alpha)` and
:math:`b_f = 8` it starts as SGD at ``meta.inner_lr`` :math:`\alpha` (the first step exactly,
the later ones up to :math:`1 - \sigma(8) \approx 3\cdot10^{-4}` of the displacement): training
starts from where MAML is. A zero gradient (no support) leaves :math:`\theta` where it is.

The forward is written once (:func:`lstm_trajectory`) for torch (training, vmapped) and numpy
(serving, :class:`LSTMRule`, the learner's weights in float64).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from graph_meta.meta.base import (
    GradFn,
    LossFn,
    MetaLearner,
    Params,
    ServingRule,
    register_learner,
    register_rule,
    to_numpy,
)
from graph_meta.meta.metasgd import _softplus_inverse
from graph_meta.meta.ops import NUMPY, TORCH, Ops

__all__ = ["LSTMLearner", "LSTMRule", "lstm_trajectory"]

#: the input features of one coordinate (module docstring)
FEATURES = 4
#: the forget gate's initial bias: :math:`\sigma(8) \approx 1 - 3\cdot10^{-4}`
FORGET_BIAS = 8.0
_EPS = 1e-8
_WEIGHTS = ("w_x", "w_h", "b", "w_gate", "b_gate")


def lstm_trajectory(ops: Ops, w: Mapping[str, Any], params: Params, batch: Mapping[str, Any],
                    steps: int, grad_fn: GradFn, names: tuple[str, ...]) -> list[Params]:
    """``[params_0, ..., params_steps]`` of the LSTM rule (module docstring), one task.

    Args:
        ops: the backend (:data:`~graph_meta.meta.ops.TORCH` or
            :data:`~graph_meta.meta.ops.NUMPY`).
        w: the weights: ``w_x`` ``[4H, 4]``, ``w_h`` ``[4H, H]``, ``b`` ``[4H]`` (the cell;
            gate order input, forget, cell, output), ``w_gate`` ``[2, H]``, ``b_gate``
            ``[T, 2]`` (the update's input and forget gates per trained step; steps past
            ``T`` use the last row).
        params: name -> ``[n]`` parameter (those not in ``names`` pass through).
        grad_fn: ``grad_fn(params, batch)`` -> the support gradient of each parameter.
        names: the adapted parameters.
    """
    hidden = w["w_h"].shape[1]
    trained = w["b_gate"].shape[0]
    start = params
    delta = {n: 0.0 * params[n] for n in names}
    h = {n: ops.zeros(params[n], hidden) for n in names}
    c = {n: ops.zeros(params[n], hidden) for n in names}
    out = [params]
    for t in range(steps):
        grads = grad_fn(params, batch)
        bias = w["b_gate"][min(t, trained - 1)]
        new = dict(params)
        for n in names:
            g, g_in = grads[n], ops.detach(grads[n])
            u = ops.stack([ops.log(ops.abs(g_in) + _EPS) / 10.0, ops.sign(g_in), params[n],
                           delta[n]])                                           # [n, 4]
            z = u @ w["w_x"].T + h[n] @ w["w_h"].T + w["b"]                     # [n, 4H]
            zi, zf, zc, zo = (z[..., k * hidden:(k + 1) * hidden] for k in range(4))
            c[n] = ops.sigmoid(zf) * c[n] + ops.sigmoid(zi) * ops.tanh(zc)
            h[n] = ops.sigmoid(zo) * ops.tanh(c[n])
            gates = h[n] @ w["w_gate"].T + bias                                 # [n, 2]
            i_t, f_t = ops.softplus(gates[..., 0]), ops.sigmoid(gates[..., 1])
            delta[n] = f_t * delta[n] - i_t * g
            new[n] = start[n] + delta[n]
        params = new
        out.append(params)
    return out


@register_learner("lstm")
class LSTMLearner(MetaLearner):
    """A coordinate-wise LSTM update rule (module docstring).

    Args:
        shapes: parameter name -> shape of one task's parameter; the parameters it adapts
            (one-dimensional).
        steps: inner steps ``T`` (each has its own gate biases).
        init_lr: the SGD step size it starts as.
        hidden: the cell's hidden size ``H``.
        first_order: detach the inner gradients in the update as well (the features always
            see them as constants).
    """

    def __init__(self, loss_fn: LossFn, *, shapes: Mapping[str, tuple[int, ...]],
                 steps: int = 1, init_lr: float = 0.1, hidden: int = 8,
                 first_order: bool = False) -> None:
        super().__init__(loss_fn, steps=steps, shapes=shapes)
        self.first_order = bool(first_order)
        bound = 1.0 / float(np.sqrt(hidden))  # torch.nn.LSTMCell's initialisation
        self.w_x = nn.Parameter(torch.empty(4 * hidden, FEATURES).uniform_(-bound, bound))
        self.w_h = nn.Parameter(torch.empty(4 * hidden, hidden).uniform_(-bound, bound))
        self.b = nn.Parameter(torch.empty(4 * hidden).uniform_(-bound, bound))
        self.w_gate = nn.Parameter(torch.zeros(2, hidden))
        b_gate = torch.empty(max(1, steps), 2)
        b_gate[:, 0], b_gate[:, 1] = _softplus_inverse(init_lr), FORGET_BIAS
        self.b_gate = nn.Parameter(b_gate)

    def _trajectory(self, params: Params, batch: Mapping[str, Any],
                    steps: int) -> list[Params]:
        w = {k: getattr(self, k) for k in _WEIGHTS}
        names = tuple(k for k in params if self.adapts(k))
        return lstm_trajectory(TORCH, w, params, batch, steps, self._grad_fn(), names)

    @torch.no_grad()
    def serving_rule(self, sizes: Mapping[str, int]) -> LSTMRule:
        """The same rule in numpy, its weights in float64, adapting the parameters of
        ``sizes`` this learner adapts."""
        return LSTMRule({k: to_numpy(getattr(self, k)) for k in _WEIGHTS},
                        tuple(k for k in sizes if self.adapts(k)))


@register_rule
@dataclass(frozen=True)
class LSTMRule(ServingRule):
    """The LSTM learner's serving rule: its weights (:func:`lstm_trajectory`) and the names
    it adapts. Saved as the weights and one empty array ``names.<name>`` per adapted
    parameter."""

    kind = "lstm"
    weights: Mapping[str, np.ndarray]
    names: tuple[str, ...]

    @property
    def steps(self) -> int:
        return int(self.weights["b_gate"].shape[0])

    def trajectory(self, params: Params, batch: Mapping[str, Any], grad_fn: GradFn,
                   steps: int | None = None) -> list[Params]:
        return lstm_trajectory(NUMPY, self.weights, params, batch,
                               self.steps if steps is None else steps, grad_fn, self.names)

    def arrays(self) -> dict[str, np.ndarray]:
        return {**self.weights, **{f"names.{n}": np.zeros(0) for n in self.names}}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> LSTMRule:
        names = tuple(k.split(".", 1)[1] for k in arrays if k.startswith("names."))
        return cls({k: arrays[k] for k in _WEIGHTS}, names)
