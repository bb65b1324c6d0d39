"""Content profile: the cosine between a user's side-feature profile and each candidate's
side-feature row (popularity order for a user with no positive)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from graph_meta.dataset import Dataset
from graph_meta.implicit_baselines.data import (
    _Base,
    _masked,
    _unit_rows,
    interactions,
    item_features,
)
from graph_meta.implicit_baselines.popularity import Popularity


class ContentProfile(_Base):
    r"""Cosine of the user's side-feature profile to each candidate's (see
    :mod:`graph_meta.implicit_baselines`).

    Item rows are unit-norm side features centred on the training items' mean row
    :math:`\bar f` (:math:`z_i = f_i - \bar f`; without centring every profile points at the
    features all items share and the ranking is near chance: recall@20 0.009 against 0.027
    on 300 warm tasks of implicit movielens-1m). The profile is :math:`P = \sum_j w_j z_j`
    over the training positives (confidence :math:`w_j`) and the support items (weight 1),
    and a candidate scores :math:`z_i^\top P / \|z_i\|`.
    """

    name = "content profile"

    def __init__(self, popularity_alpha: float = 3.0) -> None:
        self.popularity_alpha = float(popularity_alpha)
        self.params: dict[str, Any] = {}

    def fit(self, dataset: Dataset) -> ContentProfile:
        t0 = time.perf_counter()
        self.data = interactions(dataset)
        feats = item_features(dataset, self.data)
        self.unit = _unit_rows(feats).tocsr()
        fit = self.data.item_in_train
        self.mean = (np.asarray(self.unit[fit].mean(axis=0)).ravel() if fit.any()
                     else np.zeros(self.unit.shape[1]))
        self.f_mean = np.asarray(self.unit @ self.mean).ravel()  # f_i . mean
        self.mean_sq = float(self.mean @ self.mean)
        sq = np.asarray(self.unit.multiply(self.unit).sum(axis=1)).ravel()
        self.z_norm = np.sqrt(np.maximum(sq - 2 * self.f_mean + self.mean_sq, 1e-12))
        self.popularity = Popularity.popularity_scores(self.data, feats,
                                                       self.popularity_alpha)
        self.params = {"item_features": feats.shape[1],
                       "fit_s": round(time.perf_counter() - t0, 3)}
        return self

    def score_items(self, user_id: str, support_items: list[str],
                    candidate_item_ids: list[str]) -> np.ndarray:
        hist, w = self.data.history(user_id)
        sup = self._support(support_items)
        pos, known = self._candidates(candidate_item_ids)
        if not len(hist) and not len(sup):
            return _masked(self.popularity[pos], known)
        weights = np.concatenate([w, np.ones(len(sup))])
        rows = np.concatenate([hist, sup])
        q = np.asarray(self.unit[rows].T @ weights).ravel()  # sum of w_j f_j
        total = float(weights.sum())
        # z_i . P = f_i . q - W f_i . m - m . q + W |m|^2
        dots = (np.asarray(self.unit[pos] @ q).ravel() - total * self.f_mean[pos]
                - float(self.mean @ q) + total * self.mean_sq)
        return _masked(dots / self.z_norm[pos], known)
