"""Catalogue extension: products added after training get a state and neighbours without
retraining (:meth:`graph_meta.model.GraphMetaRecommender.add_items`,
``graph-meta add-items``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from graph_meta.dataset import Dataset
from graph_meta.fitting.graphs import build_graph
from graph_meta.fitting.priors import side_prior
from graph_meta.graph.neighborhood import ItemNeighbors
from graph_meta.serving.neighborhood import attribute_neighbors

if TYPE_CHECKING:
    from graph_meta.model import GraphMetaRecommender

__all__ = ["add_items"]


def add_items(model: GraphMetaRecommender, dataset: Dataset) -> list[str]:
    """What :meth:`GraphMetaRecommender.add_items` runs (its docstring says what a new
    item gets and what is raised)."""
    known = set(model.item_ids)
    ids = dataset.items.index.astype(str)
    new_ids = [i for i in ids if i not in known]
    if not new_ids:
        return []
    targets = model.state.prior_targets
    if targets is None:
        raise RuntimeError("this model keeps no side-feature prior to extend (trained with "
                           "train.linear_prior_alpha = 0, train.als_iters = 0 or "
                           "train.refit = false, or saved by an older version): run "
                           "`graph-meta train` again to score the new items")
    missing = sorted(known - set(ids))
    if missing:
        raise KeyError(f"item {missing[0]!r} of the model is not in the dataset's items "
                       f"({len(missing)} missing): pass the whole catalogue")
    all_ids = [*model.item_ids, *new_ids]
    n_old, d_state = len(model.item_ids), targets.shape[1]
    counts = np.zeros(len(all_ids))
    counts[:n_old] = np.bincount(model.state.hist_items, minlength=n_old)
    full_targets = np.zeros((len(all_ids), d_state))
    full_targets[:n_old] = targets
    base = side_prior(dataset, model.config, "Item", all_ids, counts, full_targets,
                      model.state.prior_information)
    # attribute-path neighbours of the new items, in the model's item positions
    m = model.config.model
    k = m.neighbor_k if m.use_graph else 0
    rows_new: ItemNeighbors | None = None
    if k:
        data = build_graph(dataset, text_dim=m.text_dim)
        graph_ids = [str(i) for i in data.node_ids["Item"]]
        lists = attribute_neighbors(data, model.config, model.path_weights)
        pos = {i: p for p, i in enumerate(all_ids)}
        to_model = np.array([pos[i] for i in graph_ids])
        graph_pos = {i: g for g, i in enumerate(graph_ids)}
        parts = [(to_model[lists.indices[lists.indptr[g]:lists.indptr[g + 1]]],
                  lists.sim[lists.indptr[g]:lists.indptr[g + 1]])
                 for g in (graph_pos[i] for i in new_ids)]
        sizes = np.array([len(cols) for cols, _ in parts], dtype=np.int64)
        cols = np.concatenate([cols for cols, _ in parts])
        sims = np.concatenate([sim for _, sim in parts])
        order = np.lexsort((cols, np.repeat(np.arange(len(parts)), sizes)))
        rows_new = ItemNeighbors(np.r_[0, np.cumsum(sizes)], cols[order], sims[order])
    c = model.state
    c.item_states = np.vstack([c.item_states, base[n_old:]])
    c.prior_targets = full_targets
    n_new = len(new_ids)
    for prefix, extra in (("nbr", rows_new), ("nbr_rated", None), ("reg", None)):
        indptr = c[f"{prefix}_indptr"]
        add_ptr = (np.zeros(n_new, np.int64) if extra is None
                   else extra.indptr[1:].astype(np.int64))
        c[f"{prefix}_indptr"] = np.r_[indptr, indptr[-1] + add_ptr]
        if extra is not None:
            c[f"{prefix}_indices"] = np.r_[c[f"{prefix}_indices"],
                                           extra.indices].astype(np.int32)
            c[f"{prefix}_sim"] = np.r_[c[f"{prefix}_sim"], extra.sim].astype(np.float32)
    model.item_ids = all_ids
    model.item_pos = {i: p for p, i in enumerate(all_ids)}
    model.neighborhood.reset()
    model.live_state.catalogue_grew(new_ids)
    model.fit_info["items_added"] = model.fit_info.get("items_added", 0) + n_new
    return new_ids
