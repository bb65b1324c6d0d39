r"""The weight of each path type in the attribute-path neighbourhood, chosen out of sample.

The attribute-path neighbours of an item (:mod:`graph_meta.graph.neighborhood`) are the
cosine of path profiles built from one block per path type: every attribute node type
(``Category``, ``Director``, ``Brand``, ...) and the cross-category ``CO_ENGAGED`` paths
(:func:`~graph_meta.graph.neighborhood.path_blocks`). How much a shared genre should count
against a shared director differs between catalogues: on movielens-1m equal blocks let the
genres (shared by hundreds of films) crowd out the directors and writers a new film's
neighbours should come from. With ``model.path_weights = "auto"`` the block weights
:math:`w_X` are chosen at fit time on the carved validation
(:func:`graph_meta.eval.protocol.carve_validation`, every carved task, not only the early
stopping's sample): the model trained on the carved train predicts the carved tasks with the
lists the weights give, and one pass of coordinate search
over :data:`GRID` (every attribute type from 1, ``CO_ENGAGED`` from 0) keeps a change only
when it lowers the RMSE pooled over the query ratings of the carved scenarios with new items
(:data:`NEW_ITEM_SCENARIOS`: the correction of a new item runs on these lists alone, while a
known item's is dominated by its co-rating neighbours) by more than :data:`MIN_GAIN`. The
chosen weights and every weighting tried are in ``model.fit_info`` (``"path_weights"``,
``"path_weight_search"``): which paths the catalogue's cold items lean on.

An item with training ratings also has co-rating neighbours, and how much its attribute paths
should count beside them is another question: :func:`choose_known_item_scale` scales the
attribute paths' :math:`s^p` in the rows of such items by :math:`c \in` :data:`KNOWN_GRID`,
judged the same way on the carved scenarios with known items only
(:data:`KNOWN_ITEM_SCENARIOS`), ``model.fit_info["known_item_path_scale"]`` (and
``"known_item_scale_search"``). On movielens-1m the carve chose 8, 4, 8 on three seeds and the
warm RMSE fell by 0.0025 to 0.0033 on each (a known film's directors, writers and actors say
more than its co-raters leave room for); on the synthetic catalogue the carve keeps 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graph_meta.dataset import Dataset
from graph_meta.eval.protocol import evaluate
from graph_meta.graph.neighborhood import (
    ItemNeighbors,
    default_weight,
    path_blocks,
    rating_counts,
    relation_links,
)
from graph_meta.schema import CO_ENGAGED

__all__ = ["GRID", "KNOWN_GRID", "KNOWN_ITEM_SCENARIOS", "MAX_ITEMS", "MIN_GAIN", "MIN_TASKS",
           "NEW_ITEM_SCENARIOS", "choose_known_item_scale", "choose_path_weights",
           "judged_tasks", "new_item_rmse"]

#: the carved scenarios whose query ratings judge a weighting (those with new items: a new
#: item has no co-rating neighbours, its correction runs on the attribute paths alone); all
#: carved scenarios where there are none
NEW_ITEM_SCENARIOS: tuple[str, ...] = ("item_cold", "user_item_cold")
#: the carved scenarios that judge the known-item scale (their query items have training
#: ratings)
KNOWN_ITEM_SCENARIOS: tuple[str, ...] = ("warm", "user_cold")
#: candidate known-item scales :math:`c` (1 is scored first: the scale a change must beat)
KNOWN_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: candidate weights of one path type
GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)
#: a change of weights is kept when the mean scenario RMSE drops by more than this
MIN_GAIN = 1e-4
#: fewer carved tasks to judge by than this: no search (the weights stay equal)
MIN_TASKS = 100
#: past this many items the search is skipped (every candidate rebuilds the lists, whose cost
#: grows with the square of the catalogue where items share attributes)
MAX_ITEMS = 50_000


def judged_tasks(carved: Dataset) -> int:
    """How many carved tasks :func:`new_item_rmse` judges by."""
    new_item = sum(len(carved.tasks.get(s, [])) for s in NEW_ITEM_SCENARIOS)
    return new_item or sum(len(t) for t in carved.tasks.values())


def new_item_rmse(model: Any, carved: Dataset,
                  scenarios: tuple[str, ...] = NEW_ITEM_SCENARIOS
                  ) -> tuple[float, dict[str, float]]:
    """``(judged, {scenario: rmse})`` of ``model`` on the carved tasks of the ``scenarios``
    the carve has (of every carved scenario where it has none): ``judged`` the RMSE pooled
    over their query ratings (10 per task)."""
    chosen = [s for s in scenarios if carved.tasks.get(s)] or [
        s for s, tasks in carved.tasks.items() if tasks]
    res = evaluate(model, carved, scenarios=chosen, fit=False)["scenarios"]
    ok = {s: b for s, b in res.items() if b["tasks"] and np.isfinite(b["rmse"])}
    judged = list(ok)
    mse = sum(ok[s]["rmse"] ** 2 * ok[s]["tasks"] for s in judged) / sum(
        ok[s]["tasks"] for s in judged)
    return float(np.sqrt(mse)), {s: float(b["rmse"]) for s, b in ok.items()}


def choose_path_weights(model: Any, carved: Dataset, data: Any
                        ) -> tuple[dict[str, float], list[dict[str, Any]]] | None:
    """``(weights, tried)`` for a model fitted on ``carved``'s training view (its prediction
    cache built on graph ``data``, the carved train's); None when the model has no attribute
    paths (``model.neighbor_k = 0``, no graph, no attribute node type), more than
    :data:`MAX_ITEMS` items or fewer than :data:`MIN_TASKS` carved tasks to judge by.
    ``tried``: ``{"weights", "rmse", "scenarios"}`` of every weighting scored (the judged
    RMSE and each carved scenario's), in order. The model's neighbour lists are left as the
    chosen weights give them."""
    m = model.config.model
    n_items = int(data["Item"].num_nodes)
    if m.neighbor_k == 0 or not m.use_graph or n_items > MAX_ITEMS:
        return None
    blocks = path_blocks(data, m.use_co_engaged, m.use_relations)
    if not blocks or judged_tasks(carved) < MIN_TASKS:
        return None
    names = sorted(n for n in blocks if n != CO_ENGAGED) + (
        [CO_ENGAGED] if CO_ENGAGED in blocks else [])
    tie_break = rating_counts(data)
    links, joined = relation_links(data), m.relation_link_weight()
    state = model.state
    tried: list[dict[str, Any]] = []
    scores: dict[tuple[float, ...], float] = {}
    lists: dict[tuple[float, ...], ItemNeighbors] = {}  # the current best's only

    def key(weights: dict[str, float]) -> tuple[float, ...]:
        return tuple(weights[n] for n in names)

    def use(nb: ItemNeighbors) -> None:
        state.nbr_indptr, state.nbr_indices, state.nbr_sim = nb.indptr, nb.indices, nb.sim
        model.neighborhood.reset()

    def score(weights: dict[str, float]) -> float:
        k = key(weights)
        if k not in scores:
            lists[k] = ItemNeighbors.from_blocks(blocks, weights, top_k=m.neighbor_k,
                                                 tie_break=tie_break).joined(links, joined)
            use(lists[k])
            scores[k], by_scenario = new_item_rmse(model, carved)
            tried.append({"weights": dict(weights), "rmse": scores[k],
                          "scenarios": by_scenario})
        return scores[k]

    best = {n: default_weight(n) for n in names}
    best_score = score(best)
    for name in names:
        for value in GRID:
            trial = {**best, name: value}
            if (s := score(trial)) < best_score - MIN_GAIN:
                best, best_score = trial, s
            for k in [k for k in lists if k != key(best)]:
                del lists[k]
    use(lists[key(best)])
    return best, tried


def choose_known_item_scale(model: Any, carved: Dataset
                            ) -> tuple[float, list[dict[str, Any]]] | None:
    """``(c, tried)``: the known-item path scale (module docstring) for a model fitted on
    ``carved``'s training view, its neighbour lists in place; the carved scenarios with known
    items judge :math:`c = 1`, then every other :math:`c` of :data:`KNOWN_GRID` in turn, one
    kept only when it lowers their pooled RMSE by more than :data:`MIN_GAIN` below the best
    before it. None (the scale stays 1) when the model has no attribute-path neighbours, or
    fewer than :data:`MIN_TASKS` such carved tasks. ``tried``: ``{"scale", "rmse",
    "scenarios"}`` of every scale scored. The model's ``fit_info["known_item_path_scale"]``
    is left at the chosen scale."""
    m = model.config.model
    state = model.state
    if (m.neighbor_k == 0 or not m.use_graph or state.nbr_sim is None
            or not len(state.nbr_sim)
            or sum(len(carved.tasks.get(s, [])) for s in KNOWN_ITEM_SCENARIOS) < MIN_TASKS):
        return None
    tried: list[dict[str, Any]] = []
    best, best_score = 1.0, np.inf
    for scale in (1.0, *(c for c in KNOWN_GRID if c != 1.0)):
        model.fit_info["known_item_path_scale"] = scale
        rmse, by_scenario = new_item_rmse(model, carved, KNOWN_ITEM_SCENARIOS)
        tried.append({"scale": scale, "rmse": rmse, "scenarios": by_scenario})
        if rmse < best_score - MIN_GAIN:
            best, best_score = scale, rmse
    model.fit_info["known_item_path_scale"] = best
    return best, tried
