r"""The item-item co-engagement graph of the implicit model, its edge weights learned.

Items taken by the same users are linked, and the weight of every link is learned by the
closed-form item-item regression EASE (Steck 2019) on the binary training positives
:math:`X \in \{0, 1\}^{N_U \times N_I}`:

.. math:: B = \arg\min_{\operatorname{diag}(B) = 0} \lVert X - X B \rVert_F^2
          + \lambda \lVert B \rVert_F^2 = I - P \operatorname{diag}(P)^{-1},
          \qquad P = (X^\top X + \lambda I)^{-1},

and each item keeps its ``top_k`` strongest in-links (:meth:`graph_meta.graph.neighborhood.
ItemNeighbors.from_residuals`, the solver the rating model's co-rating regression uses).
A user whose positives (training, observed since, and the task's support) are the set
:math:`H_u` gets on item :math:`j` the message

.. math:: c_{uj} = \sum_{h \in H_u} B_{hj} ,

one hop from each item they took to the items it is linked to. It reaches only items with
training positives (a new item has no links yet); :class:`graph_meta.implicit.
GraphMetaImplicit` adds :math:`\eta\, c_{uj}` to their scores, :math:`\eta` chosen per kind
of user on the carve.

Cost: the exact solve inverts one dense ``[R, R]`` over the ``R`` items with positives
(:math:`O(R^3)`; about 3 s at 3,700 items on one core); it is built only up to
:data:`MAX_ITEMS` such items, and a larger catalogue goes without the term (the model's
params say so). Stored: ``R * top_k`` weights.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from graph_meta.graph.neighborhood import ItemNeighbors

__all__ = ["MAX_ITEMS", "CoEngagement"]

#: the most items with positives for which the regression is built (one float64 [R, R]:
#: 1.8 GB at 15,000)
MAX_ITEMS = 15_000


class CoEngagement:
    """Learned item-item links (module docstring).

    Attributes:
        links: CSR ``[N_I, N_I]``, row ``h`` holding :math:`B_{hj}` for the items ``j`` whose
            kept in-links include ``h``.
        l2: the :math:`\\lambda` it was fitted with.
    """

    def __init__(self, links: sp.csr_matrix, l2: float) -> None:
        self.links, self.l2 = links, float(l2)
        self._by_target: sp.csr_matrix | None = None

    @classmethod
    def fit(cls, positives: sp.spmatrix, *, l2: float, top_k: int = 200,
            max_items: int = MAX_ITEMS) -> CoEngagement | None:
        """The links of the positives ``[N_U, N_I]`` (any stored entry is a positive);
        None when more than ``max_items`` items have positives."""
        x = sp.csc_matrix(positives, dtype=np.float64, copy=True)
        x.data[:] = 1.0
        if int((np.diff(x.indptr) > 0).sum()) > max_items:
            return None
        nb = ItemNeighbors.from_residuals(x, l2=l2, top_k=top_k, solver="exact")
        n = x.shape[1]
        into = sp.csr_matrix((nb.sim.astype(np.float64), nb.indices, nb.indptr),
                             shape=(n, n))  # row j: B[h, j] over its in-links h
        return cls(into.T.tocsr(), l2)

    @property
    def num_items(self) -> int:
        return self.links.shape[0]

    def messages(self, taken: np.ndarray, num_items: int) -> np.ndarray:
        r""":math:`c_{\cdot j}` of one user who took the items at positions ``taken``
        (``[num_items]``; items past the ones fitted get 0 and send nothing)."""
        taken = np.unique(np.asarray(taken, dtype=np.int64))
        taken = taken[taken < self.num_items]
        out = np.zeros(num_items)
        if len(taken):
            out[:self.num_items] = np.asarray(self.links[taken].sum(axis=0)).ravel()
        return out

    def audience(self, takers: sp.csr_matrix, item: int) -> np.ndarray:
        r""":math:`c_{u,\mathrm{item}}` for every user: ``takers`` ``[N_U, N_I']`` holds each
        user's taken items (any stored entry; columns past the ones fitted send nothing)."""
        if item >= self.num_items:
            return np.zeros(takers.shape[0])
        if self._by_target is None:
            self._by_target = self.links.T.tocsr()
        col = self._by_target[item]
        keep = col.indices < takers.shape[1]
        x = sp.csr_matrix(takers, copy=True)
        x.data[:] = 1.0
        return np.asarray(x[:, col.indices[keep]] @ col.data[keep]).ravel()

    def __getstate__(self) -> dict[str, object]:
        return {"links": self.links, "l2": self.l2, "_by_target": None}
