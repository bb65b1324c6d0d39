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
regressed on their neighbours' mean residual, rows weighted as the caller says: by
:math:`\sqrt n` or :math:`n` in training, ``train.prior_weight``). A node
with no rated neighbour keeps its side prior. :attr:`RelationPrior.beta` says how much each
relation carries; 0 where a relation carries nothing.

A ridge state is shrunk toward 0 by a node's few ratings: by :math:`\rho_{nk} = n_n v_k /
(n_n v_k + \lambda_k)` in coordinate :math:`k` (:func:`state_reliability`), toward 0 and not
toward :math:`b_n`. Left alone, the
thinly rated rows (most users of a catalogue) pull :math:`\beta` toward 0 and a thinly rated
friend's residual counts as a confident zero. With the reliabilities given, the residuals are
:math:`e_n = y_n - \rho_n \odot b_n` (:math:`\rho_n` of the unshrunk one), the fit regresses
:math:`e_n` on :math:`\rho_n \odot m^r_n` (a row's target is its own state shrunk) and the
means count a neighbour in the denominator by its :math:`\rho_m` (:math:`\kappa + \sum_m
w^r_{nm} \rho_m`), so :math:`\beta` and the prior estimate unshrunk states. Planted
catalogue, 3 seeds: user_cold 0.723 -> 0.711, item_cold 0.860 -> 0.851, user_item_cold
0.889 -> 0.862 (README).

A relation file between attribute nodes (``(Brand)-[MADE_BY]->(Maker)``, where no column of
the items holds the maker) reaches the items two hops away:
:func:`attribute_relation_incidence` gives the item x maker incidence :math:`A`, and the
nodes sharing a maker are one more "relation" of the prior, the adjacency :math:`A A^\top`
without its diagonal (:class:`SharedValues`, kept factored): a new item of a thinly sold brand
inherits what the maker's other rated items learned.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from graph_meta.dataset import Dataset
from graph_meta.graph.build import value_incidence
from graph_meta.schema import ITEM, USER

__all__ = ["RelationPrior", "SharedValues", "attribute_relation_incidence",
           "rating_information", "relation_adjacency", "relation_hop", "state_reliability",
           "two_hop_files"]


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


def two_hop_files(files: Iterable[tuple[str, str, str]], own: set[str]
                  ) -> list[tuple[str, str, str, str, str]]:
    """``(src, type, dst, near, far)`` of the relation files ``(src, type, dst)`` that reach
    an owner's values two hops away: between attribute types (neither ``User`` nor
    ``Item``), ``near`` a type the owner's node columns declare (``own``) and ``far`` one they
    do not (a brand's maker), or both ends the same declared type (sister brands). A file
    whose two ends the owner's columns both declare adds nothing (a category's department,
    when items have a department column). The one rule of
    :func:`attribute_relation_incidence` and of
    :func:`graph_meta.graph.neighborhood.path_blocks`."""
    out = []
    for src, rel, dst in files:
        if {USER, ITEM} & {src, dst}:
            continue
        if src == dst:
            if src in own:
                out.append((src, rel, dst, src, dst))
        elif (src in own) != (dst in own):
            out.append((src, rel, dst, *((src, dst) if src in own else (dst, src))))
    return out


def relation_hop(incidence: sp.csr_matrix, near: np.ndarray, far: np.ndarray, n_far: int, *,
                 same_type: bool) -> sp.csr_matrix:
    r"""Owner x far-value incidence through one relation file: ``incidence`` :math:`A` ``[N,
    X]`` (owner -> near value), the file's edges ``near[e] -> far[e]`` (indices; negative
    ones dropped), ``n_far`` values at the far end. Between two types :math:`A R`; between
    values of one type (``same_type``, far indices in the near index space, ``n_far`` = X)
    :math:`A (I + R + R^\top)`: an owner keeps its own value beside its sisters', so the
    owners of two sister brands share a column. Binary: several routes to one value are one
    path."""
    ok = (near >= 0) & (far >= 0)
    near, far = near[ok], far[ok]
    r = sp.csr_matrix((np.ones(len(near)), (near, far)), shape=(incidence.shape[1], n_far))
    if same_type:
        r = r + r.T + sp.identity(n_far, format="csr")
    out = sp.csr_matrix(incidence @ r)
    out.eliminate_zeros()
    out.data[:] = 1.0
    return out


def attribute_relation_incidence(dataset: Dataset, owner: str, frame: pd.DataFrame,
                                 ids: pd.Index) -> dict[str, sp.csr_matrix]:
    """Two hops through a relation file between attribute nodes, by relationship type: for
    every file :func:`two_hop_files` keeps (a brand's maker, a director's studio, sister
    brands; either direction of the file), the owner x far-value incidence
    (:func:`relation_hop`). Rows in ``ids`` order (of ``frame``, the owner's table); columns
    the far type's values, file-only values included. What no column of the owner holds and
    one hop over its side features cannot express."""
    table = dataset.spec.users if owner == USER else dataset.spec.items
    columns = [c for c in table.columns.values() if c.node]
    files = [(r.src, r.type, r.dst) for r in dataset.spec.relations]
    out: dict[str, sp.csr_matrix] = {}
    for src_type, rel, _, near, far in two_hop_files(files, {c.node for c in columns}):
        frame_rel = dataset.relations.get(rel)
        if frame_rel is None or not len(frame_rel):
            continue
        src, dst = frame_rel["src"].astype(str), frame_rel["dst"].astype(str)
        near_ids, far_ids = (src, dst) if src_type == near else (dst, src)
        parts = [value_incidence(frame, c, ids) for c in columns if c.node == near]
        values = [v for _, vals in parts for v in vals]
        if near == far:  # the file's own values join the index: a sister no item carries
            values += [*near_ids, *far_ids]
        labels = pd.Index(pd.unique(pd.Series(values, dtype=object)))
        # every column of the near type onto one value index (a value twice is one path)
        coo = [m.tocoo() for m, _ in parts]
        inc = sp.csr_matrix((np.ones(sum(c.nnz for c in coo)), (
            np.concatenate([c.row for c in coo]),
            np.concatenate([labels.get_indexer(pd.Index(vals, dtype=object))[c.col]
                            for c, (_, vals) in zip(coo, parts, strict=True)]))),
            shape=(len(ids), len(labels)))
        inc.data[:] = 1.0
        if near == far:
            block = relation_hop(inc, labels.get_indexer(near_ids), labels.get_indexer(far_ids),
                                 len(labels), same_type=True)
        else:
            codes, far_labels = pd.factorize(far_ids)
            block = relation_hop(inc, labels.get_indexer(near_ids), codes, len(far_labels),
                                 same_type=False)
        if block.nnz:
            out[rel] = block
    return out


def rating_information(other: np.ndarray, other_counts: np.ndarray) -> np.ndarray:
    """``[D]`` :math:`v_k`, what one rating tells a ridge (ALS) state about its coordinate
    :math:`k`: the mean square of that coordinate of the rating's other end (``other`` ``[M,
    D]`` states weighted by their rating counts ``other_counts`` ``[M]``; the bias coordinate's
    regressor is 1)."""
    w = np.asarray(other_counts, np.float64)
    v = (np.asarray(other, np.float64) ** 2 * w[:, None]).sum(0) / max(w.sum(), 1.0)
    v[0] = 1.0
    return v


def state_reliability(counts: np.ndarray, information: np.ndarray, precision: np.ndarray
                      ) -> np.ndarray:
    r"""``[N, D]`` :math:`\rho_{nk} = n_n v_k / (n_n v_k + \lambda_k)`: the factor by which
    the ridge state of a node with :math:`n_n` ratings is shrunk toward 0 in coordinate
    :math:`k` (:math:`v` = ``information``, :func:`rating_information`; :math:`\lambda` the
    ridge ``precision`` ``[D]``); 0 for a node without ratings."""
    nv = np.asarray(counts, np.float64)[:, None] * np.asarray(information, np.float64)[None]
    return nv / (nv + np.asarray(precision, np.float64)[None])


@dataclass
class SharedValues:
    r"""The ``[N, N]`` adjacency :math:`A A^\top - \mathrm{diag}(A A^\top)` of nodes that share a
    value of the incidence :math:`A` ``[N, V]`` (the items of one maker, through
    :func:`attribute_relation_incidence`), kept factored: a maker's thousand items would make
    a million explicit pairs. :class:`RelationPrior` takes it where it takes an explicit
    adjacency."""

    incidence: sp.csr_matrix

    def __post_init__(self) -> None:
        a = self.incidence
        self._own = np.asarray(a.multiply(a).sum(axis=1))  # a node shares its values with itself

    def others(self, x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``[N, D]`` per node the sum of ``x`` ``[N, D]`` over the *other* ``rows`` (bool
        ``[N]``) it shares a value with, weighted by how many values they share."""
        a = self.incidence
        masked = np.where(rows[:, None], x, 0.0)
        return np.asarray(a @ (a.T @ masked)) - self._own * masked


def _residual(base: np.ndarray, targets: np.ndarray, rated: np.ndarray,
              reliability: np.ndarray | None) -> np.ndarray:
    r"""``[N, D]`` the rated rows' residuals, 0 elsewhere: :math:`y - b`, or with reliabilities
    :math:`y - \rho \odot b` (ALS shrinks toward 0, not toward the prior, so a thinly rated
    state holds :math:`\rho` of its unshrunk residual only then)."""
    shrunk_base = base if reliability is None else np.asarray(reliability) * base
    return np.where(rated[:, None], targets - shrunk_base, 0.0)


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
                       rated: np.ndarray, shrink: float,
                       reliability: np.ndarray | None = None) -> np.ndarray:
        r"""``[R, N, D]`` :math:`m^r_n` over the rated neighbours (``rated`` bool ``[N]``);
        with ``reliability`` ``[N, D]`` (:func:`state_reliability`) a neighbour counts in the
        denominator by its :math:`\rho_m`, :math:`\sum_m w_{nm} e_m / (\kappa + \sum_m
        w_{nm} \rho_m)`: its residual, shrunk by its few ratings, is taken as
        :math:`\rho_m` of an unshrunk one."""
        keep = sp.diags(rated.astype(np.float64))
        ones = np.ones((len(rated), 1))
        out = []
        for w in adjacency.values():
            if isinstance(w, SharedValues):
                total = w.others(ones if reliability is None else reliability, rated)
                out.append(w.others(residual, rated) / (shrink + total))
                continue
            w = w @ keep
            total = (np.asarray(w.sum(axis=1)) if reliability is None else w @ reliability)
            out.append((w @ residual) / (shrink + total))
        return np.stack(out) if out else np.zeros((0, *residual.shape))

    @classmethod
    def fit(cls, adjacency: dict[str, sp.csr_matrix], base: np.ndarray, targets: np.ndarray,
            counts: np.ndarray, *, weights: np.ndarray | None = None,
            reliability: np.ndarray | None = None, shrink: float = 1.0,
            l2: float = 1.0) -> RelationPrior:
        r"""Fit :math:`\beta` on the rows with ``counts > 0``.

        Args:
            adjacency: from :func:`relation_adjacency`.
            base: ``[N, D]`` the side-feature prior of every row.
            targets: ``[N, D]`` the ALS states (read on rated rows only).
            counts: ``[N]`` ratings per row.
            weights: ``[N]`` row weights of the fit (default 1).
            reliability: ``[N, D]`` in [0, 1), how far each row's state is shrunk toward 0
                by its few ratings (:func:`state_reliability`); a row's regressors are scaled
                by it, so that a thinly rated node's shrunk state does not shrink
                :math:`\beta` (default 1).
            shrink: :math:`\kappa`, in units of edge weight.
            l2: ridge of each coordinate's fit, relative to the weighted row count.
        """
        rated = np.asarray(counts) > 0
        names = list(adjacency)
        d = base.shape[1]
        if not names or rated.sum() < 2:
            return cls(names, np.zeros((len(names), d)), shrink)
        residual = _residual(base, targets, rated, reliability)
        means = cls.neighbor_means(adjacency, residual, rated, shrink, reliability)[:, rated]
        if reliability is not None:  # a row's target is its state shrunk by its own rho
            means = means * np.asarray(reliability, np.float64)[rated][None]
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
              targets: np.ndarray, counts: np.ndarray,
              reliability: np.ndarray | None = None) -> np.ndarray:
        """``[N, D]`` the corrected prior of every row (rated ones included; ``reliability``
        as the fit had it)."""
        if not self.names:
            return base
        rated = np.asarray(counts) > 0
        residual = _residual(base, targets, rated, reliability)
        means = self.neighbor_means({n: adjacency[n] for n in self.names}, residual, rated,
                                    self.shrink, reliability)
        return base + np.einsum("rnd,rd->nd", means, self.beta)
