r"""Popularity: a training item scores :math:`\log(1 + n_i)`; an item without training rows
the popularity its side features predict (a ridge map fitted on the training items).

Positives observed after training (:meth:`Popularity.observe`, the online replay) make the
counts grow: an item scores :math:`\log(1 + n_i + m_i)`, :math:`m_i` its observed takers
that are not training takers; for an item without training rows :math:`n_i` is the count its
attributes predict, :math:`e^{\hat b_i} - 1`, so that its own takers add to it on the same
scale."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from graph_meta.baselines import _RidgeMap
from graph_meta.dataset import Dataset
from graph_meta.implicit_baselines.data import (
    Interactions,
    _Base,
    _masked,
    _Observing,
    interactions,
    item_features,
)


class Popularity(_Observing, _Base):
    r"""Item popularity; a new item's predicted from its attributes (see
    :mod:`graph_meta.implicit_baselines`).

    Args:
        alpha: ridge strength of the attribute map (side features -> log popularity).
    """

    name = "popularity"

    def __init__(self, alpha: float = 3.0) -> None:
        self.alpha = float(alpha)
        self.params: dict[str, Any] = {}

    def fit(self, dataset: Dataset) -> Popularity:
        t0 = time.perf_counter()
        self.data = interactions(dataset)
        feats = item_features(dataset, self.data)
        self.scores = self.popularity_scores(self.data, feats, self.alpha)
        self.fit_scores = self.scores.copy()
        self._refresh_live_items(list(self._live_log().by_item))
        self.params = {"alpha": self.alpha, "item_features": feats.shape[1],
                       "fit_s": round(time.perf_counter() - t0, 3)}
        return self

    @staticmethod
    def popularity_scores(data: Interactions, feats: sp.csr_matrix,
                          alpha: float) -> np.ndarray:
        """:math:`\\log(1 + n_i)` for training items, the attribute ridge for the others."""
        n = data.item_count.astype(np.float64)
        target = np.log1p(n)
        fit = data.item_in_train
        scores = target.copy()
        if fit.any() and (~fit).any() and feats.shape[1]:
            ridge = _RidgeMap(feats, fit, np.sqrt(n[fit]))
            pred = ridge.predict(target[fit][:, None], alpha)[:, 0]
            scores[~fit] = pred[~fit]
        return scores

    def _refresh_live_items(self, item_ids: list[str]) -> None:
        """Observed takers join the counts (module docstring)."""
        if not hasattr(self, "fit_scores"):
            return
        pos = self.data.items_of(item_ids)
        for p in pos[pos >= 0].tolist():
            users, _ = self._new_takers(p)
            self.scores[p] = (np.log1p(np.expm1(self.fit_scores[p]) + len(users)) if len(users)
                              else self.fit_scores[p])

    def score_items(self, user_id: str, support_items: list[str],
                    candidate_item_ids: list[str]) -> np.ndarray:
        pos, known = self._candidates(candidate_item_ids)
        return _masked(self.scores[pos], known)
