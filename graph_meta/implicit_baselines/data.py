"""What every implicit baseline shares: the training positives as sparse matrices
(:class:`Interactions`), side-feature matrices, the base class of the scorers and the
pseudo-tasks carved from ``train.csv`` that tuning runs on (:func:`carve_implicit`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from graph_meta.baselines import side_features
from graph_meta.dataset import (
    RATING,
    WEIGHT,
    Dataset,
    confidences_to_weights,
    indexed_train,
    positions,
)
from graph_meta.errors import UnknownItemError
from graph_meta.ials import fold_in
from graph_meta.implicit_exposure import SCENARIOS as EXPOSURE_SCENARIOS
from graph_meta.live import LiveRatings, rating_triples


@dataclass
class Interactions:
    """Training positives as integer codes into ``items`` / ``users`` rows (every item of
    ``items.csv`` and every user of ``users.csv``, whether or not they have a training row).
    """

    user_ids: pd.Index
    item_ids: pd.Index
    by_user: sp.csr_matrix  # [users, items], the confidence weights w (1 without weights)
    item_count: np.ndarray  # users per item
    user_count: np.ndarray  # items per user

    @property
    def item_in_train(self) -> np.ndarray:
        return self.item_count > 0

    @property
    def user_in_train(self) -> np.ndarray:
        return self.user_count > 0

    def items_of(self, ids: Iterable[str]) -> np.ndarray:
        """Item positions of ids (-1 where unknown)."""
        return positions(self._lookup("_item_lookup", self.item_ids), ids)

    def users_of(self, ids: Iterable[str]) -> np.ndarray:
        """User positions of ids (-1 where unknown)."""
        return positions(self._lookup("_user_lookup", self.user_ids), ids)

    def _lookup(self, key: str, index: pd.Index) -> dict[str, int]:
        """id -> position of ``index``, built once (the ranking of every pool maps its ids)."""
        lookup = self.__dict__.get(key)
        if lookup is None:
            lookup = self.__dict__[key] = {v: k for k, v in enumerate(index.astype(str))}
        return lookup

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_item_lookup", None)  # derived: rebuilt on demand
        state.pop("_user_lookup", None)
        return state

    def history(self, user_id: str) -> tuple[np.ndarray, np.ndarray]:
        """A training user's positives and their weights (empty for a new user)."""
        u = int(self.users_of([user_id])[0])
        if u < 0 or u >= self.by_user.shape[0]:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        a, b = self.by_user.indptr[u], self.by_user.indptr[u + 1]
        return self.by_user.indices[a:b].astype(np.int64), self.by_user.data[a:b]


def interactions(dataset: Dataset) -> Interactions:
    """The training positives of ``dataset`` (a repeated pair keeps its last row)."""
    t = indexed_train(dataset)
    train, user_ids, item_ids, u, i = t.frame, t.user_ids, t.item_ids, t.u, t.i
    w = (train[WEIGHT].to_numpy(dtype=np.float64) if WEIGHT in train
         else np.ones(len(train)))
    by_user = sp.csr_matrix((w, (u, i)), shape=(len(user_ids), len(item_ids)))
    by_user.sort_indices()
    return Interactions(user_ids, item_ids, by_user,
                        np.bincount(i, minlength=len(item_ids)),
                        np.bincount(u, minlength=len(user_ids)))


def _features(table, frame: pd.DataFrame, fit_rows: np.ndarray, n: int) -> sp.csr_matrix:
    """Side features of every row (``n`` >= rows of ``frame``: extra ids get none)."""
    rows = np.zeros(len(frame), dtype=bool)
    rows[:] = fit_rows[:len(frame)]
    feats = side_features(table, frame, rows)
    if feats.shape[0] < n:
        feats = sp.vstack([feats, sp.csr_matrix((n - feats.shape[0], feats.shape[1]))],
                          format="csr")
    return feats.tocsr()


