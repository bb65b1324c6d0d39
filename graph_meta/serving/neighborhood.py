r"""The neighbourhood correction at serving (:mod:`graph_meta.graph.neighborhood`): after
adaptation, a prediction moves toward the user's residuals on the rated neighbours of the
item, along attribute paths and co-rating paths (:math:`\sum_h s_{jh}^p e_{uh} / (\beta +
\sum_h s_{jh}^p)`), plus the learned co-rating weights (:math:`\sum_h e_{uh} B_{hj}`).

:class:`Neighborhood` builds the weight matrices from the predictor state's neighbour lists
(once per list and setting) and computes the correction for one user and some or all items
(:meth:`Neighborhood.for_user`, what ``predict`` and ``score_all_items`` add) or for one item
and every known user (:meth:`Neighborhood.for_item`, what ``score_all_users`` adds). The
residuals include the user's observed ratings, and a new item's live co-rating neighbours
join its row (:class:`graph_meta.live_state.LiveState`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from graph_meta.graph.neighborhood import ItemNeighbors, residual_correction
from graph_meta.serving.state import rating

if TYPE_CHECKING:
    from graph_meta.model import GraphMetaRecommender

__all__ = ["Neighborhood", "attribute_neighbors", "graph_neighbors"]


class Neighborhood:
    """The neighbourhood correction of ``model`` (it reads the model's state and config when
    asked; the weight matrices are kept until their lists or settings change)."""

    def __init__(self, model: GraphMetaRecommender) -> None:
        self.model = model
        self.reset()

    def reset(self) -> None:
        """Drop the weight matrices (the neighbour lists changed)."""
        # ((sim, rated) lists, (p, weight, known-item scale), s^p CSR, s^p CSC) and
        # (weights, CSR, CSC)
        self._nbr: tuple[Any, tuple[float, float, float], sp.csr_matrix,
                         sp.csc_matrix] | None = None
        self._reg: tuple[np.ndarray, sp.csr_matrix, sp.csc_matrix] | None = None

    def regression(self) -> tuple[sp.csr_matrix, sp.csc_matrix] | None:
        """The learned co-rating weights :math:`W_{jh} = B_{hj}` (CSR and CSC); None when
        off (``regression_l2 = 0``, ``neighbor_k = 0``, or not in the cache)."""
        c = self.model.state
        weight = c.reg_weight
        m = self.model.config.model
        if weight is None or not len(weight) or m.regression_l2 == 0 or m.neighbor_k == 0:
            return None
        if self._reg is None or self._reg[0] is not weight:
            w = ItemNeighbors(c.reg_indptr, c.reg_indices, weight).weights(1.0)
            self._reg = (weight, w, sp.csc_matrix(w))
        return self._reg[1], self._reg[2]

    def weights(self) -> sp.csr_matrix | None:
        """:math:`s^p` of the attribute-path neighbours (times the known-item path scale
        :math:`c` in the rows of items with training ratings,
        :attr:`~graph_meta.model.GraphMetaRecommender.known_item_path_scale`) plus
        ``neighbor_rated_weight`` times that of the co-rating neighbours; None when the
        correction is off (``model.neighbor_k = 0``, no graph, or a model saved without
        neighbours)."""
        c = self.model.state
        m = self.model.config.model
        sim, rated = c.nbr_sim, c.nbr_rated_sim
        gamma = m.neighbor_rated_weight
        use_rated = gamma > 0 and rated is not None and len(rated) > 0
        if m.neighbor_k == 0 or sim is None or not (len(sim) or use_rated):
            return None
        power, scale = m.neighbor_power, self.model.known_item_path_scale
        stale = (self._nbr is None or self._nbr[0][0] is not sim
                 or self._nbr[0][1] is not rated or self._nbr[1] != (power, gamma, scale))
        if stale:
            w = ItemNeighbors(c.nbr_indptr, c.nbr_indices, sim).weights(power)
            if scale != 1.0:
                known = np.bincount(c.hist_items, minlength=w.shape[0]) > 0
                w = sp.csr_matrix(sp.diags(np.where(known, scale, 1.0)) @ w)
            if use_rated:
                w = w + gamma * ItemNeighbors(c.nbr_rated_indptr, c.nbr_rated_indices,
                                              rated).weights(power)
            w = sp.csr_matrix(w)
            self._nbr = ((sim, rated), (power, gamma, scale), w, sp.csc_matrix(w))
        return self._nbr[2]

    def for_user(self, user_id: str, support: tuple[np.ndarray, np.ndarray],
                 theta: np.ndarray, head: np.ndarray, q: np.ndarray | None
                 ) -> np.ndarray | float:
        """The attribute-path residual correction (:mod:`graph_meta.graph.neighborhood`) of
        the query items ``q`` (None: every item) for a user adapted to ``(theta, head)``:
        residuals on the training history and the support move each item toward the errors
        made on its rated neighbours."""
        weights, regression = self.weights(), self.regression()
        if weights is None and regression is None:
            return 0.0
        c, live = self.model.state, self.model.live_state
        n = len(c.item_states)
        rated, error = self.user_residuals(user_id, support, theta, head)
        if not len(rated):
            return 0.0
        shrink = self.model.config.model.neighbor_shrink
        if q is None:  # every item: only the rated items' columns of the weights matter
            cols, inverse = np.unique(rated, return_inverse=True)
            residual = np.bincount(inverse, error, minlength=len(cols))
            known = np.bincount(inverse, minlength=len(cols)).astype(np.float64)
            out = np.zeros(n)
            if weights is not None:
                assert self._nbr is not None
                out += residual_correction(self._nbr[3][:, cols], residual, known, shrink)
                fresh = live.new_items_with_raters()
                if len(fresh):  # as predict: their live co-rating neighbours join
                    full_r, full_k = np.zeros(n), np.zeros(n)
                    full_r[cols], full_k[cols] = residual, known
                    rows = weights[fresh] + live.corating(fresh)
                    out[fresh] = residual_correction(rows, full_r, full_k, shrink)
            if regression is not None:
                out += regression[1][:, cols] @ residual
            return out
        # an item rated twice (history and support, or twice in the support) counts twice,
        # as in the fold-in
        residual = np.zeros(n)
        known = np.zeros(n)
        np.add.at(residual, rated, error)
        np.add.at(known, rated, 1.0)
        out = np.zeros(len(q))
        valid = q >= 0
        if valid.any():
            if weights is not None:
                rows = weights[q[valid]]
                if self.model.live.by_item:
                    rows = rows + live.corating(q[valid])
                out[valid] = residual_correction(rows, residual, known, shrink)
            if regression is not None:
                out[valid] += regression[0][q[valid]] @ residual
        return out

    def user_residuals(self, user_id: str, support: tuple[np.ndarray, np.ndarray],
                       theta: np.ndarray, head: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(items [R], e [R])``: the items the user rated (training history, then the
        support, then observed ratings, which replace a history rating of the same item) and
        the residual :math:`e_{uh} = r_{uh} - \\hat r_{uh}` of each under ``(theta, head)``."""
        c, live = self.model.state, self.model.live_state
        u = self.model.user_pos.get(str(user_id), -1)
        s_idx, s_y = support
        known_s = s_idx >= 0
        rated, y = s_idx[known_s], s_y[known_s]
        live_pos, live_y = live.user_rows(user_id)
        if u >= 0:
            lo, hi = c.hist_indptr[u], c.hist_indptr[u + 1]
            keep = ~np.isin(c.hist_items[lo:hi], live_pos)  # replaced by an observed one
            rated = np.concatenate([c.hist_items[lo:hi][keep], rated])
            y = np.concatenate([c.hist_y[lo:hi][keep], y])
        rated, y = np.concatenate([rated, live_pos]), np.concatenate([y, live_y])
        return rated, y - rating(float(c.mu), head, theta, c.item_states[rated])

    def for_item(self, pos: int, theta: np.ndarray) -> np.ndarray | float:
        """``[N_U]`` the correction of item ``pos`` for every known user in state ``theta``
        ``[N_U, D]`` (their history fold-ins), from every user's residuals on the items that
        weigh on ``pos`` (only those columns are read)."""
        weights, regression = self.weights(), self.regression()
        if weights is None and regression is None:
            return 0.0
        c = self.model.state
        items, mu, head = c.item_states, float(c.mu), c.head0
        n = len(items)
        w_sim, w_reg = np.zeros(n), np.zeros(n)
        if weights is not None:
            row = weights[pos]
            if self.model.live.by_item:  # a new item's co-rating neighbours from observed raters
                row = row + self.model.live_state.corating(np.array([pos]))
            w_sim[row.indices] = row.data
        if regression is not None:
            row = regression[0][pos]
            w_reg[row.indices] = row.data
        cols = np.flatnonzero((w_sim != 0) | (w_reg != 0))
        num, den, learned = self.model.live_state.item_major().neighbour_sums(
            cols, theta, items, mu, head, w_sim, w_reg)
        return num / (den + self.model.config.model.neighbor_shrink) + learned


