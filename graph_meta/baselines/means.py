r"""The mean baselines for the cold-start protocol (:mod:`graph_meta.eval.protocol`).

**GlobalMean** predicts :math:`\hat r = \mu`.

**ItemMeanUserBias** predicts :math:`\hat r_{ui} = \mu + b_i + b_u` with shrunk means

.. math:: b_i = \frac{\sum_{u \in U_i} (r_{ui} - \mu)}{|U_i| + \lambda_i}, \qquad
          b_u = \frac{\sum_{i \in I_u \cup S} (r_{ui} - \mu - b_i)}{|I_u| + |S| + \lambda_u},

:math:`I_u` the user's training ratings (empty for a new user), so a task's user bias uses
their history plus the support set; a cold item has :math:`b_i = 0` (the global mean).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from graph_meta.baselines.ratings import carve_summary, clip, ratings_of
from graph_meta.dataset import RATING, Dataset
from graph_meta.eval.protocol import carve_validation, evaluate, training_view
from graph_meta.live import LiveRatings

__all__ = ["GlobalMean", "ItemMeanUserBias"]


class GlobalMean:
    r"""Predicts the mean training rating :math:`\mu` for everything."""

    name = "global mean"

    def __init__(self) -> None:
        self.mu = 0.0
        self.params: dict[str, Any] = {}

    def fit(self, dataset: Dataset) -> GlobalMean:
        self.mu = float(dataset.train[RATING].to_numpy(dtype=np.float64).mean())
        self.params = {"mu": self.mu}
        return self

    def predict(self, user_id: str, support: list[tuple[str, float]],
                query_items: list[str]) -> np.ndarray:
        return np.full(len(query_items), self.mu)


class ItemMeanUserBias:
    r"""Shrunk item mean plus a shrunk user bias from history + support (module docstring).

    Args:
        item_shrink: :math:`\lambda_i`, pseudo-count pulling an item mean toward :math:`\mu`.
        user_shrink: :math:`\lambda_u`, the same for the user bias.
        tune: choose both on a grid by the RMSE on pseudo-tasks carved from train.
        grid: ``{"item_shrink": [...], "user_shrink": [...]}`` for ``tune``.
        seed: of the pseudo-task carving.

    The defaults are the values ``tune=True`` chooses on movielens-1m.
    """

    name = "item mean + user bias"
    default_grid: ClassVar[dict[str, list[float]]] = {
        "item_shrink": [0.0, 5.0, 10.0, 25.0, 50.0],
        "user_shrink": [0.0, 2.0, 5.0, 10.0, 25.0],
    }

    def __init__(self, item_shrink: float = 25.0, user_shrink: float = 5.0, *,
                 tune: bool = False, grid: dict[str, list[float]] | None = None,
                 seed: int = 0) -> None:
        self.item_shrink = float(item_shrink)
        self.user_shrink = float(user_shrink)
        self.tune = tune
        self.grid = {**self.default_grid, **(grid or {})}
        self.seed = seed
        self.params: dict[str, Any] = {}
        self.live = LiveRatings()

    def fit(self, dataset: Dataset) -> ItemMeanUserBias:
        t0 = time.perf_counter()
        tuning: dict[str, Any] = {}
        if self.tune:
            tuning = self._tune(dataset)
        self._fit(dataset)
        self.params = {"item_shrink": self.item_shrink, "user_shrink": self.user_shrink,
                       "mu": self.mu, "fit_s": round(time.perf_counter() - t0, 3), **tuning}
        return self

    def _fit(self, dataset: Dataset) -> None:
        data = ratings_of(dataset)
        self.scale = dataset.spec.rating_scale
        self.mu = float(data.r.mean()) if len(data.r) else float(np.mean(self.scale))
        dev = data.r - self.mu
        n_i = np.bincount(data.i, minlength=data.n_items).astype(np.float64)
        s_i = np.bincount(data.i, weights=dev, minlength=data.n_items)
        self.live.clear()
        self._n_item, self._s_item = n_i, s_i
        self.b_item = np.zeros(data.n_items + 1)  # last row: unknown item
        self.b_item[:-1] = s_i / np.maximum(n_i + self.item_shrink, 1e-12)
        resid = dev - self.b_item[data.i]
        self.n_user = np.bincount(data.u, minlength=data.n_users).astype(np.float64)
        self.s_user = np.bincount(data.u, weights=resid, minlength=data.n_users)
        self.user_pos = data.user_pos
        self.item_pos = data.item_pos
        self._unknown = data.n_items

    def _tune(self, dataset: Dataset) -> dict[str, Any]:
        pseudo = carve_validation(dataset, seed=self.seed)
        have = [s for s, t in pseudo.tasks.items() if t]
        if not have:
            return {"tuned_on": carve_summary(pseudo), "tuning": "skipped: no pseudo-tasks"}
        view = training_view(pseudo)
        scores = []
        best: tuple[float, float, float] | None = None
        for item_shrink in self.grid["item_shrink"]:
            self.item_shrink = float(item_shrink)
            self._fit(view)
            for user_shrink in self.grid["user_shrink"]:
                self.user_shrink = float(user_shrink)
                res = evaluate(self, pseudo, scenarios=have, fit=False)
                score = float(np.mean([b["rmse"] for b in res["scenarios"].values()]))
                scores.append({"item_shrink": item_shrink, "user_shrink": user_shrink,
                               "pseudo_rmse": round(score, 5)})
                if best is None or score < best[0]:
                    best = (score, float(item_shrink), float(user_shrink))
        assert best is not None
        _, self.item_shrink, self.user_shrink = best
        return {"tuned_on": carve_summary(pseudo), "pseudo_rmse": round(best[0], 5),
                "grid_scores": scores}

    def observe(self, ratings: Sequence[tuple[str, str, float]]) -> int:
        """Ratings that arrived after training: an item's mean takes its observed ratings in
        (same shrinkage), a user's bias their observed ratings as more history."""
        changed = self.live.add(ratings)
        for item in {i for _, i, _ in changed}:
            p = self.item_pos.get(item)
            if p is None:
                continue
            extra = self.live.item(item)
            s = self._s_item[p] + sum(extra.values()) - self.mu * len(extra)
            n = self._n_item[p] + len(extra)
            self.b_item[p] = s / max(n + self.item_shrink, 1e-12)
        return len(changed)

    def reset_observed(self) -> None:
        for item in self.live.by_item:
            p = self.item_pos.get(item)
            if p is not None:
                self.b_item[p] = self._s_item[p] / max(self._n_item[p] + self.item_shrink,
                                                       1e-12)
        self.live.clear()

    def predict(self, user_id: str, support: list[tuple[str, float]],
                query_items: list[str]) -> np.ndarray:
        pos, unknown = self.item_pos, self._unknown
        q = np.fromiter((pos.get(i, unknown) for i in query_items), np.int64, len(query_items))
        u = self.user_pos.get(user_id)
        s, n = (self.s_user[u], self.n_user[u]) if u is not None else (0.0, 0.0)
        support = self.live.with_support(user_id, support)
        if support:
            si = np.fromiter((pos.get(i, unknown) for i, _ in support), np.int64, len(support))
            sr = np.fromiter((r for _, r in support), np.float64, len(support))
            s = s + float((sr - self.mu - self.b_item[si]).sum())
            n = n + len(support)
        b_u = s / (n + self.user_shrink) if n + self.user_shrink > 0 else 0.0
        return clip(self.mu + b_u + self.b_item[q], self.scale)
