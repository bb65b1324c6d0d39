r"""graph-meta for implicit feedback: a first ranking objective (issue 16, deliverable 1).

A first version, built from closed forms so that it trains in a minute and ranks a whole pool
in milliseconds; the GNN encoder and the meta-learned gradient inner loop of the rating model
(:mod:`graph_meta.model`) are not used yet.

**Warm states.** Implicit ALS with confidences :math:`c = 1 + \alpha w` on ``train.csv``
(:class:`graph_meta.implicit_baselines.ImplicitALS`: the ``implicit`` package where installed;
every non-positive is a negative with confidence 1, so no sampling is needed): user factors
:math:`x_u`, item factors :math:`y_i`.

**Graph prior of an item without training rows.** Messages along the heterogeneous graph's
paths from the items that have factors: for every item node column (category, brand,
director, actor, ...) the two-hop path item -> attribute -> item, and every item-item relation
file (e.g. ``SUCCEEDS``) one hop. Path :math:`t` gives

.. math:: h_t(i) = \operatorname{mean}_{a \in A_t(i)}\ \operatorname{mean}_{j \in N_a \setminus
          \{i\},\ j\ \text{trained}}\ y_j ,

(a training item's own factors are never among its messages), and the side-feature ridge
map :math:`r(i)` of :mod:`graph_meta.implicit_baselines` is one more input. The graph prior
is :math:`g_i = \beta_r r(i) + \sum_t \beta_t h_t(i) + \beta_0 \bar y` (:math:`\bar y`: the
training items' mean factors), the weights :math:`\beta` learned by least squares on the
training items (rows weighted by :math:`\sqrt{n_i}`), each item's error :math:`e` measured
by what it does to the training users' scores, :math:`e^\top (X^\top X + \lambda I) e`
(``prior_metric="scores"``, the default; ``"euclidean"``: :math:`e^\top e`), from inputs
cross-fitted over 5 folds (a training item's ridge prediction and messages both come from
the other folds): how much each kind of path carries is learned from the data. A new item's
factors are :math:`\hat y_i = (1 - \mu) r(i) + \mu g_i`; the same construction, with its own
weights, predicts its log popularity :math:`\hat b_i` (targets :math:`\log(1 + n_i)`).

**A new user** gets the prior :math:`x^0_u` built the same way from the user side: the user
side-feature ridge map, user node columns (e.g. ``Region``) and, where a user-user relation
file exists (``FRIEND_OF``), the mean of the neighbours' factors. A user the model has no
row for at all (serving: a visitor outside ``users.csv``) starts from the mean factors of the
training users.

**Adaptation to a task** (the inner loop): the iALS user step on the user's training
positives plus the support (support confidence :math:`1 + \alpha s`), toward :math:`x^0_u`,
all negatives implicit. A pool of items with training rows is scored :math:`y_i^\top x_u`;
a pool of new items :math:`\hat y_i^\top x'_u + \gamma \hat b_i`, with :math:`x'_u` the
same step under its own :math:`s'` and :math:`\lambda'` (the support of an item_cold task
is itself made of new items, whose factors are priors).

**Meta-learning, such as it is here.** :math:`s, \lambda` (on pseudo warm and new-user
tasks) and :math:`s', \lambda', \mu, \gamma` (on pseudo new-item tasks) are chosen on
episodes carved from ``train.csv`` (pseudo new users and newest items,
:func:`graph_meta.implicit_baselines.carve_implicit`, uncapped; the new-item choices on a
second carve holding out 30 % of the items when the first leaves fewer than 100 episodes of
either new-item scenario, :func:`graph_meta.implicit_baselines.data.cold_carve`) by
recall@20, then each scenario's own :math:`s, \lambda` where its pseudo-tasks tell it apart
from the pooled pair (:meth:`GraphMetaImplicit.fold_setting`); the ALS settings
by :class:`~graph_meta.implicit_baselines.ImplicitALS`'s tuning on the same kind of episodes
(or taken from an iALS model already tuned on the same data: ``als_params``).

**Path weights for ranking** (:mod:`graph_meta.implicit_path_weights`): after those choices,
each block of the item prior (the ridge map, each path's messages) gets a second weight
:math:`v_t`, learned on the carve's new-item episodes by the softmax cross-entropy of each
task's query items over its whole pool (convex, L-BFGS), with :math:`\tau` on the popularity
term; kept when a two-fold cross-fit over the episodes, judged by the benchmark's own ranking,
beats none by a paired standard error. A new item's factors become :math:`k(\hat y_i +
\sum_t v_t B_t(i))` (:math:`k` keeps their scale), inspectable in ``params``
(``item_path_weights``, ``item_prior_scale``, ``path_weight_fit``).

**Co-engagement links** (:mod:`graph_meta.implicit_coengagement`): items taken by the same
users are linked, the links' weights :math:`B` learned by the closed-form item-item
regression (EASE); an item with training rows also gets :math:`\eta \sum_{h \in H_u}
B_{hj}` from the items :math:`H_u` the user took (training, observed and support
positives), with :math:`\eta` chosen per kind of user (with and without positives of their
own) on the carve. New items have no such links.

**Attribute links** (:mod:`graph_meta.implicit_attributes`): the same regression one level up
the graph, over the attribute nodes (directors, actors, categories, brands: every item node
column) of the items each user took, so that it reaches new items: an item without training
rows also gets :math:`\kappa\, a_{uj}`, the messages User -> Item -> value -> value <- Item
from the values of every item the user took (new support items included), with one
:math:`\kappa` per kind of user (with and without positives of their own) chosen on the
carve's new-item pseudo-tasks, kept only where it beats none by more than a paired standard
error (:math:`\lambda` = ``attribute_l2``).

**Positives after training** (:meth:`GraphMetaImplicit.observe`, kept in a
:class:`graph_meta.live.LiveRatings` log with the weight as the value) join their users'
training positives in the user step; a new item's factors become the iALS item step over its
observed takers toward its prior, :math:`y_i = (\omega X^\top X + \lambda I + \sum_u
(1 - \omega + \alpha w_{ui}) x_u x_u^\top)^{-1}(\sum_u (1 + \alpha w_{ui}) x_u + \lambda
\hat y_i)`, with :math:`x_u` the takers' states at training (:func:`graph_meta.ials.fold_in`
with the roles swapped); an item with training positives keeps its factors. The exposure
weight :math:`\omega` scales the implicit "no" of every user who did not take the item (most
of whom have not been shown it yet): 1 is the plain iALS step, 0 a ridge over the takers
alone; it is chosen on the carve at fit time (:mod:`graph_meta.implicit_exposure`).

**Products added after training** (:meth:`GraphMetaImplicit.add_items`, in
:mod:`graph_meta.implicit_catalogue`) join the catalogue without retraining, with what an item
without training positives gets at fit time: :math:`\hat y_i` and :math:`\hat b_i` from the
side-feature ridge map and the graph prior computed over the extended catalogue from the
model's own training positives and factors (every other item and user unchanged).

The graph prior (paths, messages, cross-fitted weights) lives in :mod:`graph_meta.implicit_prior`.
"""

