r"""How much each graph path weighs when new items are *ranked*: path weights learned on episodes.

The implicit model's item prior (:mod:`graph_meta.implicit_prior`) combines its blocks (the
side-feature ridge map, one message per path such as Item -> Director -> Item) with weights
:math:`\beta` fitted by least squares to the training items' factors, and mixes in the plain
ridge map: :math:`\hat y_j = (1 - \mu) r_j + \mu \sum_t \beta_t B_t(j)`. What the benchmark
asks of a new item's factors is a ranking: among the new items, the ones a user takes should
come first. The two need not agree. A director's other films say little about most of a new
film's factors (least squares gives the path a small weight) but much about who will take it.

So each block gets a second weight, learned for the ranking in the meta-training loop: on the
carve's new-item pseudo-tasks (episodes: a user's support and query among items held out of
training, :func:`graph_meta.implicit_baselines.data.cold_carve`), with the user's adapted state
:math:`x'_u` (the fold-in on the support) fixed, new item :math:`j` scores

.. math:: s_{uj}(v, \tau) = x'^\top_u \hat y_j + \sum_t v_t\, x'^\top_u B_t(j)
          + \tau \gamma \hat b_j ,

(:math:`B_t` the prior's blocks, the ridge map among them; :math:`\gamma \hat b_j` the
log-popularity term), and :math:`v \in \mathbb{R}^T` (from 0), :math:`\tau` (from 1) minimise
the softmax cross-entropy of each task's query items over its whole candidate pool (the new
items minus the support: no sampling),

.. math:: L(v, \tau) = \operatorname{mean}_{\text{tasks}}\ \operatorname{mean}_{q \in Q}
          -\log \frac{e^{s_{uq}}}{\sum_{j \in \text{pool}} e^{s_{uj}}}
          + \epsilon \lVert v \rVert^2 ,

convex in :math:`(v, \tau)` (a log-sum-exp of scores linear in them), solved by L-BFGS. The
score of the prior as fitted keeps its coefficient 1, which fixes the scale: :math:`v = 0,
\tau = 1` is the model as it was, and a path the graph mix left out (:math:`\mu = 0`) can come
back. The weights are kept only where they earn it: a two-fold cross-fit over the pseudo-tasks
(fit on one half, recall@20 on the other) must beat :math:`v = 0` by more than a paired
standard error; then they are refitted on every pseudo-task. The model applies them as
:math:`\hat y_j \leftarrow k (\hat y_j + \sum_t v_t B_t(j))` and :math:`\gamma \leftarrow
k \tau \gamma`, the same ranking at the factors' usual scale (:math:`k` gives the new items'
factors the norm they had: :func:`prior_scale`; recomputed on the whole catalogue after the
final fit): one set of factors for every use of a new item (ranking, a user's fold-in over
new support items, the live item step's prior, ``add_items``), inspectable in ``params``
(``item_path_weights`` by block name, ``item_path_tau``, ``item_prior_scale``).

Task-conditioned weights (:math:`v_0 + W e`, :math:`e` a task embedding: the support's mean
standing under each block) were measured against these (movielens-1m made implicit, its
item_cold tasks, two-fold cross-fit of the multiplicative form: recall@20 0.2018 global,
0.2022 task-conditioned, inside the noise), so the weights are global.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from graph_meta.dataset import Dataset
from graph_meta.implicit_prior import CATALOGUE_MEAN

if TYPE_CHECKING:
    from graph_meta.implicit import GraphMetaImplicit

__all__ = ["PathEpisodes", "clearly_better", "fit_path_weights", "path_episodes",
           "prior_scale", "tune_path_weights"]

#: :math:`\epsilon`, the pull of the weights toward 0 (keeps a block that never differs at 0)
PULL = 1e-4
#: most entries (tasks x blocks x pool items) held for the fit; more tasks are subsampled
MAX_ENTRIES = 12_000_000


class PathEpisodes:
    """The new-item pseudo-tasks as tensors: per task the scores each block gives every pool
    item (``blocks [N, T, P]``), the fixed part (``fixed [N, P]``: the prior's score
    :math:`x'^\\top \\hat y_j`), the popularity term (``popularity [N, P]``), which
    pool items are query items (``hits [N, P]``), which entries are pool items at all
    (``pool [N, P]``); ``names`` the blocks' names."""

    def __init__(self, names: list[str], blocks: np.ndarray, fixed: np.ndarray,
                 popularity: np.ndarray, hits: np.ndarray, pool: np.ndarray) -> None:
        self.names = names
        self.blocks = torch.as_tensor(blocks, dtype=torch.float64)
        self.fixed = torch.as_tensor(fixed, dtype=torch.float64)
        self.popularity = torch.as_tensor(popularity, dtype=torch.float64)
        self.hits = torch.as_tensor(hits)
        self.pool = torch.as_tensor(pool)

    def __len__(self) -> int:
        return int(self.blocks.shape[0])

    def scores(self, v: torch.Tensor, tau: torch.Tensor | float) -> torch.Tensor:
        """``[N, P]`` :math:`s_{uj}(v, \\tau)` (module docstring); -inf off the pool."""
        s = self.fixed + torch.einsum("t,ntp->np", v, self.blocks) + tau * self.popularity
        return s.masked_fill(~self.pool, float("-inf"))


