r"""What a node's relation-file neighbours learned, passed on to its prior.

A relation file whose two ends are the same node type (``(User)-[FRIEND_OF]->(User)``,
``(Item)-[SUCCEEDS]->(Item)``) links nodes whose *collaborative* states are related, which no
side-feature column holds: a new user's friends carry their taste, a new model inherits how
its predecessor was received. The side-feature prior (a ridge map from a node's own columns
onto the ALS states) cannot see that; this module adds it in closed form.

With :math:`y_n` the ALS state of a rated node, :math:`b_n` its side-feature prior and
:math:`e_n = y_n - b_n` its residual, each relation and direction :math:`r` (edge weights
:math:`w^r_{nm}`, only rated neighbours :math:`m`, no self-loops) gives the shrunk neighbour
mean

.. math:: m^r_n = \frac{\sum_m w^r_{nm}\, e_m}{\kappa + \sum_m w^r_{nm}} \in \mathbb{R}^D,

and the prior becomes :math:`b_n + \sum_r \beta_r \odot m^r_n`, with :math:`\beta_r \in
\mathbb{R}^D` fitted per coordinate by ridge on the rated nodes (their own residual
regressed on their neighbours' mean residual, rows weighted like the side prior's). A node
with no rated neighbour keeps its side prior. :attr:`RelationPrior.beta` says how much each
relation carries; 0 where a relation carries nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from graph_meta.dataset import Dataset

__all__ = ["RelationPrior", "relation_adjacency"]


def relation_adjacency(dataset: Dataset, node_type: str, ids: list[str], *, hops: int = 2
                       ) -> dict[str, sp.csr_matrix]:
    """``{"TYPE>": W, "TYPE<": W^T, "TYPE>>": W W, "TYPE<<": W^T W^T}`` ``[N, N]`` for every
    relation file of ``dataset`` whose two ends are ``node_type`` (rows and columns in ``ids``
    order; ``>`` follows the edges from source to target, ``<`` against them, doubled: two
    hops, with ``hops = 2``; weights from the file's weight column, else 1, multiplied along
    a path; self-loops and ids outside ``ids`` dropped; duplicate edges add up)."""
    pos = pd.Index(ids)
    out: dict[str, sp.csr_matrix] = {}
    for spec in dataset.spec.relations:
        if spec.src != node_type or spec.dst != node_type:
            continue
        frame = dataset.relations.get(spec.type)
        if frame is None or not len(frame):
            continue
        src = pos.get_indexer(frame["src"].astype(str))
        dst = pos.get_indexer(frame["dst"].astype(str))
        weight = (frame["weight"].to_numpy(np.float64) if "weight" in frame
                  else np.ones(len(frame)))
        keep = (src >= 0) & (dst >= 0) & (src != dst) & np.isfinite(weight) & (weight > 0)
        w = sp.csr_matrix((weight[keep], (src[keep], dst[keep])), shape=(len(ids), len(ids)))
        for name, one in ((f"{spec.type}>", w), (f"{spec.type}<", w.T.tocsr())):
            out[name] = one
            if hops > 1:  # two hops along the same direction, back to itself left out
                two = (one @ one).tolil()
                two.setdiag(0.0)
                out[name + name[-1]] = two.tocsr()
                out[name + name[-1]].eliminate_zeros()
    return out


@dataclass
class RelationPrior:
    r"""The fitted relation correction of a prior (module docstring).

    Attributes:
        names: the relations and directions used (``"FRIEND_OF>"``, ...).
        beta: ``[R, D]`` :math:`\beta_r` per relation and coordinate.
        shrink: :math:`\kappa`.
    """

    names: list[str]
    beta: np.ndarray
    shrink: float = 1.0

    @staticmethod
    def neighbor_means(adjacency: dict[str, sp.csr_matrix], residual: np.ndarray,
                       rated: np.ndarray, shrink: float) -> np.ndarray:
        """``[R, N, D]`` :math:`m^r_n` over the rated neighbours (``rated`` bool ``[N]``)."""
        keep = sp.diags(rated.astype(np.float64))
        out = []
        for w in adjacency.values():
            w = w @ keep
            total = np.asarray(w.sum(axis=1)).ravel()
            out.append((w @ residual) / (shrink + total)[:, None])
        return np.stack(out) if out else np.zeros((0, *residual.shape))

    @classmethod
    def fit(cls, adjacency: dict[str, sp.csr_matrix], base: np.ndarray, targets: np.ndarray,
            counts: np.ndarray, *, weights: np.ndarray | None = None, shrink: float = 1.0,
            l2: float = 1.0) -> RelationPrior:
        r"""Fit :math:`\beta` on the rows with ``counts > 0``.

        Args:
            adjacency: from :func:`relation_adjacency`.
            base: ``[N, D]`` the side-feature prior of every row.
            targets: ``[N, D]`` the ALS states (read on rated rows only).
            counts: ``[N]`` ratings per row.
            weights: ``[N]`` row weights of the fit (default 1).
            shrink: :math:`\kappa`, in units of edge weight.
            l2: ridge of each coordinate's fit, relative to the weighted row count.
        """
        rated = np.asarray(counts) > 0
        names = list(adjacency)
        d = base.shape[1]
        if not names or rated.sum() < 2:
            return cls(names, np.zeros((len(names), d)), shrink)
        residual = np.where(rated[:, None], targets - base, 0.0)
        means = cls.neighbor_means(adjacency, residual, rated, shrink)[:, rated]  # [R, n, D]
        y = residual[rated]
        w = np.ones(len(y)) if weights is None else np.asarray(weights, np.float64)[rated]
        w = w / w.mean()
        beta = np.zeros((len(names), d))
        for k in range(d):  # one small ridge per coordinate: y[:, k] ~ sum_r beta_rk m_r[:, k]
            x = means[:, :, k].T  # [n, R]
            gram = (x * w[:, None]).T @ x + l2 * np.eye(len(names))
            beta[:, k] = np.linalg.solve(gram, (x * w[:, None]).T @ y[:, k])
        return cls(names, beta, shrink)

    def apply(self, adjacency: dict[str, sp.csr_matrix], base: np.ndarray,
              targets: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """``[N, D]`` the corrected prior of every row (rated ones included)."""
        if not self.names:
            return base
        rated = np.asarray(counts) > 0
        residual = np.where(rated[:, None], targets - base, 0.0)
        means = self.neighbor_means({n: adjacency[n] for n in self.names}, residual, rated,
                                    self.shrink)
        return base + np.einsum("rnd,rd->nd", means, self.beta)
