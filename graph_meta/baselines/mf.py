r"""Biased matrix factorisation with closed-form fold-in, for the cold-start protocol
(:mod:`graph_meta.eval.protocol`).

**BiasedMF** predicts :math:`\hat r_{ui} = \mu + b_u + b_i + p_u^\top q_i` (``k`` factors),
fitted on train by alternating least squares. With :math:`\theta_u = (b_u, p_u)`,
:math:`x_i = (1, q_i)` and :math:`\Lambda = \mathrm{diag}(\lambda_b, \lambda, \dots,
\lambda)`, the user step solves for every user

.. math:: \theta_u = \Big(\sum_{i \in I_u} x_i x_i^\top + \Lambda\Big)^{-1}
                     \sum_{i \in I_u} x_i\,(r_{ui} - \mu - b_i)

(one batched ``(k+1) x (k+1)`` solve; the Gram matrices are one sparse product), and the item
step is the same with the roles swapped; the last step is a user step. This is graph-meta's
own ALS (:func:`graph_meta.fitting.als.als_ratings`), started from shrunk item means.

*Fold-in.* A task's user is re-solved in closed form with the item parameters fixed, on the
training history plus the support set, regularised toward a prior :math:`\theta^0`:

.. math:: \theta_u = \Big(A_u + \sum_{i \in S} x_i x_i^\top + \Lambda\Big)^{-1}
          \Big(c_u + \sum_{i \in S} x_i (r_{ui} - \mu - b_i) + \Lambda \theta^0\Big),

with :math:`A_u, c_u` the user's precomputed training sums (zero for a new user);
:math:`\theta^0 = 0` for a training user, and for a new user either 0 or a ridge map of the
user's side features (``alpha_user``). With ``fold_in=False`` the support is ignored (a
training user keeps :math:`\theta_u`, a new user gets :math:`\theta^0`): the ablation that
shows what adaptation buys.

*New items (and users).* An item absent from train gets :math:`(b_i, q_i) = W^\top (f_i - \bar
f) + \bar y`, a ridge regression (``alpha_item``) from side features :math:`f_i` to the learned
:math:`(b_i, q_i)`, fitted on the training items with at least ``prior_min_count`` ratings,
rows weighted by :math:`\sqrt{n_i}` or :math:`n_i` (``prior_weight``); a new user's prior
:math:`\theta^0` is the same map over the user table (``alpha_user``, weights
:math:`\sqrt{n_u}`). :math:`f_i` (:func:`graph_meta.side_features.side_features`) concatenates
the one-hot categorical columns, the numeric columns (z-score clipped into the training rows'
range, plus a missing flag), the hashed text bag of
:func:`graph_meta.graph.features.hashed_text` (2048 buckets) and a multi-hot of every node
column (genres, directors, actors, ...; values on at least 2 training rows, at most
``max_vocab`` per column), each multi-hot block scaled to unit norm.

*Hyper-parameters.* With ``tune=True`` (``fit`` then takes longer) :math:`\lambda,
\lambda_b` (and ``k`` if the grid says so) are chosen on a grid, and ``alpha_user``,
``alpha_item`` and ``prior_weight`` per ALS setting, by the task-averaged RMSE on
pseudo-tasks carved from train (:func:`graph_meta.eval.protocol.carve_validation`: held-out
users, the newest items held out): the mean over the four pseudo scenarios. ``alpha_user``
is picked on the pseudo ``user_cold`` tasks, ``alpha_item`` and ``prior_weight`` on
``item_cold`` + ``user_item_cold``. The chosen values and every grid score are in
``model.params``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from graph_meta.baselines.ratings import Ratings, carve_summary, clip, ratings_of
from graph_meta.dataset import Dataset
from graph_meta.eval.protocol import carve_validation, evaluate, training_view
from graph_meta.fitting.als import als_ratings
from graph_meta.live import LiveRatings, posterior_update
from graph_meta.schema import TableSpec
from graph_meta.side_features import RidgeMap, side_features

__all__ = ["BiasedMF"]


_PRIOR_WEIGHTS = ("sqrt", "count", "none")


@dataclass
class _SideTable:
    """Side features of users or items, the rows a prior is fitted on, their rating counts."""

    features: sp.csr_matrix
    fit_rows: np.ndarray
    counts: np.ndarray
    ridges: dict[str, RidgeMap]

    def ridge(self, weighting: str) -> RidgeMap:
        """The ridge map with rows weighted by ``sqrt(n)``, ``n`` or 1 (cached)."""
        if weighting not in self.ridges:
            n = self.counts[self.fit_rows].astype(np.float64)
            weights = {"sqrt": np.sqrt(n), "count": n, "none": None}[weighting]
            self.ridges[weighting] = RidgeMap(self.features, self.fit_rows, weights)
        return self.ridges[weighting]


@dataclass
class _Prepared:
    """What every ALS setting on one training view shares."""

    data: Ratings
    mu: float
    by_user: sp.csr_matrix
    by_item: sp.csr_matrix
    order_user: np.ndarray
    items: _SideTable
    users: _SideTable
    item_train: np.ndarray
    user_train: np.ndarray
    scale: tuple[float, float]


@dataclass
class _Factors:
    b_user: np.ndarray
    p_user: np.ndarray
    b_item: np.ndarray
    q_item: np.ndarray


class BiasedMF:
    r"""Biased matrix factorisation (ALS) with closed-form fold-in and a side-feature prior for
    new items (and optionally new users); see the module docstring for the equations.

    Args:
        k: number of factors.
        reg: :math:`\lambda`, L2 on the factors (ALS and fold-in).
        reg_bias: :math:`\lambda_b`, L2 on the biases.
        iters: ALS sweeps (item step then user step) after a first user step.
        alpha_item: ridge strength of the new-item prior; None: a new item gets
            :math:`b_i = 0, q_i = 0`.
        alpha_user: ridge strength of the new-user prior :math:`\theta^0`; None: 0.
        fold_in: re-solve the task's user on history + support (False: ignore the support).
        support_weight: weight of a support rating relative to a training rating in the
            fold-in (1: the support is just more history; not tuned).
        prior_min_count: training items (users) with fewer ratings are left out of the
            ridge fits.
        prior_weight: rows of the new-item ridge weighted by the square root of their
            rating count (``"sqrt"``), by the count (``"count"``) or not (``"none"``); the
            new-user ridge always uses ``"sqrt"``.
        max_vocab: per-column vocabulary cap of :func:`side_features`.
        tune: choose ``reg``, ``reg_bias`` (and ``k``), ``alpha_item`` and ``alpha_user`` on
            pseudo-tasks carved from train (module docstring), then refit on all of train.
        grid: ``{"k": [...], "reg": [...], "reg_bias": [...], "alpha_item": [...],
            "alpha_user": [...], "prior_weight": [...]}`` for ``tune`` (None in an alpha
            list: no prior); missing keys take :attr:`default_grid`'s.
        seed: of the initial factors and of the pseudo-task carving.

    The defaults are the values ``tune=True`` chooses on movielens-1m.
    """

    name = "biased MF + fold-in"
    default_grid: ClassVar[dict[str, list[Any]]] = {
        "k": [8],
        "reg": [2.0, 5.0, 10.0, 20.0],
        "reg_bias": [0.5, 2.0, 10.0],
        "alpha_item": [None, 3.0, 10.0, 30.0, 100.0],
        "alpha_user": [None, 10.0, 30.0, 100.0, 300.0],
        "prior_weight": ["sqrt", "count"],
    }

    def __init__(self, k: int = 8, reg: float = 5.0, reg_bias: float = 2.0, iters: int = 15,
                 *, alpha_item: float | None = 10.0, alpha_user: float | None = 100.0,
                 fold_in: bool = True, support_weight: float = 1.0,
                 prior_min_count: int = 1, prior_weight: str = "count", max_vocab: int = 2000,
                 tune: bool = False, grid: dict[str, list[Any]] | None = None,
                 seed: int = 0) -> None:
        self.k = int(k)
        self.reg = float(reg)
        self.reg_bias = float(reg_bias)
        self.iters = int(iters)
        self.alpha_item = alpha_item
        self.alpha_user = alpha_user
        self.fold_in = fold_in
        self.support_weight = float(support_weight)
        if prior_weight not in _PRIOR_WEIGHTS:
            raise ValueError(f"prior_weight must be one of {_PRIOR_WEIGHTS}, got "
                             f"{prior_weight!r}")
        self.prior_weight = prior_weight
        self.prior_min_count = int(prior_min_count)
        self.max_vocab = int(max_vocab)
        self.tune = tune
        self.grid = {**self.default_grid, **(grid or {})}
        self.seed = seed
        self.params: dict[str, Any] = {}
        self.live = LiveRatings()
        if not fold_in:
            self.name = "biased MF (no fold-in)"

    # -- fitting ------------------------------------------------------------------------------

    def fit(self, dataset: Dataset) -> BiasedMF:
        t0 = time.perf_counter()
        tuning: dict[str, Any] = {}
        if self.tune:
            tuning = self._tune(dataset)
        prep = self._prepare(dataset)
        factors = self._als(prep, self.k, self.reg, self.reg_bias)
        self._finalize(prep, factors, self.alpha_item, self.alpha_user)
        self.params = {
            "k": self.k, "reg": self.reg, "reg_bias": self.reg_bias, "iters": self.iters,
            "alpha_item": self.alpha_item, "alpha_user": self.alpha_user,
            "fold_in": self.fold_in, "prior_min_count": self.prior_min_count,
            "max_vocab": self.max_vocab, "prior_weight": self.prior_weight,
            "item_features": prep.items.features.shape[1],
            "user_features": prep.users.features.shape[1],
            "fit_s": round(time.perf_counter() - t0, 3), **tuning,
        }
        return self

    def _prepare(self, dataset: Dataset) -> _Prepared:
        data = ratings_of(dataset)
        mu = float(data.r.mean()) if len(data.r) else float(np.mean(dataset.spec.rating_scale))
        ones = np.ones(len(data.r))
        by_user = sp.csr_matrix((ones, (data.u, data.i)), shape=(data.n_users, data.n_items))
        by_item = by_user.T.tocsr()
        by_user.sort_indices()
        by_item.sort_indices()
        n_item = np.bincount(data.i, minlength=data.n_items)
        n_user = np.bincount(data.u, minlength=data.n_users)

        def side(table: TableSpec, frame: pd.DataFrame, counts: np.ndarray,
                 n: int) -> _SideTable:
            rows = np.zeros(n, dtype=bool)
            rows[: len(frame)] = counts[: len(frame)] >= max(self.prior_min_count, 1)
            feats = side_features(table, frame, rows, max_vocab=self.max_vocab)
            if feats.shape[0] < n:  # ids without a side-information row: no features
                feats = sp.vstack([feats, sp.csr_matrix((n - feats.shape[0], feats.shape[1]))],
                                  format="csr")
            return _SideTable(feats, rows, counts, {})

        return _Prepared(
            data=data, mu=mu, by_user=by_user, by_item=by_item,
            # ratings in the CSR order of by_user (pairs are unique)
            order_user=np.lexsort((data.i, data.u)),
            items=side(dataset.spec.items, dataset.items, n_item, data.n_items),
            users=side(dataset.spec.users, dataset.users, n_user, data.n_users),
            item_train=n_item > 0, user_train=n_user > 0, scale=dataset.spec.rating_scale,
        )

    def _als(self, prep: _Prepared, k: int, reg: float, reg_bias: float) -> _Factors:
        """ALS (:func:`graph_meta.fitting.als.als_ratings`) from shrunk item means and random
        factors; never-rated items get zeros."""
        data = prep.data
        rng = np.random.default_rng(self.seed)
        lam = np.full(k + 1, float(reg))
        lam[0] = reg_bias
        n_i = np.bincount(data.i, minlength=data.n_items)
        b_item = np.bincount(data.i, weights=data.r - prep.mu,
                             minlength=data.n_items) / (n_i + reg_bias)
        q_item = rng.normal(0.0, 0.1, (data.n_items, k))
        items, users = als_ratings(data.u, data.i, data.r, data.n_users, data.n_items, lam,
                                   self.iters, np.column_stack([b_item, q_item]), mu=prep.mu)
        items[~prep.item_train] = 0.0
        return _Factors(users[:, 0], users[:, 1:], items[:, 0], items[:, 1:])

    def _finalize(self, prep: _Prepared, f: _Factors, alpha_item: float | None,
                  alpha_user: float | None) -> None:
        """Make the model predict with factors ``f`` and the given priors."""
        self._set_factors(prep, f)
        self._set_priors(prep, f, alpha_item, alpha_user)
        self.live.clear()
        self._trained_items = self._items.copy()
        self._by_item = prep.by_item
        self._rater_theta: dict[str, dict[str, np.ndarray]] = {}  # user -> item updated -> state

    def observe(self, ratings: Sequence[tuple[str, str, float]]) -> int:
        r"""Ratings that arrived after training: the same closed-form updates as graph-meta's
        (:func:`graph_meta.live.posterior_update`). An item's :math:`(b_i, q_i)` is the ALS item
        step over its training and observed raters, from its trained state (or side-feature
        prior) with the precision it was fitted with; a rater's :math:`\theta_u` is the fold-in
        of their history and observed ratings (but their rating of that item) on the trained
        item table; a task's user folds in their observed ratings as more history."""
        changed = self.live.add(ratings)
        items = {i for _, i, _ in changed}
        for user in {u for u, _, _ in changed}:
            self._rater_theta.pop(user, None)
            items.update(self.live.user(user))
        trained_users = self._user_theta
        for item in items:
            p = self._item_pos.get(item)
            if p is None:
                continue
            raters = self.live.item(item)
            theta = np.stack([self._rater_state(u, item) for u in raters])
            x = np.hstack([np.ones((len(theta), 1)), theta[:, 1:]])
            t = np.fromiter(raters.values(), np.float64, len(raters)) - self.mu - theta[:, 0]
            old = self._by_item[p].indices if p < self._by_item.shape[0] else []
            xo = np.hstack([np.ones((len(old), 1)), trained_users[old, 1:]])
            state = np.r_[self._trained_items[p, 0], self._trained_items[p, 2:]]
            new = posterior_update(state, self._lam + xo.T @ xo, x, t)
            self._items[p, 0], self._items[p, 2:] = new[0], new[1:]
        return len(changed)

    def _rater_state(self, user_id: str, without: str) -> np.ndarray:
        """A rater's state in the update of item ``without``: the fold-in of their observed
        ratings but that item's on the trained item table (as graph-meta's,
        :meth:`graph_meta.live_state.LiveState.rater_states_without`)."""
        per_item = self._rater_theta.setdefault(user_id, {})
        theta = per_item.get(without)
        if theta is None:
            table, self._items = self._items, self._trained_items
            try:
                theta = self._fold_in(user_id, [(i, r) for i, r in
                                                self.live.user(user_id).items() if i != without])
            finally:
                self._items = table
            per_item[without] = theta
        return theta

    def reset_observed(self) -> None:
        if self.live.by_item:
            self._items = self._trained_items.copy()
        self.live.clear()
        self._rater_theta = {}

    def _set_factors(self, prep: _Prepared, f: _Factors) -> None:
        r"""Item table ``[b_i, 1, q_i]`` and per-user training sums
        :math:`A_u = \sum x_i x_i^\top`, :math:`c_u = \sum x_i (r_{ui} - \mu - b_i)`."""
        data = prep.data
        k = f.q_item.shape[1]
        lam = np.full(k + 1, self.reg)
        lam[0] = self.reg_bias
        self._lam = np.diag(lam)
        self._k = k
        self.mu, self.scale = prep.mu, prep.scale
        table = np.zeros((data.n_items + 1, k + 2))  # last row: unknown ids -> [0, 1, 0]
        table[:, 1] = 1.0
        table[:-1, 0] = f.b_item
        table[:-1, 2:] = f.q_item
        self._items = table
        self._item_pos = data.item_pos
        self._unknown_item = data.n_items
        x = table[:-1, 1:]
        outer = (x[:, :, None] * x[:, None, :]).reshape(len(x), -1)
        self._user_a = np.asarray(prep.by_user @ outer).reshape(-1, k + 1, k + 1)
        target = (data.r - prep.mu - f.b_item[data.i])[prep.order_user]
        resid = sp.csr_matrix((target, prep.by_user.indices, prep.by_user.indptr),
                              shape=prep.by_user.shape)
        self._user_c = np.asarray(resid @ x)
        self._user_theta = np.hstack([f.b_user[:, None], f.p_user])
        self._user_known = prep.user_train
        self._user_pos = data.user_pos

    def _set_priors(self, prep: _Prepared, f: _Factors, alpha_item: float | None,
                    alpha_user: float | None) -> None:
        """Side-feature priors: new items' rows of the item table, new users' theta0."""
        data = prep.data
        cold = np.flatnonzero(~prep.item_train)
        table = self._items
        table[cold, 0] = 0.0
        table[cold, 2:] = 0.0
        if alpha_item is not None and len(cold):
            ridge = prep.items.ridge(self.prior_weight)
            targets = np.hstack([f.b_item[:, None], f.q_item])[ridge.fit_rows]
            prior = ridge.predict(targets, alpha_item)
            table[cold, 0] = prior[cold, 0]
            table[cold, 2:] = prior[cold, 1:]
        theta0 = np.zeros((data.n_users, self._k + 1))
        if alpha_user is not None and (~prep.user_train).any():
            ridge = prep.users.ridge("sqrt")
            theta0 = ridge.predict(self._user_theta[ridge.fit_rows], alpha_user)
            theta0[prep.user_train] = 0.0
        self._user_theta0 = theta0

    # -- tuning -------------------------------------------------------------------------------

    def _tune(self, dataset: Dataset) -> dict[str, Any]:
        pseudo = carve_validation(dataset, seed=self.seed)
        prep = self._prepare(training_view(pseudo))
        grid = self.grid
        have = [s for s, t in pseudo.tasks.items() if t]
        user_scen = [s for s in ("user_cold",) if s in have]
        item_scen = [s for s in ("item_cold", "user_item_cold") if s in have]

        def rmse(scenarios: list[str]) -> dict[str, float]:
            if not scenarios:
                return {}
            res = evaluate(self, pseudo, scenarios=scenarios, fit=False)
            return {s: b["rmse"] for s, b in res["scenarios"].items()}

        if not have:
            return {"tuned_on": carve_summary(pseudo), "tuning": "skipped: no pseudo-tasks"}
        default_item, default_user = self.alpha_item, self.alpha_user
        default_weight = self.prior_weight
        scores = []
        best: tuple[float, dict[str, Any]] | None = None
        for k, reg, reg_bias in itertools.product(grid["k"], grid["reg"], grid["reg_bias"]):
            self.reg, self.reg_bias = float(reg), float(reg_bias)
            factors = self._als(prep, int(k), self.reg, self.reg_bias)
            self._set_factors(prep, factors)
            # alpha_user on user_cold (items are all known there), then alpha_item
            # a prior with no pseudo-task to judge it keeps its constructor value
            a_user, s_user = default_user, np.inf
            for alpha in grid["alpha_user"] if user_scen else []:
                self._set_priors(prep, factors, None, alpha)
                s = np.mean(list(rmse(user_scen).values()) or [0.0])
                if s < s_user:
                    a_user, s_user = alpha, s
            a_item, w_item, s_item = default_item, default_weight, np.inf
            weights = grid["prior_weight"] if item_scen else []
            for weight, alpha in itertools.product(weights, grid["alpha_item"]):
                if alpha is None and weight != weights[0]:
                    continue  # no prior: the weighting does not matter
                self.prior_weight = weight
                self._set_priors(prep, factors, alpha, a_user)
                s = np.mean(list(rmse(item_scen).values()) or [0.0])
                if s < s_item:
                    a_item, w_item, s_item = alpha, weight, s
            self.prior_weight = w_item
            self._set_priors(prep, factors, a_item, a_user)
            per = rmse(have)
            score = float(np.mean(list(per.values())))
            config = {"k": int(k), "reg": float(reg), "reg_bias": float(reg_bias),
                      "alpha_item": a_item, "prior_weight": w_item, "alpha_user": a_user}
            scores.append({**config, "pseudo_rmse": round(score, 5),
                           **{s: round(v, 5) for s, v in per.items()}})
            if best is None or score < best[0]:
                best = (score, config)
        assert best is not None
        chosen = best[1]
        self.k, self.reg, self.reg_bias = chosen["k"], chosen["reg"], chosen["reg_bias"]
        self.alpha_item, self.alpha_user = chosen["alpha_item"], chosen["alpha_user"]
        self.prior_weight = chosen["prior_weight"]
        return {"tuned_on": carve_summary(pseudo), "pseudo_rmse": round(best[0], 5),
                "grid_scores": scores}

    # -- prediction ---------------------------------------------------------------------------

    def user_parameters(self, user_id: str,
                        support: Sequence[tuple[str, float]] = ()) -> np.ndarray:
        r""":math:`\theta_u = (b_u, p_u)` after fold-in on ``support`` and the user's observed
        ratings (or without them when ``fold_in`` is False)."""
        if self.fold_in:
            support = self.live.with_support(user_id, support)
        return self._fold_in(user_id, support)

    def _fold_in(self, user_id: str, support: Sequence[tuple[str, float]]) -> np.ndarray:
        u = self._user_pos.get(user_id)
        known = u is not None and bool(self._user_known[u])
        if not self.fold_in or not support:
            if known:
                return self._user_theta[u]
            return self._user_theta0[u] if u is not None else np.zeros(self._k + 1)
        pos, unknown = self._item_pos, self._unknown_item
        si = np.fromiter((pos.get(i, unknown) for i, _ in support), np.int64, len(support))
        sr = np.fromiter((r for _, r in support), np.float64, len(support))
        rows = self._items[si]
        x = rows[:, 1:]
        xw = x * self.support_weight
        a = xw.T @ x + self._lam
        c = xw.T @ (sr - self.mu - rows[:, 0])
        if u is not None:
            a += self._user_a[u]
            c += self._user_c[u] + self._lam @ self._user_theta0[u]
        return np.linalg.solve(a, c)

    def predict(self, user_id: str, support: list[tuple[str, float]],
                query_items: list[str]) -> np.ndarray:
        theta = self.user_parameters(user_id, support)
        pos, unknown = self._item_pos, self._unknown_item
        q = np.fromiter((pos.get(i, unknown) for i in query_items), np.int64, len(query_items))
        rows = self._items[q]
        return clip(self.mu + rows[:, 0] + rows[:, 1:] @ theta, self.scale)
