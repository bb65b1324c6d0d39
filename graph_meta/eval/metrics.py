r"""Per-task metrics of the cold-start benchmark (``benchmarks/PROTOCOL.md``).

A task has ``n`` query items with true ratings :math:`y_1..y_n` and predictions
:math:`\hat y_1..\hat y_n` (``n = 10`` in the benchmark). Every function here takes arrays of
shape ``(n,)`` (one task, returns a ``float``) or ``(T, n)`` (``T`` tasks of the same size,
returns one value per task); the benchmark number is the mean over the tasks of a scenario.

* ``mae``  :math:`\frac1n\sum_j |y_j-\hat y_j|`;
* ``rmse`` :math:`\sqrt{\frac1n\sum_j (y_j-\hat y_j)^2}` (root of the task's MSE, then averaged
  over tasks: task-averaged RMSE, as MeLU and MetaHIN report it);
* ``ndcg@k`` (:func:`ndcg_at_k`): rank the items by :math:`\hat y`, gain :math:`y`, discount
  :math:`d_r = 1/\log_2(r+1)` for ranks :math:`r \le k` and 0 after,

  .. math:: \mathrm{DCG} = \sum_{g} \bar y_g \sum_{r \in g} d_r, \qquad
            \mathrm{nDCG@k} = \mathrm{DCG} / \mathrm{IDCG},

  where :math:`g` runs over the groups of items with *equal* predictions (a tie group takes
  the ranks it spans and the mean gain :math:`\bar y_g` of its members: the expectation over
  all orderings of the ties), and IDCG is the DCG of the items sorted by :math:`y`. 0 when
  IDCG = 0. This is exactly ``sklearn.metrics.ndcg_score(y[None], y_hat[None], k=k)``;
* ``ndcg@k_metahin`` (:func:`ndcg_at_k_metahin`): the MetaHIN reference variant. Let
  :math:`S` be the ``k`` items of highest :math:`y` (a stable descending sort of :math:`y`:
  ties go to the lower index), kept in their original order :math:`s_1 < \dots < s_k`. With
  :math:`w_1 = 1` and :math:`w_i = 1/\log_2 i` for :math:`i \ge 2` (PROTOCOL.md),

  .. math:: \mathrm{nDCG}^{\mathrm{MetaHIN}} =
            \frac{\sum_i w_i\, \hat y_{s_i}}{\sum_i w_i\, y_{(i)}},

  :math:`y_{(i)}` the true ratings of :math:`S` sorted descending. The numerator scores the
  *predicted ratings*, not a ranking, so the value can exceed 1 and rewards inflated
  predictions; it is reported only to compare with MetaHIN's table. Note: MetaHIN's
  published ``Evaluation.dcg_at_k`` pairs position :math:`i \ge 2` with
  ``math.log(ind + 1, 2)``, ``ind = i``, i.e. :math:`w_i = 1/\log_2(i+1)`;
  ``reference_discount=True`` gives that discount, the default follows PROTOCOL.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METRICS = ("mae", "rmse", "ndcg@5", "ndcg@5_metahin")


def _pair(y_true: np.ndarray | Sequence[float],
          y_pred: np.ndarray | Sequence[float]) -> tuple[np.ndarray, np.ndarray, bool]:
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} differ in shape")
    if t.ndim not in (1, 2) or t.shape[-1] == 0:
        raise ValueError(f"expected shape (n,) or (tasks, n) with n >= 1, got {t.shape}")
    single = t.ndim == 1
    return np.atleast_2d(t), np.atleast_2d(p), single


def _out(values: np.ndarray, single: bool) -> float | np.ndarray:
    return float(values[0]) if single else values


def mae(y_true: np.ndarray | Sequence[float],
        y_pred: np.ndarray | Sequence[float]) -> float | np.ndarray:
    r"""Mean absolute error of a task, :math:`\frac1n\sum_j |y_j-\hat y_j|` (per row if 2-D)."""
    t, p, single = _pair(y_true, y_pred)
    return _out(np.abs(t - p).mean(axis=1), single)


def rmse(y_true: np.ndarray | Sequence[float],
         y_pred: np.ndarray | Sequence[float]) -> float | np.ndarray:
    r"""Root mean squared error of a task, :math:`\sqrt{\frac1n\sum_j (y_j-\hat y_j)^2}`."""
    t, p, single = _pair(y_true, y_pred)
    return _out(np.sqrt(np.square(t - p).mean(axis=1)), single)


def ndcg_at_k(y_true: np.ndarray | Sequence[float], y_pred: np.ndarray | Sequence[float],
              k: int = 5) -> float | np.ndarray:
    r"""Tie-averaged nDCG@k with gain :math:`y` and discount :math:`1/\log_2(r+1)`.

    Equal to ``sklearn.metrics.ndcg_score(y_true[None], y_pred[None], k=k)`` per task
    (including its treatment of tied predictions), vectorized over the rows of 2-D input.
    """
    t, p, single = _pair(y_true, y_pred)
    n_tasks, n = t.shape
    disc = 1.0 / np.log2(np.arange(n) + 2.0)
    disc[k:] = 0.0
    cum = np.concatenate([[0.0], np.cumsum(disc)])  # cum[j] = sum of the first j discounts

    order = np.argsort(-p, axis=1, kind="stable")
    sp = np.take_along_axis(p, order, axis=1)
    st = np.take_along_axis(t, order, axis=1)
    pos = np.broadcast_to(np.arange(n), (n_tasks, n))
    first = np.ones((n_tasks, n), dtype=bool)
    first[:, 1:] = sp[:, 1:] != sp[:, :-1]
    last = np.ones((n_tasks, n), dtype=bool)
    last[:, :-1] = first[:, 1:]
    start = np.maximum.accumulate(np.where(first, pos, 0), axis=1)
    end = np.minimum.accumulate(np.where(last, pos, n)[:, ::-1], axis=1)[:, ::-1] + 1
    tie_disc = (cum[end] - cum[start]) / (end - start)
    dcg = (st * tie_disc).sum(axis=1)

    ideal = -np.sort(-t, axis=1)
    idcg = ideal @ disc
    safe = np.where(idcg == 0, 1.0, idcg)
    return _out(np.where(idcg == 0, 0.0, dcg / safe), single)


def ndcg_at_k_metahin(y_true: np.ndarray | Sequence[float],
                      y_pred: np.ndarray | Sequence[float], k: int = 5, *,
                      reference_discount: bool = False) -> float | np.ndarray:
    r"""MetaHIN's nDCG@k variant (see the module docstring); 0 when its IDCG is 0.

    Args:
        reference_discount: use :math:`w_i = 1/\log_2(i+1)` for :math:`i \ge 2` as the
            published MetaHIN code does, instead of PROTOCOL.md's :math:`1/\log_2 i`.
    """
    t, p, single = _pair(y_true, y_pred)
    m = min(k, t.shape[1])
    top = np.sort(np.argsort(-t, axis=1, kind="stable")[:, :m], axis=1)
    ts = np.take_along_axis(t, top, axis=1)
    ps = np.take_along_axis(p, top, axis=1)
    i = np.arange(1, m + 1, dtype=np.float64)
    w = np.ones(m)
    w[1:] = 1.0 / np.log2(i[1:] + (1.0 if reference_discount else 0.0))
    dcg = ps @ w
    idcg = -np.sort(-ts, axis=1) @ w
    safe = np.where(idcg == 0, 1.0, idcg)
    return _out(np.where(idcg == 0, 0.0, dcg / safe), single)


def task_metrics(y_true: np.ndarray | Sequence[float],
                 y_pred: np.ndarray | Sequence[float], *,
                 gain_offset: float = 0.0) -> dict[str, float]:
    """All benchmark metrics of one task (``METRICS`` keys; ``gain_offset`` as in
    :func:`batch_task_metrics`)."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    return {
        "mae": float(mae(t, p)),
        "rmse": float(rmse(t, p)),
        "ndcg@5": float(ndcg_at_k(t - gain_offset, p - gain_offset, 5)),
        "ndcg@5_metahin": float(ndcg_at_k_metahin(t - gain_offset, p - gain_offset, 5)),
    }


