r"""The support loss every inner loop adapts on, in torch (training) and its gradient in numpy
(serving).

For a task with support rows :math:`x_k` (the other side's states: item states for a user
task, rater states for an item task), ratings :math:`y_k`, mask :math:`m_k` and
:math:`K = \sum_k m_k`,

.. math:: \mathcal{L}(\theta, h) = \frac{1}{K + \kappa} \sum_k m_k \big(\hat r_k - y_k\big)^2,
          \qquad \hat r_k = \mu + h_0 + (1 + h_1)\big(\theta_0 + x_{k,0}
          + \langle \theta_{1:}, x_{k,1:}\rangle\big)

(:func:`graph_meta.nn.heads.score`; :math:`h = 0` without a head; :math:`\kappa` =
``meta.support_shrink`` when the batch carries ``kappa``, else the plain mean over
:math:`\max(K, 1)`). With :math:`e_k = \hat r_k - y_k`, :math:`s = 2 / (K + \kappa)` and
:math:`\rho_k = \theta_0 + x_{k,0} + \langle \theta_{1:}, x_{k,1:}\rangle`:

.. math:: \nabla_\theta \mathcal{L} = s\,(1 + h_1) \sum_k m_k e_k\,(1, x_{k,1:}), \qquad
          \nabla_h \mathcal{L} = s \sum_k m_k e_k\,(1, \rho_k).

A batch holds ``items`` ``[K, D]``, ``y`` ``[K]``, ``mask`` ``[K]`` (optional in numpy),
``mu``, optionally ``kappa``, and ``theta`` / ``head``: the values of what ``params`` does not
adapt. :func:`support_loss_grad` returns the gradient of exactly the parameters in ``params``
(tests: equal to ``torch.func.grad(support_loss)`` for every combination).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from torch import Tensor

from graph_meta.nn.heads import score

__all__ = ["support_batch", "support_loss", "support_loss_grad"]


def support_loss(params: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> Tensor:
    """Support loss of one task (module docstring), in torch."""
    theta = params["theta"] if "theta" in params else b["theta"]
    head = params["head"] if "head" in params else b.get("head")
    pred = score(b["mu"], theta, b["items"], head)
    err = (pred - b["y"]) ** 2 * b["mask"]
    if "kappa" in b:  # sum / (K + kappa): one rating moves a task less than ninety do
        return err.sum() / (b["mask"].sum() + b["kappa"])
    return err.sum() / b["mask"].sum().clamp(min=1.0)


def support_loss_grad(params: Mapping[str, np.ndarray], b: Mapping[str, Any]
                      ) -> dict[str, np.ndarray]:
    """Gradient of :func:`support_loss` for one task (numpy arrays, no task dimension)."""
    theta = params["theta"] if "theta" in params else b["theta"]
    head = params["head"] if "head" in params else b.get("head")
    x = np.asarray(b["items"], dtype=np.float64)
    mask = np.ones(len(x)) if b.get("mask") is None else np.asarray(b["mask"], np.float64)
    k = mask.sum()
    denom = k + float(b["kappa"]) if "kappa" in b else max(k, 1.0)
    raw = theta[0] + x[:, 0] + x[:, 1:] @ theta[1:]
    h0, h1 = (0.0, 0.0) if head is None else (head[0], head[1])
    err = (float(b["mu"]) + h0 + (1.0 + h1) * raw - b["y"]) * mask
    scale = 2.0 / denom
    out = {}
    if "theta" in params:
        rows = np.concatenate([np.ones((len(x), 1)), x[:, 1:]], axis=1)
        out["theta"] = scale * (1.0 + h1) * (rows.T @ err)
    if "head" in params:
        out["head"] = scale * np.array([err.sum(), (err * raw).sum()])
    return out


def support_batch(items: np.ndarray, y: np.ndarray, *, mu: float, theta: np.ndarray,
                  head: np.ndarray | None, shrink: float) -> dict[str, Any]:
    """The numpy batch of one task as training builds it (``kappa`` when ``shrink > 0``)."""
    b: dict[str, Any] = {"items": items, "y": y, "mu": mu, "theta": theta}
    if head is not None:
        b["head"] = head
    if shrink > 0:
        b["kappa"] = float(shrink)
    return b
