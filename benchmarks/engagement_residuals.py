"""Is there signal left for CO_ENGAGED? The rating model's residuals against engagement shares.

Usage::

    python benchmarks/engagement_residuals.py DATASET --run RUN
        [--scenarios warm,user_cold,item_cold,user_item_cold]

``RUN`` is a ``graph-meta train`` output (``RUN/model.pt``) fitted on DATASET, a rating folder
with a ``Category`` item column. For every query rating of the scenario's tasks (whole
supports) the residual :math:`e = r - \\hat r` of the model is set against two features of the
query item :math:`j` (categories :math:`G_j`) and the user's engagement profile :math:`p_u`
(the share of the user's training and support items in each category, a multi-category item
counting in each):

* **own**: :math:`\\frac{1}{|G_j|} \\sum_{c \\in G_j} p_u(c) / \\bar p(c)`, the user's
  engagement with the item's own categories over the catalogue's share;
* **across**: :math:`\\frac{1}{|G_j|} \\sum_{c \\in G_j} \\sum_{c'} w_{cc'}\\, p_u(c')`,
  the same carried over the ``CO_ENGAGED`` links :math:`w_{cc'}` (NPMI, the graph's own
  top-k links: :func:`graph_meta.graph.build.co_engaged`).

It prints their correlations with the residuals and the RMSE left after least squares on
[1] (the mean residual), on [1, own] and on [1, own, across], fitted on the very residuals it
scores: an upper bound on what a correction along ``CO_ENGAGED`` could take from this model,
measured on the task files (a diagnosis, never a way to choose a setting). Pooled over
ratings, not task-averaged.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from graph_meta.dataset import Dataset
from graph_meta.graph.build import co_engaged, value_incidence
from graph_meta.model import GraphMetaRecommender
from graph_meta.schema import CATEGORY
from loaders.folder import read_dataset


def category_matrix(dataset: Dataset) -> tuple[sp.csr_matrix, list[str]]:
    """``[N_I, C]`` 0/1 memberships of the items (``dataset.items`` order) in the values of
    the ``Category`` column, and those values."""
    cols = [n for n, c in dataset.spec.items.columns.items() if c.node == CATEGORY]
    if not cols:
        raise SystemExit(f"{dataset.root}: no item column is the Category node type")
    return value_incidence(dataset.items, dataset.spec.items.columns[cols[0]],
                           dataset.items.index.astype(str))


def engagement_features(dataset: Dataset) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray,
                                                   dict[str, np.ndarray], dict[str, int]]:
    """``(G, catalogue share, W, training items per user, item position)``: the category
    memberships, each category's share of the training engagement, the ``CO_ENGAGED``
    weights ``W [C, C]`` and each training user's item positions."""
    g, _ = category_matrix(dataset)
    item_pos = {str(i): k for k, i in enumerate(dataset.items.index)}
    train = dataset.train
    users, u_idx = np.unique(train["user_id"].astype(str).to_numpy(), return_inverse=True)
    i_idx = np.fromiter((item_pos[str(i)] for i in train["item_id"]), np.int64, len(train))
    gi, gc = g.nonzero()
    src, dst, weight, _ = co_engaged(u_idx, i_idx, gi, gc, len(users), len(item_pos),
                                     g.shape[1])
    w = np.zeros((g.shape[1], g.shape[1]))
    w[src, dst] = weight
    engaged = np.asarray(g[i_idx].sum(axis=0)).ravel()
    share = engaged / max(engaged.sum(), 1.0)
    by_user: dict[str, list[int]] = {}
    for u, i in zip(users[u_idx], i_idx, strict=True):
        by_user.setdefault(str(u), []).append(int(i))
    return g, share, w, {u: np.asarray(v) for u, v in by_user.items()}, item_pos


def _left(e: np.ndarray, *cols: np.ndarray) -> float:
    """RMSE of ``e`` after least squares on a constant and ``cols``."""
    z = np.column_stack([np.ones(len(e)), *cols])
    beta, *_ = np.linalg.lstsq(z, e, rcond=None)
    return float(np.sqrt(np.mean((e - z @ beta) ** 2)))


def _corr(e: np.ndarray, v: np.ndarray) -> float:
    return float(np.corrcoef(e, v)[0, 1]) if v.std() > 0 else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--run", type=Path, required=True,
                        help="a `graph-meta train` output on DATASET (model.pt)")
    parser.add_argument("--scenarios", default="warm,user_cold,item_cold,user_item_cold")
    args = parser.parse_args(argv)
    dataset = read_dataset(args.dataset)
    if dataset.spec.implicit:
        parser.error(f"{args.dataset}: an implicit folder has no rating residuals")
    model = GraphMetaRecommender.load(args.run / "model.pt")
    g, share, w, history, item_pos = engagement_features(dataset)
    safe_share = np.where(share > 0, share, 1.0)
    print("| scenario | ratings | RMSE | after the mean | corr own | corr across | after own "
          "| after own + across |")
    print("|---|---|---|---|---|---|---|---|")
    for scenario in args.scenarios.split(","):
        tasks = dataset.tasks.get(scenario, [])
        if not tasks:
            continue
        resid, own, across = [], [], []
        for t in tasks:
            support = [(str(i), float(r)) for i, r in t.support]
            query = [str(i) for i, _ in t.query]
            truth = np.array([float(r) for _, r in t.query])
            resid.append(truth - model.predict(str(t.user_id), support, query))
            taken = np.concatenate([history.get(str(t.user_id), np.zeros(0, np.int64)),
                                    [item_pos[i] for i, _ in support]]).astype(np.int64)
            profile = np.asarray(g[taken].sum(axis=0)).ravel()
            profile = profile / max(profile.sum(), 1.0)
            q = g[[item_pos[i] for i in query]].toarray()
            n_cat = np.maximum(q.sum(axis=1), 1.0)
            own.append(q @ (profile / safe_share) / n_cat)
            across.append(q @ (w @ profile) / n_cat)
        e, a, b = (np.concatenate(v) for v in (resid, own, across))
        print(f"| {scenario} | {len(e)} | {np.sqrt(np.mean(e ** 2)):.4f} | {_left(e):.4f} | "
              f"{_corr(e, a):+.4f} | {_corr(e, b):+.4f} | {_left(e, a):.4f} | "
              f"{_left(e, a, b):.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
