r"""Implicit ALS with confidences, per-task fold-in and side-feature priors for new users and
new items (the ``implicit`` package where installed, else :mod:`graph_meta.ials`).

Positives observed after training (:meth:`ImplicitALS.observe`, the online replay) are folded
in where it is cheap: they join their users' training positives in the fold-in (an observed
weight replaces a training one), and an item without training rows gets the iALS item step
over its observed takers toward its side-feature prior,
:math:`y_i = (X^\top X + \lambda I + \sum_u \alpha w_{ui} x_u x_u^\top)^{-1}
(\sum_u (1 + \alpha w_{ui}) x_u + \lambda \hat y_i)`, with :math:`x_u` the takers' states
at training (a new user's: their prior). Items with training rows keep their factors (moving
them is a retraining). As in graph-meta, the non-takers' term :math:`X^\top X` carries the
exposure weight :math:`\omega` (:mod:`graph_meta.implicit_exposure`): 1 (the plain step) by
default, chosen on a carve with ``exposure_weight=None`` (as the benchmark builds it)."""

from __future__ import annotations

import itertools
import time
from typing import Any, ClassVar

import numpy as np

from graph_meta.baselines import _RidgeMap
from graph_meta.dataset import Dataset
from graph_meta.ials import fit_ials, fold_in
from graph_meta.implicit_baselines.data import (
    Interactions,
    _Base,
    _masked,
    _Observing,
    carve_implicit,
    cold_carve,
    interactions,
    item_features,
    user_features,
)
from graph_meta.implicit_exposure import choose_exposure_weight


def _implicit_package() -> Any:
    try:
        from implicit.cpu.als import AlternatingLeastSquares
    except ImportError:
        return None
    return AlternatingLeastSquares


