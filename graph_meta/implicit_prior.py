r"""The graph prior of the implicit model (:class:`graph_meta.implicit.GraphMetaImplicit`):
what a new item's (or a new user's) factors are predicted from, path by path.

A node column ``c`` of a side (e.g. ``Item -> Genre``) gives the two-hop path owner -> value ->
owner, a relation file from such a value to one no column holds (``Brand -[MADE_BY]-> Maker``)
the path owner -> brand -> maker -> brand -> owner, a same-type relation file (e.g.
``SUCCEEDS``, ``FRIEND_OF``) a one-hop path; each path
:math:`t` sends the message :math:`h_t(i)`, the mean over the node's values (or neighbours) of
the mean target of the *other* trained nodes there (:func:`path_messages`). The prior
:math:`g_i = \beta_r r(i) + \sum_t \beta_t h_t(i) + \beta_0 \bar y` mixes them with the
side-feature ridge map :math:`r(i)` and the mean target of every trained node :math:`\bar y`
(the zero-hop path, :data:`CATALOGUE_MEAN`: without it a weighted sum of blocks that all
carry the mean cannot shrink a path's contrast without shrinking the mean with it), the
weights :math:`\beta` learned by least squares on the training nodes from inputs
cross-fitted over 5 folds (:func:`side_prior`); :class:`GraphPrior` keeps the result.

A factor target (the item side's ALS factors) has its errors measured in the metric of the
scores they make (:func:`score_metric`): a new item's factors are only ever used in
:math:`x_u^\top \hat y_j`, and an error :math:`e` in them puts :math:`\sum_u (x_u^\top e)^2 =
e^\top X^\top X e` on the scores of the training users; with the ALS's :math:`\lambda` the
metric is :math:`M = X^\top X + \lambda I`, the part of the item step's system every item
shares. An error along the directions in which the users' factors differ costs more than one
along directions they hardly reach; the identity (every direction alike) is the alternative.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from graph_meta.baselines import _RidgeMap
from graph_meta.dataset import Dataset
from graph_meta.graph.build import value_incidence
from graph_meta.graph.relations import attribute_relation_incidence

__all__ = ["CATALOGUE_MEAN", "GraphPrior", "graph_paths", "incidence", "path_messages",
           "prior_blocks", "score_metric", "side_prior", "value_incidence"]

#: the name of the prior's mean block (the zero-hop path: every trained node's mean target)
CATALOGUE_MEAN = "catalogue mean"


def incidence(frame: pd.DataFrame, column, ids: pd.Index) -> sp.csr_matrix:
    """Owner x value incidence of one node column (rows in ``ids`` order)."""
    return value_incidence(frame, column, ids)[0]


def path_messages(incidence: sp.csr_matrix, target: np.ndarray,
                  trained: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Two-hop messages owner -> value -> owner: per row, the mean over its values of the
    mean ``target`` of the *other* trained rows holding that value (module docstring).

    Returns ``(messages [n, d], has [n] bool)``; a row without any such neighbour gets 0.
    """
    inc = incidence.tocoo()
    t = trained.astype(np.float64)
    sums = np.asarray(incidence.T @ (target * t[:, None]))  # [values, d]
    counts = np.asarray(incidence.T @ t).ravel()
    own = t[inc.row]
    denom = counts[inc.col] - own
    ok = denom > 0
    rows, cols, own, denom = inc.row[ok], inc.col[ok], own[ok], denom[ok]
    per = (sums[cols] - own[:, None] * target[rows]) / denom[:, None]
    n = incidence.shape[0]
    out = np.zeros((n, target.shape[1]))
    np.add.at(out, rows, per)
    k = np.bincount(rows, minlength=n).astype(np.float64)
    has = k > 0
    out[has] /= k[has, None]
    return out, has


