r"""Prior heads and the scoring function of the MF backbone.

A *node state* is :math:`\theta = (b, v) \in \mathbb{R}^{1+d}`: a bias and a ``d``-vector.
The rating of user ``u`` for item ``i`` is

.. math:: \hat r_{ui} = \mu + h_0 + (1 + h_1)\,\big(b_u + b_i + \langle v_u, v_i\rangle\big)

with :math:`h = (h_0, h_1)` a per-task *head* (zero unless the inner loop adapts it). With
:math:`x_i = (1, v_i)` the user part is linear in :math:`\theta_u`:
:math:`b_u + \langle v_u, v_i\rangle = x_i^\top \theta_u`, which is what the ridge fold-in and
the analytic inner-loop gradient use.

:class:`PriorHead` maps an encoder embedding ``[N, H]`` to a prior state ``[N, 1+d]``
(a two-layer MLP; the last layer starts near zero so a fresh model predicts ``mu``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["PriorHead", "score"]


class PriorHead(nn.Module):
    """``[N, H] -> [N, 1+d]``: the graph prior bias and vector of each node."""

    def __init__(self, hidden: int, dim: int, *, mlp: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden, mlp), nn.ReLU(), nn.Linear(mlp, 1 + dim))
        nn.init.normal_(self.net[-1].weight, std=0.01)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h)


def score(mu: Tensor | float, theta_u: Tensor, theta_i: Tensor,
          head: Tensor | None = None) -> Tensor:
    """Predicted ratings; ``theta_u`` ``[..., 1+d]`` broadcasts against ``theta_i``.

    ``head`` ``[..., 2]`` (or None) is the per-task offset/scale.
    """
    raw = theta_u[..., 0] + theta_i[..., 0] + (theta_u[..., 1:] * theta_i[..., 1:]).sum(-1)
    if head is None:
        return mu + raw
    return mu + head[..., 0] + (1.0 + head[..., 1]) * raw


def ridge_solve(prior: Tensor, x: Tensor, t: Tensor, mask: Tensor, lam: Tensor) -> Tensor:
    r"""Batched ridge fold-in toward a prior.

    .. math:: \theta = (X^\top M X + \Lambda)^{-1} (X^\top M t + \Lambda\,\theta^0)

    Args:
        prior: ``[B, D]`` the prior :math:`\theta^0`.
        x: ``[B, L, D]`` the rows :math:`x_i = (1, v_i)`.
        t: ``[B, L]`` targets :math:`r - \mu - b_i`.
        mask: ``[B, L]`` 1 for real rows, 0 for padding.
        lam: ``[D]`` positive precisions.
    """
    xm = x * mask.unsqueeze(-1)
    a = xm.transpose(1, 2) @ x + torch.diag_embed(lam.expand_as(prior))
    c = (xm * t.unsqueeze(-1)).sum(1) + lam * prior
    return torch.linalg.solve(a, c.unsqueeze(-1)).squeeze(-1)