class ImplicitALS(_Observing, _Base):
    r"""Implicit ALS with confidences, fold-in, and side-feature priors
    (:mod:`graph_meta.implicit_baselines`).

    Args:
        factors: latent dimension.
        reg: :math:`\lambda` (training and fold-in).
        alpha: confidence scale, :math:`c = 1 + \alpha w`.
        iters: ALS sweeps.
        alpha_item: ridge strength of the new-item map (side features -> item factors).
        alpha_user: ridge strength of the new-user prior (side features -> user factors);
            None: a new user's prior is 0.
        backend: ``"implicit"`` (the ``implicit`` package), ``"numpy"`` (ours) or
            ``"auto"`` (the package where installed).
        tune: choose the hyper-parameters on pseudo-tasks carved from train.
        grid: for ``tune``; missing keys take :attr:`default_grid`'s.
        seed: of the initial factors and the carving.
        exposure_weight: :math:`\omega` of the live item step (module docstring), or None:
            chosen on a carve (:func:`graph_meta.implicit_exposure.choose_exposure_weight`,
            after the other settings: one more fit, on
            :func:`~graph_meta.implicit_baselines.data.cold_carve`).
    """

    name = "implicit ALS + fold-in"
    #: :math:`\omega`, the weight of the non-takers in a new item's live step
    #: (:mod:`graph_meta.implicit_exposure`; chosen on a carve with ``exposure_weight=None``, else
    #: plain iALS step, also for models pickled before it existed)
    exposure_weight: float = 1.0
    #: whether :meth:`fit` chooses :attr:`exposure_weight` (``exposure_weight=None``)
    choose_exposure: bool = False
    default_grid: ClassVar[dict[str, list[Any]]] = {
        "factors": [32, 64, 128],
        "reg": [1.0, 10.0, 50.0],
        "alpha": [1.0, 5.0, 20.0],
        "alpha_item": [1.0, 10.0, 100.0],
        "alpha_user": [None, 10.0, 100.0],
    }

    def __init__(self, factors: int = 64, reg: float = 10.0, alpha: float = 5.0,
                 iters: int = 15, *, alpha_item: float = 10.0,
                 alpha_user: float | None = 10.0, backend: str = "auto", tune: bool = False,
                 grid: dict[str, list[Any]] | None = None, seed: int = 0,
                 exposure_weight: float | None = 1.0) -> None:
        if backend not in ("auto", "implicit", "numpy"):
            raise ValueError(f"backend must be auto, implicit or numpy, got {backend!r}")
        self.factors = int(factors)
        self.reg = float(reg)
        self.alpha = float(alpha)
        self.iters = int(iters)
        self.alpha_item = float(alpha_item)
        self.alpha_user = alpha_user
        self.backend = backend
        self.tune = tune
        self.grid = {**self.default_grid, **(grid or {})}
        self.seed = int(seed)
        self.choose_exposure = exposure_weight is None
        if exposure_weight is not None:
            if not 0.0 <= exposure_weight <= 1.0:
                raise ValueError(f"exposure_weight must be in [0, 1] or None, got "
                                 f"{exposure_weight!r}")
            self.exposure_weight = float(exposure_weight)
        self.params: dict[str, Any] = {}

    # -- fitting ------------------------------------------------------------------------------

    def _backend(self) -> str:
        if self.backend == "auto":
            return "implicit" if _implicit_package() is not None else "numpy"
        if self.backend == "implicit" and _implicit_package() is None:
            raise ImportError("backend='implicit' needs the implicit package "
                              "(pip install implicit)")
        return self.backend

    def _train(self, data: Interactions, factors: int, reg: float,
               alpha: float) -> tuple[np.ndarray, np.ndarray]:
        conf = (data.by_user * alpha).tocsr()
        if self._backend() == "numpy":
            return fit_ials(conf, factors, reg, self.iters, seed=self.seed)
        als_cls = _implicit_package()
        # implicit's confidence is 1 + alpha * value: give it the weights and our alpha
        model = als_cls(factors=factors, regularization=reg, alpha=alpha,
                        iterations=self.iters, random_state=self.seed, num_threads=1,
                        calculate_training_loss=False)
        model.fit(data.by_user.astype(np.float32), show_progress=False)
        x = np.asarray(model.user_factors, dtype=np.float64)
        y = np.asarray(model.item_factors, dtype=np.float64)
        y[~data.item_in_train] = 0.0
        return x, y

    def fit(self, dataset: Dataset) -> ImplicitALS:
        t0 = time.perf_counter()
        tuning: dict[str, Any] = {}
        if self.tune:
            tuning = self._tune(dataset)
        if self.choose_exposure:
            tuning.update(self._tune_exposure(dataset))
        self._prepare(dataset)
        x, y = self._train(self.data, self.factors, self.reg, self.alpha)
        self._set(x, y, self.alpha_item, self.alpha_user)
        self.params = {"factors": self.factors, "reg": self.reg, "alpha": self.alpha,
                       "iters": self.iters, "alpha_item": self.alpha_item,
                       "alpha_user": self.alpha_user, "backend": self._backend(),
                       "exposure_weight": self.exposure_weight,
                       "fit_s": round(time.perf_counter() - t0, 3), **tuning}
        return self

    def _prepare(self, dataset: Dataset) -> None:
        self.data = interactions(dataset)
        self._item_feats = item_features(dataset, self.data)
        self._user_feats = user_features(dataset, self.data)
        self._ridges: dict[str, _RidgeMap] = {}

    def _ridge(self, which: str) -> _RidgeMap:
        if which not in self._ridges:
            d = self.data
            if which == "item":
                fit, n, feats = d.item_in_train, d.item_count, self._item_feats
            else:
                fit, n, feats = d.user_in_train, d.user_count, self._user_feats
            self._ridges[which] = _RidgeMap(feats, fit, np.sqrt(n[fit].astype(np.float64)))
        return self._ridges[which]

    def _set(self, x: np.ndarray, y: np.ndarray, alpha_item: float,
             alpha_user: float | None) -> None:
        d = self.data
        self.x, self.y_trained = x, y
        self.gram = y.T @ y
        y = y.copy()
        cold = ~d.item_in_train
        if cold.any() and d.item_in_train.any() and self._item_feats.shape[1]:
            prior = self._ridge("item").predict(y[d.item_in_train], alpha_item)
            y[cold] = prior[cold]
        self.y = y
        self.x0 = np.zeros_like(x)
        new = ~d.user_in_train
        if (alpha_user is not None and new.any() and d.user_in_train.any()
                and self._user_feats.shape[1]):
            prior = self._ridge("user").predict(x[d.user_in_train], alpha_user)
            self.x0[new] = prior[new]
        self.y_fit = y.copy()
        self.__dict__.pop("_item_step_basis", None)
        self._refresh_live_items(list(self._live_log().by_item))

    def _tune(self, dataset: Dataset) -> dict[str, Any]:
        from graph_meta.eval.ranking import evaluate_implicit

        pseudo = carve_implicit(dataset, seed=self.seed)
        have = [s for s, t in pseudo.tasks.items() if t]
        if not have:
            return {"tuning": "skipped: no pseudo-tasks"}
        self._prepare(pseudo)
        g = self.grid
        scores, best = [], None

        def recall(scenarios: list[str]) -> dict[str, float]:
            if not scenarios:
                return {}
            res = evaluate_implicit(self, pseudo, scenarios=scenarios, fit=False)
            return {s: b["recall@20"] for s, b in res["scenarios"].items()}

        item_scen = [s for s in ("item_cold", "user_item_cold") if s in have]
        user_scen = [s for s in ("user_cold",) if s in have]
        for factors, reg, alpha in itertools.product(g["factors"], g["reg"], g["alpha"]):
            x, y = self._train(self.data, int(factors), float(reg), float(alpha))
            self.reg, self.alpha = float(reg), float(alpha)
            a_item, s_item = g["alpha_item"][0], -1.0
            for a in g["alpha_item"] if item_scen else []:
                self._set(x, y, float(a), None)
                s = float(np.mean(list(recall(item_scen).values())))
                if s > s_item:
                    a_item, s_item = float(a), s
            a_user, s_user = None, -1.0
            for a in g["alpha_user"] if user_scen else []:
                self._set(x, y, a_item, a)
                s = float(np.mean(list(recall(user_scen).values())))
                if s > s_user:
                    a_user, s_user = a, s
            self._set(x, y, a_item, a_user)
            per = recall(have)
            score = float(np.mean(list(per.values())))
            config = {"factors": int(factors), "reg": float(reg), "alpha": float(alpha),
                      "alpha_item": a_item, "alpha_user": a_user}
            scores.append({**config, "pseudo_recall@20": round(score, 5),
                           **{s: round(v, 5) for s, v in per.items()}})
            if best is None or score > best[0]:
                best = (score, config)
        assert best is not None
        c = best[1]
        self.factors, self.reg, self.alpha = c["factors"], c["reg"], c["alpha"]
        self.alpha_item, self.alpha_user = c["alpha_item"], c["alpha_user"]
        return {"pseudo_recall@20": round(best[0], 5), "grid_scores": scores,
                "tuned_on": {s: len(t) for s, t in pseudo.tasks.items()}}

    def _tune_exposure(self, dataset: Dataset) -> dict[str, Any]:
        r"""Choose :math:`\omega` (after the other settings): on a carve with enough
        new-item pseudo-tasks (:func:`graph_meta.implicit_baselines.data.cold_carve`, as
        graph-meta's), fitted once with the settings chosen."""
        pseudo = cold_carve(dataset, seed=self.seed)
        self._prepare(pseudo)
        x, y = self._train(self.data, self.factors, self.reg, self.alpha)
        self._set(x, y, self.alpha_item, self.alpha_user)
        self.exposure_weight, report = choose_exposure_weight(self, pseudo)
        return report

    # -- scoring ------------------------------------------------------------------------------

    def user_factors(self, user_id: str, support_items: list[str]) -> np.ndarray:
        """The fold-in: the user step on the training positives plus the support."""
        d = self.data
        hist, w = d.history(user_id)
        live, lw = self._live_items(user_id)
        if len(live):  # observed positives (an observed weight replaces its training one)
            old = ~np.isin(hist, live)
            hist, w = np.concatenate([hist[old], live]), np.concatenate([w[old], lw])
        sup = self._support(support_items)
        sup = sup[~np.isin(sup, hist)]
        items = np.concatenate([hist, sup])
        conf = self.alpha * np.concatenate([w, np.ones(len(sup))])
        u = d.user_ids.get_indexer([user_id])[0]
        prior = self.x0[u] if u >= 0 else None
        if not len(items):
            return prior if prior is not None else np.zeros(self.y.shape[1])
        return fold_in(self.y, self.gram, self.reg, items, conf, prior)

    def _refresh_live_items(self, item_ids: list[str]) -> None:
        """The factors of the new items among ``item_ids``: the item step over their
        observed takers toward their prior (module docstring)."""
        if not hasattr(self, "y_fit"):
            return
        self._step_new_items(item_ids, lambda p: self.y_fit[p])

    def score_items(self, user_id: str, support_items: list[str],
                    candidate_item_ids: list[str]) -> np.ndarray:
        x = self.user_factors(user_id, support_items)
        pos, known = self._candidates(candidate_item_ids)
        return _masked(self.y[pos] @ x, known)
