r"""The new items' side-feature prior, its ridge and its lean toward new releases, chosen out
of sample.

A new item starts from the closed-form ridge map of its side features onto the ALS states
(:func:`graph_meta.fitting.priors.side_prior`, ridge :math:`\alpha` =
``train.linear_prior_alpha``), fitted with rows weighted by :math:`e^{\beta q_i}`,
:math:`q_i` the release quantile (:math:`\beta` = ``train.prior_newest_bias``), then corrected
by the gated GNN. How far the map should lean toward the newest releases, and how hard it
should be shrunk, depends on the catalogue: where new items resemble the latest releases (a
film catalogue) a strong lean pays, where the releases carry no drift it only throws rows
away. With ``train.prior_search`` both are chosen at fit time on the carved validation
(:func:`graph_meta.eval.protocol.carve_validation`, whose held-out items are the newest
training items): the model trained on the carved train swaps its held-out items' base prior
for the one each candidate of :data:`ALPHAS` x :data:`NEWEST_BIASES` gives (the GNN's
correction kept) and predicts the carved tasks with new items
(:func:`graph_meta.fitting.path_weights.new_item_rmse`); the configured pair is kept unless
another lowers that RMSE by more than :data:`~graph_meta.fitting.path_weights.MIN_GAIN`.
The refit then trains with the chosen pair (the saved config holds it); ``model.fit_info
["item_prior"]`` keeps every pair tried.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graph_meta.dataset import Dataset
from graph_meta.fitting.path_weights import MIN_GAIN, MIN_TASKS, NEW_ITEM_SCENARIOS, new_item_rmse
from graph_meta.fitting.priors import release_weights, side_prior

__all__ = ["ALPHAS", "NEWEST_BIASES", "choose_item_prior"]

#: candidate ridges :math:`\alpha` of the item side-feature map
ALPHAS: tuple[float, ...] = (3.0, 10.0, 30.0, 100.0)
#: candidate leans :math:`\beta` toward the newest releases (0: every release alike)
NEWEST_BIASES: tuple[float, ...] = (0.0, 4.0, 16.0)


def choose_item_prior(model: Any, train_view: Dataset, carved: Dataset
                      ) -> dict[str, Any] | None:
    """``{"linear_prior_alpha", "prior_newest_bias", "tried"}`` for a model fitted on
    ``train_view`` (``carved``'s training view; its prediction cache built); None when the
    config has no side-feature prior (``train.linear_prior_alpha = 0``), the cache keeps no
    ALS targets, or the carve holds fewer than :data:`~graph_meta.fitting.path_weights.
    MIN_TASKS` tasks with held-out items. The cache's held-out item states are
    left as the chosen pair gives them. ``tried``: ``{"alpha", "bias", "rmse",
    "scenarios"}`` of every pair scored."""
    cfg, c = model.config, model.state
    targets = c.prior_targets
    if cfg.train.linear_prior_alpha <= 0 or targets is None or model.net is None:
        return None
    ids = list(model.item_ids)
    counts = np.bincount(c.hist_items, minlength=len(ids)).astype(np.float64)
    new = counts == 0
    new_item_tasks = sum(len(carved.tasks.get(s, [])) for s in NEW_ITEM_SCENARIOS)
    if not new.any() or new_item_tasks < MIN_TASKS:
        return None
    t = cfg.train
    current = (float(t.linear_prior_alpha), float(t.prior_newest_bias))
    # no release order: the lean changes nothing, only the ridge is chosen
    biases = (NEWEST_BIASES if release_weights(train_view, ids, 1.0) is not None
              else (current[1],))
    base_now = model.net.item_base.detach().double().cpu().numpy()
    states = c.item_states.copy()
    tried: list[dict[str, Any]] = []
    scores: dict[tuple[float, float], float] = {}
    rows: dict[tuple[float, float], np.ndarray] = {}
    for pair in [current, *((a, b) for a in ALPHAS for b in biases)]:
        if pair in scores:
            continue
        trial = cfg.replace(**{"train.linear_prior_alpha": pair[0],
                               "train.prior_newest_bias": pair[1]})
        base = side_prior(train_view, trial, "Item", ids, counts, targets)
        rows[pair] = states[new] - base_now[new] + base[new]
        c.item_states[new] = rows[pair]
        scores[pair], by_scenario = new_item_rmse(model, carved)
        tried.append({"alpha": pair[0], "bias": pair[1], "rmse": scores[pair],
                      "scenarios": by_scenario})
    best = min(scores, key=scores.__getitem__)
    if scores[best] > scores[current] - MIN_GAIN:
        best = current
    c.item_states[new] = rows[best]
    model.neighborhood.reset()
    return {"linear_prior_alpha": best[0], "prior_newest_bias": best[1], "tried": tried}
