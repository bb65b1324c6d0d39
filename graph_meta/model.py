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
:func:`graph_meta.fitting.priors.linear_prior`, rows weighted by rating count times
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
such neighbours too. The similarity weighs each path type (attribute node type, and the
cross-category ``CO_ENGAGED`` paths) by a weight chosen at fit time on the carved tasks with
new items (``model.path_weights``, :mod:`graph_meta.fitting.path_weights`; in the rows of
items with training ratings the attribute paths are scaled by
:attr:`GraphMetaRecommender.known_item_path_scale`, chosen on the carved tasks with known
items; inspect them with :attr:`GraphMetaRecommender.path_weights` and
:func:`graph_meta.serving.explain.path_contributions`). Co-rating neighbours (``Item <- User
-> Item`` paths) add their :math:`s^p`, times ``neighbor_rated_weight``, to the weights. On
top, learned co-rating weights :math:`B` (the residual regression of
:mod:`graph_meta.graph.neighborhood`, ridge ``model.regression_l2``, fitted on the training
residuals of the trained model) add :math:`\sum_h e_{uh} B_{hj}`. ``model.neighbor_k = 0``
(or ``use_graph = false``) turns both corrections off; ``regression_l2 = 0`` the regression
alone.

**Prediction** (:meth:`GraphMetaRecommender.predict`) reads the
:class:`~graph_meta.serving.state.PredictorState` (item states ``[N_I, D]``, user priors
``[N_U, D]``, per-user history sums :math:`\sum x x^\top` ``[N_U, D, D]`` and :math:`\sum x
t` ``[N_U, D]``, the histories, the learners' step sizes and the neighbour lists): one ``D x
D`` solve and the user learner's ``T`` steps per task, run by the learner's own rule on the
support loss's gradient (:mod:`graph_meta.serving.adapt`; tested equal to the torch path of
training for every learner x adapt mode), then one sparse product for the neighbourhood
(:mod:`graph_meta.serving.neighborhood`). Ratings observed after training move the state
(:mod:`graph_meta.live_state`); :mod:`graph_meta.serving.catalogue` adds products,
:mod:`graph_meta.serving.persistence` saves and loads.

Ablations: ``model.use_graph=false`` (prior from features only), ``model.use_co_engaged=false``,
``model.use_relations=false`` (no user-user / item-item relation file: neither the relation
prior of :mod:`graph_meta.graph.relations` nor their edges in the encoder; nor the files that
reach the items' values two hops away, a brand's maker, in the prior and the path blocks; the
encoder keeps those between attribute nodes, behind its gate),
``meta.learner="none"`` (ridge fold-in from the graph prior, no inner gradient steps);
:func:`training.benchmark.run_benchmark` with ``ablations=True`` runs them, plus the
"pretrained without meta-learning, then fine-tuned on the support" variant.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from graph_meta.config import Config
from graph_meta.dataset import Dataset
from graph_meta.errors import UnknownItemError
from graph_meta.fitting.train import train_model
from graph_meta.graph.neighborhood import ItemNeighbors
from graph_meta.live import LiveRatings
from graph_meta.live_state import LiveState
from graph_meta.nn.net import GraphMetaNet
from graph_meta.rating_scale import RatingMap
from graph_meta.sampling.episodes import RatingIndex
from graph_meta.serving import catalogue, persistence
from graph_meta.serving.adapt import user_adaptation
from graph_meta.serving.neighborhood import Neighborhood, graph_neighbors
from graph_meta.serving.state import PredictorState, build_state, rating
from graph_meta.store.candidates import check_rating

__all__ = ["GraphMetaNet", "GraphMetaRecommender"]


