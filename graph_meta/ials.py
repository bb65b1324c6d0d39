r"""Implicit ALS with confidences (Hu, Koren and Volinsky, ICDM 2008) in numpy, and its fold-in.

Every (user, item) pair has a preference :math:`p_{ui} = 1` for a positive, else 0, and a
confidence :math:`c_{ui} = 1 + \alpha w_{ui}` (:math:`w_{ui}` the pair's weight, 0 for a
non-positive). The factors minimise

.. math:: \sum_{u,i} c_{ui} (p_{ui} - x_u^\top y_i)^2
          + \lambda \Big(\sum_u \|x_u - x_u^0\|^2 + \sum_i \|y_i\|^2\Big)

(:math:`x^0_u = 0` in training). With the other side fixed each row has a closed form; for
a user, with :math:`Y` the item factors and :math:`S_u` the user's positives,

.. math:: x_u = \Big(Y^\top Y + \sum_{i \in S_u} \alpha w_{ui}\, y_i y_i^\top + \lambda I\Big)^{-1}
                \Big(\sum_{i \in S_u} (1 + \alpha w_{ui})\, y_i + \lambda x_u^0\Big):

:math:`Y^\top Y` is shared by every user, so a step costs one small solve per row
(:func:`solve_rows`, batched over chunks of positives). **Fold-in** (:func:`fold_in`) is the
same user step for one user on any set of positives (a new user's support, a known user's
history plus support), with a prior :math:`x^0` (e.g. a side-feature map for a new user).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["fit_ials", "fold_in", "solve_rows"]


def solve_rows(conf: sp.csr_matrix, other: np.ndarray, reg: float, *,
               gram: np.ndarray | None = None, prior: np.ndarray | None = None,
               chunk: int = 1024) -> np.ndarray:
    r"""One half-step of implicit ALS: the rows of ``conf`` (``[n, m]``, entries
    :math:`\alpha w`, zero where no positive) solved against the fixed factors ``other``
    (``[m, f]``). ``gram`` is :math:`Y^\top Y` (computed when None); ``prior`` ``[n, f]`` the
    :math:`x^0` rows (0 when None)."""
    conf = conf.tocsr()
    n, f = conf.shape[0], other.shape[1]
    g = other.T @ other if gram is None else gram
    base = g + reg * np.eye(f)
    out = np.zeros((n, f))
    indptr, indices, data = conf.indptr, conf.indices, conf.data
    row = 0
    while row < n:
        # rows whose positives fit into one chunk (at least one row)
        stop = int(np.searchsorted(indptr, indptr[row] + chunk, side="right")) - 1
        stop = min(max(stop, row + 1), n)
        a, b = indptr[row], indptr[stop]
        y = other[indices[a:b]]
        w = data[a:b]
        np.diff(indptr[row:stop + 1])
        grams = np.broadcast_to(base, (stop - row, f, f)).copy()
        rhs = np.zeros((stop - row, f))
        if b > a:
            owner = sp.csr_matrix((np.ones(b - a), indices[a:b] * 0 + np.arange(b - a),
                                   indptr[row:stop + 1] - a), shape=(stop - row, b - a))
            outer = ((y * w[:, None])[:, :, None] * y[:, None, :]).reshape(b - a, f * f)
            grams += np.asarray(owner @ outer).reshape(-1, f, f)
            rhs += np.asarray(owner @ (y * (1.0 + w)[:, None]))
        if prior is not None:
            rhs += reg * prior[row:stop]
        out[row:stop] = np.linalg.solve(grams, rhs[:, :, None])[:, :, 0]
        row = stop
    return out


def fit_ials(conf: sp.csr_matrix, factors: int, reg: float, iters: int, *,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    r"""Implicit ALS on ``conf`` (``[users, items]``, entries :math:`\alpha w`): ``(X, Y)``.

    Items are initialised with :math:`N(0, 0.01)`; each sweep is a user step then an item
    step; an item without a positive ends at 0.
    """
    rng = np.random.default_rng(seed)
    conf = conf.tocsr()
    by_item = conf.T.tocsr()
    y = rng.normal(0.0, 0.01, (conf.shape[1], factors))
    x = np.zeros((conf.shape[0], factors))
    for _ in range(iters):
        x = solve_rows(conf, y, reg)
        y = solve_rows(by_item, x, reg)
    y[np.diff(by_item.indptr) == 0] = 0.0
    return x, y


def fold_in(item_factors: np.ndarray, gram: np.ndarray, reg: float, items: np.ndarray,
            conf: np.ndarray, prior: np.ndarray | None = None, *,
            gram_weight: float = 1.0) -> np.ndarray:
    r"""The user step for one user: positives ``items`` (rows of ``item_factors``) with
    confidence increments ``conf`` (:math:`\alpha w`), toward ``prior`` (:math:`x^0`, 0 when
    None); ``gram`` is :math:`Y^\top Y`.

    ``gram_weight`` :math:`\omega \in [0, 1]` is the confidence of every *non*-positive
    (1 in iALS): the positives keep theirs, :math:`1 + \alpha w`, so the system is
    :math:`\omega Y^\top Y + \sum_{i \in S} (1 - \omega + \alpha w_i)\, y_i y_i^\top
    + \lambda I`. :math:`\omega = 1` is the iALS step exactly; :math:`\omega = 0` a ridge
    over the positives alone, :math:`\big(\sum_i (1 + \alpha w_i) y_i y_i^\top + \lambda
    I\big)^{-1} \big(\sum_i (1 + \alpha w_i) y_i + \lambda x^0\big)` (the exposure weight of
    a new item's live step, :mod:`graph_meta.implicit_exposure`)."""
    if not 0.0 <= gram_weight <= 1.0:
        raise ValueError(f"gram_weight must be in [0, 1], got {gram_weight!r}")
    f = item_factors.shape[1]
    y = item_factors[items]
    w = np.asarray(conf, dtype=np.float64)
    # 1 - omega is 0.0 at omega = 1, so w + 0.0 == w: the iALS step bit for bit
    wy = w + (1.0 - gram_weight)
    g = gram if gram_weight == 1.0 else gram_weight * gram
    a = g + reg * np.eye(f) + (y * wy[:, None]).T @ y
    b = y.T @ (1.0 + w)
    if prior is not None:
        b = b + reg * prior
    return np.linalg.solve(a, b)
