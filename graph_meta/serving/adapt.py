r"""Adaptation at serving: what :meth:`graph_meta.nn.net.GraphMetaNet.adapt_users` (user
tasks) and :meth:`~graph_meta.nn.net.GraphMetaNet.item_loss`'s inner loop (a new item's
steps) compute in training, in numpy, for one task.

A user's state is the ridge fold-in of their history (and the support, with
``meta.ridge_on_support``) toward their prior, then the user learner's inner loop on the
support: the learner's own loop and update (:class:`graph_meta.meta.base.InnerRule`, exported
by :meth:`~graph_meta.meta.base.MetaLearner.serving_rule` with the step sizes it trains and
zeros for what it does not adapt) on the gradient of the support loss it trains on
(:func:`graph_meta.nn.support.support_loss_grad`, with ``meta.support_shrink`` as training
passes it). Tests check every learner x adapt mode against the torch path.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from graph_meta.config import MetaConfig
from graph_meta.live import posterior_update
from graph_meta.nn.support import support_batch, support_loss_grad
from graph_meta.serving.state import PredictorState

__all__ = ["item_steps", "new_item_state", "rater_rows_targets", "user_adaptation"]


def user_adaptation(state: PredictorState, meta: MetaConfig, sums: tuple[np.ndarray,
                    np.ndarray, np.ndarray], x: np.ndarray, y: np.ndarray, *,
                    extra_steps: int = 0, with_prior: bool = False
                    ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(label, theta [D], head [2])`` after each stage of one user's adaptation: the prior
    (if ``with_prior``), the fold-in, then every inner step (``extra_steps`` more at the last
    rate; none without a support).

    Args:
        state: the predictor state.
        meta: the ``[meta]`` config the model was trained with.
        sums: ``(A [D, D], c [D], prior [D])``: the user's history sums
            :math:`\\sum x x^\\top`, :math:`\\sum x t` (observed ratings included) and prior.
        x: ``[K, D]`` the support items' states.
        y: ``[K]`` the support ratings.
    """
    mu, lam = float(state.mu), state.lam
    a, rhs, prior = (np.array(v, dtype=np.float64) for v in sums)
    head = state.head0.copy()
    if with_prior:
        yield "prior", prior, head
    if meta.ridge_on_support and len(x):
        rows = np.concatenate([np.ones((len(x), 1)), x[:, 1:]], axis=1)
        a += rows.T @ rows
        rhs += rows.T @ (y - mu - x[:, 0])
    a[np.diag_indices(len(lam))] += lam
    theta = np.linalg.solve(a, rhs + lam * prior)
    yield "fold-in", theta, head
    if not len(x):  # no support: the inner loop's gradient is 0
        return
    rule = state.user_rule(fallback=meta.inner_lr)
    batch = support_batch(x, y, mu=mu, theta=theta, head=head, shrink=meta.support_shrink)
    traj = rule.trajectory({"theta": theta, "head": head}, batch, support_loss_grad,
                           steps=rule.steps + extra_steps)
    for step, p in enumerate(traj[1:], start=1):
        yield f"step {step}", p["theta"], p["head"]


def rater_rows_targets(state: PredictorState, raters: np.ndarray, y: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    r"""``(rows [n, D], targets [n])`` of an item's ratings ``y`` ``[n]`` by raters with
    states ``raters`` ``[n, D]`` in its ridge fold-in, through the users' head ``head0``:
    :math:`x_u = (1 + h_1)(1, v_u)`, :math:`t_u = y_u - \mu - h_0 - (1 + h_1) b_u`, so that
    the score is :math:`\mu + h_0 + (1 + h_1) b_u + \langle x_u, \theta_i\rangle`."""
    head = state.head0
    rows = (1.0 + head[1]) * np.concatenate([np.ones((len(raters), 1)), raters[:, 1:]], 1)
    return rows, y - float(state.mu) - head[0] - (1.0 + head[1]) * raters[:, 0]


def new_item_state(state: PredictorState, prior: np.ndarray, raters: np.ndarray,
                   y: np.ndarray, *, shrink: float, precision: np.ndarray | None = None
                   ) -> np.ndarray:
    """``[D]`` a never-rated item's state after its first ratings ``y`` ``[n]`` by raters
    with states ``raters`` ``[n, D]``: the ridge fold-in toward ``prior`` (``precision``
    ``[D]`` or ``[D, D]``, by default the trained ``item_precision``), then
    :func:`item_steps` (:meth:`~graph_meta.nn.net.GraphMetaNet.adapt_items` in training)."""
    rows, t = rater_rows_targets(state, raters, y)
    lam = state.item_precision if precision is None else precision
    theta = posterior_update(prior, lam, rows, t)
    return item_steps(state, theta, raters, y, shrink=shrink)


def item_steps(state: PredictorState, theta: np.ndarray, raters: np.ndarray, y: np.ndarray,
               *, shrink: float) -> np.ndarray:
    """``[D]`` a new item's state after the item learner's inner loop on its observed ratings
    ``y`` ``[n]`` by raters with states ``raters`` ``[n, D]``, from ``theta`` (serving keeps
    the users' head ``head0`` fixed in the score, as it predicts with it)."""
    batch = support_batch(raters, y, mu=float(state.mu), theta=theta, head=state.head0,
                          shrink=shrink)
    return state.item_rule().trajectory({"theta": theta}, batch, support_loss_grad)[-1]["theta"]
