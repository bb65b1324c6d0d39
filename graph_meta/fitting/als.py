r"""Biased MF by alternating ridge solves, the one ALS of the project: the ALS start of
meta-training and the targets of the side-feature prior (:mod:`graph_meta.fitting.priors`),
and the biased MF baseline (:class:`graph_meta.baselines.BiasedMF`).

With states :math:`\theta = (b, v)`, :math:`x_j = (1, v_j)` and :math:`\Lambda` the
precision (a number or one per coordinate, bias first), the user step solves for every user

.. math:: \theta_u = \Big(\sum_{i \in I_u} x_i x_i^\top + \Lambda\Big)^{-1}
          \sum_{i \in I_u} x_i\,(r_{ui} - \mu - b_i)

(batched ``D x D`` solves, :data:`ROWS_PER_BLOCK` users at a time; the Gram matrices are
sparse products with the items' outer products), and the item step is its mirror image. A
fit is a user step, then ``iters`` times an item step and a user step.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from graph_meta.sampling.episodes import RatingIndex

__all__ = ["PRECISION_GRID", "PRECISION_MARGIN", "ROWS_PER_BLOCK", "als", "als_ratings",
           "bias_precision", "choose_precision", "rebiased_items", "segment_sums"]


#: rows solved (ALS) or ratings summed (:func:`segment_sums`) at a time: bounds the
#: ``[B, D, D]`` Gram matrices and the ``[B, D]`` rows (~150 MB at D = 17, ~45 MB at D = 9)
ROWS_PER_BLOCK = 1 << 16


def segment_sums(seg: np.ndarray, n: int, d: int,
                 rows_of: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]], *,
                 outer: bool = True, vec: bool = True
                 ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(outer [n, d, d], vec [n, d])``: for every segment ``s``, ``outer[s] = sum_k x_k
    x_k^T`` and ``vec[s] = sum_k x_k t_k`` over the positions ``k`` with ``seg[k] = s``, where
    ``(x [B, d], t [B]) = rows_of(positions)``; a sum not asked for (``outer`` / ``vec``
    False) is None and not computed (``rows_of`` may then give ``t = None``).

    The positions are taken in stable segment order, about :data:`ROWS_PER_BLOCK` at a time
    and never splitting a segment, so no ``[len(seg), d]`` array is built and each sum runs
    in the positions' own order (the same values as summing all rows at once).
    """
    order = np.argsort(seg, kind="stable")
    sorted_seg = seg[order]
    bounds = np.r_[0, np.flatnonzero(sorted_seg[1:] != sorted_seg[:-1]) + 1, len(seg)]
    cuts = np.unique(np.r_[bounds[np.searchsorted(
        bounds, np.arange(ROWS_PER_BLOCK, len(seg), ROWS_PER_BLOCK))], 0, len(seg)])
    sums = np.zeros((n, d, d)) if outer else None
    vecs = np.zeros((n, d)) if vec else None
    for a, b in itertools.pairwise(cuts):
        x, t = rows_of(order[a:b])
        if vecs is not None:
            assert t is not None
            np.add.at(vecs, sorted_seg[a:b], x * t[:, None])
        if sums is None:
            continue
        inside = bounds[(bounds >= a) & (bounds <= b)] - a
        for p, q in itertools.pairwise(inside):
            r = x[p:q]
            sums[sorted_seg[a + p]] += r.T @ r
    return sums, vecs