def _neighbour_means(adj: sp.csr_matrix, target: np.ndarray,
                     trained: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One hop: the mean ``target`` of each row's trained neighbours."""
    a = adj @ sp.diags(trained.astype(np.float64))
    counts = np.asarray(a.sum(axis=1)).ravel()
    has = counts > 0
    out = np.asarray(a @ target)
    out[has] /= counts[has, None]
    out[~has] = 0.0
    return out, has


def score_metric(other: np.ndarray, reg: float) -> np.ndarray:
    r"""``[d, d]`` :math:`M = O^\top O + \lambda I`: :math:`e^\top M e` is the squared error
    that an error :math:`e` in a node's factors puts on its scores :math:`o^\top g`, summed
    over the other side's training rows :math:`o` (users, for the item side), plus
    :math:`\lambda \lVert e \rVert^2` (module docstring)."""
    o = np.asarray(other, dtype=np.float64)
    return o.T @ o + float(reg) * np.eye(o.shape[1])


def _combine_weights(blocks: list[np.ndarray], target: np.ndarray, rows: np.ndarray,
                     weights: np.ndarray, ridge: float = 1e-3,
                     metric: np.ndarray | None = None) -> np.ndarray:
    """Least-squares weights :math:`\\beta` of ``target ~ sum_t beta_t blocks[t]`` over
    ``rows`` (weighted), each row's error measured in ``metric`` (``[d, d]``, symmetric
    positive semi-definite; None: the identity)."""
    blocks = [b[rows] for b in blocks]
    target = target[rows]
    if metric is not None:  # e^T M e = |e R|^2 with M = R R^T (eigh: M may be singular)
        values, vectors = np.linalg.eigh(metric)
        root = vectors * np.sqrt(np.clip(values, 0.0, None))
        blocks = [b @ root for b in blocks]
        target = target @ root
    k = len(blocks)
    g = np.empty((k, k))
    c = np.empty(k)
    w = weights[:, None]
    for s in range(k):
        c[s] = float((w * blocks[s] * target).sum())
        for t in range(s, k):
            g[s, t] = g[t, s] = float((w * blocks[s] * blocks[t]).sum())
    scale = max(np.trace(g) / max(k, 1), 1e-12)
    return np.linalg.solve(g + ridge * scale * np.eye(k), c)


class GraphPrior:
    """The learned combination of path messages and the ridge map, for one side."""

    def __init__(self, names: list[str], beta: np.ndarray, beta_pop: np.ndarray | None,
                 prior: np.ndarray, pop: np.ndarray | None) -> None:
        self.names, self.beta, self.beta_pop = names, beta, beta_pop
        self.prior, self.pop = prior, pop


def _messages(op: tuple[str, sp.csr_matrix], target: np.ndarray,
              sources: np.ndarray) -> np.ndarray:
    """Messages of one path from the ``sources`` rows: two hops through an attribute
    incidence (``"inc"``) or one hop along a relation (``"adj"``)."""
    kind, m = op
    fn = path_messages if kind == "inc" else _neighbour_means
    return fn(m, target, sources)[0]


def _catalogue_mean(target: np.ndarray, sources: np.ndarray, n: int) -> np.ndarray:
    """``[n, d]``: the mean ``target`` of the ``sources`` rows on every row (0 without any)."""
    mean = target[sources].mean(axis=0) if sources.any() else np.zeros(target.shape[1])
    return np.broadcast_to(mean, (n, target.shape[1])).copy()


def prior_blocks(feats: sp.csr_matrix, trained: np.ndarray, counts: np.ndarray,
                 target: np.ndarray, paths: list[tuple[str, tuple[str, sp.csr_matrix]]],
                 alpha: float, *, folds: int = 5, seed: int = 0
                 ) -> tuple[list[str], list[np.ndarray], list[np.ndarray], np.ndarray]:
    """``(names, blocks, blocks_cv, ridge)``: the prior's inputs on every row of one side,
    the side-feature ridge map, one message per path and the catalogue mean
    (:func:`side_prior`). ``blocks`` are what a row gets (a training row its cross-fitted
    input, any other row the input from every training row), ``blocks_cv`` the
    cross-fitted inputs alone (zero off the training rows), ``ridge`` the ridge map fitted on
    every training row."""
    n = len(trained)
    w = np.sqrt(counts.astype(np.float64))
    fold = np.random.default_rng(seed).integers(0, folds, n)
    ridge_full = np.zeros_like(target)
    ridge_cv = np.zeros_like(target)
    if trained.any() and feats.shape[1]:
        ridge_full = _RidgeMap(feats, trained, w[trained]).predict(target[trained], alpha)
        for k in range(folds):
            rows = trained & (fold != k)
            if rows.any():
                pred = _RidgeMap(feats, rows, w[rows]).predict(target[rows], alpha)
                held = trained & (fold == k)
                ridge_cv[held] = pred[held]
    msg_full = [_messages(op, target, trained) for _, op in paths] + [
        _catalogue_mean(target, trained, n)]
    msg_cv = [np.zeros_like(target) for _ in msg_full]
    for k in range(folds):
        held = trained & (fold == k)
        if held.any():
            sources = trained & (fold != k)
            for t, (_, op) in enumerate(paths):
                msg_cv[t][held] = _messages(op, target, sources)[held]
            msg_cv[-1][held] = _catalogue_mean(target, sources, n)[held]
    names = ["side-feature ridge", *[p[0] for p in paths], CATALOGUE_MEAN]
    blocks_cv = [ridge_cv, *msg_cv]
    blocks = [np.where(trained[:, None], cv, full)
              for cv, full in zip(blocks_cv, [ridge_full, *msg_full], strict=True)]
    return names, blocks, blocks_cv, ridge_full


def side_prior(feats: sp.csr_matrix, trained: np.ndarray, counts: np.ndarray,
               target: np.ndarray, paths: list[tuple[str, tuple[str, sp.csr_matrix]]],
               alpha: float, *, folds: int = 5, seed: int = 0,
               metric: np.ndarray | None = None,
               offsets: Mapping[str, float] | None = None,
               blocks: tuple[list[str], list[np.ndarray], list[np.ndarray], np.ndarray]
               | None = None) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """``(names, beta, prior, ridge)``: the graph prior of every row of one side (module
    docstring) and the plain side-feature ridge map fitted on every training row; ``metric``:
    the ``[d, d]`` metric a row's error is measured in when the weights :math:`\\beta` are
    fitted (:func:`score_metric`; None: the identity), each row weighted by
    :math:`\\sqrt{n}` of its positives either way; ``offsets``: a weight :math:`v_t` per
    block name added to the prior *and* to the ridge map (so that any mix of the two gets
    :math:`\\sum_t v_t B_t`: the ranking weights of :mod:`graph_meta.implicit_path_weights`;
    absent names 0); ``blocks``: :func:`prior_blocks` of these arguments when already
    computed.

    The weights are learned on the training rows from inputs *cross-fitted* over ``folds``
    folds: a row's ridge prediction and its path messages both come from the training rows
    of the other folds only, as a new row's come from training rows that do not include it
    (leave-one-out messages against a 5-fold ridge would favour the messages unfairly).
    """
    names, parts, blocks_cv, ridge_full = blocks or prior_blocks(
        feats, trained, counts, target, paths, alpha, folds=folds, seed=seed)
    fit = np.flatnonzero(trained)
    w = np.sqrt(counts.astype(np.float64))
    beta = (_combine_weights(blocks_cv, target, fit, w[fit], metric=metric) if len(fit)
            else np.zeros(len(parts)))
    prior = np.asarray(sum(b * blk for b, blk in zip(beta, parts, strict=True)))
    if offsets:
        extra = sum(offsets.get(name, 0.0) * blk for name, blk in zip(names, parts, strict=True))
        prior, ridge_full = prior + extra, ridge_full + extra
    return names, beta, prior, ridge_full


def graph_paths(dataset: Dataset, frame: pd.DataFrame, table, ids: pd.Index,
           label: str) -> list[tuple[str, tuple[str, sp.csr_matrix]]]:
    """Every path of one side: two hops through each node column, four through each relation
    file between an attribute type of that side and one it has no column for (owner ->
    brand -> maker -> brand -> owner: :func:`~graph_meta.graph.relations.
    attribute_relation_incidence`), one hop along each relation file between two nodes of
    that side."""
    out: list[tuple[str, tuple[str, sp.csr_matrix]]] = []
    for col in table.columns.values():
        if col.node:
            inc = incidence(frame, col, ids)
            if inc.shape[1]:
                out.append((f"{label}-{col.node}-{label}", ("inc", inc)))
    for rel, inc in attribute_relation_incidence(dataset, label, frame, ids).items():
        out.append((f"{label}-{rel}-{label}", ("inc", inc)))
    for rel in dataset.spec.relations:
        if rel.src == label and rel.dst == label:
            out.append((rel.type, ("adj", _adjacency(dataset.relations[rel.type], ids))))
    return out


def _adjacency(frame: pd.DataFrame, ids: pd.Index) -> sp.csr_matrix:
    """Symmetric adjacency of a relation file between two nodes of the same type."""
    s = ids.get_indexer(frame["src"].astype(str))
    t = ids.get_indexer(frame["dst"].astype(str))
    ok = (s >= 0) & (t >= 0) & (s != t)
    n = len(ids)
    a = sp.csr_matrix((np.ones(int(ok.sum())), (s[ok], t[ok])), shape=(n, n))
    a = ((a + a.T) > 0).astype(np.float64)
    return a.tocsr()
