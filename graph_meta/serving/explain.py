r"""Which graph paths a prediction leaned on: the neighbourhood correction split by path type.

A prediction is the adapted backbone plus the neighbourhood correction
(:mod:`graph_meta.serving.neighborhood`):

.. math:: \hat r_{uj} = \text{base}_{uj}
          + \frac{\sum_h (s_{jh}^p + \gamma\, c_{jh}^p)\, e_{uh}}
                 {\beta + \sum_h (s_{jh}^p + \gamma\, c_{jh}^p)}
          + \sum_h e_{uh} B_{hj},

:math:`s` the attribute-path cosine, :math:`c` the co-rating one, :math:`B` the learned
co-rating weights. The attribute cosine is a sum over the profile blocks,
:math:`s_{jh} = \sum_X \langle f^X_j, f^X_h\rangle / (\lVert f_j\rVert \lVert f_h\rVert)`
(one block per attribute type, and ``CO_ENGAGED``, each scaled by the weight chosen at fit:
:mod:`graph_meta.fitting.path_weights`), plus :math:`w\, l_{jh}` where an item-item relation
file links the two (``model.neighbor_relation_weight``; under ``"relation links"``), so each
neighbour's :math:`s_{jh}^p` is shared among the path types in proportion to their terms.
:func:`path_contributions` returns the parts, which add up to what
:meth:`~graph_meta.model.GraphMetaRecommender.predict` returns (after ratings observed through
``observe``, a new item's live co-rating neighbours count under ``"co-rating"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from graph_meta.errors import UnknownItemError
from graph_meta.graph.neighborhood import (
    ItemNeighbors,
    path_blocks,
    relation_links,
    residual_correction,
    weighted_blocks,
)
from graph_meta.serving.state import rating

__all__ = ["CO_RATING", "LEARNED", "RELATION_LINKS", "path_contributions"]

CO_RATING = "co-rating"  #: the co-rating neighbours' part
LEARNED = "learned co-rating"  #: the learned co-rating weights' part
RELATION_LINKS = "relation links"  #: the item-item relation files' links' part


def path_contributions(model: Any, data: Any, user_id: str,
                       support: Sequence[tuple[str, float]], item_id: str) -> dict[str, float]:
    """``{"base", <path type>..., "co-rating", "learned co-rating", "prediction"}`` for one
    user (adapted to ``support``) and one item; every part but ``"prediction"`` sums to it.

    Args:
        model: a fitted :class:`~graph_meta.model.GraphMetaRecommender`.
        data: the graph the model's neighbour lists came from (``build_graph`` of its
            training view, or the store's snapshot): its attribute edges give the blocks.
        user_id, support: as for ``predict``.
        item_id: the item to explain.

    Raises:
        UnknownItemError: ``item_id`` is not in the model's catalogue.
    """
    pos = model.item_pos.get(str(item_id))
    if pos is None:
        raise UnknownItemError(str(item_id))
    c, m = model.state, model.config.model
    theta, head = model.adapt_user(user_id, support)
    base = float(rating(float(c.mu), head, theta, c.item_states[pos][None])[0])
    out: dict[str, float] = {"base": base}
    nbhd = model.neighborhood
    weights, regression = nbhd.weights(), nbhd.regression()
    rated, error = nbhd.user_residuals(user_id, model._support_arrays(support), theta, head)
    n = len(c.item_states)
    residual, known = np.zeros(n), np.zeros(n)
    np.add.at(residual, rated, error)
    np.add.at(known, rated, 1.0)
    blocks = path_blocks(data, m.use_co_engaged, m.use_relations) if m.use_graph else {}
    link_weight = m.relation_link_weight() if m.use_graph else 0.0
    links = relation_links(data) if link_weight else None
    if links is not None and not links.nnz:
        links = None
    names = list(blocks) + ([RELATION_LINKS] if links is not None else [])
    for name in names:
        out[name] = 0.0
    out[CO_RATING] = 0.0
    if weights is not None:
        row = weights[pos]
        if model.live.by_item:  # a new item's co-rating neighbours from observed raters
            row = row + model.live_state.corating(np.array([pos]))
        total = float(residual_correction(row, residual, known, m.neighbor_shrink)[0])
        denominator = m.neighbor_shrink + float((row @ known)[0])
        attr = ItemNeighbors(c.nbr_indptr, c.nbr_indices, c.nbr_sim).weights(
            m.neighbor_power)[pos]
        cols, s_p = attr.indices, attr.data
        if (c.hist_items == pos).any():  # an item with training ratings: the known-item scale
            s_p = s_p * model.known_item_path_scale
        if len(cols):
            # s_jh = sum over blocks of <f^X_j, f^X_h> / (|f_j| |f_h|): each block's share
            scaled = weighted_blocks(blocks, model.path_weights)
            rows = np.r_[pos, cols]
            dots = {x: np.asarray((b[pos] @ b[cols].T).todense()).ravel()
                    for x, b in scaled.items()}
            norms = np.sqrt(sum(np.asarray(b[rows].multiply(b[rows]).sum(axis=1)).ravel()
                                for b in scaled.values()))
            norms[norms == 0] = 1.0
            terms = np.stack(list(dots.values())) / (norms[0] * norms[1:])
            parts = list(dots)
            if links is not None:  # s_jh = cosine + w l_jh (ItemNeighbors.joined)
                linked = link_weight * np.asarray(links[pos][:, cols].todense()).ravel()
                terms = np.vstack([terms, linked])
                parts.append(RELATION_LINKS)
            share = terms / np.maximum(terms.sum(axis=0), 1e-300)
            for k, name in enumerate(parts):
                out[name] = float((s_p * share[k] * residual[cols]).sum() / denominator)
        out[CO_RATING] = total - sum(out[x] for x in names)
    out[LEARNED] = float((regression[0][pos] @ residual)[0]) if regression is not None else 0.0
    out["prediction"] = sum(out.values())
    rating_map = model.rating_map  # on the dataset's scale: the levels mapped, the shares scaled
    return {k: float(rating_map.to_external(v) if k in ("base", "prediction")
                     else rating_map.difference_to_external(v)) for k, v in out.items()}
