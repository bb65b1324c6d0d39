"""``graph-meta category-transfer``: the category-transfer benchmark (a sparse category
learning from dense ones; :mod:`graph_meta.eval.category_transfer`).

For each held-out category the dataset is reduced (the category keeps a share ``keep`` of its
training ratings; its heavy users' removed ratings become tasks), and on that reduced training
data graph-meta, the ablations "graph-meta (no graph)" and "graph-meta (no CO_ENGAGED)" of
:data:`training.benchmark.ABLATIONS` and the tuned biased MF are fitted and scored by
:func:`graph_meta.eval.protocol.evaluate` at K = 0, 1, 3, 5, 10.

Writes into the output folder:

* ``<category>/split.json``: the split's counts; ``<category>/results/<model>.json``: the
  protocol's results of each model (the few-shot curve under ``few_shot.category_transfer``);
* ``category_transfer.json``: per model and K the RMSE and MAE averaged over the held-out
  categories (each category weighs the same), per category the task count and RMSE per K,
  and the run's settings (what ``benchmarks/seed_table.py`` averages over seeds);
* ``results.md``: the averaged table (rows models, columns K) and the per-category table.

Without ``categories`` the ``top`` categories with the most prospective task users are held
out, among those that hold at most :data:`MAX_SHARE` of the training ratings (a sparse
category is a minority of the shop).
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from graph_meta.dataset import ITEM_ID, Dataset
from graph_meta.eval.category_transfer import (
    SCENARIO,
    SUPPORT_K,
    categories_by_users,
    category_column,
    category_transfer_split,
    item_categories,
)
from graph_meta.eval.jsonable import jsonable
from training.benchmark import ABLATIONS

#: the ablations of :data:`training.benchmark.ABLATIONS` this benchmark runs
TRANSFER_ABLATIONS = ("graph-meta (no graph)", "graph-meta (no CO_ENGAGED)")
#: the default selection's cap on a held-out category's share of the training ratings
MAX_SHARE = 0.2
#: the result file of a run, read by ``benchmarks/seed_table.py``
SUMMARY = "category_transfer.json"


def choose_categories(dataset: Dataset, categories: Sequence[str] | None, top: int,
                      min_ratings: int, column: str | None = None,
                      max_share: float = MAX_SHARE) -> list[str]:
    """``categories`` as given, else the ``top`` categories with the most users having at
    least ``min_ratings`` training ratings in them (the ones that give the most tasks), among
    those whose items hold at most ``max_share`` of the training ratings: the held-out
    category must be a minority of the shop, learning from the dense rest (movielens' Drama,
    about half of all ratings, is not chosen by default)."""
    if categories:
        return list(dict.fromkeys(categories))
    shares = category_shares(dataset, column)
    ranked = [c for c, n in categories_by_users(dataset, min_ratings, column)
              if n > 0 and shares.get(c, 0.0) <= max_share]
    if not ranked:
        raise ValueError(f"{dataset.name}: no category with at most {max_share:.0%} of the "
                         f"training ratings has a user with {min_ratings} or more training "
                         "ratings in it: no transfer task can be made")
    return ranked[:top]


def category_shares(dataset: Dataset, column: str | None = None) -> dict[str, float]:
    """Per category: the share of the training rows whose item belongs to it."""
    cats = item_categories(dataset, column)
    per_row = cats.reindex(dataset.train[ITEM_ID].astype(str).to_numpy())
    counts = per_row.explode().dropna().value_counts()
    total = max(len(dataset.train), 1)
    return {str(c): float(n) / total for c, n in counts.items()}


def run_category_transfer(dataset: Dataset, out: Path, *,
                          categories: Sequence[str] | None = None, top: int = 3,
                          seed: int = 0, keep: float = 0.1, min_query: int = 5,
                          column: str | None = None, quick: bool = False,
                          config_path: Path | None = None, device: str = "auto",
                          echo: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Run the benchmark, write its files into ``out`` and return the summary.

    ``seed`` seeds the split (which ratings stay, the task order) and the models
    (graph-meta's ``train.seed``, the MF's factors and tuning carve). ``quick``: the small
    config (``configs/quick.toml``) and an untuned MF, for tests.
    """
    from graph_meta.baselines import BiasedMF
    from graph_meta.config import load_config
    from graph_meta.eval.protocol import evaluate, write_results
    from graph_meta.model import GraphMetaRecommender

    say = echo or (lambda s: print(s, file=sys.stderr, flush=True))
    if dataset.spec.implicit:
        raise ValueError(f"{dataset.name} is implicit; category transfer measures ratings")
    col = category_column(dataset.spec, column).name
    support = max(SUPPORT_K)
    chosen = choose_categories(dataset, categories, top, support + min_query, col)
    splits = [category_transfer_split(dataset, c, keep=keep, seed=seed, min_query=min_query,
                                      column=col) for c in chosen]  # unknown names fail early
    empty = [s.category for s in splits if not s.report["tasks"]]
    if empty:
        raise ValueError(f"{dataset.name}: category {empty[0]!r} gives no task: no user has "
                         f"{support + min_query} or more of its ratings removed (keep "
                         f"{keep}); choose another category or a larger dataset")
    if config_path is None and quick:
        config_path = Path(__file__).resolve().parents[1] / "configs" / "quick.toml"
    cfg = load_config(config_path).replace(**{"train.seed": int(seed)})
    variants = [(name, overrides) for name, overrides, fine_tune in ABLATIONS
                if name in TRANSFER_ABLATIONS and not fine_tune]
    out.mkdir(parents=True, exist_ok=True)
    per_category: dict[str, Any] = {}
    t_run = time.perf_counter()
    for split in splits:
        folder = out / _slug(split.category)
        (folder / "results").mkdir(parents=True, exist_ok=True)
        (folder / "split.json").write_text(_dumps(
            {"category": split.category, "column": col, "seed": seed, **split.report}))
        say(f"[{split.category}] {split.report['tasks']} tasks, "
            f"{split.report['kept_pairs']} of {split.report['category_pairs']} ratings kept, "
            f"{split.report['train_ratings']} training ratings")
        rows: list[dict[str, Any]] = []
        t = time.perf_counter()
        rows.append(evaluate(BiasedMF(tune=not quick, seed=seed), split.dataset,
                             support_k=SUPPORT_K))
        for name, overrides in [("graph-meta", {}), *variants]:
            torch.manual_seed(seed)
            model = GraphMetaRecommender(cfg.replace(**overrides) if overrides else cfg)
            model.name = name
            t0 = time.perf_counter()
            model.fit(split.dataset, device=device, progress=False)
            res = evaluate(model, split.dataset, support_k=SUPPORT_K, fit=False)
            res["fit_s"] = round(time.perf_counter() - t0, 1)
            if overrides:
                res["ablation"] = {"overrides": overrides}
            rows.append(res)
        for res in rows:
            res["category_transfer"] = {"category": split.category, "column": col,
                                        "seed": seed, **split.report}
            write_results(res, folder / "results" / f"{_slug(res['model'])}.json")
            say(f"[{split.category}] {res['model']}: RMSE " + " ".join(
                f"K={k} {_rmse(res, k):.4f}" for k in SUPPORT_K))
        per_category[split.category] = {
            "tasks": split.report["tasks"],
            "share": round(split.report["category_pairs"] / max(len(dataset.train), 1), 4),
            "wall_s": round(time.perf_counter() - t, 1),
            "models": {r["model"]: {str(k): _block(r, k) for k in SUPPORT_K} for r in rows}}
    models = list(next(iter(per_category.values()))["models"])
    mean = {m: {str(k): {metric: statistics.fmean(
        per_category[c]["models"][m][str(k)][metric] for c in per_category)
        for metric in ("rmse", "mae")} for k in SUPPORT_K} for m in models}
    summary = {"dataset": dataset.name, "column": col, "seed": seed, "keep": keep,
               "min_query": min_query, "support_k": list(SUPPORT_K), "quick": quick,
               "categories": per_category, "mean": mean,
               "wall_s": round(time.perf_counter() - t_run, 1)}
    (out / SUMMARY).write_text(_dumps(summary))
    (out / "results.md").write_text(transfer_tables(summary))
    return summary