class _Side:
    """The ratings grouped by one side (users or items) as a CSR pattern, one entry per
    rating (a pair rated twice counts twice, as a sum over ratings does)."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> None:
        self.order = np.argsort(rows, kind="stable")
        self.indptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=n_rows))]
        self.indices = cols[self.order]
        self.cols = cols
        self.shape = (n_rows, n_cols)
        self.ones = self.matrix(np.ones(len(rows)))

    def matrix(self, values: np.ndarray) -> sp.csr_matrix:
        """``[n_rows, n_cols]`` with one entry per rating (``values`` in rating order)."""
        return sp.csr_matrix((values[self.order], self.indices, self.indptr), shape=self.shape)

    def normal_equations(self, rating: np.ndarray, mu: float, other: np.ndarray
                         ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
        """``(a, b, gram [b - a, D, D], rhs [b - a, D])`` of the rows ``a:b``, block by
        block: :math:`\\sum x x^\\top` and :math:`\\sum x t` over each row's ratings against
        the fixed states ``other`` (:math:`x = (1, v)`, :math:`t = r - \\mu - b`)."""
        d = other.shape[1]
        x = np.concatenate([np.ones((len(other), 1)), other[:, 1:]], axis=1)
        # the Gram is symmetric: its upper triangle is summed, then spread to both halves
        upper = np.triu_indices(d)
        spread = np.empty((d, d), dtype=np.int64)
        spread[upper] = spread[upper[1], upper[0]] = np.arange(len(upper[0]))
        products = x[:, upper[0]] * x[:, upper[1]]
        rhs = np.asarray(self.matrix(rating - mu - other[self.cols, 0]) @ x)
        for a in range(0, self.shape[0], ROWS_PER_BLOCK):  # each row's solve is its own
            b = min(a + ROWS_PER_BLOCK, self.shape[0])
            half = np.asarray(self.ones[a:b] @ products)
            yield a, b, np.take(half, spread.ravel(), axis=1).reshape(-1, d, d), rhs[a:b]

    def solve(self, rating: np.ndarray, mu: float, other: np.ndarray,
              lam: np.ndarray) -> np.ndarray:
        """``[n_rows, D]``: every row's ridge solve against the fixed states ``other``."""
        out = np.empty((self.shape[0], other.shape[1]))
        for a, b, gram, rhs in self.normal_equations(rating, mu, other):
            out[a:b] = np.linalg.solve(gram + lam, rhs[:, :, None])[..., 0]
        return out


