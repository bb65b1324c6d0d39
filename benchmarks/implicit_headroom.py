"""What a fitted implicit graph-meta model would gain from other scorers, on one scenario's tasks.

Usage::

    python benchmarks/implicit_headroom.py DATASET --run RUN [--scenario user_cold]
        [--factors 64,128,256] [--seed 0]

``RUN`` is a ``graph-meta train`` output (``RUN/implicit_model.pkl``) fitted on DATASET. Each
row ranks the scenario's pools exactly as the implicit protocol does
(:func:`graph_meta.eval.ranking.evaluate_implicit`, whole supports) and prints recall@20 and
its per-task difference from the shipped model with the paired standard error. The variants
change one thing each on the shipped model's new-user state or scores:

* ``eta``: the co-engagement links' weight :math:`\\eta` of this kind of user (shipped: the
  carve's choice, ``params["coengagement_weights"]``);
* ``prior shape``: the fold-in's prior precision :math:`s \\lambda ((1 - \\rho) I + \\rho S)`
  with :math:`S = \\Sigma^{-1} / \\overline{\\operatorname{diag} \\Sigma^{-1}}`, the
  training users' factor covariance (an empirical-Bayes prior in place of :math:`\\lambda I`);
* ``rp3beta`` / ``user-knn``: the shipped scores z-scored per task and blended with weight
  ``w`` with a three-hop random walk User -> Item -> User -> Item (item popularity to the power
  :math:`-\\beta`) or with cosine user-kNN over the training positives;
* ``iALS factors``: plain implicit ALS (the shipped model's regularisation and confidence) at
  other latent dimensions, fitted here.

The scores are measured on the task files: it is a diagnosis of headroom, never a way to
choose a setting (PROTOCOL.md rule 1: settings are chosen on data carved from ``train.csv``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from graph_meta.dataset import Dataset
from graph_meta.eval.ranking import evaluate_implicit
from graph_meta.implicit import GraphMetaImplicit
from graph_meta.implicit_baselines import ImplicitALS
from loaders.folder import read_dataset

#: the blend weights of the graph walks and the co-engagement weights tried
BLEND_WEIGHTS = (0.2, 0.5)
ETAS = (0.0, 0.3, 1.0, 3.0)


class Variant:
    """A ranking model over a fitted :class:`GraphMetaImplicit` ``model``: ``score(model,
    user_id, support_items, positions) -> scores`` of the items at those positions."""

    def __init__(self, model: GraphMetaImplicit,
                 score: Callable[[GraphMetaImplicit, str, list[str], np.ndarray], np.ndarray]
                 ) -> None:
        self.model, self.score = model, score

    def fit(self, dataset: Dataset) -> Variant:
        return self

    def score_items(self, user_id: str, support_items: list[str],
                    candidate_item_ids: list[str]) -> np.ndarray:
        pos = self.model.data.items_of([str(i) for i in candidate_item_ids])
        out = np.full(len(pos), -np.inf)
        known = pos >= 0
        out[known] = self.score(self.model, str(user_id), support_items, pos[known])
        return out


def _warm_state(model: GraphMetaImplicit, user_id: str, support: list[str],
                precision: np.ndarray | None = None) -> np.ndarray:
    """The user's state for items with training rows; ``precision`` replaces the fold-in's
    :math:`\\lambda I` (scaled by that :math:`\\lambda`)."""
    taken = model._taken(user_id, support)
    if precision is None:
        return model._adapted(user_id, taken, False)
    hist, w, sup = taken
    u = model.data.user_ids.get_indexer([user_id])[0]
    prior = model.x0[u] if u >= 0 else model._unknown_user_prior()
    if not len(hist) + len(sup):  # nothing taken: the prior, as the shipped fold-in
        return prior
    s_w, f_reg = model.fold_setting(len(hist) > 0, False, len(sup))
    reg = model.reg if f_reg is None else f_reg
    items = np.concatenate([hist, sup])
    conf = model.alpha * np.concatenate([w, np.full(len(sup), s_w)])
    y = model.y[items]
    a = model.gram + reg * precision + (y * conf[:, None]).T @ y
    b = y.T @ (1.0 + conf) + reg * precision @ prior
    return np.linalg.solve(a, b)


def _zscore(v: np.ndarray) -> np.ndarray:
    return (v - v.mean()) / (v.std() + 1e-12)


def variants(model: GraphMetaImplicit) -> dict[str, Variant]:
    """Every variant of the module docstring but the refitted iALS, by name."""
    d = model.data
    x = sp.csr_matrix(d.by_user, dtype=np.float64)
    x.data[:] = 1.0
    taker_count = np.maximum(np.asarray(x.sum(axis=0)).ravel(), 1.0)
    user_count = np.maximum(np.asarray(x.sum(axis=1)).ravel(), 1.0)
    walk = (sp.diags(1 / taker_count) @ x.T @ sp.diags(1 / user_count) @ x).toarray()
    unit_rows = sp.diags(1 / np.sqrt(user_count)) @ x
    trained = model.x[d.user_in_train]
    inv = np.linalg.inv(np.cov(trained.T))
    shape = inv / np.mean(np.diag(inv))
    eye = np.eye(len(shape))

    def shipped(m: GraphMetaImplicit, u: str, sup: list[str], pos: np.ndarray) -> np.ndarray:
        return m.kind_scores(u, sup, pos)

    def with_eta(eta: float) -> Callable[..., np.ndarray]:
        def score(m: GraphMetaImplicit, u: str, sup: list[str], pos: np.ndarray) -> np.ndarray:
            base = m.y[pos] @ _warm_state(m, u, sup)
            if not eta or m.coengagement is None:
                return base
            taken = m._taken(u, sup)
            c = m.coengagement.messages(np.concatenate([taken[0], taken[2]]), len(d.item_ids))
            return base + eta * c[pos]
        return score

    def with_precision(p: np.ndarray) -> Callable[..., np.ndarray]:
        def score(m: GraphMetaImplicit, u: str, sup: list[str], pos: np.ndarray) -> np.ndarray:
            return m.y[pos] @ _warm_state(m, u, sup, p)
        return score

    def taken_items(m: GraphMetaImplicit, u: str, sup: list[str]) -> np.ndarray:
        hist, _, extra = m._taken(u, sup)
        return np.unique(np.concatenate([hist, extra]))

    def rp3(beta: float, w: float) -> Callable[..., np.ndarray]:
        penalised = walk / taker_count[None, :] ** beta

        def score(m: GraphMetaImplicit, u: str, sup: list[str], pos: np.ndarray) -> np.ndarray:
            g = penalised[taken_items(m, u, sup)][:, pos].sum(axis=0)
            return (1 - w) * _zscore(shipped(m, u, sup, pos)) + w * _zscore(g)
        return score

    def user_knn(k: int, w: float) -> Callable[..., np.ndarray]:
        def score(m: GraphMetaImplicit, u: str, sup: list[str], pos: np.ndarray) -> np.ndarray:
            items = taken_items(m, u, sup)
            v = np.zeros(x.shape[1])
            v[items] = 1.0 / np.sqrt(max(len(items), 1))
            sim = unit_rows @ v
            near = np.argpartition(-sim, min(k, len(sim) - 1))[:k]
            g = sim[near] @ x[near][:, pos].toarray()
            return (1 - w) * _zscore(shipped(m, u, sup, pos)) + w * _zscore(g)
        return score

    out = {"shipped": Variant(model, shipped)}
    out.update({f"eta {eta}": Variant(model, with_eta(eta)) for eta in ETAS})
    out.update({f"prior shape rho {rho} s {s}": Variant(model, with_precision(
        s * ((1 - rho) * eye + rho * shape))) for rho in (0.5, 1.0) for s in (0.5, 1.0)})
    out.update({f"rp3beta beta {b} w {w}": Variant(model, rp3(b, w))
                for b in (0.5, 0.7) for w in BLEND_WEIGHTS})
    out.update({f"user-knn k 50 w {w}": Variant(model, user_knn(50, w))
                for w in BLEND_WEIGHTS})
    return out


def per_task(model: Any, dataset: Dataset, scenario: str, *, fit: bool) -> np.ndarray:
    res = evaluate_implicit(model, dataset, scenarios=[scenario], fit=fit, per_task=True)
    return np.asarray(res["scenarios"][scenario]["recall@20_per_task"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--run", type=Path, required=True,
                        help="a `graph-meta train` output on DATASET (implicit_model.pkl)")
    parser.add_argument("--scenario", default="user_cold",
                        choices=["warm", "user_cold"],
                        help="a scenario whose pools hold items with training rows")
    parser.add_argument("--factors", default="",
                        help="comma-separated iALS dimensions to refit (default: none)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        factors = [int(f) for f in args.factors.split(",") if f]
    except ValueError:
        parser.error(f"--factors: integers separated by commas, got {args.factors!r}")
    if any(f < 1 for f in factors):
        parser.error("--factors: every dimension must be >= 1")
    dataset = read_dataset(args.dataset)
    model = GraphMetaImplicit.load(args.run / "implicit_model.pkl")
    if not dataset.tasks.get(args.scenario):
        parser.error(f"{args.dataset}: no {args.scenario} tasks")
    print(f"{args.dataset.name}, {args.scenario}: {len(dataset.tasks[args.scenario])} tasks; "
          f"shipped eta {model.coengagement_weights}, fold-in {model.fold_choices}")
    print("| variant | recall@20 | vs shipped (paired se) | s |")
    print("|---|---|---|---|")
    base: np.ndarray | None = None

    def row(name: str, recall: np.ndarray, seconds: float) -> None:
        assert base is not None
        diff = recall - base
        print(f"| {name} | {recall.mean():.4f} | {diff.mean():+.4f} "
              f"({diff.std() / np.sqrt(len(diff)):.4f}) | {seconds:.1f} |", flush=True)

    for name, variant in variants(model).items():
        t0 = time.perf_counter()
        recall = per_task(variant, dataset, args.scenario, fit=False)
        if base is None:
            base = recall
        row(name, recall, time.perf_counter() - t0)
    for f in factors:
        t0 = time.perf_counter()
        als = ImplicitALS(factors=f, reg=model.reg, alpha=model.alpha, iters=model.iters,
                          alpha_item=model.alpha_item, alpha_user=model.alpha_user,
                          seed=args.seed)
        row(f"iALS factors {f}", per_task(als, dataset, args.scenario, fit=True),
            time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
