r"""How much a never-exposed user's implicit "no" weighs in a new item's live step: the
exposure weight :math:`\omega`, chosen at fit time out of sample.

A new item (no training positive) that receives takers after training gets the iALS item
step over them toward its prior (:meth:`graph_meta.implicit.GraphMetaImplicit.observe`,
:meth:`graph_meta.implicit_baselines.ImplicitALS.observe`). In iALS every user who did not
take the item is a negative of confidence 1 (the :math:`X^\top X` term), which for a product
only just put on sale mostly means "not shown yet": with one or two takers the step pulls the
item far from its prior. :math:`\omega` scales that term
(:func:`graph_meta.ials.fold_in`'s ``gram_weight``; the takers keep their confidence):

.. math:: y_i = \Big(\omega X^\top X + \sum_u (1 - \omega + \alpha w_{ui}) x_u x_u^\top
          + \lambda I\Big)^{-1} \Big(\sum_u (1 + \alpha w_{ui}) x_u + \lambda \hat y_i\Big).

:func:`choose_exposure_weight` picks it as :mod:`graph_meta.live_tuning` picks the rating
model's live precision: on the carve the model was tuned on, whose held-out items are new to
it (their priors out of sample), each held-out item's takers (the carved ``item_cold``
tasks' users, supports and queries alike) are shuffled and its first :math:`k` folded in, for
:math:`k` in :data:`FIRST_TAKERS` and every held-out item at once (each with
:math:`\min(k, n - 1)` of its :math:`n` takers); each of the remaining takers then ranks the
carve's whole new-item pool (their own observed items left out), and :math:`\omega` maximises
the mean share of those found in the top 20 (per item, then over items and :math:`k`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graph_meta.dataset import Dataset
from graph_meta.ials import fold_in

__all__ = ["FALLBACK", "FIRST_TAKERS", "WEIGHTS", "choose_exposure_weight"]

#: how many takers a held-out item has been seen with when the rest are asked
FIRST_TAKERS: tuple[int, ...] = (1, 2, 3, 5, 10)
#: candidate :math:`\omega`
WEIGHTS: tuple[float, ...] = (0.0, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
#: :math:`\omega` when the carve has too few held-out items: the iALS step as it was
FALLBACK = 1.0


def _carved_takers(model: Any, carved: Dataset) -> dict[int, list[tuple[int, float]]]:
    """Held-out item position -> [(user position, weight)] from the carved ``item_cold``
    tasks (users the model knows; items without training positives in the model)."""
    d = model.data
    trained = d.item_in_train
    takers: dict[int, dict[int, float]] = {}
    for task in carved.tasks.get("item_cold", []):
        u = d.user_ids.get_indexer([str(task.user_id)])[0]
        if u < 0:
            continue
        items = [str(i) for i, _ in [*task.support, *task.query]]
        for p in d.items_of(items).tolist():
            if p >= 0 and not trained[p]:
                takers.setdefault(p, {})[u] = 1.0  # carved pairs are rated 1
    return {p: sorted(v.items()) for p, v in takers.items()}


def choose_exposure_weight(model: Any, carved: Dataset, *, seed: int = 0, top_n: int = 20,
                           min_items: int = 5) -> tuple[float, dict[str, Any]]:
    r"""``(omega, report)`` for a model fitted on ``carved``'s training view, no positive
    observed (module docstring). ``model`` supplies ``data``, ``x``, ``x0``, ``reg``,
    ``alpha`` and ``_new_item_view(users) -> (priors [items, f], user states [len(users),
    f], bias [items])``: how it ranks its new items. Fewer than ``min_items`` held-out items
    with 2 takers: :data:`FALLBACK`."""
    d = model.data
    cases = {p: v for p, v in _carved_takers(model, carved).items() if len(v) >= 2}
    if len(cases) < min_items:
        return FALLBACK, {"exposure_weight": FALLBACK,
                          "exposure_tuning": f"fallback: {len(cases)} held-out items "
                                             f"with 2 takers"}
    rng = np.random.default_rng(seed)
    order = {p: [v[k] for k in rng.permutation(len(v))] for p, v in sorted(cases.items())}
    users = np.unique([u for v in order.values() for u, _ in v])
    priors, user_states, bias = model._new_item_view(users)
    row_of = {u: r for r, u in enumerate(users.tolist())}
    pool = np.flatnonzero(~d.item_in_train)
    col_of = {p: c for c, p in enumerate(pool.tolist())}
    states = np.where(d.user_in_train[:, None], model.x, model.x0)
    gram = model.x.T @ model.x
    items = sorted(order)
    found: dict[float, list[float]] = {w: [] for w in WEIGHTS}
    for k in FIRST_TAKERS:
        asked = [p for p in items if len(order[p]) > k]
        if not asked:
            break
        # the users' own observed items are left out of their ranking
        seen = np.zeros((len(users), len(pool)), dtype=bool)
        for p in items:
            for u, _ in order[p][:min(k, len(order[p]) - 1)]:
                seen[row_of[u], col_of[p]] = True
        for w in WEIGHTS:
            y = priors[pool].copy()
            for p in items:
                first = order[p][:min(k, len(order[p]) - 1)]
                us = np.array([u for u, _ in first])
                conf = model.alpha * np.array([c for _, c in first])
                y[col_of[p]] = fold_in(states, gram, model.reg, us, conf, priors[p],
                                       gram_weight=w)
            scores = user_states @ y.T + bias[pool]
            scores[seen] = -np.inf
            for p in asked:
                rows = np.array([row_of[u] for u, _ in order[p][k:]])
                own = scores[rows, col_of[p]]
                above = (scores[rows] > own[:, None]).sum(axis=1)
                found[w].append(float(np.mean(above < top_n)))
    mean = {w: float(np.mean(v)) for w, v in found.items() if v}
    if not mean:
        return FALLBACK, {"exposure_weight": FALLBACK,
                          "exposure_tuning": "fallback: no held-out item to ask"}
    best = max(mean.values())
    omega = max(w for w, v in mean.items() if v == best)  # ties: the larger, nearer iALS
    return omega, {"exposure_weight": omega, "exposure_tuned_on": len(cases),
                   "pseudo_live_found@20": {str(w): round(v, 5) for w, v in mean.items()}}