from __future__ import annotations

import itertools
import logging
import pickle
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import scipy.sparse as sp

from graph_meta import implicit_catalogue
from graph_meta.dataset import Dataset
from graph_meta.errors import UnknownItemError
from graph_meta.ials import fold_in
from graph_meta.implicit_attributes import AttributeLinks
from graph_meta.implicit_baselines import ImplicitALS, Interactions, carve_implicit
from graph_meta.implicit_baselines.data import (
    _Base,
    _masked,
    _Observing,
    cold_carve,
    item_features,
)
from graph_meta.implicit_coengagement import MAX_ITEMS as COENGAGEMENT_MAX_ITEMS
from graph_meta.implicit_coengagement import CoEngagement
from graph_meta.implicit_exposure import SCENARIOS as EXPOSURE_SCENARIOS
from graph_meta.implicit_exposure import choose_exposure_weight
from graph_meta.implicit_mixed import new_item_share, tune_mixed_offset
from graph_meta.implicit_path_weights import clearly_better, prior_scale, tune_path_weights
from graph_meta.implicit_prior import (
    GraphPrior,
    graph_paths,
    path_messages,
    prior_blocks,
    score_metric,
    side_prior,
)
from graph_meta.schema import ITEM, USER

#: stage timings of :meth:`GraphMetaImplicit.fit` at INFO (``graph-meta -v train``)
log = logging.getLogger("graph_meta.implicit")

__all__ = ["GraphMetaImplicit", "path_messages"]

#: the item prior's metrics (:class:`GraphMetaImplicit`'s ``prior_metric``)
PRIOR_METRICS = ("scores", "euclidean")
#: the prior's old place, for models pickled before it moved
_GraphPrior = GraphPrior


