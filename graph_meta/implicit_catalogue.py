r"""Products added after training join the implicit model's catalogue without retraining
(:meth:`graph_meta.implicit.GraphMetaImplicit.add_items`, ``graph-meta add-items``).

A new item gets what an item without training positives gets at fit time: the graph prior
and the side-feature ridge map of :meth:`~graph_meta.implicit.GraphMetaImplicit._item_priors`
(:func:`graph_meta.implicit_prior.side_prior`), computed over the extended catalogue (the
model's items in their order, then the new ones) from the model's own training positives and
warm factors, mixed by the model's :math:`\mu` into :math:`\hat y_i` and :math:`\hat b_i`,
and its values among those the attribute links were learned on
(:meth:`graph_meta.implicit_attributes.AttributeLinks.extended`). Only the new items' rows
are taken; every existing item keeps its factors and bias, and every user their state.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from graph_meta.dataset import Dataset
from graph_meta.implicit_baselines.data import item_features
from graph_meta.implicit_prior import GraphPrior

if TYPE_CHECKING:
    from graph_meta.implicit import GraphMetaImplicit

__all__ = ["add_items"]


def add_items(model: GraphMetaImplicit, dataset: Dataset) -> list[str]:
    """What :meth:`GraphMetaImplicit.add_items` runs (its docstring says what a new item
    gets and what is raised)."""
    if not hasattr(model, "data"):
        raise RuntimeError("the implicit model is not fitted: fit it (or `graph-meta train`) "
                           "before adding items")
    if not hasattr(model, "_cold"):
        raise RuntimeError("this implicit model keeps no item prior to extend (saved by an "
                           "older version): run `graph-meta train` again to score the new "
                           "items")
    d = model.data
    old_ids = [str(i) for i in d.item_ids]
    known = set(old_ids)
    frame = dataset.items.copy()
    frame.index = frame.index.astype(str)
    new_ids = list(dict.fromkeys(i for i in frame.index if i not in known))
    if not new_ids:
        return []
    present = set(frame.index)
    missing = [i for i in old_ids if i not in present]
    if missing:
        raise KeyError(f"item {missing[0]!r} of the model is not in the dataset's items "
                       f"({len(missing)} missing): pass the whole catalogue")
    frame = frame.loc[~frame.index.duplicated(keep="last")]
    all_ids = [*old_ids, *new_ids]
    n_new = len(new_ids)
    # the model's training positives over the extended catalogue: the new items have none
    b = d.by_user
    grown = dataclasses.replace(
        d, item_ids=d.item_ids.append(pd.Index(new_ids, dtype=object)),
        by_user=sp.csr_matrix((b.data, b.indices, b.indptr), shape=(b.shape[0], len(all_ids))),
        item_count=np.r_[d.item_count, np.zeros(n_new, dtype=d.item_count.dtype)])
    view = dataclasses.replace(dataset, items=frame.loc[all_ids])
    y_trained = np.vstack([model.y_trained, np.zeros((n_new, model.y_trained.shape[1]))])
    prior, cold = model._item_priors(view, grown, item_features(view, grown), y_trained)
    # existing items keep their rows; the new items' rows are the fit-time prior's
    old_prior: GraphPrior = model.item_prior
    old_cold = model._cold
    cold = tuple(np.concatenate([o, c[len(old_ids):]]) for o, c in zip(old_cold, cold,
                                                                       strict=True))
    item_prior = GraphPrior(old_prior.names, old_prior.beta, old_prior.beta_pop,
                            np.concatenate([old_prior.prior, prior.prior[len(old_ids):]]),
                            None if old_prior.pop is None
                            else np.concatenate([old_prior.pop, prior.pop[len(old_ids):]]))
    links = (None if model.attribute_links is None
             else model.attribute_links.extended(view, grown.item_ids))
    # nothing above changed the model: now swap everything in
    model.data, model.y_trained = grown, y_trained
    model.attribute_links = links
    model.item_prior, model._cold = item_prior, cold
    # y and the new-item bias from _cold (observed positives on the new items count now)
    model._set_graph_mix(model.graph_mix)
    model.params["items_added"] = model.params.get("items_added", 0) + n_new
    return new_ids