def item_features(dataset: Dataset, data: Interactions) -> sp.csr_matrix:
    return _features(dataset.spec.items, dataset.items, data.item_in_train, len(data.item_ids))


def user_features(dataset: Dataset, data: Interactions) -> sp.csr_matrix:
    return _features(dataset.spec.users, dataset.users, data.user_in_train, len(data.user_ids))


def _unit_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    return sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ m


class _Base:
    """What every implicit baseline shares: positions of ids, ``predict`` = scores."""

    name = "implicit baseline"
    data: Interactions

    def _candidates(self, candidate_item_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(positions, known mask)`` of the candidates (unknown ids score the minimum)."""
        pos = self.data.items_of(candidate_item_ids)
        return np.where(pos >= 0, pos, 0), pos >= 0

    def _support(self, support_items: list[str]) -> np.ndarray:
        pos = self.data.items_of(support_items)
        return pos[pos >= 0]

    def score_items(self, user_id: str, support_items: list[str],
                    candidate_item_ids: list[str]) -> np.ndarray:
        raise NotImplementedError

    def predict(self, user_id: str, support: list[tuple[str, float]],
                query_items: list[str]) -> np.ndarray:
        """The rating protocol's call: the ranking scores of the query items."""
        return self.score_items(user_id, [str(i) for i, _ in support], list(query_items))


class _Observing:
    """Positives observed after training (the online replay's support positives; a
    :class:`graph_meta.live.LiveRatings` log with the weight as the value). A baseline that
    reads them mixes this in before :class:`_Base` and overrides :meth:`_refresh_live_items`.
    """

    data: Interactions

    def _live_log(self) -> LiveRatings:
        return self.__dict__.setdefault("_live", LiveRatings())

    def observe(self, positives: Iterable[Sequence[Any]]) -> int:
        """Take in ``(user, item)`` or ``(user, item, weight)`` rows (weight 1 when absent)
        without retraining. The same positive twice is one; a new weight replaces the old.
        Returns how many pairs changed.

        Raises:
            UnknownItemError: an item outside the model's catalogue.
            ValueError: a malformed row, or a weight that is not a finite number > 0.
        """
        rows = [tuple(r) for r in positives]
        triples = rating_triples([(*r, 1.0) if len(r) == 2 else r for r in rows])
        for k, (user, item, w) in enumerate(triples):
            if w <= 0:
                raise ValueError(f"positive {k} ({user}, {item}): weight must be a finite "
                                 f"number > 0, got {w:g}")
        items = [item for _, item, _ in triples]
        unknown = np.flatnonzero(self.data.items_of(items) < 0)
        if len(unknown):
            raise UnknownItemError(items[int(unknown[0])])
        changed = self._live_log().add(triples)
        if changed:
            self._refresh_live_items(sorted({item for _, item, _ in changed}))
        return len(changed)

    def reset_observed(self) -> None:
        """Forget every observed positive: the model ranks as trained."""
        items = list(self._live_log().by_item)
        self._live_log().clear()
        self._refresh_live_items(items)

    def _live_items(self, user_id: str) -> tuple[np.ndarray, np.ndarray]:
        """A user's observed positives: item positions and weights."""
        live = self._live_log().user(str(user_id))
        if not live:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        pos = self.data.items_of(list(live)).astype(np.int64)
        keep = pos >= 0
        return pos[keep], np.fromiter(live.values(), np.float64, len(live))[keep]

    def _new_takers(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        """The observed takers of the item at ``position`` that are not training takers:
        user positions (-1 for a user outside the model) and weights."""
        cached = self.__dict__.get("_by_item")
        if cached is None or cached[0] is not self.data.by_user:  # refitted: new positives
            cached = self.__dict__["_by_item"] = (self.data.by_user, self.data.by_user.tocsc())
        _, by_item = cached
        takers = self._live_log().item(str(self.data.item_ids[position]))
        users = self.data.users_of(takers)
        weights = np.fromiter(takers.values(), np.float64, len(takers))
        a, b = by_item.indptr[position], by_item.indptr[position + 1]
        trained = np.isin(users, by_item.indices[a:b])
        return users[~trained], weights[~trained]

    def _step_new_items(self, item_ids: list[str], prior: Callable[[int], np.ndarray]
                        ) -> None:
        r"""Set the factors ``self.y[p]`` of the new items (no training takers) among
        ``item_ids`` to the iALS item step over their observed takers toward ``prior(p)``
        ``[f]``, the non-takers weighted by ``self.exposure_weight``
        (:func:`graph_meta.ials.fold_in`); to ``prior(p)`` without takers the model knows.
        The takers' states are the training ones (``x``, ``x0`` for users outside training),
        kept with :math:`X^\top X` until a refit drops ``_item_step_basis``."""
        d = self.data
        pos = d.items_of(item_ids)
        pos = pos[pos >= 0]
        for p in pos[~d.item_in_train[pos]].tolist():
            users, weights = self._new_takers(p)
            known = users >= 0
            if not known.any():
                self.y[p] = prior(p)
                continue
            basis = self.__dict__.get("_item_step_basis")
            if basis is None:
                basis = self.__dict__["_item_step_basis"] = (
                    np.where(d.user_in_train[:, None], self.x, self.x0), self.x.T @ self.x)
            states, gram = basis
            self.y[p] = fold_in(states, gram, self.reg, users[known],
                                self.alpha * weights[known], prior(p),
                                gram_weight=self.exposure_weight)

    def _refresh_live_items(self, item_ids: list[str]) -> None:
        """Bring the scores of ``item_ids`` up to the observed log (default: nothing)."""


def _masked(scores: np.ndarray, known: np.ndarray) -> np.ndarray:
    if known.all():
        return scores
    floor = scores[known].min() - 1.0 if known.any() else 0.0
    return np.where(known, scores, floor)


def carve_implicit(dataset: Dataset, *, seed: int = 0, max_tasks: int | None = 300,
                   new_item_fraction: float = 0.1) -> Dataset:
    """Pseudo-tasks carved from ``train.csv`` alone (the benchmark's split applied to the
    training positives, :func:`graph_meta.eval.protocol.carve_validation`), in the implicit
    form: confidences kept as ``weight``, every pair rated 1."""
    from graph_meta.eval.protocol import carve_validation

    train = dataset.train.copy()
    if WEIGHT in train:  # the splitter carries ratings: let it carry the confidences
        train[RATING] = train[WEIGHT]
        train = train.drop(columns=[WEIGHT])
    view = dataclasses.replace(dataset, train=train)
    pseudo = carve_validation(view, seed=seed, max_tasks=max_tasks,
                              new_item_fraction=new_item_fraction)
    return confidences_to_weights(pseudo)


def cold_carve(dataset: Dataset, *, seed: int = 0, enough: int = 100,
               default: Dataset | None = None) -> Dataset:
    """The carve new items are tuned on (graph-meta's and implicit ALS's): the default one
    (10 % newest items; ``default`` when the caller has carved it, else carved here,
    uncapped) when each new-item scenario (``item_cold``, ``user_item_cold``) holds at
    least ``enough`` pseudo-tasks, else one holding out 30 % of the items, uncapped: the
    new-item choices are made on a few hundred pseudo-tasks, where the first carve of a
    catalogue such as movielens-1m leaves about 50 ``user_item_cold`` ones."""
    pseudo = default if default is not None else carve_implicit(dataset, seed=seed,
                                                                 max_tasks=None)
    if min(len(pseudo.tasks.get(s, [])) for s in EXPOSURE_SCENARIOS) < enough:
        pseudo = carve_implicit(dataset, seed=seed, new_item_fraction=0.3, max_tasks=None)
    return pseudo