class GraphMetaImplicit(_Observing, _Base):
    r"""graph-meta's implicit model (module docstring).

    Args:
        factors, reg, alpha, iters: the ALS warm states (when ``tune`` is False).
        alpha_item, alpha_user: ridge strengths of the side-feature maps.
        support_weight: :math:`s`, a support item's weight relative to a training positive.
        popularity_weight: :math:`\gamma`.
        coengagement_weight: :math:`\eta` of the co-engagement messages for every user
            (when ``tune`` is False; tuning chooses one per kind of user).
        coengagement_l2: its regression's :math:`\lambda` (when ``tune`` is False).
        graph_mix: :math:`\mu`, how much of a new item's prior comes from the graph
            combination rather than the plain side-feature ridge map (1: all of it).
        prior_metric: how the item prior's block weights measure an item's error:
            ``"scores"``, by the error it puts on the training users' scores
            (:func:`~graph_meta.implicit_prior.score_metric`), or ``"euclidean"``, every
            direction of the factors alike.
        fold_reg: the fold-in's :math:`\lambda` (None: the ALS's).
        tune: choose the ALS settings and ``s``, :math:`\gamma`, the fold-in's
            :math:`\lambda` on pseudo-tasks carved from train.
        als_params: ALS settings already chosen by an
            :class:`~graph_meta.implicit_baselines.ImplicitALS` tuning on the same data
            (``factors``, ``reg``, ``alpha``, ``alpha_item``, ``alpha_user``): used as they
            are instead of tuning them again.
        quick: a small grid and 5 ALS sweeps (for tests and ``--quick``).
        backend: the ALS backend (:class:`~graph_meta.implicit_baselines.ImplicitALS`).
        seed: of the ALS and the carving.
    """

    name = "graph-meta"
    #: :math:`\delta`, the offset of new items in a mixed list (a class default for models
    #: pickled before it existed)
    mixed_offset: float = 0.0
    #: :math:`\omega`, the weight of the non-takers in a new item's live step
    #: (:mod:`graph_meta.implicit_exposure`; a class default, the plain iALS step, for models
    #: pickled before it existed)
    exposure_weight: float = 1.0
    #: ``{scenario: (s, lambda)}``: the fold-in's support weight and regularisation chosen
    #: for one kind of request on its own pseudo-tasks (:meth:`fold_setting`); a kind absent
    #: here takes the pooled choice (a class default for models pickled before it existed)
    fold_choices: Mapping[str, tuple[float, float | None]] = MappingProxyType({})
    #: the learned item-item co-engagement links (:mod:`graph_meta.implicit_coengagement`;
    #: None: not built, as for models pickled before they existed)
    coengagement: CoEngagement | None = None
    #: whether the whole training set is small enough for the co-engagement links
    #: (:data:`~graph_meta.implicit_coengagement.MAX_ITEMS`): tuning on a carve, which holds
    #: fewer items, fits and weighs them only when the model it tunes will have them
    _links_fit: bool = True
    #: ``{"warm" | "user_cold" | "user_cold_few": eta}``: the weight of the co-engagement
    #: messages in the scores of items with training rows, for a user with positives of
    #: their own / without, / without and at most FEW_SHOT_MAX support items (absent: 0;
    #: the last absent: user_cold's)
    coengagement_weights: Mapping[str, float] = MappingProxyType({})
    #: :math:`\lambda` of the co-engagement regression
    coengagement_l2: float = 200.0
    #: the learned attribute links (:mod:`graph_meta.implicit_attributes`; None: not built,
    #: as for models pickled before they existed)
    attribute_links: AttributeLinks | None = None
    #: ``{"item_cold" | "user_item_cold": kappa}``: the weight of the attribute-link messages
    #: in the scores of items without training rows, for a user with positives of their own
    #: / without (absent: 0)
    attribute_weights: Mapping[str, float] = MappingProxyType({})
    #: :math:`\lambda` of the attribute-link regression
    attribute_l2: float = 300.0
    #: the item prior's metric (``prior_metric``; a class default, the one they were fitted
    #: with, for models pickled before it existed: ``add_items`` refits the weights)
    prior_metric: str = "euclidean"
    #: ``{block name: v}``: a weight added to each item prior block, learned for ranking new
    #: items (:mod:`graph_meta.implicit_path_weights`; absent names and a class default for
    #: models pickled before it existed: 0)
    item_path_weights: Mapping[str, float] = MappingProxyType({})
    #: :math:`k`, the factor on the new items' factors that keeps their scale with those
    #: weights (:func:`graph_meta.implicit_path_weights.prior_scale`; 1 without them)
    item_prior_scale: float = 1.0
    #: :math:`\tau`, the factor on the new items' log-popularity term learned with them (1
    #: without them)
    item_path_tau: float = 1.0
    #: :func:`graph_meta.recommend.recommend`'s advice for an item the model lacks (None:
    #: :class:`~graph_meta.errors.UnknownItemError`'s, which points to :meth:`add_items`)
    unknown_item_hint: str | None = None

    def __init__(self, factors: int = 64, reg: float = 10.0, alpha: float = 5.0,
                 iters: int = 15, *, alpha_item: float = 10.0, alpha_user: float = 10.0,
                 support_weight: float = 1.0, popularity_weight: float = 0.0,
                 fold_reg: float | None = None, tune: bool = True, quick: bool = False,
                 backend: str = "auto", seed: int = 0,
                 als_params: dict[str, Any] | None = None, graph_mix: float = 1.0,
                 coengagement_weight: float = 0.0, coengagement_l2: float = 200.0,
                 prior_metric: str = "scores") -> None:
        if prior_metric not in PRIOR_METRICS:
            raise ValueError(f"prior_metric must be one of {PRIOR_METRICS}, "
                             f"got {prior_metric!r}")
        self.prior_metric = prior_metric
        self.factors, self.reg, self.alpha = int(factors), float(reg), float(alpha)
        self.iters = 5 if quick else int(iters)
        self.alpha_item, self.alpha_user = float(alpha_item), float(alpha_user)
        self.support_weight = float(support_weight)
        self.popularity_weight = float(popularity_weight)
        self.fold_reg = fold_reg
        self.tune, self.quick, self.backend, self.seed = tune, quick, backend, int(seed)
        self.als_params = als_params
        self.graph_mix = float(graph_mix)
        self.cold_support_weight = self.support_weight
        self.cold_fold_reg = fold_reg
        self.fold_choices: dict[str, tuple[float, float | None]] = {}
        self.coengagement_weights = ({"warm": float(coengagement_weight),
                                      "user_cold": float(coengagement_weight)}
                                     if coengagement_weight else {})
        self.coengagement_l2 = float(coengagement_l2)
        self.attribute_weights: dict[str, float] = {}
        self.item_path_weights: dict[str, float] = {}
        self.item_prior_scale = self.item_path_tau = 1.0
        self.params: dict[str, Any] = {}

    # -- fitting ------------------------------------------------------------------------------

    def _als(self, tune: bool) -> ImplicitALS:
        grid = ({"factors": [32], "reg": [10.0], "alpha": [5.0], "alpha_item": [10.0],
                 "alpha_user": [10.0]} if self.quick else None)
        return ImplicitALS(self.factors, self.reg, self.alpha, self.iters,
                           alpha_item=self.alpha_item, alpha_user=self.alpha_user,
                           backend=self.backend, tune=tune, grid=grid, seed=self.seed)

    def fit(self, dataset: Dataset) -> GraphMetaImplicit:
        t0 = time.perf_counter()
        log.info("fitting on %d training positives, %d items", dataset.train.shape[0],
                 len(dataset.items))
        if self.als_params is not None:  # settings an ImplicitALS tuning already chose
            for key in ("factors", "reg", "alpha", "alpha_item", "alpha_user"):
                if key in self.als_params and self.als_params[key] is not None:
                    setattr(self, key, self.als_params[key])
            als = self._als(False).fit(dataset)
        else:  # the ALS settings, tuned on pseudo-tasks
            als = self._als(self.tune).fit(dataset)
        p = als.params
        self._links_fit = int(als.data.item_in_train.sum()) <= COENGAGEMENT_MAX_ITEMS
        log.info("ALS %s in %.1f s: factors %s, reg %s, alpha %s",
                 "tuned" if self.tune and self.als_params is None else "fitted",
                 time.perf_counter() - t0, p["factors"], p["reg"], p["alpha"])
        self.factors, self.reg, self.alpha = p["factors"], p["reg"], p["alpha"]
        self.alpha_item = p["alpha_item"]
        self.alpha_user = p["alpha_user"] if p["alpha_user"] is not None else self.alpha_user
        tuning: dict[str, Any] = {}
        if self.tune:
            tuning = self._tune(dataset)
        t_build = time.perf_counter()
        self._build(dataset, als)
        log.info("priors and links built on the whole training set in %.1f s",
                 time.perf_counter() - t_build)
        if self.item_path_weights:  # k again, on the whole catalogue's new items
            try:
                self.set_item_path_weights(dataset, self.item_path_weights, self.item_path_tau)
            except ValueError as exc:
                tuning.setdefault("path_weight_fit", {})["dropped"] = str(exc)
        self.params = {"factors": self.factors, "reg": self.reg, "alpha": self.alpha,
                       "iters": self.iters, "alpha_item": self.alpha_item,
                       "alpha_user": self.alpha_user, "support_weight": self.support_weight,
                       "popularity_weight": self.popularity_weight,
                       "graph_mix": self.graph_mix, "prior_metric": self.prior_metric,
                       "item_path_weights": {k: round(v, 4) for k, v in
                                             self.item_path_weights.items()},
                       "item_prior_scale": round(self.item_prior_scale, 4),
                       "item_path_tau": round(self.item_path_tau, 4),
                       "mixed_offset": self.mixed_offset,
                       "exposure_weight": self.exposure_weight,
                       "cold_support_weight": self.cold_support_weight,
                       "cold_fold_reg": self.cold_fold_reg,
                       "fold_choices": {k: list(v) for k, v in self.fold_choices.items()},
                       "fold_reg": self.fold_reg, "backend": p["backend"],
                       "coengagement_weights": dict(self.coengagement_weights),
                       "coengagement_l2": self.coengagement_l2,
                       "attribute_weights": dict(self.attribute_weights),
                       "attribute_l2": self.attribute_l2,
                       "attribute_values": (None if self.attribute_links is None
                                            else len(self.attribute_links.keys)),
                       "coengagement_links": (None if self.coengagement is None
                                              else int(self.coengagement.links.nnz)),
                       "item_paths": dict(zip(self.item_prior.names,
                                              np.round(self.item_prior.beta, 4).tolist(),
                                              strict=True)),
                       "item_popularity_paths": dict(zip(
                           self.item_prior.names, np.round(self.item_prior.beta_pop,
                                                           4).tolist(), strict=True)),
                       "user_paths": dict(zip(self.user_prior.names,
                                              np.round(self.user_prior.beta, 4).tolist(),
                                              strict=True)),
                       "als_tuning": {k: v for k, v in p.items() if k == "pseudo_recall@20"},
                       "fit_s": round(time.perf_counter() - t0, 3), **tuning}
        return self

    def _build(self, dataset: Dataset, als: ImplicitALS) -> None:
        """Warm states from ``als`` (fitted on ``dataset``), then the graph priors."""
        self.data = d = als.data
        self.x, self.y_trained, self.gram = als.x, als.y_trained, als.gram
        self.coengagement = (CoEngagement.fit(d.by_user, l2=self.coengagement_l2)
                             if self._links_fit else None)
        # the attribute links (a dense [V, V]) only where they are used or may be set by hand;
        # tuning fits its own on the cold carve
        wanted = not self.tune or any(self.attribute_weights.values())
        self.attribute_links = (AttributeLinks.fit(dataset, d.item_ids, d.by_user,
                                                   l2=self.attribute_l2) if wanted else None)
        self.item_prior, self._cold = self._item_priors(dataset, d, als._item_feats,
                                                        als.y_trained)
        self._set_graph_mix(self.graph_mix)
        # users: the prior of a new user
        utrained = d.user_in_train
        upaths = self._user_paths(dataset, d)
        unames, ubeta, uprior, _ = side_prior(als._user_feats, utrained, d.user_count, als.x,
                                            upaths, self.alpha_user, seed=self.seed)
        self.user_prior = GraphPrior(unames, ubeta, None, uprior, None)
        self.x0 = np.where(utrained[:, None], 0.0, uprior)
        self.__dict__.pop("_state_cache", None)
        self.__dict__.pop("_item_step_basis", None)

    def _item_priors(self, dataset: Dataset, d: Interactions, item_feats: sp.csr_matrix,
                     y_trained: np.ndarray, *, factor_blocks: Any = None,
                     popularity: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                     ) -> tuple[GraphPrior, tuple[np.ndarray, ...]]:
        """``(item_prior, _cold)`` of every item of ``d`` (``d.item_ids`` order, features
        ``item_feats`` in that order): the graph prior and the side-feature ridge map of the
        factors and of the log popularity, fitted on the items with training positives
        (module docstring; :func:`graph_meta.implicit_prior.side_prior`). Used at fit time
        and by :meth:`add_items`. ``factor_blocks``: the factors' :func:`~graph_meta.
        implicit_prior.prior_blocks` when already computed; ``popularity``: ``(beta_pop, pop,
        pop_ridge)`` when already computed (the path weights do not change them)."""
        trained = d.item_in_train
        # items: targets [y, log popularity], messages along every item path
        target = np.hstack([y_trained, np.log1p(d.item_count.astype(np.float64))[:, None]])
        paths = self._item_paths(dataset, d)
        metric = score_metric(self.x, self.reg) if self.prior_metric == "scores" else None
        names, beta, prior, ridge = side_prior(item_feats, trained, d.item_count,
                                                target[:, :-1], paths, self.alpha_item,
                                                seed=self.seed, metric=metric,
                                                offsets=self.item_path_weights,
                                                blocks=factor_blocks)
        if popularity is None:
            _, beta_pop, pop2, pop_ridge2 = side_prior(item_feats, trained, d.item_count,
                                                       target[:, -1:], paths, self.alpha_item,
                                                       seed=self.seed)
            popularity = (beta_pop, pop2[:, 0], pop_ridge2[:, 0])
        beta_pop, pop, pop_ridge = popularity
        k = self.item_prior_scale
        prior, ridge = (prior, ridge) if k == 1.0 else (k * prior, k * ridge)
        return (GraphPrior(names, beta, beta_pop, prior, pop), (ridge, prior, pop_ridge, pop))

    def _set_graph_mix(self, mix: float) -> None:
        r"""Items without training rows get :math:`(1 - \mu)` ridge + :math:`\mu` graph
        prior (factors and log popularity alike)."""
        self.graph_mix = float(mix)
        ridge, graph, pop_ridge, pop_graph = self._cold
        trained = self.data.item_in_train
        cold = (1 - mix) * ridge + mix * graph
        self.y = np.where(trained[:, None], self.y_trained, cold)
        self._refresh_live_items(list(self._live_log().by_item))
        scale = self.item_prior_scale * self.item_path_tau  # 1 without path weights
        self.cold_bias = np.where(trained, 0.0,
                                  scale * ((1 - mix) * pop_ridge + mix * pop_graph))
        self.__dict__.pop("_state_cache", None)

    def item_prior_blocks(self, dataset: Dataset) -> Any:
        """:func:`~graph_meta.implicit_prior.prior_blocks` of the item factors' prior on
        ``dataset`` (the one the model is built on): what the path weights weigh. They stay
        the same as long as the model is not built again."""
        d = self.data
        return prior_blocks(item_features(dataset, d), d.item_in_train, d.item_count,
                            self.y_trained, self._item_paths(dataset, d), self.alpha_item,
                            seed=self.seed)

    def set_item_path_weights(self, dataset: Dataset, weights: Mapping[str, float],
                              tau: float, *, blocks: Any = None) -> None:
        r"""Rank new items with the prior's blocks re-weighted (``weights``: :math:`v_t` by
        block name, :mod:`graph_meta.implicit_path_weights`) and the log-popularity term
        times :math:`\tau`, at the factors' usual scale: a new item's factors
        :math:`k(\hat y_i + \sum_t v_t B_t(i))`, its popularity term :math:`k \tau \gamma
        \hat b_i` (:math:`k`: :func:`~graph_meta.implicit_path_weights.prior_scale`, computed
        here on ``dataset``, the one the model is built on); ``{}``, 1: the prior as fitted.
        ``blocks``: :meth:`item_prior_blocks` when already computed (the log-popularity
        prior, which the weights do not touch, is the model's own).

        Raises:
            ValueError: the weights cancel the new items' factors (the model is left with
                the prior as fitted)."""
        d = self.data
        feats = item_features(dataset, d)
        blocks = blocks or self.item_prior_blocks(dataset)
        popularity = None  # a model saved before it kept one computes it here
        if hasattr(self, "_cold"):
            _, _, pop_ridge, pop = self._cold
            popularity = (self.item_prior.beta_pop, pop, pop_ridge)
        self.item_path_weights, self.item_prior_scale, self.item_path_tau = {}, 1.0, 1.0
        self.item_prior, self._cold = self._item_priors(
            dataset, d, feats, self.y_trained, factor_blocks=blocks, popularity=popularity)
        self._set_graph_mix(self.graph_mix)
        if not weights:
            return
        new = ~d.item_in_train
        ridge, graph, _, _ = self._cold
        before = (1 - self.graph_mix) * ridge[new] + self.graph_mix * graph[new]
        names, parts, _, _ = blocks
        after = before + sum(weights.get(name, 0.0) * part[new]
                             for name, part in zip(names, parts, strict=True))
        k = prior_scale(before, after)
        self.item_path_weights = {str(n): float(v) for n, v in weights.items()}
        self.item_prior_scale, self.item_path_tau = k, float(tau)
        self.item_prior, self._cold = self._item_priors(
            dataset, d, feats, self.y_trained, factor_blocks=blocks, popularity=popularity)
        self._set_graph_mix(self.graph_mix)

    @staticmethod
    def _item_paths(dataset: Dataset,
                    d: Interactions) -> list[tuple[str, tuple[str, sp.csr_matrix]]]:
        return graph_paths(dataset, dataset.items, dataset.spec.items, d.item_ids, ITEM)

    @staticmethod
    def _user_paths(dataset: Dataset,
                    d: Interactions) -> list[tuple[str, tuple[str, sp.csr_matrix]]]:
        return graph_paths(dataset, dataset.users, dataset.spec.users, d.user_ids, USER)

    def _tune(self, dataset: Dataset) -> dict[str, Any]:
        r"""Choose on carved pseudo-tasks (uncapped): ``s`` and the fold-in :math:`\lambda`
        (scenarios with at least 20 pseudo-tasks, pooled), then each scenario's own pair
        where it has :data:`MIN_SCENARIO_TASKS` pseudo-tasks and its best pair beats the
        pooled one there by more than a paired standard error over its tasks
        (:meth:`fold_setting`; a few hundred pseudo-tasks rank the grid's points noisily;
        a new user with a few support items, :data:`FEW_SHOT`, by the few-shot curve),
        before those the co-engagement regression's :math:`\lambda` and each kind of user's
        weight :math:`\eta` (kept where it beats none by a paired standard error);
        on the cold-item pseudo-tasks the same two for ranking new items, :math:`\mu` and
        :math:`\gamma`, then the new-item scenarios' own pairs, then each new-item kind's
        attribute-link weight :math:`\kappa` (kept where it beats none by a paired
        standard error; the links are kept only where some :math:`\kappa` is). When the
        default carve (10 % newest items) leaves fewer than :data:`MIN_SCENARIO_TASKS`
        pseudo-tasks in either new-item scenario, a second carve holding out 30 % of the
        items serves for the cold-item choices
        (:func:`~graph_meta.implicit_baselines.data.cold_carve`), last of them the exposure
        weight :math:`\omega` of a new item's live step, by the online replay of the
        carve's new-item pseudo-tasks (:mod:`graph_meta.implicit_exposure`)."""
        from graph_meta.eval.ranking import evaluate_implicit

        clock = [time.perf_counter()]

        def stage(what: str, *args: Any) -> None:
            now = time.perf_counter()
            log.info("tuning: " + what + " (%.1f s)", *args, now - clock[0])
            clock[0] = now

        pseudo = carve_implicit(dataset, seed=self.seed, max_tasks=None)
        stage("carved pseudo-tasks %s", {s: len(t) for s, t in pseudo.tasks.items()})
        self.fold_choices, self.coengagement_weights, self.attribute_weights = {}, {}, {}
        self.item_path_weights, self.item_prior_scale, self.item_path_tau = {}, 1.0, 1.0
        have = [s for s, t in pseudo.tasks.items() if len(t) >= 20]
        if not have:
            return {"tuning": "skipped: too few pseudo-tasks"}
        als = self._als(False).fit(pseudo)
        self._build(pseudo, als)
        stage("ALS and priors on the carve")
        grid_s = [1.0, 3.0] if self.quick else [0.5, 1.0, 2.0, 4.0]
        grid_l = [None] if self.quick else [None, 0.3, 3.0]
        grid_g = [0.0, 0.1] if self.quick else [0.0, 0.02, 0.05, 0.1, 0.2]
        grid_m = [0.0, 1.0] if self.quick else [0.0, 0.5, 1.0]
        grid_l2 = [300.0] if self.quick else [100.0, 300.0, 1000.0]
        grid_eta = [0.3, 1.0] if self.quick else [0.1, 0.3, 1.0, 3.0]
        grid_attr_l2 = [300.0]
        grid_kappa = [0.1, 0.3] if self.quick else [0.03, 0.1, 0.3]
        scores: list[dict[str, Any]] = []

        def recall(data: Dataset, scen: list[str]) -> float:
            res = evaluate_implicit(self, data, scenarios=scen, fit=False)
            return float(np.mean([b["recall@20"] for b in res["scenarios"].values()]))

        def fold_reg(lam: float | None) -> float | None:
            return None if lam is None else lam * self.reg

        def set_warm(s: float, lam: float | None) -> None:
            self.support_weight, self.fold_reg = s, fold_reg(lam)

        def set_cold(s: float, lam: float | None) -> None:
            self.cold_support_weight, self.cold_fold_reg = s, fold_reg(lam)

        def set_mix(mix: float, g: float) -> None:
            self._set_graph_mix(mix)
            self.popularity_weight = g

        def per_task(data: Dataset, scen: str) -> np.ndarray:
            if scen != FEW_SHOT:
                res = evaluate_implicit(self, data, scenarios=[scen], fit=False, per_task=True)
                return np.asarray(res["scenarios"][scen]["recall@20_per_task"])
            # a new user with a few items: user_cold's pseudo-tasks, each one's recall
            # averaged over its first k support items for every k of FEW_SHOT_K
            res = evaluate_implicit(self, data, scenarios=["user_cold"], fit=False,
                                    per_task=True, support_k=FEW_SHOT_K)
            return np.mean([block["recall@20_per_task"]
                            for block in res["few_shot"]["user_cold"].values()], axis=0)

        def tasks_of(data: Dataset, scen: str) -> int:
            return len(data.tasks.get("user_cold" if scen == FEW_SHOT else scen, []))

        def own_choices(data: Dataset, scenarios: list[str]) -> None:
            # each scenario with enough pseudo-tasks: its own (s, lambda) where the carve
            # tells it apart from the pooled choice by more than one paired standard error
            for scen in scenarios:
                if tasks_of(data, scen) < MIN_SCENARIO_TASKS:
                    continue
                pooled = self.fold_setting(*_REQUEST_OF[scen])
                per: dict[tuple[float, float | None], np.ndarray] = {}  # (s, lambda) -> recall
                for s, lam in itertools.product([*grid_s, 8.0], grid_l):
                    self.fold_choices[scen] = point = (s, fold_reg(lam))
                    per[point] = per_task(data, scen)
                    scores.append({f"{scen}_support_weight": s,
                                   f"{scen}_fold_reg_factor": lam,
                                   f"pseudo_{scen}_recall@20": round(per[point].mean(), 5)})
                self.fold_choices[scen] = pooled
                base = per[pooled] if pooled in per else per_task(data, scen)
                best = max(per, key=lambda point: per[point].mean())
                if clearly_better(per[best] - base):
                    self.fold_choices[scen] = best

        def choose_links(data: Dataset, kinds: list[str], label: str, links_attr: str,
                         fit: Callable[[float], Any], grid_l2: list[float],
                         grid_w: list[float]) -> None:
            # learned links (self.<links_attr>, weights self.<label>_weights, their lambda
            # self.<label>_l2): lambda, then each kind's weight on its own pseudo-tasks of
            # ``data``: kept where it beats none there by more than a paired standard error
            none = {s: 0.0 for s in kinds}  # explicit: a few-item user falls back to user_cold's
            setattr(self, f"{label}_weights", dict(none))
            base = {s: per_task(data, s) for s in kinds}
            scores.extend({f"{s}_{label}_weight": 0.0,
                           f"pseudo_{s}_{label}_recall@20": round(base[s].mean(), 5)}
                          for s in kinds)
            # (total mean gain, links, {scenario: (weight, per-task gain)}) of the best l2 so far
            best: tuple[float, Any, dict[str, tuple[float, np.ndarray]]] | None = None
            for l2 in grid_l2:
                links = fit(l2)
                setattr(self, links_attr, links)
                if links is None:  # too many items (co-engagement) or no values: no links
                    return
                top: dict[str, tuple[float, np.ndarray]] = {}
                for scen, w in itertools.product(kinds, grid_w):
                    setattr(self, f"{label}_weights", {**none, scen: w})
                    gain = per_task(data, scen) - base[scen]
                    scores.append({f"{label}_l2": l2, f"{scen}_{label}_weight": w,
                                   f"pseudo_{scen}_{label}_recall@20": round(
                                       (base[scen] + gain).mean(), 5)})
                    if scen not in top or gain.mean() > top[scen][1].mean():
                        top[scen] = (w, gain)
                total = sum(gain.mean() for _, gain in top.values())
                if best is None or total > best[0]:
                    best = (total, links, top)
            chosen = dict(none)
            if best is not None:
                _, links, top = best
                setattr(self, links_attr, links)
                setattr(self, f"{label}_l2", links.l2)
                for scen, (w, gain) in top.items():
                    if clearly_better(gain):
                        chosen[scen] = w
            setattr(self, f"{label}_weights", chosen)

        best = _grid_search(itertools.product(grid_s, grid_l), set_warm,
                            lambda: recall(pseudo, have), ("support_weight", "fold_reg_factor"),
                            "pseudo_recall@20", scores)
        choose_links(pseudo, [s for s in ("warm", FEW_SHOT, "user_cold")
                              if tasks_of(pseudo, s) >= 20], "coengagement", "coengagement",
                     lambda l2: (CoEngagement.fit(self.data.by_user, l2=l2) if self._links_fit
                                 else None), grid_l2, grid_eta)
        stage("fold-in (s %s, reg %s), co-engagement weights %s", self.support_weight,
              self.fold_reg, self.coengagement_weights)
        own_choices(pseudo, ["warm", FEW_SHOT, "user_cold"])
        stage("own fold-in per kind of request %s", self.fold_choices)
        cold_set = cold_carve(dataset, seed=self.seed, enough=MIN_SCENARIO_TASKS,
                              default=pseudo)
        cold = [s for s in EXPOSURE_SCENARIOS if cold_set.tasks.get(s)]
        if cold_set is not pseudo and cold:
            self._build(cold_set, self._als(False).fit(cold_set))
        enough = sum(len(cold_set.tasks[s]) for s in cold) >= 20
        # too few cold pseudo-tasks: new items are ranked with the warm choices
        self.cold_support_weight, self.cold_fold_reg = self.support_weight, self.fold_reg
        _grid_search(itertools.product(grid_s, grid_l) if enough else [], set_cold,
                     lambda: recall(cold_set, cold),
                     ("cold_support_weight", "cold_fold_reg_factor"),
                     "pseudo_cold_recall@20", scores)
        best_cold = _grid_search(itertools.product(grid_m, grid_g) if enough else [], set_mix,
                                 lambda: recall(cold_set, cold),
                                 ("graph_mix", "popularity_weight"), "pseudo_cold_recall@20",
                                 scores)
        if enough:
            own_choices(cold_set, cold)
        stage("new items: graph mix %s, popularity weight %s (%d pseudo-tasks)",
              self.graph_mix, self.popularity_weight,
              sum(len(cold_set.tasks[s]) for s in cold))
        path_report: dict[str, Any] = {"kept": False, "tasks": 0}
        if enough:  # the prior's path weights for ranking (graph_meta.implicit_path_weights)
            path_report = tune_path_weights(self, cold_set, cold, seed=self.seed)
            stage("path weights for ranking: %s", "kept" if path_report.get("kept")
                  else "none kept")
        choose_links(cold_set, [s for s in cold if tasks_of(cold_set, s) >= 20], "attribute",
                     "attribute_links",
                     lambda l2: AttributeLinks.fit(cold_set, self.data.item_ids,
                                                   self.data.by_user, l2=l2),
                     grid_attr_l2, grid_kappa)
        stage("attribute-link weights %s", self.attribute_weights)
        mixed: dict[str, Any] = {}
        if enough:
            mixed = tune_mixed_offset(self, cold_set, new_item_share(self, dataset))
        self.exposure_weight, exposure = choose_exposure_weight(self, cold_set)
        stage("mixed pools' offset and exposure weight %s", self.exposure_weight)
        return {"pseudo_recall@20": round(best, 5), "inner_grid_scores": scores, **mixed,
                **exposure,
                "pseudo_cold_recall@20": round(best_cold, 5), "path_weight_fit": path_report,
                "tuned_on": {s: len(t) for s, t in pseudo.tasks.items()},
                "cold_tuned_on": {s: len(cold_set.tasks[s]) for s in cold}}

    # -- scoring ------------------------------------------------------------------------------

    def user_factors(self, user_id: str, support_items: list[str], *,
                     new_items: bool = False) -> np.ndarray:
        """The adapted user state: the iALS user step on history + support, toward the
        user's prior; ``new_items``: the state that ranks items without training rows
        (its own support weight and regularisation)."""
        return self._adapted(user_id, self._taken(user_id, support_items), new_items)

    def _adapted(self, user_id: str, taken: tuple[np.ndarray, np.ndarray, np.ndarray],
                 new_items: bool) -> np.ndarray:
        """:meth:`user_factors` from the user's :meth:`_taken` items."""
        d = self.data
        hist, w, sup = taken
        items = np.concatenate([hist, sup])
        s_w, f_reg = self.fold_setting(len(hist) > 0, new_items, len(sup))
        conf = self.alpha * np.concatenate([w, np.full(len(sup), s_w)])
        u = d.user_ids.get_indexer([user_id])[0]
        prior = self.x0[u] if u >= 0 else self._unknown_user_prior()
        if not len(items):
            return prior
        reg = self.reg if f_reg is None else f_reg
        return fold_in(self.y, self.gram, reg, items, conf, prior)

    def _taken(self, user_id: str, support_items: list[str]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(positives, their weights, support)``: item positions of the user's own
        positives (training, and observed since: an observed weight replaces its own) and of
        the support items not among them."""
        d = self.data
        hist, w = d.history(user_id)
        live = self._live_log().user(str(user_id))
        if live:
            pos = d.items_of(list(live))
            keep = pos >= 0
            lw = np.fromiter(live.values(), np.float64, len(live))[keep]
            old = ~np.isin(hist, pos[keep])
            hist, w = np.concatenate([hist[old], pos[keep]]), np.concatenate([w[old], lw])
        sup = self._support(support_items)
        return hist, w, sup[~np.isin(sup, hist)]

    def coengagement_messages(self, user_id: str, support_items: list[str]
                              ) -> tuple[np.ndarray, float]:
        r"""``(c, eta)``: the co-engagement messages :math:`c_{uj}` of every item from the
        user's positives and support (:mod:`graph_meta.implicit_coengagement`) and the
        weight :math:`\eta` they get for this kind of user (0: none, c is zeros)."""
        return self._messages(self._taken(user_id, support_items))

    def _messages(self, taken: tuple[np.ndarray, np.ndarray, np.ndarray]
                  ) -> tuple[np.ndarray, float]:
        """:meth:`coengagement_messages` from the user's :meth:`_taken` items."""
        hist, _, sup = taken
        eta = _own_or_user_cold(self.coengagement_weights,
                                _request_key(len(hist) > 0, False, len(sup)), 0.0)
        n = len(self.data.item_ids)
        if not eta or self.coengagement is None:
            return np.zeros(n), 0.0
        return self.coengagement.messages(np.concatenate([hist, sup]), n), eta

    def fold_setting(self, has_history: bool, new_items: bool,
                     support_size: int | None = None) -> tuple[float, float | None]:
        r"""The fold-in's support weight :math:`s` and regularisation :math:`\lambda` (None:
        the ALS's) for a user with or without positives of their own (training or observed)
        ranking items with or without training positives: the four kinds of request are the
        four scenarios, each with its own choice where the carve held enough of its
        pseudo-tasks (:attr:`fold_choices`), else the pooled one (``support_weight`` /
        ``fold_reg`` for items with training rows, ``cold_support_weight`` /
        ``cold_fold_reg`` for new ones). A new user ranking items with training rows from
        at most :data:`FEW_SHOT_MAX` support items (``support_size``; None: more) has a
        choice of their own too (:data:`FEW_SHOT`), else user_cold's."""
        pooled = ((self.cold_support_weight, self.cold_fold_reg) if new_items
                  else (self.support_weight, self.fold_reg))
        return _own_or_user_cold(self.fold_choices,
                                 _request_key(has_history, new_items, support_size), pooled)

    def kind_scores(self, user_id: str, support_items: list[str],
                    positions: np.ndarray | None = None) -> np.ndarray:
        r"""Scores of the items at ``positions`` (default: every item), each on its own
        kind's scale: :math:`y_i^\top x_u` for an item with training rows,
        :math:`\hat y_i^\top x'_u + \gamma \hat b_i + \delta` for a new one. Within a
        kind the order is the one tuned for pools of that kind; an item with training rows
        also gets :math:`\eta\, c_{uj}`, the messages along the learned co-engagement links
        from the items the user took (:meth:`coengagement_messages`), a new item
        :math:`\kappa\, a_{uj}`, the messages along the learned attribute links
        (:mod:`graph_meta.implicit_attributes`; :math:`\kappa` from ``attribute_weights``
        by the kind of user); the offset :math:`\delta` (``mixed_offset``, chosen on the
        carve by whole-catalogue recall@20) sets how the two kinds interleave in a mixed
        list."""
        trained = self.data.item_in_train
        pos = np.arange(len(trained)) if positions is None else np.asarray(positions)
        warm = trained[pos]
        out = np.empty(len(pos))
        taken = self._taken(user_id, support_items)
        if warm.any():
            out[warm] = self.y[pos[warm]] @ self._adapted(user_id, taken, False)
            c, eta = self._messages(taken)
            if eta:
                out[warm] += eta * c[pos[warm]]
        if not warm.all():
            new = pos[~warm]
            x_new = self._adapted(user_id, taken, True)
            out[~warm] = (self.y[new] @ x_new + self.popularity_weight * self.cold_bias[new]
                          + self.mixed_offset)
            kappa = self.attribute_weights.get(_SCENARIO_OF[(len(taken[0]) > 0, True)], 0.0)
            if kappa and self.attribute_links is not None:
                hist, _, sup = taken
                out[~warm] += kappa * self.attribute_links.messages(
                    np.concatenate([hist, sup]), new)
        return out

    def score_items(self, user_id: str, support_items: list[str],
                    candidate_item_ids: list[str]) -> np.ndarray:
        pos, known = self._candidates(candidate_item_ids)
        return _masked(self.kind_scores(user_id, support_items, pos), known)

    def score_all_items(self, user_id: str, support_items: list[str]) -> np.ndarray:
        """Scores of every item (``data.item_ids`` order; :meth:`kind_scores`)."""
        return self.kind_scores(user_id, support_items)

    # -- serving (graph_meta.recommend: recommend, audience) -------------------------------

    @property
    def user_ids(self) -> list[str]:
        """Every user the model knows (those of ``users.csv`` at training), in the order of
        :meth:`score_all_users`."""
        return [str(u) for u in self.data.user_ids]

    @property
    def item_pos(self) -> dict[str, int]:
        """The model's catalogue: item id -> position (every item of ``items.csv`` at
        training, with or without positives)."""
        return {str(i): k for k, i in enumerate(self.data.item_ids)}

    def score_all_users(self, item_id: str) -> np.ndarray:
        """The relevance of ``item_id`` for every known user (:attr:`user_ids` order): for
        each user exactly :meth:`score_items` ``(user, [], [item_id])``, i.e. the user's
        state adapted to their training positives (a user without any: their graph prior),
        the new-item state when the item has no training positive (:meth:`kind_scores`).

        Raises :class:`~graph_meta.errors.UnknownItemError` for an item not in the model's
        catalogue.
        """
        pos = self.data.item_ids.get_indexer([str(item_id)])[0]
        if pos < 0:
            raise UnknownItemError(item_id)
        if self.data.item_in_train[pos]:
            scores = self._user_states(False) @ self.y[pos]
            eta = self.coengagement_weights.get("warm", 0.0)
            if eta and self.coengagement is not None:  # a user without positives gets none
                scores += eta * self.coengagement.audience(self._taken_matrix(), pos)
            return scores
        scores = (self._user_states(True) @ self.y[pos]
                  + self.popularity_weight * self.cold_bias[pos] + self.mixed_offset)
        links, weights = self.attribute_links, self.attribute_weights
        if links is not None and any(weights.get(s, 0.0) for s in ("item_cold",
                                                                   "user_item_cold")):
            takers = self._taken_matrix()
            kappa = np.where(np.diff(takers.indptr) > 0, weights.get("item_cold", 0.0),
                             weights.get("user_item_cold", 0.0))
            scores += kappa * links.audience(takers, pos)
        return scores

    def _taken_matrix(self) -> sp.csr_matrix:
        """``[users, items]``: every known user's positives, training and observed."""
        d = self.data
        live = self._live_log()
        if not len(live):
            return d.by_user
        rows = [(u, i) for u, i, _ in live]
        u = d.user_ids.get_indexer([r[0] for r in rows])
        i = d.items_of([r[1] for r in rows])
        ok = (u >= 0) & (i >= 0)
        extra = sp.csr_matrix((np.ones(int(ok.sum())), (u[ok], i[ok])), shape=d.by_user.shape)
        return (d.by_user + extra).tocsr()

    def _unknown_user_prior(self) -> np.ndarray:
        """The prior of a user outside ``users.csv``: the training users' mean factors."""
        cache = self.__dict__.setdefault("_state_cache", {})
        if "unknown" not in cache:
            trained = self.data.user_in_train
            cache["unknown"] = (self.x[trained].mean(axis=0) if trained.any()
                                else np.zeros(self.y.shape[1]))
        return cache["unknown"]

    def _user_states(self, new_items: bool) -> np.ndarray:
        """Every user's adapted state without support (:meth:`user_factors`), cached."""
        cache = self.__dict__.setdefault("_state_cache", {})
        if new_items not in cache:
            states = [self.user_factors(u, [], new_items=new_items) for u in self.data.user_ids]
            cache[new_items] = (np.stack(states) if states
                                else np.zeros((0, self.y.shape[1])))
        return cache[new_items]

    # -- products added after training -------------------------------------------------------

    def add_items(self, dataset: Dataset) -> list[str]:
        r"""Give the items of ``dataset.items`` that the model lacks (products added to the
        catalogue after training) factors and a popularity bias, without retraining.

        A new item gets exactly what an item without training positives gets at fit time
        (:meth:`_build`): :math:`\hat y_i = (1 - \mu) r(i) + \mu g_i` and the same for its
        log popularity :math:`\hat b_i` (module docstring), the side-feature ridge map
        :math:`r` and the graph prior :math:`g` (weights learned on the training items,
        paths through the dataset's item node columns and item-item relation files)
        computed over the model's items followed by the new ones, from the model's training
        positives and factors; it is ranked as a new item (:meth:`kind_scores`). Items
        already in the model keep their factors and bias, users their states. The new items
        go after the existing ones, in ``dataset.items`` order; positives observed on them
        (:meth:`observe`, :meth:`observe_store`) count from now on. Adding the same items
        again adds nothing.

        Args:
            dataset: a dataset whose ``items`` hold every item of the model plus the new
                ones, with the columns of training (``train`` and ``users`` are not read:
                new positives are observed, not trained on).

        Returns:
            The ids added, in the order they now have in :attr:`item_pos`.

        Raises:
            RuntimeError: the model is not fitted, or was saved by a version without the
                item prior (retrain it).
            KeyError: an item of the model is missing from ``dataset.items`` (nothing is
                changed).
        """
        return implicit_catalogue.add_items(self, dataset)

    # -- persistence --------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_state_cache", None)  # derived: rebuilt on demand
        state.pop("_item_step_basis", None)
        state.pop("_by_item", None)  # taker look-ups: rebuilt on demand
        if state.pop("_live", None):  # observed positives are not saved: the graph has them
            ridge, graph, _, _ = self._cold
            cold = (1 - self.graph_mix) * ridge + self.graph_mix * graph
            state["y"] = np.where(self.data.item_in_train[:, None], self.y_trained, cold)
        return state

    # -- positives observed after training (module docstring) ---------------------------------

    def observe_store(self, store: Any) -> int:
        """Observe every positive of ``store`` (its ``RATED`` edges) that is not a training
        positive, with weight 1 (the graph keeps no confidence; :meth:`observe` takes one).
        Calling it again observes only what is new, so a saved model plus the store's
        current graph ranks as the live model does. Returns how many pairs changed."""
        batch = store.edge_batch(store.schema.rated)
        d = self.data
        u = d.user_ids.get_indexer(batch.src.astype(str))
        i = d.item_ids.get_indexer(batch.dst.astype(str))
        ok = (u >= 0) & (i >= 0)
        trained = d.by_user[u[ok], i[ok]].A1 != 0 if ok.any() else np.zeros(0, bool)
        new = np.flatnonzero(ok)[~trained]
        return self.observe([(str(batch.src[k]), str(batch.dst[k])) for k in new])

    def _refresh_live_items(self, item_ids: list[str]) -> None:
        """Recompute the factors of the new items among ``item_ids`` from their prior and
        observed takers; drop the cached user states."""
        self.__dict__.pop("_state_cache", None)
        if not item_ids or not hasattr(self, "_cold"):
            return
        ridge, graph, _, _ = self._cold
        self._step_new_items(item_ids, lambda p: (1 - self.graph_mix) * ridge[p]
                             + self.graph_mix * graph[p])

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        with tmp.open("wb") as fh:
            pickle.dump(self, fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> GraphMetaImplicit:
        with Path(path).open("rb") as fh:
            model = pickle.load(fh)
        if not isinstance(model, cls):
            raise TypeError(f"{path} does not hold a {cls.__name__}")
        return model


#: (user has positives of their own, the pool holds new items) -> the scenario of that request
_SCENARIO_OF = {(True, False): "warm", (False, False): "user_cold",
                (True, True): "item_cold", (False, True): "user_item_cold"}
#: fewest pseudo-tasks of a scenario for a fold-in choice of its own
MIN_SCENARIO_TASKS = 100
#: the kind of request of a new user with at most FEW_SHOT_MAX support items ranking items
#: with training rows: its own fold-in and co-engagement weight, chosen on user_cold's
#: pseudo-tasks by recall@20 averaged over their first k support items, k in FEW_SHOT_K
#: (the few-shot curve), where user_cold's own are chosen on the whole supports: a new
#: user's state rests on the support alone, and what suits 30 items can cost the first few
FEW_SHOT = "user_cold_few"
FEW_SHOT_MAX = 10
FEW_SHOT_K = (1, 3, 5, 10)
#: kind of request -> fold_setting's arguments for it (has positives, new items, a support
#: size of that kind)
_REQUEST_OF = {**{scenario: (*request, None) for request, scenario in _SCENARIO_OF.items()},
               FEW_SHOT: (False, False, FEW_SHOT_MAX)}


def _request_key(has_history: bool, new_items: bool, support_size: int | None) -> str:
    """The kind of request: a scenario, or :data:`FEW_SHOT`."""
    scenario = _SCENARIO_OF[(has_history, new_items)]
    if scenario == "user_cold" and support_size is not None and support_size <= FEW_SHOT_MAX:
        return FEW_SHOT
    return scenario


def _own_or_user_cold(choices: Mapping[str, Any], key: str, default: Any) -> Any:
    """``choices[key]``; for :data:`FEW_SHOT` absent, user_cold's; else ``default``."""
    if key in choices:
        return choices[key]
    if key == FEW_SHOT and "user_cold" in choices:
        return choices["user_cold"]
    return default


def _grid_search(points: Iterable[tuple[Any, ...]], apply: Callable[..., None],
                 score: Callable[[], float], names: tuple[str, ...], key: str,
                 log: list[dict[str, Any]]) -> float:
    """Try every point: ``apply(*point)``, then ``score()``, each logged as ``{names...:
    point, key: score}``; the best point (the first among equals) is applied again at the
    end. Returns its score (-1 for no point: nothing applied)."""
    best, best_score = None, -1.0
    for point in points:
        apply(*point)
        value = score()
        log.append({**dict(zip(names, point, strict=True)), key: round(value, 5)})
        if value > best_score:
            best, best_score = point, value
    if best is not None:
        apply(*best)
    return best_score