def attribute_neighbors(data: Any, config: Any,
                        type_weights: Mapping[str, float] | None = None) -> ItemNeighbors:
    """The attribute-path neighbour lists of graph ``data`` as the model's config shapes them
    (``model.neighbor_k``, ``use_co_engaged``, ``use_relations``, the relation links'
    weight); empty when off
    (``model.neighbor_k = 0`` or ``model.use_graph = false``). ``type_weights``: the path
    types' weights (:meth:`ItemNeighbors.from_blocks`; None: every attribute type 1,
    ``CO_ENGAGED`` 0)."""
    m = config.model
    k = m.neighbor_k if m.use_graph else 0
    if not k:
        n = int(data["Item"].num_nodes)
        return ItemNeighbors(np.zeros(n + 1, np.int64), np.zeros(0, np.int64), np.zeros(0))
    return ItemNeighbors.from_graph(data, top_k=k, type_weights=type_weights,
                                    use_co_engaged=m.use_co_engaged,
                                    relation_weight=m.relation_link_weight(),
                                    use_relations=m.use_relations)


def graph_neighbors(data: Any, config: Any, type_weights: Mapping[str, float] | None = None
                    ) -> tuple[ItemNeighbors, ItemNeighbors]:
    """``(attribute-path, co-rating)`` neighbour lists of graph ``data``
    (:func:`attribute_neighbors`; the co-rating lists empty when off too, and with ``model.
    neighbor_rated_weight = 0``)."""
    m = config.model
    k_rated = m.neighbor_k if m.use_graph and m.neighbor_rated_weight > 0 else 0
    n = int(data["Item"].num_nodes)
    empty = ItemNeighbors(np.zeros(n + 1, np.int64), np.zeros(0, np.int64), np.zeros(0))
    return (attribute_neighbors(data, config, type_weights),
            ItemNeighbors.from_ratings(data, top_k=k_rated) if k_rated else empty)
