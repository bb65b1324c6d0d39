r"""The model under ratings observed after training (:meth:`graph_meta.model.
GraphMetaRecommender.observe`): item states, rater states and the users' fold-in sums.

:mod:`graph_meta.live` keeps the log of observed ratings and the closed-form update they
drive; :mod:`graph_meta.live_cache` the incremental structures that keep an update's cost to
what it touches. :class:`LiveState` applies them to a fitted model's
:class:`~graph_meta.serving.state.PredictorState`:

* an item with observed ratings gets the ALS item step over its raters, written as a Bayesian
  update from its trained state (:meth:`LiveState.refresh_item`; a never-rated item then takes
  the item learner's steps, :func:`graph_meta.serving.adapt.item_steps`); a training rating an
  observed one replaced is taken out first;
* a rater's state is the fold-in of their history and observed ratings over the *trained*
  item table (:meth:`LiveState.rater_state`), so the result depends on the log alone; an
  item's update reads it without the rater's own rating of that item
  (:meth:`LiveState.rater_states_without`), as item tasks train;
* a user's observed ratings join their history (:meth:`LiveState.history_sums`,
  :meth:`LiveState.user_rows`; all users at once: :meth:`LiveState.history_states`);
* a new item's co-rating neighbours follow its observed raters (:meth:`LiveState.corating`).

Everything derived is cached and dropped by what an observed rating touches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from graph_meta.live import posterior_update, rating_triples
from graph_meta.live_cache import EdgeResiduals, RowPart, UserRowSums
from graph_meta.serving.adapt import new_item_state, rater_rows_targets
from graph_meta.serving.state import history_fold_in

if TYPE_CHECKING:
    from graph_meta.model import GraphMetaRecommender

__all__ = ["LiveState"]


class LiveState:
    """The observed-rating state of ``model`` (its log is ``model.live``; it reads the
    model's state, ids and config when asked, so a model whose state is replaced stays
    consistent)."""

    def __init__(self, model: GraphMetaRecommender) -> None:
        self.model = model
        self.reset()

    def observe(self, ratings: Sequence[tuple[str, str, float]]) -> int:
        """:meth:`graph_meta.model.GraphMetaRecommender.observe` (the model is fitted)."""
        scale = self.model.fit_info.get("rating_scale")
        last: dict[tuple[str, str], float] = {}
        to_internal = self.model.rating_map.to_internal
        for user, item, r in rating_triples(ratings, scale=tuple(scale) if scale else None):
            last[(user, item)] = to_internal(r)  # within one call the last one of a pair counts
        fresh, changed = [], []
        for (user, item), r in last.items():  # a training rating given again is not new
            old = self.training_rating(user, item)
            if old is not None and abs(old - r) <= 1e-6:
                if self.model.live.discard(user, item):
                    changed.append((user, item, r))
            else:
                fresh.append((user, item, r))
        changed += self.model.live.add(fresh)
        users = {u for u, _, _ in changed}
        items = {i for _, i, _ in changed}
        if changed:
            self._live_version += 1
        for user in users:
            self._live_pos.pop(user, None)
            self._replaced_cache.pop(user, None)
        for item in items:
            self._live_item_rows.pop(self.model.item_pos.get(item, -1), None)
        if self._live_count is not None:
            for item in items:
                p = self.model.item_pos.get(item)
                if p is not None:
                    self._live_count[p] = self._train_count[p] + len(self.model.live.item(item))
        for user in users:  # a rater's new state moves every item they rated
            self._rater_theta.pop(user, None)
            items.update(self.model.live.user(user))
        for item in items:
            self.refresh_item(item)
            self._stale_users.update(self.model.live.item(item))  # their fold-in moved with it
        self._stale_users.update(users)
        return len(changed)

    def observe_store(self, store: Any) -> int:
        """:meth:`graph_meta.model.GraphMetaRecommender.observe_store` (the model is fitted):
        every ``RATED`` edge of ``store`` whose pair is not a training rating with that
        rating."""
        batch = store.edge_batch(store.schema.rated)
        users, items = batch.src.astype(str), batch.dst.astype(str)
        ratings = np.asarray(batch.properties["rating"], dtype=np.float64)
        c = self.model.state
        n = max(len(self.model.item_ids), 1)
        u = np.fromiter((self.model.user_pos.get(x, -1) for x in users), np.int64, len(users))
        i = np.fromiter((self.model.item_pos.get(x, -1) for x in items), np.int64, len(items))
        train_users = np.repeat(np.arange(len(c.hist_indptr) - 1), np.diff(c.hist_indptr))
        train_keys = train_users * n + c.hist_items
        order = np.argsort(train_keys, kind="stable")
        train_keys, train_y = train_keys[order], c.hist_y[order]
        keys = np.where((u >= 0) & (i >= 0), u * n + i, -1)
        at = np.clip(np.searchsorted(train_keys, keys), 0, max(len(train_keys) - 1, 0))
        seen = (keys >= 0) & (len(train_keys) > 0)
        if len(train_keys):  # training's ratings are on the model's scale, the store's raw
            seen &= (train_keys[at] == keys) & np.isclose(
                train_y[at], self.model.rating_map.to_internal(ratings), atol=1e-6)
        new = np.flatnonzero(~seen)
        return self.observe([(users[k], items[k], ratings[k]) for k in new])

    def reset_observed(self) -> None:
        """Forget every observed rating: predictions are those of training again."""
        state = self.model.state
        if state is not None and state.item_states is not None:
            for pos, row in self.item_backup.items():
                state.item_states[pos] = row
        self.model.live.clear()
        self.reset(keep_history=True)

    def reset(self, *, keep_history: bool = False) -> None:
        """Drop every derived cache (``keep_history``: keep those of the training ratings,
        which observed ratings do not change)."""
        self.item_backup: dict[int, np.ndarray] = {}  # trained rows of updated items
        self._rater_theta: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray,
                                           dict[int, np.ndarray]]] = {}
        self._item_precision: dict[int, np.ndarray] = {}
        self._hist_theta_live: np.ndarray | None = None
        self._live_count: np.ndarray | None = None  # raters per item, training + observed
        self._live_pos: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._live_rows_cache: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}
        self._live_version = 0
        self._stale_users: set[str] = set()  # users whose scoring state must be recomputed
        self._replaced_cache: dict[str, list[tuple[int, float]]] = {}
        # per item: (user positions, ratings) of its observed ratings by known users
        self._live_item_rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        # observed-rating parts of the known users' fold-ins, one signed block per item
        self._user_sums: UserRowSums | None = None
        self._item_blocks: dict[int, list[RowPart]] = {}
        # per item: (its known raters, the part of the training ratings they replaced)
        self._replaced_parts: dict[int, tuple[object, RowPart | None]] = {}
        if not keep_history:
            self._train_count: np.ndarray | None = None
            self._hist_theta: tuple[np.ndarray, np.ndarray] | None = None  # (hist_c, states)
            self._edges: EdgeResiduals | None = None  # training ratings, item-major
        elif self._edges is not None:  # every state is back to training's
            self._edges.clear_live()

    def catalogue_grew(self, new_ids: Sequence[str]) -> None:
        """Items ``new_ids`` joined the catalogue (:func:`graph_meta.serving.catalogue.
        add_items`): ratings observed on them before now count, and their raters' states
        move, so do the items those raters rated."""
        self._edges = None
        self._user_sums = None
        self._replaced_parts.clear()
        self._live_pos.clear()
        self._live_count = None
        self._live_version += 1
        self._live_item_rows.clear()
        touched: set[str] = set()
        for item in new_ids:  # ratings observed before the item joined the catalogue
            for user in self.model.live.item(item):
                self._rater_theta.pop(user, None)
                self._stale_users.add(user)
                touched.update(self.model.live.user(user))
        for item in touched:  # their raters' states moved: so did every item they rated
            self.refresh_item(item)
            self._stale_users.update(self.model.live.item(item))

    def user_rows(self, user_id: str) -> tuple[np.ndarray, np.ndarray]:
        """``(item positions [n], ratings [n])`` of a user's observed ratings on known items."""
        cached = self._live_pos.get(user_id)
        if cached is not None:
            return cached
        row = self.model.live.user(user_id)
        if not row:
            return np.zeros(0, np.int64), np.zeros(0)
        pos = np.fromiter((self.model.item_pos.get(i, -1) for i in row), np.int64, len(row))
        y = np.fromiter(row.values(), np.float64, len(row))
        keep = pos >= 0
        self._live_pos[user_id] = out = (pos[keep], y[keep])
        return out

    def rater_state(self, user_id: str) -> np.ndarray:
        """``[D]`` a rater's state in the item updates: the ridge fold-in of their training
        history and observed ratings toward their graph prior, with the items' *trained*
        states, so that it depends on that user's ratings alone (the updates are then the
        same whatever order the ratings came in)."""
        return self._rater_fold(user_id)[0]

    def _rater_fold(self, user_id: str
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, np.ndarray]]:
        """``(theta [D], A [D, D], c [D], without)``: :meth:`rater_state`, the system it
        solves, ``A theta = c``, and the states :meth:`rater_states_without` derived from it
        per item position (all kept until the user's next observed rating)."""
        cached = self._rater_theta.get(user_id)
        if cached is None:
            c = self.model.state
            pos, y = self.user_rows(user_id)
            x = c.item_states[pos]
            for k, p in enumerate(pos):
                if p in self.item_backup:
                    x[k] = self.item_backup[p]
            a, rhs, prior = self.history_sums(user_id)
            rows = np.concatenate([np.ones((len(x), 1)), x[:, 1:]], axis=1)
            a += rows.T @ rows + np.diag(c.lam)
            rhs += rows.T @ (y - float(c.mu) - x[:, 0]) + c.lam * prior
            cached = self._rater_theta[user_id] = (np.linalg.solve(a, rhs), a, rhs, {})
        return cached

    def rater_states_without(self, pos: int, raters: Sequence[str], y: np.ndarray
                             ) -> np.ndarray:
        r"""``[n, D]`` the :meth:`rater_state` of each of item ``pos``'s observed raters
        without their own rating ``y`` ``[n]`` of it: an item task in meta-training hides
        the task item's ratings from every history its raters are folded in from
        (:mod:`graph_meta.sampling.episodes`), and a rater state that had already absorbed
        the rating would explain part of it away before the item update sees it (a new
        user with three ratings most). One rank-one downdate per rater,
        :math:`(A - x x^\top)^{-1}(c - x t)`, with the item's trained row :math:`x`."""
        c = self.model.state
        out = np.empty((len(raters), c.item_states.shape[1]))
        missing = []
        for k, u in enumerate(raters):
            got = self._rater_fold(u)[3].get(pos)
            if got is None:
                missing.append(k)
            else:
                out[k] = got
        if missing:  # kept per (rater, item) until the rater's next observed rating
            base = self.item_backup.get(pos, c.item_states[pos])
            row = np.r_[1.0, base[1:]]
            folds = [self._rater_fold(raters[k]) for k in missing]
            a = np.stack([f[1] for f in folds]) - np.outer(row, row)
            rhs = (np.stack([f[2] for f in folds])
                   - (y[missing] - float(c.mu) - base[0])[:, None] * row)
            out[missing] = np.linalg.solve(a, rhs[..., None])[..., 0]
            for k, f in zip(missing, folds, strict=True):
                f[3][pos] = out[k].copy()  # a view would keep all of ``out`` alive
        return out

    def fold_in_sums(self, user_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(A [D, D], c [D], prior [D])`` a user's fold-in starts from: their training
        history (:meth:`history_sums`) plus their observed ratings on the current item
        states."""
        a, rhs, prior = self.history_sums(user_id)
        live_pos, live_y = self.user_rows(user_id)
        if len(live_pos):  # ratings observed after training join the history
            c = self.model.state
            x = c.item_states[live_pos]
            rows = np.concatenate([np.ones((len(x), 1)), x[:, 1:]], axis=1)
            a += rows.T @ rows
            rhs += rows.T @ (live_y - float(c.mu) - x[:, 0])
        return a, rhs, prior

    def history_sums(self, user_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(A [D, D], c [D], prior [D])`` of a user's training history, less the training
        ratings that an observed rating replaced (copies; zeros and the mean prior for a user
        the model does not know)."""
        c = self.model.state
        u = self.model.user_pos.get(str(user_id), -1)
        if u < 0:
            d_state = c.item_states.shape[1]
            return np.zeros((d_state, d_state)), np.zeros(d_state), c.user_prior.mean(0)
        a, rhs = c.history_grams(np.array([u]))[0], c.hist_c[u].copy()
        for pos, old in self.replaced(user_id):
            x = self.item_backup.get(pos, c.item_states[pos])
            row = np.r_[1.0, x[1:]]
            a -= np.outer(row, row)
            rhs -= row * (old - float(c.mu) - x[0])
        return a, rhs, c.user_prior[u]

    def training_rating(self, user_id: str, item_id: str) -> float | None:
        """The rating of a pair in the training data, or None."""
        u, i = self.model.user_pos.get(str(user_id)), self.model.item_pos.get(str(item_id))
        if u is None or i is None:
            return None
        c = self.model.state
        lo, hi = c.hist_indptr[u], c.hist_indptr[u + 1]
        hit = np.flatnonzero(c.hist_items[lo:hi] == i)
        return float(c.hist_y[lo + hit[-1]]) if len(hit) else None

    def replaced(self, user_id: str) -> list[tuple[int, float]]:
        """``(item position, training rating)`` of a user's training ratings that an observed
        rating replaced (cached per user until their next observed rating)."""
        out = self._replaced_cache.get(user_id)
        if out is None:
            out = []
            for item in self.model.live.user(user_id):
                old = self.training_rating(user_id, item)
                if old is not None:
                    out.append((self.model.item_pos[item], old))
            self._replaced_cache[user_id] = out
        return out

    def training_raters(self, pos: int) -> np.ndarray:
        """Positions of the users who rated item ``pos`` in training (empty for a new item)."""
        edges = self.item_major()
        return edges.users[edges.column(pos)] if pos < len(edges.col_ptr) - 1 else \
            edges.users[:0]

    def item_major(self) -> EdgeResiduals:
        """The training ratings in item-major order with their cached residuals
        (:class:`~graph_meta.live_cache.EdgeResiduals`), built when first needed."""
        c = self.model.state
        n = len(c.item_states)  # (a model given a state and item_pos alone has no item_ids)
        if self._edges is None or len(self._edges.col_ptr) != n + 1:
            self._edges = EdgeResiduals(c.hist_indptr, c.hist_items, c.hist_y, n)
            for item in self.model.live.by_item:
                pos = self.model.item_pos.get(item)
                if pos is not None:
                    self._edges.live_source[pos] = known = self.known_raters(item)
                    self._edges.set_live(pos, *known)
        return self._edges

    def known_raters(self, item_id: str) -> tuple[np.ndarray, np.ndarray]:
        """``(user positions, ratings)`` of an item's observed ratings by known users (kept
        per item position until its raters change)."""
        pos = self.model.item_pos.get(item_id, -1)
        got = self._live_item_rows.get(pos)
        if got is None:
            raters = self.model.live.item(item_id)
            u = np.fromiter((self.model.user_pos.get(v, -1) for v in raters), np.int64,
                            len(raters))
            y = np.fromiter(raters.values(), np.float64, len(raters))
            got = (u[u >= 0], y[u >= 0])
            if pos >= 0:
                self._live_item_rows[pos] = got
        return got

    def item_prior_precision(self, pos: int) -> np.ndarray:
        """``[D, D]`` the precision of an item's trained state: the ridge precision (times
        ``model.live_precision``) plus its training raters' rows' outer products."""
        p = self._item_precision.get(pos)
        if p is None:
            lam = self.model.state.item_precision
            p = np.diag(lam * self.precision_scale())
            raters = self.training_raters(pos)
            if len(raters):
                theta = self.base_history_states()[raters]
                x, _ = rater_rows_targets(self.model.state, theta, theta[:, 0])
                p = p + x.T @ x
            self._item_precision[pos] = p
        return p

    def precision_scale(self) -> float:
        """``model.live_precision``, or with 0 (auto) the scale chosen at fit time
        (:mod:`graph_meta.live_tuning`; 1 when none was chosen)."""
        chosen = self.model.state.live_precision
        return self.model.config.model.live_precision or float(1.0 if chosen is None
                                                                else chosen)

    def new_items_with_raters(self) -> np.ndarray:
        """Positions of the items without training ratings that have observed raters."""
        if self._train_count is None or len(self._train_count) != len(self.model.item_ids):
            self._train_count = np.bincount(self.model.state.hist_items, minlength=len(
                self.model.item_ids)).astype(np.float64)
            self._live_count = None
        pos = [self.model.item_pos.get(i, -1)
               for i, raters in self.model.live.by_item.items() if raters]
        return np.sort(np.array([p for p in pos if p >= 0 and self._train_count[p] == 0],
                                dtype=np.int64))

    def corating(self, positions: np.ndarray) -> sp.csr_matrix:
        r"""``[len(positions), N_I]`` :math:`\gamma s^p` of the co-rating neighbours of new
        items (no training rating) from their observed raters: the cosine of rater sets over
        training and observed ratings, top ``model.neighbor_k``, as the training lists of
        rated items are built (:meth:`ItemNeighbors.from_ratings`); empty rows otherwise.
        A row is computed when asked and kept until the next observed rating."""
        c, m = self.model.state, self.model.config.model
        n = len(self.model.item_ids)
        if self._train_count is None or len(self._train_count) != n:
            self._train_count = np.bincount(c.hist_items, minlength=n).astype(np.float64)
            self._live_count = None
        if self._live_count is None:
            counts = self._train_count.copy()
            for item, raters in self.model.live.by_item.items():
                p = self.model.item_pos.get(item)
                if p is not None:
                    counts[p] += len(raters)
            self._live_count = counts
        k = m.neighbor_k if m.use_graph else 0
        rows, cols, vals = [], [], []
        for r, pos in enumerate(positions):
            pos = int(pos)
            if not k or m.neighbor_rated_weight <= 0 or self._train_count[pos] > 0:
                continue
            hit = self._live_rows_cache.get(pos)
            if hit is None or hit[0] != self._live_version:
                top, weight = self._corating_row(pos, k)
                self._live_rows_cache[pos] = hit = (self._live_version, top, weight)
            rows.append(np.full(len(hit[1]), r))
            cols.append(hit[1])
            vals.append(hit[2])
        if not rows:
            return sp.csr_matrix((len(positions), n))
        return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows),
                                                      np.concatenate(cols))),
                             shape=(len(positions), n))

    def _corating_row(self, pos: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(columns, weights)`` of one new item's live co-rating neighbours."""
        c, m = self.model.state, self.model.config.model
        raters = self.model.live.item(self.model.item_ids[pos])
        if not raters:
            return np.zeros(0, np.int64), np.zeros(0)
        known = np.fromiter((self.model.user_pos.get(u, -1) for u in raters), np.int64,
                            len(raters))
        known = known[known >= 0]
        starts, stops = c.hist_indptr[known], c.hist_indptr[known + 1]
        lengths = stops - starts
        offsets = np.repeat(starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
        parts = [c.hist_items[offsets + np.arange(lengths.sum())]]
        parts += [self.user_rows(u)[0] for u in raters]
        co = np.bincount(np.concatenate(parts),
                         minlength=len(self.model.item_ids)).astype(np.float64)
        co[pos] = 0.0
        assert self._live_count is not None
        cos = co / np.sqrt(np.maximum(self._live_count, 1.0) * len(raters))
        top = np.flatnonzero(cos > 1e-12)
        if len(top) > k:
            top = top[np.argpartition(cos[top], len(top) - k)[len(top) - k:]]
        return top, m.neighbor_rated_weight * cos[top] ** m.neighbor_power

    def refresh_item(self, item_id: str) -> None:
        """Recompute an item's state from its trained state and every observed rating."""
        pos = self.model.item_pos.get(item_id)
        if pos is None:
            return  # not in the catalogue (add_items first); the log keeps the ratings
        c = self.model.state
        base = self.item_backup.get(pos, c.item_states[pos].copy())
        raters = self.model.live.item(item_id)
        train_users = self.training_raters(pos)
        warm = len(train_users) > 0
        if not raters or (warm and not self.model.config.model.live_warm_items):
            c.item_states[pos] = base
            self.item_backup.pop(pos, None)
            self.item_changed(pos)
            return
        self.item_backup[pos] = base
        y = np.fromiter(raters.values(), np.float64, len(raters))
        theta = self.rater_states_without(pos, list(raters), y)
        precision = self.item_prior_precision(pos)
        shrink = self.model.config.meta.support_shrink
        if not warm:  # a new item: fold-in and the item learner's steps, as item tasks train
            c.item_states[pos] = new_item_state(c, base, theta, y, shrink=shrink,
                                                precision=precision)
            self.item_changed(pos)
            return
        # a trained item: take the replaced training ratings out of its trained state first
        edges = self.item_major()
        col = edges.column(pos)
        hit = np.isin(edges.users[col], self.known_raters(item_id)[0])
        if hit.any():
            x_old, t_old = rater_rows_targets(c, self.base_history_states()[edges.users[col][hit]],
                                              edges.ratings[col][hit])
            rhs = precision @ base - x_old.T @ t_old
            precision = precision - x_old.T @ x_old
            base = np.linalg.solve(precision, rhs)
        state = posterior_update(base, precision, *rater_rows_targets(c, theta, y))
        c.item_states[pos] = state
        self.item_changed(pos)

    def item_changed(self, pos: int) -> None:
        """Bring the incremental caches up to an item whose state or observed raters moved:
        its block of the users' fold-in sums and the residuals of its training ratings."""
        if self._user_sums is not None:
            old = self._item_blocks.pop(pos, [])
            block = self.item_block(pos)
            for part in old:  # a part kept as it was (the replaced ratings) stays in the sums
                if not any(part is q for q in block):
                    self._user_sums.add(part, -1.0)
            for part in block:
                if not any(part is q for q in old):
                    self._user_sums.add(part)
            if block:
                self._item_blocks[pos] = block
        if self._edges is not None:
            self._edges.mark_items(np.array([pos]))
            known = self.known_raters(self.model.item_ids[pos])
            if self._edges.live_source.get(pos) is not known:  # its raters changed
                self._edges.live_source[pos] = known
                self._edges.set_live(pos, *known)

    def item_block(self, pos: int) -> list[RowPart]:
        """The parts (:data:`~graph_meta.live_cache.RowPart`) an item adds to its known
        raters' fold-in sums: its observed ratings' rows under its current state, less the
        training ratings they replaced under its trained state (a part kept, and reused as
        the same object, until the item's raters change), as :func:`graph_meta.serving.
        adapt.user_adaptation` folds them in."""
        item_id = self.model.item_ids[pos]
        known = self.known_raters(item_id)
        users, y = known
        if not len(users):
            return []
        c = self.model.state
        mu, x = float(c.mu), c.item_states[pos]
        block: list[RowPart] = [(users, np.r_[1.0, x[1:]], y - mu - x[0], 1.0)]
        cached = self._replaced_parts.get(pos)
        if cached is None or cached[0] is not known:
            edges = self.item_major()
            col = edges.column(pos)
            hit = np.isin(edges.users[col], users)
            part = None
            if hit.any():
                x_tr = self.item_backup.get(pos, x)
                part = (edges.users[col][hit], np.r_[1.0, x_tr[1:]],
                        edges.ratings[col][hit] - mu - x_tr[0], -1.0)
            cached = self._replaced_parts[pos] = (known, part)
        if cached[1] is not None:
            block.append(cached[1])
        return block

    def user_sums(self) -> UserRowSums:
        """:class:`~graph_meta.live_cache.UserRowSums` of every item's block (built once,
        then kept current by :meth:`item_changed`)."""
        if self._user_sums is None:
            self._user_sums = UserRowSums(self.model.state.item_states.shape[1])
            self._item_blocks = {}
            for item in self.model.live.by_item:
                pos = self.model.item_pos.get(item)
                block = [] if pos is None else self.item_block(pos)
                for part in block:
                    self._user_sums.add(part)
                if block:
                    self._item_blocks[pos] = block
        return self._user_sums

    def history_states(self) -> np.ndarray:
        """``[N_U, D]`` every known user's ridge fold-in of their training history (and their
        observed ratings, :meth:`observe`) toward their graph prior (the ``K = 0`` state of
        :meth:`~graph_meta.model.GraphMetaRecommender.adapt_user`); users whose observed
        ratings or their items moved are solved again from :meth:`user_sums`, one batched
        ``D x D`` solve."""
        if (not self.model.live.by_user and not self._stale_users
                and self._hist_theta_live is None):
            return self.base_history_states()
        if self._hist_theta_live is None:
            self._hist_theta_live = self.base_history_states().copy()
            self._stale_users.update(self.model.live.by_user)
        idx = np.array(sorted(self.model.user_pos[u] for u in self._stale_users
                              if u in self.model.user_pos), dtype=np.int64)
        self._stale_users = set()
        if len(idx):
            c = self.model.state
            a_live, c_live = self.user_sums().get(idx)
            lam = c.lam
            a = c.history_grams(idx) + a_live
            a[:, np.arange(len(lam)), np.arange(len(lam))] += lam
            rhs = c.hist_c[idx] + c_live + lam * c.user_prior[idx]
            self._hist_theta_live[idx] = np.linalg.solve(a, rhs[..., None])[..., 0]
            if self._edges is not None:
                self._edges.mark_users(idx)
        return self._hist_theta_live

    def base_history_states(self) -> np.ndarray:
        """``[N_U, D]`` the fold-in of the training histories alone (batched solves, cached)."""
        hist_c = self.model.state.hist_c
        if self._hist_theta is None or self._hist_theta[0] is not hist_c:
            self._hist_theta = (hist_c, history_fold_in(self.model.state))
        return self._hist_theta[1]
