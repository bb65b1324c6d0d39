r"""Attribute links of the implicit model: what users who took items with some attribute values
go on to take, learned over the attribute nodes, so that it reaches items nobody has taken.

The item-item co-engagement links (:mod:`graph_meta.implicit_coengagement`) join only items
with training positives. One level up the graph the same regression joins *attribute nodes*
(a director, an actor, a category, a brand: the values of every item node column of
``dataset.json``), which new items share with old ones. With :math:`F \in \{0, 1\}^{N_I
\times V}` the items' values (a value held by fewer than ``min_items`` items with training
positives is left out; at most ``max_values`` values, the most held first) and
:math:`X` the binary training positives, the users' attribute profiles
:math:`U = \min(1, X F)` (:math:`[N_U, V]`: which values each user has taken at least once)
are regressed on themselves in closed form (EASE, Steck 2019):

.. math:: B = \arg\min_{\operatorname{diag}(B) = 0} \lVert U - U B \rVert_F^2
          + \lambda \lVert B \rVert_F^2 = I - P \operatorname{diag}(P)^{-1},
          \qquad P = (U^\top U + \lambda I)^{-1}.

:math:`B_{ab}` is what having taken value ``a`` says about taking value ``b`` given the
user's other values. A user who took the items :math:`T` (training, observed and support
positives; new items included, through their values) gets on item :math:`j`

.. math:: a_{uj} = \bar F_j^\top B^\top p_u, \qquad p_u = \min\big(1, \textstyle\sum_{h \in T}
          F_h\big), \qquad \bar F_j = F_j / \lVert F_j \rVert_1 ,

the path User -> Item -> value -[learned link]-> value <- Item.
:class:`graph_meta.implicit.GraphMetaImplicit` adds :math:`\kappa\, a_{uj}` to the scores of
items without training positives, :math:`\kappa` chosen per kind of request (a user with
or without positives of their own) on the carve's new-item pseudo-tasks.

Cost: one dense ``[V, V]`` inverse (:math:`O(V^3)`; ``max_values`` bounds it: 8 k x 8 k float64
= 512 MB while solving, kept as float32); a user's message reads the rows of ``B`` of their
values only. A tuned model keeps the links only where some :math:`\kappa` was chosen.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse as sp

from graph_meta.dataset import Dataset
from graph_meta.implicit_prior import value_incidence

__all__ = ["MAX_VALUES", "MIN_ITEMS", "AttributeLinks", "attribute_rows"]

#: the most attribute values kept (the most held first): the dense [V, V] solve's bound
MAX_VALUES = 8_000
#: fewest items with training positives holding a value for it to be kept
MIN_ITEMS = 3


def attribute_rows(dataset: Dataset, item_ids: pd.Index
                   ) -> tuple[sp.csr_matrix, list[tuple[str, str]]]:
    """``(F [len(item_ids), V], keys)``: every value of every item node column of
    ``dataset`` (``keys[k] = (column, value)``; a value listed twice for an item counts
    once; an id absent from ``dataset.items`` has an empty row)."""
    ids = pd.Index(item_ids.astype(str))
    blocks, keys = [], []
    for col in dataset.spec.items.columns.values():
        if col.node and col.name in dataset.items.columns:
            m, values = value_incidence(dataset.items, col, ids)
            blocks.append(m)
            keys.extend((col.name, v) for v in values)
    if not blocks:
        return sp.csr_matrix((len(item_ids), 0)), []
    return sp.hstack(blocks).tocsr(), keys


def _binary(m: sp.spmatrix) -> sp.csr_matrix:
    out = sp.csr_matrix(m, dtype=np.float64, copy=True)
    out.data[:] = 1.0
    out.eliminate_zeros()
    return out


class AttributeLinks:
    """Learned value-value links and the items' values (module docstring).

    Attributes:
        keys: ``[V]`` ``(column, value)`` of every kept value.
        weights: ``[V, V]`` :math:`B` (float32; row ``a``: the links out of value ``a``).
        features: CSR ``[N_I, V]`` :math:`F` of the model's items.
        l2: the :math:`\\lambda` it was fitted with.
    """

    def __init__(self, keys: list[tuple[str, str]], weights: np.ndarray,
                 features: sp.csr_matrix, l2: float) -> None:
        self.keys, self.weights, self.l2 = keys, weights, float(l2)
        self.features = features
        norm = np.asarray(features.sum(axis=1)).ravel()
        norm[norm == 0] = 1.0
        self._mean_rows = sp.csr_matrix(sp.diags(1.0 / norm) @ features)

    @classmethod
    def fit(cls, dataset: Dataset, item_ids: pd.Index, positives: sp.spmatrix, *, l2: float,
            min_items: int = MIN_ITEMS, max_values: int = MAX_VALUES) -> AttributeLinks | None:
        """The links of ``dataset``'s item node columns, learned from ``positives``
        ``[N_U, N_I]`` (columns in ``item_ids`` order; any stored entry is a positive);
        None when no value is held by ``min_items`` items with positives."""
        rows, keys = attribute_rows(dataset, item_ids)
        x = _binary(positives)
        trained = np.asarray(x.sum(axis=0)).ravel() > 0
        held = np.asarray(rows[trained].sum(axis=0)).ravel()
        order = np.argsort(-held, kind="stable")
        kept = np.sort(order[held[order] >= min_items][:max_values])
        if not len(kept):
            return None
        features = sp.csr_matrix(rows[:, kept])
        profiles = _binary(x @ features)
        gram = (profiles.T @ profiles).toarray()
        gram[np.diag_indices_from(gram)] += l2
        p = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
        weights = p / -np.diag(p)[None, :]
        np.fill_diagonal(weights, 0.0)
        return cls([keys[k] for k in kept], weights.astype(np.float32), features, l2)

    @property
    def num_items(self) -> int:
        return self.features.shape[0]

    def extended(self, dataset: Dataset, item_ids: pd.Index) -> AttributeLinks:
        """These links over the catalogue ``item_ids`` of ``dataset``, whose first
        :attr:`num_items` are the model's: those keep their rows, the products added after
        them get their rows of the kept values from ``dataset.items``; the links are
        unchanged."""
        added = pd.Index(item_ids[self.num_items:])
        rows, keys = attribute_rows(dataset, added)
        where = {k: c for c, k in enumerate(keys)}
        cols = np.array([where.get(k, -1) for k in self.keys], dtype=np.int64)
        have = cols >= 0
        sub = rows[:, cols[have]].tocoo()
        new = sp.csr_matrix((sub.data, (sub.row, np.flatnonzero(have)[sub.col])),
                            shape=(len(added), len(self.keys)))
        features = sp.vstack([self.features, new]).tocsr()
        return AttributeLinks(self.keys, self.weights, features, self.l2)

    def _profile_links(self, taken: np.ndarray) -> np.ndarray:
        """:math:`B^\\top p` ``[V]`` of one user who took the items at ``taken``."""
        taken = np.unique(np.asarray(taken, dtype=np.int64))
        taken = taken[taken < self.num_items]
        values = np.unique(self.features[taken].indices)
        return self.weights[values].sum(axis=0) if len(values) else np.zeros(len(self.keys))

    def messages(self, taken: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """:math:`a_{uj}` ``[len(targets)]`` of one user who took the items at ``taken``
        for the items at ``targets`` (an item past the catalogue's gets 0)."""
        targets = np.asarray(targets, dtype=np.int64)
        out = np.zeros(len(targets))
        inside = targets < self.num_items
        if inside.any():
            out[inside] = self._mean_rows[targets[inside]] @ self._profile_links(taken)
        return out

    def audience(self, takers: sp.csr_matrix, item: int) -> np.ndarray:
        """:math:`a_{u,\\mathrm{item}}` for every user: ``takers`` ``[N_U, N_I']`` holds each
        user's taken items (any stored entry; columns past the catalogue's send nothing)."""
        if item >= self.num_items:
            return np.zeros(takers.shape[0])
        x = _binary(takers)[:, :self.num_items]
        profiles = _binary(x @ self.features[:x.shape[1]])
        row = self._mean_rows[item]
        return np.asarray(profiles @ (self.weights[:, row.indices] @ row.data)).ravel()
