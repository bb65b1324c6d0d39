r"""The side-feature prior: what a users/items table's columns say about a node's state.

:func:`side_features` turns a table into a sparse feature matrix (one-hot categoricals,
clipped numeric z-scores, the hashed text bag, a unit-norm multi-hot of every node column),
and :class:`RidgeMap` is the weighted ridge regression from those features onto states fitted
on the rated rows, applied to every row (a never-rated item or a new user included). Used by
graph-meta's closed-form priors (:mod:`graph_meta.fitting.priors`, and
:meth:`~graph_meta.model.GraphMetaRecommender.add_items` through them), the biased MF's
new-item and new-user priors (:mod:`graph_meta.baselines`) and MeLU's attribute bags
(:mod:`graph_meta.melu`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse as sp

from graph_meta.graph.build import split_multi
from graph_meta.graph.features import encode_features, hashed_text
from graph_meta.schema import TableSpec

__all__ = ["RidgeMap", "side_features"]


def side_features(table: TableSpec, frame: pd.DataFrame, fit_rows: np.ndarray, *,
                  min_count: int = 2, max_vocab: int = 2000, text_dim: int = 2048,
                  clip_numeric: bool = True) -> sp.csr_matrix:
    """Side-feature matrix ``[len(frame), d]`` of a users/items table.

    Blocks: one-hot of every non-node ``categorical`` column, the ``numeric`` z-scores and
    missing flags (from ``encode_features``), the hashed text bag (``hashed_text``, sparse;
    2048 buckets for plots and titles: graph-meta's carved validation item_cold / user_item_cold
    0.9434 / 1.0062 vs 0.9447 / 1.0090 with 256, on both carve seeds tried), and a multi-hot of
    every node column. One-hot and multi-hot vocabularies keep the values present on at least
    ``min_count`` of the ``fit_rows`` (bool mask: the rows a model is fitted on), the
    ``max_vocab`` most frequent per column; a multi-hot row is scaled to unit L2 norm. With
    ``clip_numeric`` a numeric z-score is clipped into the range it has on ``fit_rows``, so
    that a linear map fitted there is not extrapolated (new items are later releases: their
    year lies outside the training items' range).
    """
    n = len(frame)
    fit_rows = np.asarray(fit_rows, dtype=bool)
    enc = encode_features(table, frame, text_dim=0)
    blocks: list[sp.csr_matrix] = []

    def one_hot(rows: np.ndarray, cols: np.ndarray, n_cols: int, norm: bool) -> None:
        counts = np.bincount(cols[fit_rows[rows]], minlength=n_cols)
        keep = np.flatnonzero(counts >= min_count)
        keep = keep[np.argsort(-counts[keep], kind="stable")[:max_vocab]]
        remap = np.full(n_cols, -1)
        remap[keep] = np.arange(len(keep))
        sel = remap[cols] >= 0
        rows, cols = rows[sel], remap[cols[sel]]
        vals = np.ones(len(rows))
        if norm and len(rows):
            per_row = np.bincount(rows, minlength=n).astype(np.float64)
            vals = 1.0 / np.sqrt(per_row[rows])
        blocks.append(sp.csr_matrix((vals, (rows, cols)), shape=(n, len(keep))))

    x_cat = enc["x_cat"].numpy()
    for j in range(x_cat.shape[1]):
        codes = x_cat[:, j]
        present = np.flatnonzero(codes > 0)
        one_hot(present, codes[present], int(enc["cat_sizes"][j]), norm=False)
    for name, col in table.columns.items():
        if not col.node:
            continue
        parts = split_multi(frame[name], col).to_numpy()
        lengths = np.fromiter((len(p) for p in parts), np.int64, n)
        values = [v for p in parts for v in p]
        if not values:
            continue
        codes, _ = pd.factorize(pd.Series(values, dtype=object))
        rows = np.repeat(np.arange(n), lengths)
        # a value listed twice on one row counts once
        pairs = np.unique(np.stack([rows, codes]), axis=1)
        one_hot(pairs[0], pairs[1], int(codes.max()) + 1, norm=True)
    x_num = enc["x_num"].numpy().astype(np.float64)
    if clip_numeric and fit_rows.any():
        for j in range(0, x_num.shape[1], 2):
            seen = fit_rows & (x_num[:, j + 1] == 0)
            if seen.any():
                x_num[:, j] = np.clip(x_num[:, j], x_num[seen, j].min(), x_num[seen, j].max())
    if x_num.shape[1]:
        blocks.append(sp.csr_matrix(x_num))
    text = hashed_text(table, frame, text_dim=text_dim)
    if text.shape[1]:
        blocks.append(text)
    if not blocks:
        return sp.csr_matrix((n, 0))
    return sp.hstack(blocks, format="csr")


class RidgeMap:
    r"""Weighted ridge regression :math:`f \mapsto W^\top (f - \bar f) + \bar y`.

    With :math:`G = \Omega^{1/2} (F - 1 \bar f^\top)` (the fit rows, weights
    :math:`\Omega`, weighted mean :math:`\bar f`), :math:`W = (G^\top G + \alpha I)^{-1}
    G^\top \Omega^{1/2} (y - \bar y) = G^\top (G G^\top + \alpha I)^{-1} \Omega^{1/2}
    (y - \bar y)`: the primal ``d x d`` or the dual ``n x n`` system, whichever is smaller;
    its Cholesky factor is cached per alpha, so many targets and alphas are cheap.
    """

    def __init__(self, features: sp.csr_matrix, fit_rows: np.ndarray,
                 weights: np.ndarray | None = None) -> None:
        self.features = features.tocsr()
        self.fit_rows = np.flatnonzero(fit_rows)
        n, d = len(self.fit_rows), features.shape[1]
        w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
        self.w = w / w.mean() if n else w
        self.sw = np.sqrt(self.w)
        self._f = self.features[self.fit_rows]
        self.mean_f = np.asarray(self._f.T @ self.w).ravel() / self.w.sum() if n else np.zeros(d)
        self.dual = n < d
        self._factors: dict[float, Any] = {}
        if n == 0 or d == 0:
            self.gram = np.zeros((0, 0))
        elif self.dual:
            ff = np.asarray((self._f @ self._f.T).todense())
            fm = np.asarray(self._f @ self.mean_f).ravel()
            self.gram = ff - fm[:, None] - fm[None, :] + self.mean_f @ self.mean_f
            self.gram *= self.sw[:, None] * self.sw[None, :]
        else:
            self.gram = np.asarray((self._f.T @ sp.diags(self.w) @ self._f).todense())
            self.gram -= self.w.sum() * np.outer(self.mean_f, self.mean_f)

    def _solve(self, rhs: np.ndarray, alpha: float) -> np.ndarray:
        if alpha <= 0:
            raise ValueError(f"ridge alpha must be > 0, got {alpha}")
        if alpha not in self._factors:
            if len(self._factors) > 8:
                self._factors.clear()
            a = self.gram + alpha * np.eye(len(self.gram))
            self._factors[alpha] = scipy.linalg.cho_factor(a, check_finite=False)
        return scipy.linalg.cho_solve(self._factors[alpha], rhs, check_finite=False)

    def coef(self, targets: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """``(W, intercept)`` for targets ``[n_fit, out]``."""
        y = np.asarray(targets, dtype=np.float64)
        d, out = self.features.shape[1], y.shape[1]
        if len(self.fit_rows) == 0:
            return np.zeros((d, out)), np.zeros(out)
        mean_y = self.w @ y / self.w.sum()
        if len(self.gram) == 0:
            return np.zeros((d, out)), mean_y
        yc = (y - mean_y) * self.sw[:, None]
        if self.dual:
            a = self._solve(yc, float(alpha)) * self.sw[:, None]
            coef = np.asarray(self._f.T @ a) - np.outer(self.mean_f, a.sum(axis=0))
        else:
            z = yc * self.sw[:, None]
            b = np.asarray(self._f.T @ z) - np.outer(self.mean_f, z.sum(axis=0))
            coef = self._solve(b, float(alpha))
        return coef, mean_y - self.mean_f @ coef

    def predict(self, targets: np.ndarray, alpha: float) -> np.ndarray:
        """Predictions for every row of ``features`` from targets of the fit rows."""
        coef, intercept = self.coef(targets, alpha)
        return np.asarray(self.features @ coef) + intercept
