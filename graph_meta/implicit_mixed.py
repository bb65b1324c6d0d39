r"""Where new items go in a list that also holds items with training positives: the offset
:math:`\delta` of :meth:`graph_meta.implicit.GraphMetaImplicit.kind_scores`, chosen at fit time
on the carve (:func:`tune_mixed_offset`), and the share of positives to expect on new items
that weighs the two kinds of pseudo-task (:func:`new_item_share`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graph_meta.dataset import Dataset
from graph_meta.implicit_baselines.data import interactions

__all__ = ["new_item_share", "tune_mixed_offset"]


def new_item_share(model: Any, dataset: Dataset) -> float:
    r"""The share of a user's positives to expect on new items in the catalogue of
    ``dataset``: with :math:`\rho` the positives per item the carve made new over
    those per item it kept (both counted in ``dataset``'s training positives),
    :math:`\rho n_{new} / (\rho n_{new} + n_{old})` over ``dataset``'s items without
    and with training rows."""
    full = interactions(dataset)
    at = model.data.items_of(full.item_ids)
    carved = np.where(at >= 0, ~model.data.item_in_train[at], False) & full.item_in_train
    kept = full.item_in_train & ~carved
    if not carved.any() or not kept.any():
        return 0.0
    rho = full.item_count[carved].mean() / full.item_count[kept].mean()
    n_new = float((~full.item_in_train).sum())
    return float(rho * n_new / (rho * n_new + kept.sum() + carved.sum()))

def tune_mixed_offset(model: Any, data: Dataset, new_share: float, *, top_n: int = 20,
                      max_tasks: int = 300) -> dict[str, Any]:
    r"""Choose :math:`\delta` (:meth:`~graph_meta.implicit.GraphMetaImplicit.kind_scores`)
    of ``model`` and set it: by recall@``top_n`` of the pseudo-tasks of every scenario of
    ``data`` ranked over the whole catalogue (the user's training positives and support left
    out): the queries of the warm scenarios
    sit on items with training rows, those of the cold-item ones on new items, so too
    high an offset loses the former and too low one the latter. The tasks whose queries
    are new items weigh ``new_share`` in all (:func:`new_item_share`), the others the
    rest. Only the two kinds' top
    ``top_n`` of each task can enter its list, so every offset on a fine grid (401 points
    over the range where the two kinds' lists cross) is scored at once; kept is the
    highest offset within one standard error of the best (over the tasks), so new items
    get every place the carve cannot tell from the best."""
    model.mixed_offset = 0.0
    trained = model.data.item_in_train
    if trained.all() or not trained.any():
        return {}
    rows, is_new, hit, n_rel, wants_new = [], [], [], [], []
    for tasks in data.tasks.values():
        for task in tasks[:max_tasks]:
            query = model.data.items_of([str(i) for i, _ in task.query])
            query = query[query >= 0]
            if not len(query):
                continue
            support = [str(i) for i, _ in task.support]
            scores = model.kind_scores(task.user_id, support)
            drop = np.concatenate([model.data.history(task.user_id)[0],
                                   model._support(support)])
            scores[drop] = -np.inf
            relevant = np.zeros(len(scores), dtype=bool)
            relevant[query] = True
            top = np.concatenate([
                kind[np.argsort(-scores[kind], kind="stable")[:top_n]]
                for kind in (np.flatnonzero(trained), np.flatnonzero(~trained))])
            rows.append(scores[top])
            is_new.append(~trained[top])
            hit.append(relevant[top])
            n_rel.append(min(len(query), top_n))
            wants_new.append((~trained[query]).mean() > 0.5)
    cold = np.asarray(wants_new)
    if not cold.any() or cold.all():
        return {}
    weight = np.where(cold, new_share / cold.sum(), (1.0 - new_share) / (~cold).sum())
    width = max(len(r) for r in rows)

    def pad(parts: list[np.ndarray], fill: Any) -> np.ndarray:
        return np.stack([np.pad(p, (0, width - len(p)), constant_values=fill)
                         for p in parts])

    score, new, rel = pad(rows, -np.inf), pad(is_new, False), pad(hit, False)
    finite = np.isfinite(score)
    old_s, new_s = score[finite & ~new], score[finite & new]
    if not len(old_s) or not len(new_s):
        return {}
    grid = np.linspace(old_s.min() - new_s.max(), old_s.max() - new_s.min(), 401)
    per_task = np.empty((len(grid), len(rows)))
    for g, delta in enumerate(grid):
        adj = np.where(new, score + delta, score)
        top = np.argsort(-adj, axis=1, kind="stable")[:, :top_n]
        found = np.take_along_axis(rel & np.isfinite(adj), top, axis=1).sum(axis=1)
        per_task[g] = found / np.asarray(n_rel)
    recall = per_task @ weight
    best = int(np.argmax(recall))
    # one standard error: the highest offset as good as the best within the noise, so
    # new items get every place the carve cannot tell from the best
    se = float(np.sqrt(weight ** 2 @ (per_task[best] - recall[best]) ** 2))
    model.mixed_offset = float(grid[np.flatnonzero(recall >= recall[best] - se)[-1]])
    return {"mixed_offset": round(model.mixed_offset, 5),
            "pseudo_mixed_recall@20": round(float(recall[best]), 5),
            "pseudo_mixed_recall@20_chosen": round(float(
                recall[np.argmin(np.abs(grid - model.mixed_offset))]), 5),
            "pseudo_mixed_recall@20_at_0": round(float(recall[np.argmin(np.abs(grid))]), 5),
            "mixed_tuned_on": len(rows), "mixed_new_share": round(new_share, 5)}