class GraphMetaRecommender:
    """The cold-start model of the protocol runner (:mod:`graph_meta.eval.protocol`).

    ``fit(dataset)`` trains (optionally with early stopping on pseudo-tasks carved from
    train, then a refit on all of train), ``predict(user_id, support, query_items)`` adapts
    to one task and scores its query items, ``score_all_items`` scores the whole catalogue,
    ``score_all_users`` one item for every known user; ``observe`` takes ratings that arrived
    after training, ``add_items`` products added after training; ``save`` / ``load``.

    Its parts: the trained network :attr:`net` (:class:`~graph_meta.nn.net.GraphMetaNet`),
    what prediction reads (:attr:`state`, a :class:`~graph_meta.serving.state.PredictorState`;
    :attr:`cache` is the same object, a mapping of arrays), the log of observed ratings
    (:attr:`live`) and what they moved (:attr:`live_state`), and the neighbourhood correction
    (:attr:`neighborhood`).
    """

    name = "graph-meta"

    def __init__(self, config: Config | None = None) -> None:
        self.config = (config or Config()).validate()
        self.net: GraphMetaNet | None = None
        self.state = PredictorState()
        self.user_pos: dict[str, int] = {}
        self.item_pos: dict[str, int] = {}
        self.item_ids: list[str] = []
        self.history: list[dict[str, Any]] = []
        self.fit_info: dict[str, Any] = {}
        self.net_state: dict[str, Tensor] | None = None  # weights of a loaded model
        # (graph, (k, k_rated), neighbour lists): computed once per training graph
        self._nbr_graph: tuple[Any, tuple[int, int], tuple[ItemNeighbors, ItemNeighbors]
                               ] | None = None
        # ALS states the item side-feature prior was fitted to (set by training)
        self.prior_targets: np.ndarray | None = None
        self.prior_information: np.ndarray | None = None
        self.live = LiveRatings()  # ratings observed after training (observe)
        self.live_state = LiveState(self)
        self.neighborhood = Neighborhood(self)

    @property
    def cache(self) -> PredictorState:
        """:attr:`state` as a mapping of arrays by name (the saved format); assigning a
        mapping replaces the state."""
        return self.state

    @cache.setter
    def cache(self, arrays: Any) -> None:
        self.state = PredictorState.from_mapping(arrays)

    # ------------------------------------------------------------------ public API
    @property
    def rating_map(self) -> RatingMap:
        """The map from the dataset's rating scale to the one the model works on
        (:mod:`graph_meta.rating_scale`; the identity on a 1-to-5 scale)."""
        return RatingMap.from_info(self.fit_info.get("rating_map"))

    @property
    def params(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), **self.fit_info}

    def fit(self, dataset: Dataset, *, config: Config | None = None, device: str | None = None,
            progress: bool = False, log_dir: str | Path | None = None,
            checkpoint_dir: str | Path | None = None, resume: bool = False,
            store: Any = None) -> GraphMetaRecommender:
        """Train on ``dataset.train`` + side information (its tasks are never read); with
        ``store`` (e.g. a Neo4j store holding the dataset), on that store's graph snapshot.

        Under ``torchrun`` (``WORLD_SIZE > 1``) every process calls this and training is
        data-parallel (:func:`graph_meta.fitting.train.train_model`): rank 0 ends
        predict-ready and writes ``checkpoint_dir``; the other ranks end with the trained
        :attr:`net` only."""
        if config is not None:
            self.config = config.validate()
        self.live.clear()
        self.live_state.reset()
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
        self._check_fitted()
        return self.live_state.observe(ratings)

    def observe_store(self, store: Any) -> int:
        """Observe every rating of ``store`` (a :class:`~graph_meta.store.base.GraphStore`)
        that training did not see: a ``RATED`` edge whose pair is not a training rating, or
        whose rating changed since. Calling it again observes only what is new, so a saved
        model plus the store's current graph gives the predictions of the live model.

        Returns:
            How many ratings changed the model's log (see :meth:`observe`).
        """
        self._check_fitted()
        return self.live_state.observe_store(store)

    def reset_observed(self) -> None:
        """Forget every observed rating: predictions are those of training again."""
        self.live_state.reset_observed()

    # ------------------------------------------------------------------ prediction
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
        if self.state and (q < 0).any():
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
        self._check_fitted()
        pos = self.item_pos.get(str(item_id))
        if pos is None:
            raise KeyError(f"item {item_id!r} is not in the model's catalogue (items added to "
                           "the catalogue after training: add_items / `graph-meta add-items`)")
        c = self.state
        theta = self.live_state.history_states()
        x, head = c.item_states[pos], c.head0
        scores = float(c.mu) + head[0] + (1.0 + head[1]) * (theta[:, 0] + x[0]
                                                           + theta[:, 1:] @ x[1:])
        return self.rating_map.to_external(scores + self.neighborhood.for_item(pos, theta))

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
        self._check_fitted()
        items, mu = self.state.item_states, float(self.state.mu)
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
                preds[name].append(rating(mu, head, theta, x))
        trained = self.state.user_rule(self.config.meta.inner_lr).steps
        stage = 1 + (trained if len(support) else 0)  # the last trained step
        theta, head = states[stage]
        arrays = self._support_arrays(support)
        corrected = {name: preds[name][stage] + self.neighborhood.for_user(
                         user_id, arrays, theta, head, q)
                     for name, q in pos.items()}
        out = self.rating_map.to_external
        return {"labels": labels, "support": out(np.asarray(preds["support"])),
                "query": out(np.asarray(preds["query"])), "trained_steps": trained,
                "corrected": {name: out(p) for name, p in corrected.items()}}

    def _check_fitted(self) -> None:
        if not self.state:
            raise RuntimeError("the model is not fitted (call fit or load)")

    def _adaptation(self, user_id: str, support: Sequence[tuple[str, float]], *,
                    extra_steps: int = 0, with_prior: bool = False
                    ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """``(label, theta, head)`` after each stage: prior (if asked), fold-in, steps
        (:func:`graph_meta.serving.adapt.user_adaptation`)."""
        s_idx, y = self._support_arrays(support)
        return user_adaptation(self.state, self.config.meta,
                               self.live_state.fold_in_sums(user_id),
                               self.state.item_states[s_idx], y, extra_steps=extra_steps,
                               with_prior=with_prior)

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
        return s_idx, self.rating_map.to_internal(y)

    def _adapt_and_score(self, user_id: str, support: Sequence[tuple[str, float]],
                         q: np.ndarray | None) -> np.ndarray:
        self._check_fitted()
        theta, head = self.adapt_user(user_id, support)
        items = self.state.item_states
        xq = items if q is None else np.where((q >= 0)[:, None], items[np.maximum(q, 0)], 0.0)
        pred = rating(float(self.state.mu), head, theta, xq)
        return self.rating_map.to_external(
            pred + self.neighborhood.for_user(user_id, self._support_arrays(support), theta,
                                              head, q))

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
        self._check_fitted()
        return catalogue.add_items(self, dataset)

    # ------------------------------------------------------------------ training's output
    def build_cache(self, data: Any, index: RatingIndex, *,
                    regression_rows: np.ndarray | None = None) -> None:
        """The predictor state of the trained :attr:`net` on graph ``data`` (training ratings
        ``index``; :func:`graph_meta.serving.state.build_state`); observed ratings belong to
        the previous states and are dropped. ``regression_rows``: item positions whose
        learned co-rating weights are needed (training's validation passes its query items;
        the state then predicts those items only as the full one would)."""
        assert self.net is not None
        self.live.clear()
        self.live_state.reset()
        self.state = PredictorState()  # the old state is not held beside the new one
        self.state = build_state(self.net, data, index, self.config, self._graph_neighbors(data),
                                 self.prior_targets, regression_rows,
                                 prior_information=self.prior_information)
        self.item_ids = [str(i) for i in data.node_ids["Item"]]
        self.item_pos = {i: k for k, i in enumerate(self.item_ids)}
        self.user_pos = {str(u): k for k, u in enumerate(data.node_ids["User"])}

    def release_graph_state(self) -> None:
        """Drop the predictor state and the neighbour lists of the graph they were built on
        (training does before its refit: a large catalogue's validation graph and state
        would otherwise stay in memory beside the refit's)."""
        self.state = PredictorState()
        self._nbr_graph = None

    def _graph_neighbors(self, data: Any) -> tuple[ItemNeighbors, ItemNeighbors]:
        """:func:`graph_meta.serving.neighborhood.graph_neighbors` of ``data``, computed once
        per graph and setting."""
        m = self.config.model
        k = m.neighbor_k if m.use_graph else 0
        weights = self.path_weights
        key = (k, k if m.neighbor_rated_weight > 0 else 0, tuple(sorted(weights.items())),
               m.relation_link_weight())
        if self._nbr_graph is None or self._nbr_graph[0] is not data or self._nbr_graph[1] != key:
            self._nbr_graph = (data, key, graph_neighbors(data, self.config, weights))
        return self._nbr_graph[2]

    @property
    def known_item_path_scale(self) -> float:
        """:math:`c`, the weight of the attribute paths in the neighbourhood of an item with
        training ratings, relative to its co-rating paths (a new item has no co-rating
        neighbours; its attribute paths keep weight 1): chosen at fit time on the carved
        tasks with known items (``model.path_weights = "auto"``,
        :func:`graph_meta.fitting.path_weights.choose_known_item_scale`); 1 otherwise."""
        return float(self.fit_info.get("known_item_path_scale", 1.0))

    @property
    def path_weights(self) -> dict[str, float]:
        """The weight of every path type in the attribute-path neighbour lists (attribute node
        types and ``CO_ENGAGED``), as chosen at fit time on the carved validation
        (``model.path_weights = "auto"``, :mod:`graph_meta.fitting.path_weights`); empty:
        every attribute type 1, ``CO_ENGAGED`` 0."""
        return dict(self.fit_info.get("path_weights", {}))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write ``path`` (tensors, the item ids and the JSON of config and ids, ``torch.save``)
        and ``path.json`` (that JSON, readable).

        Each goes to a temporary sibling renamed into place, ``path.json`` first; :meth:`load`
        reads ``path`` alone, so its rename is the one commit point: a save interrupted at any
        moment leaves the old model or the new one."""
        return persistence.save(self, path)

    @classmethod
    def load(cls, path: str | Path) -> GraphMetaRecommender:
        """A predict-ready model from :meth:`save` (``torch.load(weights_only=True)``).

        Only ``path`` is read (``path.json`` too for a model saved before the JSON travelled
        inside it). A missing, empty, incomplete or foreign file is a
        :class:`~graph_meta.errors.DataError` naming it."""
        return persistence.load(cls, path)
