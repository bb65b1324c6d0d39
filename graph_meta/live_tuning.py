r"""How fast an item follows the ratings observed after training, chosen out of sample.

:meth:`graph_meta.model.GraphMetaRecommender.observe` updates an item from its prior with
precision :math:`s\,\Lambda_I` (:math:`\Lambda_I` the item precision meta-training learned,
:math:`s` = ``model.live_precision``). Meta-training moves :math:`\Lambda_I` little in the few
epochs early stopping allows, so with ``model.live_precision = 0`` (auto) the scale :math:`s`
is chosen at fit time on the carved validation (:func:`graph_meta.eval.protocol.
carve_validation`): its held-out items are new to the model trained on the carved train, so
their priors are out of sample. Each held-out item's ratings by known users (from the carved
``item_cold`` tasks, supports and queries alike) are shuffled, the first :math:`k` folded in
as :meth:`observe` would (posterior update, then the item learner's steps,
:func:`graph_meta.serving.adapt.item_steps`) and the rest
predicted, for :math:`k` in :data:`FIRST_RATINGS`; :math:`s` minimises the mean squared error
over those (item, :math:`k`) cases.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graph_meta.dataset import Dataset
from graph_meta.serving.adapt import new_item_state, rater_rows_targets

__all__ = ["FIRST_RATINGS", "SCALES", "choose_live_precision"]

#: how many ratings a held-out item has received when the rest are predicted
FIRST_RATINGS: tuple[int, ...] = (1, 2, 3, 5, 8, 12, 20, 30)
#: candidate scales :math:`s`
SCALES: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0)


def choose_live_precision(model: Any, carved: Dataset, *, seed: int = 0,
                          min_items: int = 5) -> tuple[float, dict[float, float]] | None:
    """``(s, {s: mse})`` for a model fitted on ``carved``'s training view (its prediction
    cache built), or None when fewer than ``min_items`` held-out items have 3 ratings by
    known users."""
    c = model.state
    n_items = len(model.item_ids)
    trained = np.bincount(c.hist_items, minlength=n_items) > 0
    by_item: dict[int, list[tuple[int, float]]] = {}
    for task in carved.tasks.get("item_cold", []):
        u = model.user_pos.get(str(task.user_id))
        if u is None:
            continue
        for item, r in [*task.support, *task.query]:
            p = model.item_pos.get(str(item))
            if p is not None and not trained[p]:
                by_item.setdefault(p, []).append((u, float(r)))
    cases = {p: v for p, v in by_item.items() if len(v) >= 3}
    if len(cases) < min_items:
        return None
    theta_all = model.live_state.base_history_states()
    lam = c.item_precision
    kappa = model.config.meta.support_shrink
    rng = np.random.default_rng(seed)
    errors: dict[float, list[float]] = {s: [] for s in SCALES}
    for p in sorted(cases):
        pairs = cases[p]
        order = rng.permutation(len(pairs))
        users = np.array([pairs[k][0] for k in order])
        y = np.array([pairs[k][1] for k in order])
        theta = theta_all[users]
        rows, t = rater_rows_targets(c, theta, y)
        prior = c.item_states[p]
        for k in FIRST_RATINGS:
            if k >= len(y):
                break
            for s in SCALES:
                state = new_item_state(c, prior, theta[:k], y[:k], shrink=kappa,
                                       precision=s * lam)
                errors[s].append(float(np.mean((rows[k:] @ state - t[k:]) ** 2)))
    mse = {s: float(np.mean(v)) for s, v in errors.items() if v}
    if not mse:
        return None
    return min(mse, key=mse.__getitem__), mse
