"""LightFM (WARP) with side features; a new user is their side features plus the bag of
their support items (needs the ``lightfm`` package: :func:`lightfm_available`).

Positives observed after training (:meth:`LightFMBaseline.observe`, the online replay) join
their users' bags; the item side stays blind to them: an item's representation is its
learned features' embeddings, and a new item's (side features only) would move only with
gradient steps, i.e. retraining."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from graph_meta.dataset import Dataset
from graph_meta.implicit_baselines.data import (
    _Base,
    _masked,
    _Observing,
    _unit_rows,
    interactions,
    item_features,
    user_features,
)


def lightfm_available() -> bool:
    try:
        import lightfm  # noqa: F401
    except ImportError:
        return False
    return True


class LightFMBaseline(_Observing, _Base):
    r"""LightFM (WARP) with item and user features (:mod:`graph_meta.implicit_baselines`).

    Args:
        components: embedding size.
        epochs: training epochs (10: about 55 s each on implicit movielens-1m, one thread).
        loss: LightFM loss (``"warp"``, ``"bpr"``, ...).
        learning_rate, item_alpha, user_alpha: LightFM's.
        seed: LightFM's random state.
    """

    name = "LightFM (WARP, features)"

    def __init__(self, components: int = 64, epochs: int = 10, loss: str = "warp",
                 learning_rate: float = 0.05, item_alpha: float = 1e-6,
                 user_alpha: float = 1e-6, seed: int = 0) -> None:
        self.components = int(components)
        self.epochs = int(epochs)
        self.loss = loss
        self.learning_rate = float(learning_rate)
        self.item_alpha = float(item_alpha)
        self.user_alpha = float(user_alpha)
        self.seed = int(seed)
        self.params: dict[str, Any] = {}

    def fit(self, dataset: Dataset) -> LightFMBaseline:
        from lightfm import LightFM

        t0 = time.perf_counter()
        d = self.data = interactions(dataset)
        n_items = len(d.item_ids)
        side_i = _unit_rows(item_features(dataset, d))
        ident = sp.diags(d.item_in_train.astype(np.float64)).tocsr()[:, d.item_in_train]
        self._item_x = _normalise_rows(sp.hstack([ident, side_i], format="csr"))
        self._user_side = _unit_rows(user_features(dataset, d))
        self._n_items = n_items
        users = self._user_rows(d.by_user, self._user_side)
        model = LightFM(no_components=self.components, loss=self.loss,
                        learning_rate=self.learning_rate, item_alpha=self.item_alpha,
                        user_alpha=self.user_alpha, random_state=self.seed)
        inter = d.by_user.tocoo()
        model.fit(inter, user_features=users, item_features=self._item_x, epochs=self.epochs,
                  num_threads=1, sample_weight=inter.copy())
        self.model = model
        self._ib, self._iv = model.get_item_representations(self._item_x)
        self.params = {"components": self.components, "epochs": self.epochs,
                       "loss": self.loss, "learning_rate": self.learning_rate,
                       "item_features": self._item_x.shape[1],
                       "user_features": users.shape[1],
                       "fit_s": round(time.perf_counter() - t0, 3)}
        return self

    def _user_rows(self, bag: sp.csr_matrix, side: sp.csr_matrix) -> sp.csr_matrix:
        """User features: side features + the unit-norm bag of items taken."""
        items = _unit_rows((bag > 0).astype(np.float64).tocsr())
        return _normalise_rows(sp.hstack([side, items], format="csr"))

    def score_items(self, user_id: str, support_items: list[str],
                    candidate_item_ids: list[str]) -> np.ndarray:
        d = self.data
        hist, _ = d.history(user_id)
        items = np.union1d(np.union1d(hist, self._live_items(user_id)[0]),
                           self._support(support_items))
        bag = sp.csr_matrix((np.ones(len(items)), (np.zeros(len(items), dtype=np.int64),
                                                   items)), shape=(1, self._n_items))
        u = d.user_ids.get_indexer([user_id])[0]
        side = self._user_side[u] if u >= 0 else sp.csr_matrix((1, self._user_side.shape[1]))
        ub, uv = self.model.get_user_representations(self._user_rows(bag, side))
        pos, known = self._candidates(candidate_item_ids)
        return _masked(self._ib[pos] + self._iv[pos] @ uv[0] + ub[0], known)


def _normalise_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    """Rows scaled to sum 1 (LightFM's advice for feature matrices); empty rows stay 0."""
    sums = np.asarray(abs(m).sum(axis=1)).ravel()
    return (sp.diags(1.0 / np.where(sums > 0, sums, 1.0)) @ m).tocsr().astype(np.float32)