def batch_task_metrics(y_true: Sequence[np.ndarray], y_pred: Sequence[np.ndarray], *,
                       gain_offset: float = 0.0) -> dict[str, np.ndarray]:
    """Per-task metrics for tasks of possibly different sizes, vectorized per size.

    ``gain_offset`` is subtracted from the true and predicted ratings before the two nDCGs
    (MAE and RMSE do not move): the runner passes the scale's low end when it is below 0, so
    that no gain is negative (nDCG is undefined with negative gains; scikit-learn refuses
    them); 0 on a scale starting at 0 or above, PROTOCOL.md's gain = rating.

    Returns ``METRICS`` keys -> array with one value per task, in input order.
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true arrays but {len(y_pred)} predictions")
    out = {name: np.empty(len(y_true)) for name in METRICS}
    sizes = np.array([len(t) for t in y_true], dtype=np.int64)
    for n in np.unique(sizes):
        rows = np.flatnonzero(sizes == n)
        t = np.stack([np.asarray(y_true[r], dtype=np.float64) for r in rows])
        p = np.stack([np.asarray(y_pred[r], dtype=np.float64) for r in rows])
        out["mae"][rows] = mae(t, p)
        out["rmse"][rows] = rmse(t, p)
        out["ndcg@5"][rows] = ndcg_at_k(t - gain_offset, p - gain_offset, 5)
        out["ndcg@5_metahin"][rows] = ndcg_at_k_metahin(t - gain_offset, p - gain_offset, 5)
    return out
