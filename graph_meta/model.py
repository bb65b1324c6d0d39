r"""GraphMetaRecommender: an MF backbone with a graph prior and a meta-learned inner loop.

**Backbone.** With node states :math:`\theta = (b, v) \in \mathbb{R}^{D}`, :math:`D = 1 + d`,

.. math:: \hat r_{ui} = \mu + h_0 + (1 + h_1)\big(b_u + b_i + \langle v_u, v_i\rangle\big)

(:func:`graph_meta.nn.heads.score`; the head :math:`h` is 0 unless the inner loop adapts it).

**Items.** A warm item (one with training ratings) has a learned MF-like state
:math:`\theta_i = E_i` (initialised by ALS); every item has a graph prior
:math:`g_I(\mathrm{enc}(i))` from the inductive hetero GNN
(:class:`~graph_meta.nn.encoder.HeteroEncoder`: side features, categories, directors, writers,
actors, ``CO_ENGAGED``; never a rating edge) *correcting* a closed-form base: with
:math:`\bar\theta_i` the side-feature ridge map onto the ALS states (``item_base``,
:func:`training.train.linear_prior`, rows weighted by rating count times
:math:`e^{\beta q_i}`, :math:`q_i` the release quantile, ``train.prior_newest_bias``: new
items are the newest releases, so the map is fitted mostly on the newest training items),

.. math:: \theta^0_i = \bar\theta_i + \gamma_I \odot g_I(\mathrm{enc}(i)),

:math:`\gamma_I \in \mathbb{R}^D` a learned gate that starts at 0 (``model.prior_gate``;
without it :math:`\gamma = 1`), so a new item starts at the ridge prior and the GNN moves it
only as far as the meta-training loss pays for; users likewise with ``user_base`` and
:math:`\gamma_U`. In every meta-batch a random set of items plays
*new*: their state is their prior and their rating edges are hidden, so :math:`g_I` is trained
on ratings to be what a cold item starts from; it is also regressed onto :math:`E_i` of warm
items (``train.prior_match``), and :math:`E_i` is shrunk toward it (``train.item_l2``). A new
item at test time is :math:`\theta^0_i`.

**Users** have no free embedding. A user's state is the *ridge fold-in* of their known
ratings (training history ``H``, plus the task support ``S`` if ``ridge_on_support``) toward
the user-side prior :math:`\theta^0_u = \bar\theta_u + \gamma_U \odot g_U(\mathrm{enc}(u))`, with
:math:`x_i = (1, v_i)`, :math:`t_{ui} = r_{ui} - \mu - b_i` and a learned precision
:math:`\Lambda = \mathrm{diag}(e^{\lambda})`:

.. math:: \theta_u^{(0)} = \big(\textstyle\sum_{i} x_i x_i^\top + \Lambda\big)^{-1}
          \big(\textstyle\sum_i x_i t_{ui} + \Lambda\,\theta^0_u\big)

(exactly ALS's user step, so warm users are MF users; :math:`\Lambda` starts at ALS's
regularisation, ``meta.init_precision_bias`` for the bias and ``meta.init_precision`` for
the vector), followed by the meta-learned inner
loop on the support set only (:mod:`graph_meta.meta`, default Meta-SGD, 2 steps):

.. math:: \theta_u^{(t+1)} = \theta_u^{(t)} - \alpha_t \odot \nabla_\theta
          \frac{1}{|S| + \kappa}\sum_{(i, r) \in S} (\hat r_{ui} - r)^2

(:math:`\kappa` = ``support_shrink``; 0 gives the plain mean).

**Outer loop.** Episodes (:mod:`graph_meta.sampling.episodes`) mimic the four scenarios; the
query MSE (plus ``item_task_weight`` times the query MSE of item tasks, whose inner loop adapts
a cold item's state from its support users) trains the encoder, the prior heads, the item
residuals, :math:`\mu`, :math:`\Lambda` and the step sizes :math:`\alpha` end to end (through
the closed-form solve and the inner steps, second order for MAML/Meta-SGD), from an ALS
start (``train.als_iters``).

**Attribute-path neighbourhood.** After adaptation the prediction of item ``j`` moves toward
the user's residuals :math:`e_{uh} = r_{uh} - \hat r_{uh}` on the rated items ``h`` (history
and support) that share attribute nodes with ``j`` (``Item -> Director/Actor/Category/... <-
Item`` paths, :mod:`graph_meta.graph.neighborhood`):
:math:`\hat r_{uj} \mathrel{+}= \sum_h s_{jh}^p e_{uh} / (\beta + \sum_h s_{jh}^p)` over the
``model.neighbor_k`` most similar items of ``j`` (``neighbor_power`` :math:`p`,
``neighbor_shrink`` :math:`\beta`, chosen on the carved validation); a never-rated item has
such neighbours too. Co-rating neighbours (``Item <- User -> Item`` paths) add their
:math:`s^p`, times ``neighbor_rated_weight``, to the weights. On top, learned co-rating
weights :math:`B` (the residual regression of :mod:`graph_meta.graph.neighborhood`, ridge
``model.regression_l2``, fitted on the training residuals of the trained model) add
:math:`\sum_h e_{uh} B_{hj}`. ``model.neighbor_k = 0`` (or ``use_graph = false``) turns both
corrections off; ``regression_l2 = 0`` the regression alone.

**Prediction** (:meth:`GraphMetaRecommender.predict`) uses a numpy cache (item states
``[N_I, D]``, user priors ``[N_U, D]``, per-user history sums :math:`\sum x x^\top` ``[N_U, D,
D]`` and :math:`\sum x t` ``[N_U, D]``, the histories and the neighbour lists) and the inner
steps' analytic gradient: one ``D x D`` solve and ``T`` rank-``K`` updates per task (tested
equal to the torch.func path), then one sparse product for the neighbourhood.

Ablations: ``model.use_graph=false`` (prior from features only), ``model.use_co_engaged=false``,
``model.use_relations=false`` (no user-user / item-item relation file: neither the relation
prior of :mod:`graph_meta.graph.relations` nor their edges in the encoder),
``meta.learner="none"`` (ridge fold-in from the graph prior, no inner gradient steps);
:func:`training.benchmark.run_benchmark` with ``ablations=True`` runs them, plus the
"pretrained without meta-learning, then fine-tuned on the support" variant.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from graph_meta.config import Config
from graph_meta.dataset import Dataset
from graph_meta.errors import UnknownItemError
from graph_meta.fitting.als import segment_outer as _segment_outer
from graph_meta.fitting.graphs import build_graph
from graph_meta.fitting.priors import side_prior
from graph_meta.fitting.train import train_model
from graph_meta.graph.neighborhood import ItemNeighbors, residual_correction
from graph_meta.live import LiveRatings, posterior_update, rating_triples
from graph_meta.live_cache import EdgeResiduals, UserRowSums
from graph_meta.meta import MetaLearner
from graph_meta.nn.net import GraphMetaNet
from graph_meta.sampling.episodes import RatingIndex
from graph_meta.store.candidates import check_rating

__all__ = ["GraphMetaNet", "GraphMetaRecommender", "build_graph"]


class GraphMetaRecommender:
    """The cold-start model of the protocol runner (:mod:`graph_meta.eval.protocol`).

    ``fit(dataset)`` trains (optionally with early stopping on pseudo-tasks carved from
    train, then a refit on all of train), ``predict(user_id, support, query_items)`` adapts
    to one task and scores its query items, ``score_all_items`` scores the whole catalogue.
    """

    name = "graph-meta"

    def __init__(self, config: Config | None = None) -> None:
        self.config = (config or Config()).validate()
        self.net: GraphMetaNet | None = None
        self.cache: dict[str, np.ndarray] = {}
        self.user_pos: dict[str, int] = {}
        self.item_pos: dict[str, int] = {}
        self.item_ids: list[str] = []
        self.history: list[dict[str, Any]] = []
        self.fit_info: dict[str, Any] = {}
        self.net_state: dict[str, Tensor] | None = None  # weights of a loaded model
        # (cache sims, p, weight, s^p matrix) and (graph, k, lists): computed once
        self._nbr: tuple[Any, float, float, sp.csr_matrix, sp.csc_matrix] | None = None
        self._nbr_graph: tuple[Any, tuple[int, int], tuple[ItemNeighbors, ItemNeighbors]
                               ] | None = None
        self._reg: tuple[np.ndarray, sp.csr_matrix, sp.csc_matrix] | None = None
        # ALS states the item side-feature prior was fitted to (set by training)
        self.prior_targets: np.ndarray | None = None
        self.live = LiveRatings()  # ratings observed after training (observe)
        self._reset_live_state()

    # ------------------------------------------------------------------ public API
    @property
    def params(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), **self.fit_info}

    def fit(self, dataset: Dataset, *, config: Config | None = None, device: str | None = None,
            progress: bool = False, log_dir: str | Path | None = None,
            checkpoint_dir: str | Path | None = None, resume: bool = False,
            store: Any = None) -> GraphMetaRecommender:
        """Train on ``dataset.train`` + side information (its tasks are never read); with
        ``store`` (e.g. a Neo4j store holding the dataset), on that store's graph snapshot."""
        if config is not None:
            self.config = config.validate()
        self.live.clear()
        self._reset_live_state()
        train_model(self, dataset, device=device or self.config.train.device,
                    progress=progress, log_dir=log_dir, checkpoint_dir=checkpoint_dir,
                    resume=resume, store=store)
        return self

    # ------------------------------------------------------------------ live ratings
    def observe(self, ratings: Sequence[tuple[str, str, float]]) -> int:
        r"""Take ratings that arrived after training into every later prediction.

        ``ratings`` are ``(user_id, item_id, rating)``; a pair already observed with the same
        rating changes nothing, with another rating it replaces the old one. For each item
        that received ratings the state is the ALS item step over its raters' states, written
        as a Bayesian update from the state training gave it (:func:`graph_meta.live.
        posterior_update`: a never-rated item starts from its graph prior with precision
        :math:`\Lambda` times ``model.live_precision``; an item with training ratings from
        its trained state with their precision too, or not at all with
        ``model.live_warm_items = false``). A rater's state is the ridge fold-in of their
        training history and observed ratings toward their graph prior. The user's own
        observed ratings join their history in :meth:`predict` (fold-in and neighbourhood
        residuals). A new rating of user :math:`u` recomputes every item :math:`u` rated since
        training: :math:`O(\sum_{j \in L_u} n_j D^2 + |L_u| D^3)` for items with :math:`n_j`
        observed ratings; nothing is retrained.

        Returns:
            How many ratings changed the log (new pairs or new values).

        Raises:
            ValueError: a malformed triple, a non-finite rating or one off the training
                data's rating scale (nothing is recorded then).
        """
        if not self.cache:
            raise RuntimeError("the model is not fitted (call fit or load)")
        scale = self.fit_info.get("rating_scale")
        last: dict[tuple[str, str], float] = {}
        for user, item, r in rating_triples(ratings, scale=tuple(scale) if scale else None):
            last[(user, item)] = r  # within one call the last rating of a pair counts
        fresh, changed = [], []
        for (user, item), r in last.items():  # a training rating given again is not new
            old = self._training_rating(user, item)
            if old is not None and abs(old - r) <= 1e-6:
                if self.live.discard(user, item):
                    changed.append((user, item, r))
            else:
                fresh.append((user, item, r))
        changed += self.live.add(fresh)
        users = {u for u, _, _ in changed}
        items = {i for _, i, _ in changed}
        if changed:
            self._live_version += 1
        for user in users:
            self._live_pos.pop(user, None)
            self._replaced_cache.pop(user, None)
        for item in items:
            self._live_item_rows.pop(self.item_pos.get(item, -1), None)
        if self._live_count is not None:
            for item in items:
                p = self.item_pos.get(item)
                if p is not None:
                    self._live_count[p] = self._train_count[p] + len(self.live.item(item))
        for user in users:  # a rater's new state moves every item they rated
            self._rater_theta.pop(user, None)
            items.update(self.live.user(user))
        for item in items:
            self._refresh_item(item)
            self._stale_users.update(self.live.item(item))  # their fold-in moved with it
        self._stale_users.update(users)
        return len(changed)

    def observe_store(self, store: Any) -> int:
        """Observe every rating of ``store`` (a :class:`~graph_meta.store.base.GraphStore`)
        that training did not see: a ``RATED`` edge whose pair is not a training rating, or
        whose rating changed since. Calling it again observes only what is new, so a saved
        model plus the store's current graph gives the predictions of the live model.

        Returns:
            How many ratings changed the model's log (see :meth:`observe`).
        """
        if not self.cache:
            raise RuntimeError("the model is not fitted (call fit or load)")
        batch = store.edge_batch(store.schema.rated)
        users, items = batch.src.astype(str), batch.dst.astype(str)
        ratings = np.asarray(batch.properties["rating"], dtype=np.float64)
        c = self.cache
        n = max(len(self.item_ids), 1)
        u = np.fromiter((self.user_pos.get(x, -1) for x in users), np.int64, len(users))
        i = np.fromiter((self.item_pos.get(x, -1) for x in items), np.int64, len(items))
        train_users = np.repeat(np.arange(len(c["hist_indptr"]) - 1), np.diff(c["hist_indptr"]))
        train_keys = train_users * n + c["hist_items"]
        order = np.argsort(train_keys, kind="stable")
        train_keys, train_y = train_keys[order], c["hist_y"][order]
        keys = np.where((u >= 0) & (i >= 0), u * n + i, -1)
        at = np.clip(np.searchsorted(train_keys, keys), 0, max(len(train_keys) - 1, 0))
        seen = (keys >= 0) & (len(train_keys) > 0)
        if len(train_keys):
            seen &= (train_keys[at] == keys) & np.isclose(train_y[at], ratings, atol=1e-6)
        new = np.flatnonzero(~seen)
        return self.observe([(users[k], items[k], ratings[k]) for k in new])

    def reset_observed(self) -> None:
        """Forget every observed rating: predictions are those of training again."""
        items = self.cache.get("item_states")
        if items is not None:
            for pos, row in self._item_backup.items():
                items[pos] = row
        self.live.clear()
        self._reset_live_state(keep_history=True)

    def _reset_live_state(self, *, keep_history: bool = False) -> None:
        self._item_backup: dict[int, np.ndarray] = {}  # trained rows of updated items
        self._rater_theta: dict[str, np.ndarray] = {}
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
        self._item_blocks: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray,
                                           np.ndarray]] = {}
        if not keep_history:
            self._train_count: np.ndarray | None = None
            self._hist_theta: np.ndarray | None = None
            self._edges: EdgeResiduals | None = None  # training ratings, item-major
        elif self._edges is not None:  # every state is back to training's
            self._edges.clear_live()

    def _live_rows(self, user_id: str) -> tuple[np.ndarray, np.ndarray]:
        """``(item positions [n], ratings [n])`` of a user's observed ratings on known items."""
        cached = self._live_pos.get(user_id)
        if cached is not None:
            return cached
        row = self.live.user(user_id)
        if not row:
            return np.zeros(0, np.int64), np.zeros(0)
        pos = np.fromiter((self.item_pos.get(i, -1) for i in row), np.int64, len(row))
        y = np.fromiter(row.values(), np.float64, len(row))
        keep = pos >= 0
        self._live_pos[user_id] = out = (pos[keep], y[keep])
        return out

    def _rater_state(self, user_id: str) -> np.ndarray:
        """``[D]`` a rater's state in the item updates: the ridge fold-in of their training
        history and observed ratings toward their graph prior, with the items' *trained*
        states, so that it depends on that user's ratings alone (the updates are then the
        same whatever order the ratings came in)."""
        theta = self._rater_theta.get(user_id)
        if theta is None:
            c = self.cache
            pos, y = self._live_rows(user_id)
            x = c["item_states"][pos]
            for k, p in enumerate(pos):
                if p in self._item_backup:
                    x[k] = self._item_backup[p]
            a, rhs, prior = self._history_sums(user_id)
            rows = np.concatenate([np.ones((len(x), 1)), x[:, 1:]], axis=1)
            a += rows.T @ rows + np.diag(c["lam"])
            rhs += rows.T @ (y - float(c["mu"]) - x[:, 0]) + c["lam"] * prior
            theta = np.linalg.solve(a, rhs)
            self._rater_theta[user_id] = theta
        return theta

    def _history_sums(self, user_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(A [D, D], c [D], prior [D])`` of a user's training history, less the training
        ratings that an observed rating replaced (copies; zeros and the mean prior for a user
        the model does not know)."""
        c = self.cache
        u = self.user_pos.get(str(user_id), -1)
        if u < 0:
            d_state = c["item_states"].shape[1]
            return np.zeros((d_state, d_state)), np.zeros(d_state), c["user_prior"].mean(0)
        a, rhs = c["hist_a"][u].copy(), c["hist_c"][u].copy()
        for pos, old in self._replaced(user_id):
            x = self._item_backup.get(pos, c["item_states"][pos])
            row = np.r_[1.0, x[1:]]
            a -= np.outer(row, row)
            rhs -= row * (old - float(c["mu"]) - x[0])
        return a, rhs, c["user_prior"][u]

    def _training_rating(self, user_id: str, item_id: str) -> float | None:
        """The rating of a pair in the training data, or None."""
        u, i = self.user_pos.get(str(user_id)), self.item_pos.get(str(item_id))
        if u is None or i is None:
            return None
        c = self.cache
        lo, hi = c["hist_indptr"][u], c["hist_indptr"][u + 1]
        hit = np.flatnonzero(c["hist_items"][lo:hi] == i)
        return float(c["hist_y"][lo + hit[-1]]) if len(hit) else None

    def _replaced(self, user_id: str) -> list[tuple[int, float]]:
        """``(item position, training rating)`` of a user's training ratings that an observed
        rating replaced (cached per user until their next observed rating)."""
        out = self._replaced_cache.get(user_id)
        if out is None:
            out = []
            for item in self.live.user(user_id):
                old = self._training_rating(user_id, item)
                if old is not None:
                    out.append((self.item_pos[item], old))
            self._replaced_cache[user_id] = out
        return out

    def _training_raters(self, pos: int) -> np.ndarray:
        """Positions of the users who rated item ``pos`` in training (empty for a new item)."""
        edges = self._item_major()
        return edges.users[edges.column(pos)] if pos < len(edges.col_ptr) - 1 else \
            edges.users[:0]

    def _item_major(self) -> EdgeResiduals:
        """The training ratings in item-major order with their cached residuals
        (:class:`~graph_meta.live_cache.EdgeResiduals`), built when first needed."""
        if self._edges is None or len(self._edges.col_ptr) != len(self.item_ids) + 1:
            c = self.cache
            self._edges = EdgeResiduals(c["hist_indptr"], c["hist_items"], c["hist_y"],
                                        len(self.item_ids))
            for item in self.live.by_item:
                pos = self.item_pos.get(item)
                if pos is not None:
                    self._edges.live_source[pos] = known = self._known_raters(item)
                    self._edges.set_live(pos, *known)
        return self._edges

    def _known_raters(self, item_id: str) -> tuple[np.ndarray, np.ndarray]:
        """``(user positions, ratings)`` of an item's observed ratings by known users (kept
        per item position until its raters change)."""
        pos = self.item_pos.get(item_id, -1)
        got = self._live_item_rows.get(pos)
        if got is None:
            raters = self.live.item(item_id)
            u = np.fromiter((self.user_pos.get(v, -1) for v in raters), np.int64, len(raters))
            y = np.fromiter(raters.values(), np.float64, len(raters))
            got = (u[u >= 0], y[u >= 0])
            if pos >= 0:
                self._live_item_rows[pos] = got
        return got

    def _rater_rows(self, theta: np.ndarray) -> np.ndarray:
        """``[n, D]`` the rows :math:`(1 + h_1)(1, v_u)` of raters' states in an item step."""
        head = self.cache["head0"]
        return (1.0 + head[1]) * np.concatenate([np.ones((len(theta), 1)), theta[:, 1:]], 1)

    def _item_prior_precision(self, pos: int) -> np.ndarray:
        """``[D, D]`` the precision of an item's trained state: the ridge precision (times
        ``model.live_precision``) plus its training raters' rows' outer products."""
        p = self._item_precision.get(pos)
        if p is None:
            lam = self.cache.get("lam_item", self.cache["lam"])  # older models: the user's
            p = np.diag(lam * self._live_precision_scale())
            raters = self._training_raters(pos)
            if len(raters):
                x = self._rater_rows(self._base_history_states()[raters])
                p = p + x.T @ x
            self._item_precision[pos] = p
        return p

    def _live_precision_scale(self) -> float:
        """``model.live_precision``, or with 0 (auto) the scale chosen at fit time
        (:mod:`graph_meta.live_tuning`; 1 when none was chosen)."""
        return self.config.model.live_precision or float(self.cache.get("live_precision", 1.0))

    def _new_items_with_raters(self) -> np.ndarray:
        """Positions of the items without training ratings that have observed raters."""
        if self._train_count is None or len(self._train_count) != len(self.item_ids):
            self._train_count = np.bincount(self.cache["hist_items"],
                                            minlength=len(self.item_ids)).astype(np.float64)
            self._live_count = None
        pos = [self.item_pos.get(i, -1) for i, raters in self.live.by_item.items() if raters]
        return np.sort(np.array([p for p in pos if p >= 0 and self._train_count[p] == 0],
                                dtype=np.int64))

    def _live_corating(self, positions: np.ndarray) -> sp.csr_matrix:
        r"""``[len(positions), N_I]`` :math:`\gamma s^p` of the co-rating neighbours of new
        items (no training rating) from their observed raters: the cosine of rater sets over
        training and observed ratings, top ``model.neighbor_k``, as the training lists of
        rated items are built (:meth:`ItemNeighbors.from_ratings`); empty rows otherwise.
        A row is computed when asked and kept until the next observed rating."""
        c, m = self.cache, self.config.model
        n = len(self.item_ids)
        if self._train_count is None or len(self._train_count) != n:
            self._train_count = np.bincount(c["hist_items"], minlength=n).astype(np.float64)
            self._live_count = None
        if self._live_count is None:
            counts = self._train_count.copy()
            for item, raters in self.live.by_item.items():
                p = self.item_pos.get(item)
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
                top, weight = self._live_corating_row(pos, k)
                self._live_rows_cache[pos] = hit = (self._live_version, top, weight)
            rows.append(np.full(len(hit[1]), r))
            cols.append(hit[1])
            vals.append(hit[2])
        if not rows:
            return sp.csr_matrix((len(positions), n))
        return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows),
                                                      np.concatenate(cols))),
                             shape=(len(positions), n))

    def _live_corating_row(self, pos: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(columns, weights)`` of one new item's live co-rating neighbours."""
        c, m = self.cache, self.config.model
        raters = self.live.item(self.item_ids[pos])
        if not raters:
            return np.zeros(0, np.int64), np.zeros(0)
        known = np.fromiter((self.user_pos.get(u, -1) for u in raters), np.int64, len(raters))
        known = known[known >= 0]
        starts, stops = c["hist_indptr"][known], c["hist_indptr"][known + 1]
        lengths = stops - starts
        offsets = np.repeat(starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
        parts = [c["hist_items"][offsets + np.arange(lengths.sum())]]
        parts += [self._live_rows(u)[0] for u in raters]
        co = np.bincount(np.concatenate(parts), minlength=len(self.item_ids)).astype(np.float64)
        co[pos] = 0.0
        assert self._live_count is not None
        cos = co / np.sqrt(np.maximum(self._live_count, 1.0) * len(raters))
        top = np.flatnonzero(cos > 1e-12)
        if len(top) > k:
            top = top[np.argpartition(cos[top], len(top) - k)[len(top) - k:]]
        return top, m.neighbor_rated_weight * cos[top] ** m.neighbor_power

    def _refresh_item(self, item_id: str) -> None:
        """Recompute an item's state from its trained state and every observed rating."""
        pos = self.item_pos.get(item_id)
        if pos is None:
            return  # not in the catalogue (add_items first); the log keeps the ratings
        c = self.cache
        base = self._item_backup.get(pos, c["item_states"][pos].copy())
        raters = self.live.item(item_id)
        train_users = self._training_raters(pos)
        warm = len(train_users) > 0
        if not raters or (warm and not self.config.model.live_warm_items):
            c["item_states"][pos] = base
            self._item_backup.pop(pos, None)
            self._item_changed(pos)
            return
        self._item_backup[pos] = base
        theta = np.stack([self._rater_state(u) for u in raters])
        y = np.fromiter(raters.values(), np.float64, len(raters))
        head, mu = c["head0"], float(c["mu"])
        t = y - mu - head[0] - (1.0 + head[1]) * theta[:, 0]
        rows = self._rater_rows(theta)
        precision = self._item_prior_precision(pos)
        if warm:  # take the replaced training ratings out of the trained state first
            edges = self._item_major()
            col = edges.column(pos)
            hit = np.isin(edges.users[col], self._known_raters(item_id)[0])
            if hit.any():
                base_theta = self._base_history_states()[edges.users[col][hit]]
                x_old = self._rater_rows(base_theta)
                t_old = (edges.ratings[col][hit] - mu - head[0]
                         - (1.0 + head[1]) * base_theta[:, 0])
                rhs = precision @ base - x_old.T @ t_old
                precision = precision - x_old.T @ x_old
                base = np.linalg.solve(precision, rhs)
        state = posterior_update(base, precision, rows, t)
        if not warm:  # a new item: the item learner's steps, as item tasks trained them
            scale = 2.0 / (len(y) + self.config.meta.support_shrink)
            for lr in c.get("lr_item", np.zeros((0, len(state)))):
                state = state - lr * scale * (rows.T @ (rows @ state - t))
        c["item_states"][pos] = state
        self._item_changed(pos)

    def _item_changed(self, pos: int) -> None:
        """Bring the incremental caches up to an item whose state or observed raters moved:
        its block of the users' fold-in sums and the residuals of its training ratings."""
        if self._user_sums is not None:
            old = self._item_blocks.pop(pos, None)
            if old is not None:
                self._user_sums.add(old[0], old[1], old[2], -old[3])
            block = self._item_block(pos)
            if block is not None:
                self._user_sums.add(*block)
                self._item_blocks[pos] = block
        if self._edges is not None:
            self._edges.mark_items(np.array([pos]))
            known = self._known_raters(self.item_ids[pos])
            if self._edges.live_source.get(pos) is not known:  # its raters changed
                self._edges.live_source[pos] = known
                self._edges.set_live(pos, *known)

    def _item_block(self, pos: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """``(users, rows, targets, signs)`` an item adds to its known raters' fold-in sums:
        each observed rating's row under the item's current state, less the training rating
        it replaced (under the item's trained state), as :meth:`_adaptation` folds them in."""
        users, y = self._known_raters(self.item_ids[pos])
        if not len(users):
            return None
        c = self.cache
        mu, x = float(c["mu"]), c["item_states"][pos]
        rows = np.tile(np.r_[1.0, x[1:]], (len(users), 1))
        targets = y - mu - x[0]
        signs = np.ones(len(users))
        edges = self._item_major()
        col = edges.column(pos)
        hit = np.isin(edges.users[col], users)
        if hit.any():
            x_tr = self._item_backup.get(pos, x)
            n_rep = int(hit.sum())
            users = np.r_[users, edges.users[col][hit]]
            rows = np.vstack([rows, np.tile(np.r_[1.0, x_tr[1:]], (n_rep, 1))])
            targets = np.r_[targets, edges.ratings[col][hit] - mu - x_tr[0]]
            signs = np.r_[signs, -np.ones(n_rep)]
        return users, rows, targets, signs

    def _live_user_sums(self) -> UserRowSums:
        """:class:`~graph_meta.live_cache.UserRowSums` of every item's block (built once,
        then kept current by :meth:`_item_changed`)."""
        if self._user_sums is None:
            self._user_sums = UserRowSums(self.cache["item_states"].shape[1])
            self._item_blocks = {}
            for item in self.live.by_item:
                pos = self.item_pos.get(item)
                block = None if pos is None else self._item_block(pos)
                if block is not None:
                    self._user_sums.add(*block)
                    self._item_blocks[pos] = block
        return self._user_sums

    def predict(self, user_id: str, support: Sequence[tuple[str, float]],
                query_items: Sequence[str]) -> np.ndarray:
        """Adapt to ``support`` and predict a rating for every query item.

        ``user_id`` may be unknown (a new user: no history). Raises
        :class:`~graph_meta.errors.UnknownItemError` (a ``KeyError``) for a query or support
        item the model's catalogue lacks (:meth:`add_items` adds new products), and
        ``ValueError`` for a support rating that is not finite or off the training data's
        scale (``fit_info["rating_scale"]``)."""
        q = np.fromiter((self.item_pos.get(str(i), -1) for i in query_items), np.int64,
                        len(query_items))
        if self.cache and (q < 0).any():
            raise UnknownItemError(query_items[int(np.flatnonzero(q < 0)[0])])
        return self._adapt_and_score(user_id, support, q)

    def score_all_items(self, user_id: str,
                        support: Sequence[tuple[str, float]]) -> np.ndarray:
        """Predicted ratings of every item (``self.item_ids`` order) after adaptation; the
        support is checked as in :meth:`predict`."""
        return self._adapt_and_score(user_id, support, None)

    @property
    def user_ids(self) -> list[str]:
        """Known users, in the order of :meth:`score_all_users`."""
        return sorted(self.user_pos, key=self.user_pos.__getitem__)

    def score_all_users(self, item_id: str) -> np.ndarray:
        """Predicted rating of ``item_id`` by every known user (:attr:`user_ids` order).

        Each user's state is the ridge fold-in of their training history toward their graph
        prior (the ``K = 0`` case of :meth:`adapt_user`, solved for all users at once:
        ``[N_U, D, D]`` batched solves); a new item scores from its graph prior; the
        neighbourhood corrections (path similarities and learned co-rating weights) are added
        as in :meth:`predict`.
        """
        if not self.cache:
            raise RuntimeError("the model is not fitted (call fit or load)")
        pos = self.item_pos.get(str(item_id))
        if pos is None:
            raise KeyError(f"item {item_id!r} is not in the model's catalogue (items added to "
                           "the catalogue after training: add_items / `graph-meta add-items`)")
        c = self.cache
        theta = self._history_states()
        items, mu, head = c["item_states"], float(c["mu"]), c["head0"]
        x = items[pos]
        scores = mu + head[0] + (1.0 + head[1]) * (theta[:, 0] + x[0] + theta[:, 1:] @ x[1:])
        weights, regression = self._neighbor_weights(), self._regression_weights()
        if weights is None and regression is None:
            return scores
        # every user's residuals on the items that weigh on `pos` (only those columns)
        n = len(items)
        w_sim, w_reg = np.zeros(n), np.zeros(n)
        if weights is not None:
            row = weights[pos]
            if self.live.by_item:  # a new item's co-rating neighbours from observed raters
                row = row + self._live_corating(np.array([pos]))
            w_sim[row.indices] = row.data
        if regression is not None:
            row = regression[0][pos]
            w_reg[row.indices] = row.data
        cols = np.flatnonzero((w_sim != 0) | (w_reg != 0))
        rows, hit, e = self._item_major().gather(cols, theta, items, mu, head)
        num = np.bincount(rows, w_sim[hit] * e, minlength=len(theta))
        den = np.bincount(rows, w_sim[hit], minlength=len(theta))
        learned = np.bincount(rows, w_reg[hit] * e, minlength=len(theta))
        return scores + num / (den + self.config.model.neighbor_shrink) + learned

    def _history_states(self) -> np.ndarray:
        """``[N_U, D]`` every known user's ridge fold-in of their training history (and their
        observed ratings, :meth:`observe`) toward their graph prior (the ``K = 0`` state of
        :meth:`adapt_user`); users whose observed ratings or their items moved are solved
        again from :meth:`_live_user_sums`, one batched ``D x D`` solve."""
        if not self.live.by_user and not self._stale_users and self._hist_theta_live is None:
            return self._base_history_states()
        if self._hist_theta_live is None:
            self._hist_theta_live = self._base_history_states().copy()
            self._stale_users.update(self.live.by_user)
        idx = np.array(sorted(self.user_pos[u] for u in self._stale_users
                              if u in self.user_pos), dtype=np.int64)
        self._stale_users = set()
        if len(idx):
            c = self.cache
            a_live, c_live = self._live_user_sums().get(idx)
            lam = c["lam"]
            a = c["hist_a"][idx] + a_live
            a[:, np.arange(len(lam)), np.arange(len(lam))] += lam
            rhs = c["hist_c"][idx] + c_live + lam * c["user_prior"][idx]
            self._hist_theta_live[idx] = np.linalg.solve(a, rhs[..., None])[..., 0]
            if self._edges is not None:
                self._edges.mark_users(idx)
        return self._hist_theta_live

    def _base_history_states(self) -> np.ndarray:
        """``[N_U, D]`` the fold-in of the training histories alone (batched solves, cached)."""
        if self._hist_theta is None or len(self._hist_theta) != len(self.cache["hist_c"]):
            c = self.cache
            lam = c["lam"]
            a = c["hist_a"] + np.diag(lam)
            self._hist_theta = np.linalg.solve(
                a, (c["hist_c"] + lam * c["user_prior"])[..., None])[..., 0]
        return self._hist_theta

    # ------------------------------------------------------------------ catalogue
    def add_items(self, dataset: Dataset) -> list[str]:
        """Give the items of ``dataset.items`` that the model has not seen (products added to
        the catalogue after training) a state and neighbours, without retraining.

        A new item's state is the side-feature ridge prior of training (``train.
        linear_prior_alpha``, the same targets, weights and ``train.prior_newest_bias``),
        refitted over the extended item table; the GNN correction, which needs a forward
        pass over the training graph, is left out. Its attribute-path neighbours come from
        the dataset's graph (it has no co-rating neighbours and no learned weights until it
        is rated and the model retrained). Existing items are not changed.

        Args:
            dataset: a dataset whose ``items`` hold every item of the model plus the new
                ones (``train`` and ``users`` as at training; new ratings are not used).

        Returns:
            The ids added, in the order they now have in :attr:`item_ids`.

        Raises:
            RuntimeError: the model is not fitted, or it has no side-feature prior to
                extend (trained with ``train.linear_prior_alpha = 0``, ``train.als_iters =
                0`` or ``train.refit = false``, or saved before this existed): retrain it.
            KeyError: an item of the model is missing from ``dataset.items``.
        """
        if not self.cache:
            raise RuntimeError("the model is not fitted (call fit or load)")
        known = set(self.item_ids)
        ids = dataset.items.index.astype(str)
        new_ids = [i for i in ids if i not in known]
        if not new_ids:
            return []
        targets = self.cache.get("prior_targets")
        if targets is None:
            raise RuntimeError("this model keeps no side-feature prior to extend (trained with "
                               "train.linear_prior_alpha = 0, train.als_iters = 0 or "
                               "train.refit = false, or saved by an older version): run "
                               "`graph-meta train` again to score the new items")
        missing = sorted(known - set(ids))
        if missing:
            raise KeyError(f"item {missing[0]!r} of the model is not in the dataset's items "
                           f"({len(missing)} missing): pass the whole catalogue")
        all_ids = [*self.item_ids, *new_ids]
        n_old, d_state = len(self.item_ids), targets.shape[1]
        counts = np.zeros(len(all_ids))
        counts[:n_old] = np.bincount(self.cache["hist_items"], minlength=n_old)
        full_targets = np.zeros((len(all_ids), d_state))
        full_targets[:n_old] = targets
        base = side_prior(dataset, self.config, "Item", all_ids, counts, full_targets)
        # attribute-path neighbours of the new items, in the model's item positions
        m = self.config.model
        k = m.neighbor_k if m.use_graph else 0
        rows_new: ItemNeighbors | None = None
        if k:
            data = build_graph(dataset, text_dim=m.text_dim)
            graph_ids = [str(i) for i in data.node_ids["Item"]]
            lists = ItemNeighbors.from_graph(data, top_k=k)
            pos = {i: p for p, i in enumerate(all_ids)}
            to_model = np.array([pos[i] for i in graph_ids])
            graph_pos = {i: g for g, i in enumerate(graph_ids)}
            parts = [(to_model[lists.indices[lists.indptr[g]:lists.indptr[g + 1]]],
                      lists.sim[lists.indptr[g]:lists.indptr[g + 1]])
                     for g in (graph_pos[i] for i in new_ids)]
            sizes = np.array([len(cols) for cols, _ in parts], dtype=np.int64)
            cols = np.concatenate([cols for cols, _ in parts])
            sims = np.concatenate([sim for _, sim in parts])
            order = np.lexsort((cols, np.repeat(np.arange(len(parts)), sizes)))
            rows_new = ItemNeighbors(np.r_[0, np.cumsum(sizes)], cols[order], sims[order])
        c = self.cache
        c["item_states"] = np.vstack([c["item_states"], base[n_old:]])
        c["prior_targets"] = full_targets
        n_new = len(new_ids)
        for prefix, extra in (("nbr", rows_new), ("nbr_rated", None), ("reg", None)):
            indptr = c[f"{prefix}_indptr"]
            add_ptr = (np.zeros(n_new, np.int64) if extra is None
                       else extra.indptr[1:].astype(np.int64))
            c[f"{prefix}_indptr"] = np.r_[indptr, indptr[-1] + add_ptr]
            if extra is not None:
                c[f"{prefix}_indices"] = np.r_[c[f"{prefix}_indices"],
                                               extra.indices].astype(np.int32)
                c[f"{prefix}_sim"] = np.r_[c[f"{prefix}_sim"], extra.sim].astype(np.float32)
        self.item_ids = all_ids
        self.item_pos = {i: p for p, i in enumerate(all_ids)}
        self._nbr = self._reg = None
        self._edges = None
        self._user_sums = None
        self._live_pos.clear()  # observed ratings on the new items now count
        self._live_count = None
        self._live_version += 1
        self._live_item_rows.clear()
        touched: set[str] = set()
        for item in new_ids:  # ratings observed before the item joined the catalogue
            for user in self.live.item(item):
                self._rater_theta.pop(user, None)
                self._stale_users.add(user)
                touched.update(self.live.user(user))
        for item in touched:  # their raters' states moved: so did every item they rated
            self._refresh_item(item)
            self._stale_users.update(self.live.item(item))
        self.fit_info["items_added"] = self.fit_info.get("items_added", 0) + n_new
        return new_ids

    # ------------------------------------------------------------------ adaptation
    def adapt_user(self, user_id: str, support: Sequence[tuple[str, float]]
                   ) -> tuple[np.ndarray, np.ndarray]:
        """``(theta [D], head [2])`` of a user after fold-in and the inner steps."""
        *_, (_, theta, head) = self._adaptation(user_id, support)
        return theta, head

    def adaptation_curve(self, user_id: str, support: Sequence[tuple[str, float]],
                         query_items: Sequence[str], *, extra_steps: int = 0
                         ) -> dict[str, Any]:
        """Predictions for the support and query items at every stage of the adaptation.

        Returns ``{"labels": ["prior", "fold-in", "step 1", ...], "support": [S, K],
        "query": [S, Q], "trained_steps": T, "corrected": {"support": [K], "query": [Q]}}``:
        the user's graph prior alone, the ridge fold-in (history + support), then each inner
        step; ``extra_steps`` more steps at the last learned rate show what adapting longer
        than trained would do. ``corrected`` is what :meth:`predict` returns: the last trained
        step plus the neighbourhood corrections.
        """
        if not self.cache:
            raise RuntimeError("the model is not fitted (call fit or load)")
        items, mu = self.cache["item_states"], float(self.cache["mu"])
        pos = {name: np.fromiter((self.item_pos.get(str(i), -1) for i in ids), np.int64,
                                 len(ids))
               for name, ids in (("support", [i for i, _ in support]),
                                 ("query", list(query_items)))}
        rows = {name: np.where((q >= 0)[:, None], items[np.maximum(q, 0)], 0.0)
                for name, q in pos.items()}
        labels: list[str] = []
        states: list[tuple[np.ndarray, np.ndarray]] = []
        preds: dict[str, list[np.ndarray]] = {"support": [], "query": []}
        for label, theta, head in self._adaptation(user_id, support, extra_steps=extra_steps,
                                                   with_prior=True):
            labels.append(label)
            states.append((theta, head))
            for name, x in rows.items():
                preds[name].append(_rating(mu, head, theta, x))
        trained = int(self.cache["lr_theta"].shape[0])
        stage = 1 + (trained if len(support) else 0)  # the last trained step
        theta, head = states[stage]
        corrected = {name: preds[name][stage] + self._neighborhood(user_id, support, theta,
                                                                   head, q)
                     for name, q in pos.items()}
        return {"labels": labels, "support": np.asarray(preds["support"]),
                "query": np.asarray(preds["query"]), "trained_steps": trained,
                "corrected": corrected}

    def _adaptation(self, user_id: str, support: Sequence[tuple[str, float]], *,
                    extra_steps: int = 0, with_prior: bool = False
                    ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """``(label, theta, head)`` after each stage: prior (if asked), fold-in, steps."""
        c = self.cache
        items, mu = c["item_states"], float(c["mu"])
        d_state = items.shape[1]
        s_idx, y = self._support_arrays(support)
        x = np.where((s_idx >= 0)[:, None], items[np.maximum(s_idx, 0)], 0.0)
        lam = c["lam"]
        a, rhs, prior = self._history_sums(user_id)
        live_pos, live_y = self._live_rows(user_id)
        if len(live_pos):  # ratings observed after training join the history
            xl = items[live_pos]
            rows_l = np.concatenate([np.ones((len(xl), 1)), xl[:, 1:]], axis=1)
            a += rows_l.T @ rows_l
            rhs += rows_l.T @ (live_y - mu - xl[:, 0])
        head = c["head0"].copy()
        if with_prior:
            yield "prior", prior, head
        rows = np.concatenate([np.ones((len(x), 1)), x[:, 1:]], axis=1)
        if self.config.meta.ridge_on_support and len(x):
            t = y - mu - x[:, 0]
            a += rows.T @ rows
            rhs += rows.T @ t
        a[np.diag_indices(d_state)] += lam
        theta = np.linalg.solve(a, rhs + lam * prior)
        yield "fold-in", theta, head
        k = len(x)
        trained = c["lr_theta"].shape[0]
        if not k:
            return
        for step in range(trained + extra_steps):
            last = min(step, trained - 1)
            lr_theta = (c["lr_theta"][last] if trained else
                        np.full(d_state, self.config.meta.inner_lr))
            lr_head = c["lr_head"][last] if trained else np.full(2, self.config.meta.inner_lr)
            raw = x[:, 0] + rows @ theta
            err = mu + head[0] + (1.0 + head[1]) * raw - y
            scale = 2.0 / (k + self.config.meta.support_shrink)
            g_theta = scale * (1.0 + head[1]) * (rows.T @ err)
            g_head = scale * np.array([err.sum(), (err * raw).sum()])
            theta = theta - lr_theta * g_theta
            head = head - lr_head * g_head
            yield f"step {step + 1}", theta, head

    def _support_arrays(self, support: Sequence[tuple[str, float]]
                        ) -> tuple[np.ndarray, np.ndarray]:
        """``(item positions [K], ratings [K])`` of a support set: UnknownItemError for an
        item outside the catalogue, ValueError naming a rating that is not a finite number
        or off the training data's scale."""
        s_idx = np.fromiter((self.item_pos.get(str(i), -1) for i, _ in support), np.int64,
                            len(support))
        if (s_idx < 0).any():
            raise UnknownItemError(support[int(np.flatnonzero(s_idx < 0)[0])][0])
        lo, hi = self.fit_info.get("rating_scale") or (-np.inf, np.inf)
        try:
            y = np.fromiter((float(r) for _, r in support), np.float64, len(support))
        except (TypeError, ValueError):
            y = np.full(len(support), np.nan)
        if not (np.isfinite(y) & (y >= lo) & (y <= hi)).all():
            for i, r in support:  # the first bad one, named
                check_rating(str(i), r, (lo, hi))
        return s_idx, y

    def _adapt_and_score(self, user_id: str, support: Sequence[tuple[str, float]],
                         q: np.ndarray | None) -> np.ndarray:
        if not self.cache:
            raise RuntimeError("the model is not fitted (call fit or load)")
        theta, head = self.adapt_user(user_id, support)
        items = self.cache["item_states"]
        mu = float(self.cache["mu"])
        xq = items if q is None else np.where((q >= 0)[:, None], items[np.maximum(q, 0)], 0.0)
        pred = _rating(mu, head, theta, xq)
        return pred + self._neighborhood(user_id, support, theta, head, q)

    # ------------------------------------------------------------------ neighbourhood
    def _regression_weights(self) -> tuple[sp.csr_matrix, sp.csc_matrix] | None:
        """The learned co-rating weights :math:`W_{jh} = B_{hj}` (CSR and CSC); None when
        off (``regression_l2 = 0``, ``neighbor_k = 0``, or not in the cache)."""
        c = self.cache
        weight = c.get("reg_weight")
        m = self.config.model
        if weight is None or not len(weight) or m.regression_l2 == 0 or m.neighbor_k == 0:
            return None
        if self._reg is None or self._reg[0] is not weight:
            w = ItemNeighbors(c["reg_indptr"], c["reg_indices"], weight).weights(1.0)
            self._reg = (weight, w, sp.csc_matrix(w))
        return self._reg[1], self._reg[2]

    def _neighbor_weights(self) -> sp.csr_matrix | None:
        """:math:`s^p` of the attribute-path neighbours plus ``neighbor_rated_weight`` times
        that of the co-rating neighbours; None when the correction is off
        (``model.neighbor_k = 0``, no graph, or a model saved without neighbours)."""
        c = self.cache
        m = self.config.model
        sim, rated = c.get("nbr_sim"), c.get("nbr_rated_sim")
        gamma = m.neighbor_rated_weight
        use_rated = gamma > 0 and rated is not None and len(rated) > 0
        if m.neighbor_k == 0 or sim is None or not (len(sim) or use_rated):
            return None
        power = m.neighbor_power
        stale = (self._nbr is None or self._nbr[0][0] is not sim
                 or self._nbr[0][1] is not rated or self._nbr[1:3] != (power, gamma))
        if stale:
            w = ItemNeighbors(c["nbr_indptr"], c["nbr_indices"], sim).weights(power)
            if use_rated:
                w = w + gamma * ItemNeighbors(c["nbr_rated_indptr"], c["nbr_rated_indices"],
                                              rated).weights(power)
            w = sp.csr_matrix(w)
            self._nbr = ((sim, rated), power, gamma, w, sp.csc_matrix(w))
        return self._nbr[3]

    def _neighborhood(self, user_id: str, support: Sequence[tuple[str, float]],
                      theta: np.ndarray, head: np.ndarray, q: np.ndarray | None
                      ) -> np.ndarray | float:
        """The attribute-path residual correction (:mod:`graph_meta.graph.neighborhood`) of
        the query items ``q`` (None: every item) for a user adapted to ``(theta, head)``:
        residuals on the training history and the support move each item toward the errors
        made on its rated neighbours."""
        weights, regression = self._neighbor_weights(), self._regression_weights()
        if weights is None and regression is None:
            return 0.0
        c = self.cache
        n = len(c["item_states"])
        u = self.user_pos.get(str(user_id), -1)
        s_idx, s_y = self._support_arrays(support)
        known_s = s_idx >= 0
        rated, y = s_idx[known_s], s_y[known_s]
        live_pos, live_y = self._live_rows(user_id)
        if u >= 0:
            lo, hi = c["hist_indptr"][u], c["hist_indptr"][u + 1]
            keep = ~np.isin(c["hist_items"][lo:hi], live_pos)  # replaced by an observed one
            rated = np.concatenate([c["hist_items"][lo:hi][keep], rated])
            y = np.concatenate([c["hist_y"][lo:hi][keep], y])
        rated, y = np.concatenate([rated, live_pos]), np.concatenate([y, live_y])
        if not len(rated):
            return 0.0
        fitted = _rating(float(c["mu"]), head, theta, c["item_states"][rated])
        shrink = self.config.model.neighbor_shrink
        if q is None:  # every item: only the rated items' columns of the weights matter
            cols, inverse = np.unique(rated, return_inverse=True)
            residual = np.bincount(inverse, y - fitted, minlength=len(cols))
            known = np.bincount(inverse, minlength=len(cols)).astype(np.float64)
            out = np.zeros(n)
            if weights is not None:
                assert self._nbr is not None
                out += residual_correction(self._nbr[4][:, cols], residual, known, shrink)
                fresh = self._new_items_with_raters()
                if len(fresh):  # as predict: their live co-rating neighbours join
                    full_r, full_k = np.zeros(n), np.zeros(n)
                    full_r[cols], full_k[cols] = residual, known
                    rows = weights[fresh] + self._live_corating(fresh)
                    out[fresh] = residual_correction(rows, full_r, full_k, shrink)
            if regression is not None:
                out += regression[1][:, cols] @ residual
            return out
        # an item rated twice (history and support, or twice in the support) counts twice,
        # as in the fold-in
        residual = np.zeros(n)
        known = np.zeros(n)
        np.add.at(residual, rated, y - fitted)
        np.add.at(known, rated, 1.0)
        out = np.zeros(len(q))
        valid = q >= 0
        if valid.any():
            if weights is not None:
                rows = weights[q[valid]]
                if self.live.by_item:
                    rows = rows + self._live_corating(q[valid])
                out[valid] = residual_correction(rows, residual, known, shrink)
            if regression is not None:
                out[valid] += regression[0][q[valid]] @ residual
        return out

    # ------------------------------------------------------------------ cache
    @torch.no_grad()
    def build_cache(self, data: Any, index: RatingIndex) -> None:
        """Numpy prediction cache from the trained net on graph ``data``."""
        net = self.net
        assert net is not None
        self.live.clear()  # observed ratings belong to the previous states
        self._reset_live_state()
        net.eval()
        items_t, users_t = net.states(data, net.item_trained)
        items = items_t.double().cpu().numpy()
        mu = float(net.mu)
        rows = np.concatenate([np.ones((index.num_edges, 1)), items[index.item, 1:]], axis=1)
        t = index.rating - mu - items[index.item, 0]
        d_state = items.shape[1]
        hist_a = np.zeros((index.num_users, d_state, d_state))
        _segment_outer(hist_a, index.user, rows)
        hist_c = np.zeros((index.num_users, d_state))
        np.add.at(hist_c, index.user, rows * t[:, None])
        steps = 0 if net.user_learner is None else net.user_learner.steps
        lr_theta = np.zeros((steps, d_state))
        lr_head = np.zeros((steps, 2))
        for s in range(steps):
            lr_theta[s] = _lr(net.user_learner, "theta", s, d_state)
            lr_head[s] = _lr(net.user_learner, "head", s, 2)
        head0 = (net.head0.double().cpu().numpy() if net.head0 is not None else np.zeros(2))
        item_steps = 0 if net.item_learner is None else net.item_learner.steps
        lr_item = np.stack([_lr(net.item_learner, "theta", s, d_state)
                            for s in range(item_steps)]) if item_steps else np.zeros((0, d_state))
        neighbors, co_rated = self._item_neighbors(data)
        self.cache = {
            "item_states": items,
            "user_prior": users_t.double().cpu().numpy(),
            "hist_a": hist_a,
            "hist_c": hist_c,
            "lam": net.lam.double().cpu().numpy(),
            "lam_item": net.lam_item.double().cpu().numpy(),
            "lr_theta": lr_theta,
            "lr_head": lr_head,
            "lr_item": lr_item,
            "head0": head0,
            "mu": np.array(mu),
            # training histories (CSR by user) and the attribute-path neighbour lists
            "hist_indptr": index.by_user.indptr.astype(np.int64),
            "hist_items": index.by_user.indices.astype(np.int64),
            "hist_y": index.rating[index.by_user.edge_ids].astype(np.float64),
            "nbr_indptr": neighbors.indptr,
            "nbr_indices": neighbors.indices,
            "nbr_sim": neighbors.sim,
            "nbr_rated_indptr": co_rated.indptr,
            "nbr_rated_indices": co_rated.indices,
            "nbr_rated_sim": co_rated.sim,
        }
        self.cache.update(self._residual_regression(index))
        targets = self.prior_targets
        if targets is not None and targets.shape == items.shape:
            self.cache["prior_targets"] = np.asarray(targets, dtype=np.float64)
        self.item_ids = [str(i) for i in data.node_ids["Item"]]
        self.item_pos = {i: k for k, i in enumerate(self.item_ids)}
        self.user_pos = {str(u): k for k, u in enumerate(data.node_ids["User"])}
        net.train()

    def _residual_regression(self, index: RatingIndex) -> dict[str, np.ndarray]:
        """Cache entries of the learned co-rating weights, fitted on the residuals of every
        training rating under its user's history state (empty lists when off or when the
        catalogue is too large for the dense solve, with a warning)."""
        c = self.cache
        m = self.config.model
        n = len(c["item_states"])
        lists = ItemNeighbors(np.zeros(n + 1, np.int64), np.zeros(0, np.int32),
                              np.zeros(0, np.float32))
        if m.regression_l2 > 0 and m.neighbor_k > 0 and m.use_graph and len(c["hist_y"]):
            theta, items, head = self._history_states(), c["item_states"], c["head0"]
            users = np.repeat(np.arange(len(theta)), np.diff(c["hist_indptr"]))
            fitted = _rating(float(c["mu"]), head, theta[users], items[c["hist_items"]])
            residuals = sp.csr_matrix((c["hist_y"] - fitted, (users, c["hist_items"])),
                                      shape=(len(theta), n))
            try:
                lists = ItemNeighbors.from_residuals(residuals, l2=m.regression_l2,
                                                     top_k=m.neighbor_k)
            except (ValueError, MemoryError) as exc:
                warnings.warn(f"residual regression skipped: {exc!s} (set "
                              "model.regression_l2 = 0 to turn it off)", stacklevel=2)
        self._reg = None
        return {"reg_indptr": lists.indptr, "reg_indices": lists.indices,
                "reg_weight": lists.sim}

    def _item_neighbors(self, data: Any) -> tuple[ItemNeighbors, ItemNeighbors]:
        """``(attribute-path, co-rating)`` neighbour lists of graph ``data`` (computed once
        per graph); empty when off (``model.neighbor_k = 0`` or ``model.use_graph = false``;
        ``model.neighbor_rated_weight = 0`` for the co-rating lists)."""
        m = self.config.model
        k = m.neighbor_k if m.use_graph else 0
        k_rated = k if m.neighbor_rated_weight > 0 else 0
        key = (k, k_rated)
        if self._nbr_graph is None or self._nbr_graph[0] is not data or self._nbr_graph[1] != key:
            n = int(data["Item"].num_nodes)
            empty = ItemNeighbors(np.zeros(n + 1, np.int64), np.zeros(0, np.int64), np.zeros(0))
            lists = (ItemNeighbors.from_graph(data, top_k=k) if k else empty,
                     ItemNeighbors.from_ratings(data, top_k=k_rated) if k_rated else empty)
            self._nbr_graph = (data, key, lists)
        return self._nbr_graph[2]

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write ``path`` (tensors, the item ids and the JSON of config and ids, ``torch.save``)
        and ``path.json`` (that JSON, readable).

        Each goes to a temporary sibling renamed into place, ``path.json`` first; :meth:`load`
        reads ``path`` alone, so its rename is the one commit point: a save interrupted at any
        moment leaves the old model or the new one."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        cache = dict(self.cache)
        if self._item_backup:  # the trained states, not those moved by observed ratings
            cache["item_states"] = self.cache["item_states"].copy()
            for pos, row in self._item_backup.items():
                cache["item_states"][pos] = row
        blob: dict[str, Any] = {
            "cache": {k: torch.from_numpy(np.asarray(v)) for k, v in cache.items()},
            "item_ids": list(self.item_ids)}
        if self.net is not None:
            blob["net"] = self.net.state_dict()
        elif self.net_state is not None:
            blob["net"] = self.net_state
        meta = {"config": self.config.to_dict(), "item_ids": self.item_ids,
                "user_ids": sorted(self.user_pos, key=self.user_pos.__getitem__),
                "fit_info": self.fit_info}
        blob["meta"] = json.dumps(meta)
        _replace_file(path.with_suffix(path.suffix + ".json"),
                      lambda fh: fh.write(blob["meta"].encode("utf-8")))
        _replace_file(path, lambda fh: torch.save(blob, fh))  # the commit point
        return path

    @classmethod
    def load(cls, path: str | Path) -> GraphMetaRecommender:
        """A predict-ready model from :meth:`save` (``torch.load(weights_only=True)``).

        Only ``path`` is read (``path.json`` too for a model saved before the JSON travelled
        inside it). A missing, empty, incomplete or foreign file is a
        :class:`~graph_meta.errors.DataError` naming it."""
        from graph_meta.errors import DataError, short

        path = Path(path)
        blob, meta, source = _read_model(path)
        try:
            config = Config.from_dict(meta["config"], source=str(source))
        except (TypeError, ValueError) as exc:
            raise DataError(f"invalid config: {short(str(exc), 160)}", file=source,
                            field="config") from exc
        model = cls(config)
        model.cache = {k: v.numpy() for k, v in blob["cache"].items()}
        # the tensors' own copy of the ids is authoritative (add_items may have replaced
        # `path` and not yet `path.json`)
        model.item_ids = [str(i) for i in blob.get("item_ids", meta["item_ids"])]
        if "item_states" in model.cache and len(model.item_ids) != len(
                model.cache["item_states"]):
            raise DataError(f"{len(model.cache['item_states'])} item states but "
                            f"{len(model.item_ids)} item ids; the run is damaged, train again",
                            file=path)
        model.item_pos = {i: k for k, i in enumerate(model.item_ids)}
        model.user_pos = {str(u): k for k, u in enumerate(meta["user_ids"])}
        model.fit_info = dict(meta.get("fit_info", {}))
        model.net_state = blob.get("net")
        return model


def _replace_file(path: Path, write: Any) -> None:
    """Write ``path`` through ``write(binary file)`` into a temporary sibling, flushed to
    disk, then renamed into place: ``path`` is the old file or the new one, never a part."""
    import os
    import secrets

    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("xb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # the rename itself survives a power cut once the folder is synced
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_model(path: Path) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """The tensors file of :meth:`GraphMetaRecommender.save`, its JSON (config and ids) and
    the file that JSON came from; every problem is a DataError naming the file."""
    from graph_meta.errors import DataError, short

    if not path.is_file():
        raise DataError("model file not found (train first: graph-meta train)", file=path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for empty, truncated, foreign files
        raise DataError("not a readable model file (empty, incomplete or corrupt: "
                        f"{short(str(exc), 100)})", file=path) from exc
    cache = blob.get("cache") if isinstance(blob, dict) else None
    if not isinstance(cache, dict) or not all(isinstance(v, Tensor) for v in cache.values()):
        raise DataError("not a graph-meta model file (no tensors of a model)", file=path)
    if not isinstance(blob.get("net", {}), dict) or not isinstance(blob.get("item_ids", []),
                                                                   list):
        raise DataError("not a graph-meta model file (bad 'net' or 'item_ids')", file=path)
    source, text = path, blob.get("meta")
    if text is None:  # saved before the JSON travelled inside the tensors file
        source = path.with_suffix(path.suffix + ".json")
        try:
            text = source.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DataError("file not found (the config and ids of the model)",
                            file=source) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot be read: {short(str(exc), 100)}", file=source) from exc
    if not isinstance(text, str):
        raise DataError("not a graph-meta model file (bad 'meta')", file=path)
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", file=source,
                        line=exc.lineno if source != path else None) from exc
    if not isinstance(meta, dict):
        raise DataError("must be a JSON object", file=source)
    for key, kind in (("config", dict), ("user_ids", list), ("item_ids", list),
                      ("fit_info", dict)):
        if key in meta and not isinstance(meta[key], kind):
            raise DataError(f"must be a JSON {'object' if kind is dict else 'array'}",
                            file=source, field=key)
    for key in ("config", "user_ids", "item_ids"):
        if key not in meta:
            raise DataError("required key is missing", file=source, field=key)
    return blob, meta, source


def _rating(mu: float, head: np.ndarray, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    r"""``[E]`` predicted ratings :math:`\mu + h_0 + (1 + h_1)(\theta_0 + x_0 + \theta_{1:}
    \cdot x_{1:})` of item states ``x`` ``[E, D]`` under one user state ``theta`` ``[D]`` or
    one per row ``[E, D]``."""
    dot = x[:, 1:] @ theta[1:] if theta.ndim == 1 else (theta[:, 1:] * x[:, 1:]).sum(1)
    return mu + head[0] + (1.0 + head[1]) * (theta[..., 0] + x[:, 0] + dot)


def _lr(learner: MetaLearner | None, name: str, step: int, size: int) -> np.ndarray:
    if learner is None:
        return np.zeros(size)
    raw = getattr(learner, "raw_lr", None)
    if raw is not None:
        if name not in raw:
            return np.zeros(size)
        return learner.lr(name, step).detach().double().cpu().numpy()  # type: ignore[attr-defined]
    return np.full(size, float(learner.inner_lr))  # type: ignore[attr-defined]