def path_episodes(model: GraphMetaImplicit, data: Dataset, scenarios: Iterable[str], *,
                  seed: int = 0, blocks: Any = None) -> PathEpisodes | None:
    """The pseudo-tasks of ``scenarios`` in ``data`` (the dataset ``model`` is built on) as
    :class:`PathEpisodes` over the blocks of the model's item prior (``blocks``:
    ``model.item_prior_blocks(data)`` when already computed; the catalogue mean, the same on
    every item, left out); None when there is no new item, no block or no task with a query
    item in its pool."""
    d = model.data
    trained = d.item_in_train
    new = np.flatnonzero(~trained)
    if not len(new):
        return None
    names, parts, _, _ = blocks or model.item_prior_blocks(data)
    keep = [t for t, name in enumerate(names) if name != CATALOGUE_MEAN]
    if not keep:
        return None
    part = np.stack([parts[t][new] for t in keep])  # [T, P, d]
    if not np.abs(part).sum():
        return None
    at = {i: k for k, i in enumerate(d.item_ids.astype(str))}
    col = np.full(len(d.item_ids), -1)
    col[new] = np.arange(len(new))
    tasks = [t for s in scenarios for t in data.tasks.get(s, [])]
    per_task = len(keep) * len(new)
    if len(tasks) * per_task > MAX_ENTRIES:
        pick = np.sort(np.random.default_rng(seed).choice(
            len(tasks), max(1, MAX_ENTRIES // per_task), replace=False))
        tasks = [tasks[i] for i in pick]
    popularity = model.popularity_weight * model.cold_bias[new]
    rows: list[tuple[np.ndarray, ...]] = []
    for task in tasks:
        support = [str(i) for i, _ in task.support]
        sup = col[[at[i] for i in support if i in at]]
        pool = np.ones(len(new), dtype=bool)
        pool[sup[sup >= 0]] = False
        q = col[[at[str(i)] for i, _ in task.query if str(i) in at]]
        hits = np.zeros(len(new), dtype=bool)
        hits[q[q >= 0]] = True
        hits &= pool
        if not hits.any():
            continue
        x = model.user_factors(task.user_id, support, new_items=True)
        rows.append((part @ x, model.y[new] @ x, popularity, hits, pool))
    if not rows:
        return None
    return PathEpisodes([names[t] for t in keep], *(np.stack([r[c] for r in rows])
                                                    for c in range(5)))


def fit_path_weights(episodes: PathEpisodes, *, pull: float = PULL,
                     iters: int = 200) -> tuple[np.ndarray, float]:
    """``(v [T], tau)`` minimising the softmax cross-entropy of the query items over each
    task's pool (module docstring), from :math:`v = 0`, :math:`\\tau = 1`."""
    v = torch.zeros(episodes.blocks.shape[1], dtype=torch.float64, requires_grad=True)
    tau = torch.ones((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([v, tau], max_iter=iters, line_search_fn="strong_wolfe")
    hits = episodes.hits.to(torch.float64)
    per_task = hits.sum(1)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logp = torch.log_softmax(episodes.scores(v, tau), dim=1)
        nll = -(torch.where(episodes.hits, logp, 0.0).sum(1) / per_task).mean()
        loss = nll + pull * (v ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return v.detach().numpy().copy(), float(tau.detach())


def clearly_better(gain: np.ndarray) -> bool:
    """Whether a per-task gain's mean beats its paired standard error (the bar every choice
    made on pseudo-tasks must clear)."""
    gain = np.asarray(gain, dtype=np.float64)
    return len(gain) > 1 and bool(gain.mean() > gain.std(ddof=1) / np.sqrt(len(gain)))


def prior_scale(before: np.ndarray, after: np.ndarray) -> float:
    """:math:`k`: the factor that gives the new items' factors ``after`` (with the weights)
    the root-mean-square norm of ``before`` (as fitted): the softmax fit also sets the
    scores' temperature through the weights, and a user's fold-in over new support items
    and the live item step need the factors at their usual scale. 1 when ``before`` is all
    zeros.

    Raises:
        ValueError: the weights all but cancel the factors (nothing left to rescale)."""
    size_before = float(np.sqrt((before ** 2).sum()))
    size = float(np.sqrt((after ** 2).sum()))
    if size_before == 0.0:
        return 1.0
    if size < 1e-6 * size_before:
        raise ValueError("the path weights cancel the new items' factors")
    return size_before / size


def tune_path_weights(model: GraphMetaImplicit, data: Dataset, scenarios: list[str], *,
                      seed: int = 0) -> dict[str, Any]:
    """Learn the ranking weights on the new-item pseudo-tasks of ``data`` (the dataset
    ``model`` is built on) and keep them where they earn it (module docstring): the tasks
    of each scenario split in two halves; weights fitted on one half's episodes (from the
    prior as fitted) are applied to the model and judged on the other half by the
    benchmark's own ranking (:func:`graph_meta.eval.ranking.evaluate_implicit`: every
    user's state recomputed with the new factors), against the prior as fitted; kept,
    refitted on every task, when the per-task recall@20 gain beats its paired standard
    error (:func:`clearly_better`). Kept: ``model.set_item_path_weights`` with them; else
    (and on any error) the model's weights are those it had on entry. Returns a report."""
    from graph_meta.eval.ranking import evaluate_implicit

    entry = (dict(model.item_path_weights), model.item_path_tau)
    blocks = model.item_prior_blocks(data)  # what every setting below weighs
    rng = np.random.default_rng(seed)
    halves: list[dict[str, list[Any]]] = [{}, {}]
    for scen in scenarios:
        tasks = data.tasks.get(scen, [])
        order = rng.permutation(len(tasks))
        for h in (0, 1):
            halves[h][scen] = [tasks[i] for i in order[h::2]]
    views = [dataclasses.replace(data, tasks=h) for h in halves]

    def per_task(view: Dataset) -> np.ndarray:
        res = evaluate_implicit(model, view, scenarios=[s for s in scenarios if view.tasks[s]],
                                fit=False, per_task=True)
        return np.concatenate([np.asarray(b["recall@20_per_task"])
                               for b in res["scenarios"].values()])

    def learn(view: Dataset) -> tuple[dict[str, float], float] | None:
        model.set_item_path_weights(data, {}, 1.0, blocks=blocks)  # the prior as fitted
        episodes = path_episodes(model, view, scenarios, seed=seed, blocks=blocks)
        if episodes is None or len(episodes) < 10:
            return None
        v, tau = fit_path_weights(episodes)
        return {name: float(x) for name, x in zip(episodes.names, v, strict=True)}, tau

    def decide() -> dict[str, Any]:
        gains = []
        for h in (0, 1):
            fitted = learn(views[h])
            if fitted is None:
                return {"kept": False, "tasks": 0}
            base = per_task(views[1 - h])
            try:
                model.set_item_path_weights(data, *fitted, blocks=blocks)
            except ValueError:
                return {"kept": False, "tasks": 0, "why": "weights cancel the factors"}
            gains.append(per_task(views[1 - h]) - base)
        gain = np.concatenate(gains)
        report = {"tasks": len(gain), "cv_gain": round(float(gain.mean()), 5),
                  "cv_se": round(float(gain.std(ddof=1) / np.sqrt(len(gain))), 5)
                  if len(gain) > 1 else None}
        fitted = learn(data) if clearly_better(gain) else None
        if fitted is None:
            return {**report, "kept": False}
        try:
            model.set_item_path_weights(data, *fitted, blocks=blocks)
        except ValueError:
            return {**report, "kept": False, "why": "weights cancel the factors"}
        return {**report, "kept": True}

    report: dict[str, Any] = {"kept": False}
    try:
        report = decide()
    finally:
        if not report["kept"]:
            model.set_item_path_weights(data, *entry, blocks=blocks)
    return report
