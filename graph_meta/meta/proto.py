r"""A metric-based learner: attention over the support from distances to rating prototypes
(Prototypical networks, Snell et al. 2017; attention over the support as in Matching networks,
Vinyals et al. 2016) decides how much each support rating moves the state.

For a task with support rows :math:`x_k \in \mathbb{R}^D` (item states for a user task, rater
states for an item task), ratings :math:`y_k` and mask :math:`m_k`, :math:`K = \sum_k m_k`,
:math:`\bar y = \sum_k m_k y_k / \max(K, 1)`, each rating is softly "above" or "below" the
task's mean, :math:`\pi_k = \sigma((y_k - \bar y) / s)` (:math:`s = 0.5`), which gives two
prototypes and every row's distances to them,

.. math:: c_+ = \frac{\sum_k m_k \pi_k x_k}{\sum_k m_k \pi_k + \epsilon}, \quad
          c_- = \frac{\sum_k m_k (1 - \pi_k) x_k}{\sum_k m_k (1 - \pi_k) + \epsilon}, \quad
          d^\pm_k = \lVert x_k - c_\pm \rVert^2 / D.

A small network scores each support row from :math:`\phi_k = (d^+_k, d^-_k, \pi_k, y_k - \bar
y)` and a softmax over the support turns the scores into attention,

.. math:: \ell_k = v^\top \tanh(A \phi_k + a), \qquad
          a_k = \frac{m_k e^{\ell_k}}{\sum_j m_j e^{\ell_j}}, \qquad w_k = K a_k,

and the state correction aggregates the support residuals with these weights: the inner loop
is Meta-SGD's (:class:`~graph_meta.meta.metasgd.MetaSGD`, learned per-entry, per-step rates)
on the support loss with the mask :math:`m_k` replaced by :math:`w_k` (same total :math:`K`),
so a step is :math:`-\alpha_t \odot \tfrac{2}{K + \kappa} \sum_k w_k e_k\, \partial \hat r_k /
\partial \theta`, a correction from the residuals :math:`e_k` weighted by attention instead
of uniformly. The attention does not depend on the state: it is computed once per task.

With :math:`v = 0` (the initialisation) the attention is uniform, :math:`w = m`, and the
learner is Meta-SGD at ``meta.inner_lr``. The attention is written once
(:func:`support_attention`) for torch and numpy; serving runs :class:`ProtoRule`.
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
    InnerRule,
    LossFn,
    Params,
    ServingRule,
    register_learner,
    register_rule,
    to_numpy,
)
from graph_meta.meta.metasgd import MetaSGD
from graph_meta.meta.ops import NUMPY, TORCH, Ops

__all__ = ["ProtoAttention", "ProtoRule", "support_attention"]

#: the row features :math:`\phi_k`
FEATURES = 4
#: :math:`s`, the scale of the soft above/below-the-mean split
SPLIT_SCALE = 0.5
_EPS = 1e-8
_WEIGHTS = ("att_a", "att_b", "att_v")


def support_attention(ops: Ops, w: Mapping[str, Any], batch: Mapping[str, Any]
                      ) -> Mapping[str, Any]:
    """``batch`` with its mask replaced by the attention weights :math:`w_k = K a_k`
    ``[K]`` (module docstring), one task, torch or numpy.

    Args:
        w: ``att_a`` ``[H, 4]``, ``att_b`` ``[H]``, ``att_v`` ``[H]``.
        batch: ``items`` ``[K, D]``, ``y`` ``[K]``, optionally ``mask`` ``[K]`` (default
            ones).
    """
    x, y = batch["items"], batch["y"]
    if y.shape[-1] == 0:  # no support rows (numpy; torch pads to at least one)
        return batch
    m = batch["mask"] if batch.get("mask") is not None else 1.0 + 0.0 * y
    k = m.sum()
    y_bar = (m * y).sum() / ops.where(k > 0, k, 1.0 + 0.0 * k)
    pi = ops.sigmoid((y - y_bar) / SPLIT_SCALE)
    d = x.shape[-1]
    dist = []
    for side in (m * pi, m * (1.0 - pi)):
        proto = (side[..., None] * x).sum(-2) / (side.sum() + _EPS)             # [D]
        dist.append(((x - proto) ** 2).sum(-1) / d)                             # [K]
    phi = ops.stack([dist[0], dist[1], pi, y - y_bar])                          # [K, 4]
    score = ops.tanh(phi @ w["att_a"].T + w["att_b"]) @ w["att_v"]              # [K]
    e = m * ops.exp(score - score.max())
    return {**batch, "mask": k * e / (e.sum() + 1e-30)}


@register_learner("proto")
class ProtoAttention(MetaSGD):
    """Meta-SGD on a support reweighted by prototype-distance attention (module docstring).

    Args:
        shapes, steps, init_lr, first_order: as :class:`~graph_meta.meta.metasgd.MetaSGD`
            (``per_step`` rates).
        hidden: the attention network's hidden size ``H``.
    """

    def __init__(self, loss_fn: LossFn, *, shapes: Mapping[str, tuple[int, ...]],
                 steps: int = 1, init_lr: float = 0.1, hidden: int = 8,
                 first_order: bool = False) -> None:
        super().__init__(loss_fn, shapes=shapes, steps=steps, init_lr=init_lr,
                         first_order=first_order)
        bound = 1.0 / float(np.sqrt(FEATURES))
        self.att_a = nn.Parameter(torch.empty(hidden, FEATURES).uniform_(-bound, bound))
        self.att_b = nn.Parameter(torch.empty(hidden).uniform_(-bound, bound))
        self.att_v = nn.Parameter(torch.zeros(hidden))

    def _trajectory(self, params: Params, batch: Mapping[str, Any],
                    steps: int) -> list[Params]:
        weighted = support_attention(TORCH, {k: getattr(self, k) for k in _WEIGHTS}, batch)
        return super()._trajectory(params, weighted, steps)

    @torch.no_grad()
    def serving_rule(self, sizes: Mapping[str, int]) -> ProtoRule:
        """Meta-SGD's step sizes (:meth:`MetaLearner.serving_rule`) and the attention's
        weights in float64."""
        rates = super().serving_rule(sizes)
        assert isinstance(rates, InnerRule)
        return ProtoRule(rates, {k: to_numpy(getattr(self, k)) for k in _WEIGHTS})


@register_rule
@dataclass(frozen=True)
class ProtoRule(ServingRule):
    """The prototype-attention learner's serving rule: :func:`support_attention`, then the
    step sizes of ``sgd``. Saved as ``lr.<name>`` ``[T, n]`` and the attention's weights."""

    kind = "proto"
    sgd: InnerRule
    weights: Mapping[str, np.ndarray]

    @property
    def steps(self) -> int:
        return self.sgd.steps

    def trajectory(self, params: Params, batch: Mapping[str, Any], grad_fn: GradFn,
                   steps: int | None = None) -> list[Params]:
        return self.sgd.trajectory(params, support_attention(NUMPY, self.weights, batch),
                                   grad_fn, steps)

    def arrays(self) -> dict[str, np.ndarray]:
        return {**{f"lr.{k}": v for k, v in self.sgd.rates.items()}, **self.weights}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> ProtoRule:
        rates = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("lr.")}
        return cls(InnerRule(rates), {k: arrays[k] for k in _WEIGHTS})