def transfer_tables(summary: dict[str, Any], digits: int = 3) -> str:
    """``results.md``: RMSE (MAE) per model and K averaged over the categories, then RMSE
    per category."""
    ks = [str(k) for k in summary["support_k"]]
    cats = summary["categories"]
    f = f"{{:.{digits}f}}"
    lines = [f"# {summary['dataset']}: category transfer",
             "",
             f"Held out ({summary['column']}): "
             + ", ".join(f"{c} ({v['tasks']} tasks, {v.get('share', 0):.0%} of the training "
                         "ratings before)" for c, v in cats.items())
             + f"; keep {summary['keep']}, seed {summary['seed']}.",
             "",
             "| model: RMSE (MAE), mean over the held-out categories | "
             + " | ".join(f"K={k}" for k in ks) + " |",
             "|---|" + "---|" * len(ks)]
    for m, per_k in summary["mean"].items():
        lines.append(f"| {m} | " + " | ".join(
            f"{f.format(per_k[k]['rmse'])} ({f.format(per_k[k]['mae'])})" for k in ks) + " |")
    lines += ["", "| category | tasks | model: RMSE | " + " | ".join(f"K={k}" for k in ks)
              + " |", "|---|---|---|" + "---|" * len(ks)]
    for c, v in cats.items():
        for m, per_k in v["models"].items():
            lines.append(f"| {c} | {v['tasks']} | {m} | "
                         + " | ".join(f.format(per_k[k]["rmse"]) for k in ks) + " |")
    return "\n".join(lines) + "\n"


def _block(res: dict[str, Any], k: int) -> dict[str, float]:
    block = res["few_shot"][SCENARIO][str(k)]
    return {"rmse": float(block["rmse"]), "mae": float(block["mae"]),
            "ndcg@5": float(block["ndcg@5"])}


def _rmse(res: dict[str, Any], k: int) -> float:
    return float(res["few_shot"][SCENARIO][str(k)]["rmse"])


def _slug(name: str) -> str:
    """A file name for a category or model name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "_"


def _dumps(obj: Any) -> str:
    return json.dumps(jsonable(obj), indent=2) + "\n"