def als_ratings(user: np.ndarray, item: np.ndarray, rating: np.ndarray, n_users: int,
                n_items: int, reg: float | Sequence[float], iters: int, items0: np.ndarray, *,
                mu: float, on_sweep: Callable[[int, int], None] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """``(items [N_I, D], users [N_U, D])`` of biased MF on ratings ``(user, item, rating)``
    (module docstring) from item states ``items0`` ``[N_I, D]`` and mean ``mu``; ``reg`` the
    precision (a number, or ``[D]``: bias first). Rows without ratings get zeros."""
    d = items0.shape[1]
    lam = np.diag(np.broadcast_to(np.asarray(reg, dtype=np.float64), (d,)))
    by_user = _Side(user, item, n_users, n_items)
    by_item = _Side(item, user, n_items, n_users)
    items = np.asarray(items0, dtype=np.float64).copy()
    users = by_user.solve(rating, mu, items, lam)
    for sweep in range(iters):
        items = by_item.solve(rating, mu, users, lam)
        users = by_user.solve(rating, mu, items, lam)
        if on_sweep is not None:
            on_sweep(sweep + 1, iters)
    return items, users


def als(index: RatingIndex, dim: int, reg: float | Sequence[float], iters: int, seed: int, *,
        edges: np.ndarray | None = None, items0: np.ndarray | None = None,
        on_sweep: Callable[[int, int], None] | None = None
        ) -> tuple[float, np.ndarray, np.ndarray]:
    """Biased MF of the training graph's ratings: ``(mu, items [N_I, 1+dim], users [N_U,
    1+dim])`` (:func:`als_ratings`).

    The user step is the model's fold-in with a zero prior and precision ``reg`` (a number, or
    ``[1+dim]`` per coordinate: bias first); the item step is its mirror image. ``edges``
    (bool ``[E]``) restricts the fit to those ratings, ``items0`` warm-starts it (else zero
    biases and N(0, 0.1) vectors). Items without ratings get zeros. ``on_sweep(k, iters)`` is
    called after sweep ``k``.
    """
    sel = np.ones(index.num_edges, bool) if edges is None else edges
    e_user, e_item, e_rating = index.user[sel], index.item[sel], index.rating[sel]
    mu = float(e_rating.mean()) if len(e_rating) else 0.0
    if items0 is None:
        items0 = _start_items(index.num_items, dim, seed)
    items, users = als_ratings(e_user, e_item, e_rating, index.num_users, index.num_items,
                               reg, iters, items0, mu=mu, on_sweep=on_sweep)
    return mu, items, users


def _start_items(n_items: int, dim: int, seed: int) -> np.ndarray:
    """``[n_items, 1+dim]`` ALS's cold start: zero biases, N(0, 0.1) vectors."""
    items0 = np.zeros((n_items, 1 + dim))
    items0[:, 1:] = np.random.default_rng(seed).normal(0, 0.1, (n_items, dim))
    return items0


def _predicted(mu: float, items: np.ndarray, users: np.ndarray, u: np.ndarray,
               i: np.ndarray) -> np.ndarray:
    r"""``[E]`` :math:`\hat r = \mu + b_u + b_i + \langle v_u, v_i\rangle` of the pairs
    ``(u, i)``, :data:`ROWS_PER_BLOCK` at a time (no ``[E, D]`` temporaries)."""
    pred = mu + users[u, 0] + items[i, 0]
    for a in range(0, len(u), ROWS_PER_BLOCK):
        b = min(a + ROWS_PER_BLOCK, len(u))
        pred[a:b] += np.einsum("nd,nd->n", users[u[a:b], 1:], items[i[a:b], 1:])
    return pred


def _residuals(index: RatingIndex, mu: float, items: np.ndarray, users: np.ndarray
               ) -> np.ndarray:
    r"""``[E]`` the fit's residuals :math:`r - \hat r` on the training ratings."""
    return index.rating.astype(np.float64) - _predicted(mu, items, users, index.user,
                                                        index.item)


def bias_precision(index: RatingIndex, mu: float, items: np.ndarray, users: np.ndarray,
                   *, ceiling: float) -> float:
    r"""The empirical-Bayes precision of the item biases, :math:`\sigma^2 / \tau^2`, read off
    a fit: with :math:`e` its residuals on the training ratings, :math:`\sigma^2` their mean
    square, and :math:`m_i = b_i + \bar e_i` an item's bias before shrinkage
    (:math:`\bar e_i` its mean residual over its :math:`n_i` ratings, centred over the
    items), :math:`\tau^2 = \overline{m_i^2 - \sigma^2 / n_i}` the spread of the true
    biases (method of moments). At most ``ceiling`` (the fit's own precision), at least
    1e-3 of it."""
    i = index.item
    e = _residuals(index, mu, items, users)
    sigma2 = float(np.mean(e ** 2)) if len(e) else 0.0
    n = np.bincount(i, minlength=len(items)).astype(np.float64)
    rated = n > 0
    if rated.sum() < 2 or sigma2 <= 0:
        return float(ceiling)
    m = items[rated, 0] + np.bincount(i, weights=e, minlength=len(items))[rated] / n[rated]
    tau2 = float(np.mean((m - m.mean()) ** 2 - sigma2 / n[rated]))
    if tau2 <= 0:
        return float(ceiling)
    return float(np.clip(sigma2 / tau2, 1e-3 * ceiling, ceiling))


def factor_precision(index: RatingIndex, mu: float, items: np.ndarray, users: np.ndarray,
                     *, ceiling: float) -> float:
    r"""The empirical-Bayes precision of the item factors, :math:`\sigma^2 / \tau_v^2`, read
    off a fit as :func:`bias_precision` reads the biases': :math:`\sigma^2` the mean square
    residual; over the items with at least :math:`3D` ratings, each item's unshrunk state
    :math:`\hat x_i = G_i^{-1} \sum_u x_u t_{ui}` against the fixed user states
    (:math:`G_i = \sum_u x_u x_u^\top`, :math:`x_u = (1, v_u)`), whose factor coordinates
    scatter as the true factors plus :math:`\sigma^2 G_i^{-1}`, so :math:`\tau_v^2 =
    \overline{\hat v_{ik}^2 - \sigma^2 (G_i^{-1})_{kk}}` over those items and coordinates
    (method of moments; the ALS prior mean is 0). At most ``ceiling``, at least 1e-3 of it;
    ``ceiling`` when fewer than two items qualify."""
    u, i, r = index.user, index.item, index.rating.astype(np.float64)
    e = _residuals(index, mu, items, users)
    sigma2 = float(np.mean(e ** 2)) if len(e) else 0.0
    d = users.shape[1]
    n = np.bincount(i, minlength=len(items))
    if (n >= 3 * d).sum() < 2 or sigma2 <= 0:
        return float(ceiling)
    by_item = _Side(i, u, index.num_items, index.num_users)
    moments: list[np.ndarray] = []
    for a, b, gram, rhs in by_item.normal_equations(r, mu, users):
        keep = n[a:b] >= 3 * d
        if not keep.any():
            continue
        inverse = np.linalg.inv(gram[keep])
        x = np.einsum("nij,nj->ni", inverse, rhs[keep])
        moments.append((x[:, 1:] ** 2 - sigma2 * np.diagonal(inverse, axis1=1, axis2=2)[:, 1:])
                       .ravel())
    tau2 = float(np.mean(np.concatenate(moments)))
    if tau2 <= 0:
        return float(ceiling)
    return float(np.clip(sigma2 / tau2, 1e-3 * ceiling, ceiling))


def rebiased_items(index: RatingIndex, mu: float, users: np.ndarray,
                   reg: float | Sequence[float], bias_reg: float, *,
                   edges: np.ndarray | None = None,
                   target: np.ndarray | None = None) -> np.ndarray:
    r"""``[N_I, D]`` one more item step of :func:`als` against its user states ``users``
    (on the ratings ``edges`` selects, default all), the bias coordinate's precision
    ``bias_reg`` instead of ``reg``'s.

    ``target`` ``[N_I, D]``: each item's state is shrunk toward its row instead of 0,
    :math:`\theta_i = (\sum_u x_u x_u^\top + \Lambda)^{-1}(\sum_u x_u t_{ui} + \Lambda
    \bar\theta_i)`, solved as :math:`\bar\theta_i` plus the step on the ratings less
    :math:`\langle x_u, \bar\theta_i\rangle` (an item without ratings gets its row)."""
    d = users.shape[1]
    lam = np.diag(np.broadcast_to(np.asarray(reg, dtype=np.float64), (d,))).copy()
    lam[0, 0] = bias_reg
    sel = slice(None) if edges is None else edges
    item, user = index.item[sel], index.user[sel]
    rating = index.rating[sel].astype(np.float64)
    if target is not None:
        rating = rating - target[item, 0] - np.einsum("ij,ij->i", target[item, 1:],
                                                      users[user, 1:])
    by_item = _Side(item, user, index.num_items, index.num_users)
    step = by_item.solve(rating, mu, users, lam)
    return step if target is None else step + target


#: the precisions :func:`choose_precision` tries for graph-meta (``train.precision_search``)
PRECISION_GRID: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
#: how much better (relative held-out RMSE) a precision must be to replace the configured one
PRECISION_MARGIN = 0.05


def choose_precision(user: np.ndarray, item: np.ndarray, rating: np.ndarray, dim: int,
                     grid: Sequence[float], iters: int, seed: int, *, default: float,
                     margin: float = PRECISION_MARGIN, held_out: float = 0.1,
                     bias_reg: float | None = None) -> tuple[float, dict[float, float]]:
    """``(precision, {precision: held-out RMSE})``: ``default``, unless the best precision
    of ``grid`` predicts a seeded ``held_out`` share of the ratings ``(user, item, rating)``
    (0-based codes; drawn among those whose user and item have at least 3 ratings, so that
    both keep a state) better than ``default`` by more than ``margin`` (relative RMSE). Each
    is the ALS precision of every coordinate (of the vector only when ``bias_reg`` fixes the
    bias's), fitted (:func:`als_ratings`, ``dim`` factors, ``iters`` sweeps) on the other
    ratings.

    How much a few ratings say depends on the catalogue: 10 suits movielens-1m's 150
    ratings per item, a dense catalogue with 40 and strong factors wants 2 to 5. ALS's
    optimum is only a proxy for graph-meta's (which adds the neighbourhood correction and a
    learned fold-in), and neighbouring grid points often differ by less than the held-out
    noise: hence a margin that replaces only a value clearly off."""
    n_users, n_items = int(user.max(initial=-1)) + 1, int(item.max(initial=-1)) + 1
    rng = np.random.default_rng([seed, 31])
    eligible = ((np.bincount(user, minlength=n_users)[user] >= 3)
                & (np.bincount(item, minlength=n_items)[item] >= 3))
    mask = eligible & (rng.random(len(rating)) < held_out)
    if not mask.any():
        return float(default), {}
    keep = ~mask
    rating = np.asarray(rating, dtype=np.float64)
    mu = float(rating[keep].mean())
    u, i, truth = user[mask], item[mask], rating[mask]
    items0 = _start_items(n_items, dim, seed)  # als_ratings starts from a copy
    scores: dict[float, float] = {}
    for reg in sorted({float(default), *map(float, grid)}):
        precision = reg if bias_reg is None else [float(bias_reg)] + [reg] * dim
        items, users = als_ratings(user[keep], item[keep], rating[keep], n_users, n_items,
                                   precision, iters, items0, mu=mu)
        pred = _predicted(mu, items, users, u, i)
        scores[reg] = float(np.sqrt(np.mean((pred - truth) ** 2)))
    best = min(scores, key=scores.__getitem__)
    if scores[best] < (1.0 - margin) * scores[float(default)]:
        return best, scores
    return float(default), scores
