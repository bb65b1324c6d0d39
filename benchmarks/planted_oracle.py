"""How much the planted successor relation can buy on item_cold at best: regenerate the planted
synthetic catalogue (``graph-meta synth ... --planted-graph``), keep the generator's true
parameters, and score the item_cold query ratings two ways with every user's true parameters:

* **no graph**: the cold item's parameters as far as its side features tell (its brand's bias,
  its category's mean factor; its quality and own factor unknown, so at their means);
* **predecessor**: the same, plus the expectation given its predecessor's true parameters
  when ``successors.csv`` gives it one (quality ``0.8 q_p``, factor ``0.8 f_p + 0.6`` the
  category mean: the planting rule of ``loaders/synthetic.py``).

The relative RMSE gain of the second over the first bounds what a model that reads the relation
file can gain over one that does not (both would still estimate the parameters from ratings).
It is loose: a predecessor that is itself new has no training ratings, and under the protocol's
rule 2 nothing of it can be known, so the split by whether the predecessor has training ratings
shows where the bound can be reached (``predecessor rated``) and where it cannot.
Each is also split into the ratings of items with a predecessor and the others; ``--fit``
does the same split for graph-meta (default config, ``train.seed`` 0) and its
``model.use_relations = false`` ablation, fitted on the catalogue's ``train.csv``.

Usage::

    python benchmarks/planted_oracle.py [--users 8000 --items 1500 --interactions 160000]
        [--seed 0] [--fit]
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

import loaders.synthetic as synthetic


def _capture() -> dict[str, Any]:
    """Wrap the generator's private steps so that its true parameters are kept."""
    captured: dict[str, Any] = {}
    real_items, real_ratings = synthetic._items, synthetic._ratings

    def items(*args: Any) -> Any:
        frame, model = real_items(*args)
        captured["own_factor"] = model["factor"].copy()
        captured["brand_bias"] = model["bias"] - 0.5 * model["quality"]
        return frame, model

    def ratings(u: Any, i: Any, user: Any, item: Any, *rest: Any) -> Any:
        captured.update(user=user, item=item)
        return real_ratings(u, i, user, item, *rest)

    synthetic._items, synthetic._ratings = items, ratings
    return captured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=8000)
    parser.add_argument("--items", type=int, default=1500)
    parser.add_argument("--interactions", type=int, default=160_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fit", action="store_true",
                        help="also fit graph-meta with and without the relation files")
    args = parser.parse_args()
    captured = _capture()
    data = synthetic.generate_catalog(n_users=args.users, n_items=args.items,
                                      n_interactions=args.interactions, planted_graph=True,
                                      seed=args.seed)
    user, item = captured["user"], captured["item"]
    item_pos = {k: n for n, k in enumerate(data.items.index)}
    user_pos = {k: n for n, k in enumerate(data.users.index)}
    succ = data.relations["SUCCEEDS"]
    predecessor = {item_pos[s]: item_pos[d] for s, d in zip(succ["src"], succ["dst"],
                                                              strict=True)}
    cat, n_cat = item["category"], user["taste"].shape[1]
    own = captured["own_factor"]
    cat_mean = np.stack([own[cat == c].mean(0) if (cat == c).any() else np.zeros(own.shape[1])
                         for c in range(int(cat.max()) + 1)])

    def score(u: int, j: int, bias: float, factor: np.ndarray) -> float:
        liking = np.clip(np.log(n_cat * user["taste"][u, cat[j]]), -3.0, 3.0)
        s = synthetic._MEAN_RATING + user["bias"][u] + bias + 0.15 * liking
        return float(np.clip(s + user["factor"][u] @ factor, 1.0, 5.0))

    rows: dict[str, list[float]] = {"truth": [], "no graph": [], "predecessor": []}
    y, with_pred, pred_of = [], [], []
    for task in data.tasks["item_cold"]:
        u = user_pos[task.user_id]
        for item_id, r in task.query:
            j = item_pos[item_id]
            y.append(r)
            rows["truth"].append(score(u, j, item["bias"][j], item["factor"][j]))
            base = captured["brand_bias"][j]
            rows["no graph"].append(score(u, j, base, cat_mean[cat[j]]))
            p = predecessor.get(j)
            with_pred.append(p is not None)
            pred_of.append(p)
            rows["predecessor"].append(rows["no graph"][-1] if p is None else score(
                u, j, base + 0.5 * 0.8 * item["quality"][p],
                0.8 * item["factor"][p] + 0.6 * cat_mean[cat[j]]))
    target = np.asarray(y)
    rmse = {k: float(np.sqrt(np.mean((np.asarray(v) - target) ** 2))) for k, v in rows.items()}
    print(f"seed {args.seed}: {len(target):,} item_cold query ratings, "
          f"{np.mean(with_pred):.0%} of an item with a predecessor")
    for name, value in rmse.items():
        print(f"  {name:<12} RMSE {value:.4f}")
    print(f"  predecessor over no graph: "
          f"{100 * (1 - rmse['predecessor'] / rmse['no graph']):.1f} %")
    mask = np.asarray(with_pred)
    for name in ("no graph", "predecessor"):
        sq = (np.asarray(rows[name]) - target) ** 2
        print(f"  {name:<12} RMSE on the ratings of items with a predecessor "
              f"{np.sqrt(sq[mask].mean()):.4f}, of the others {np.sqrt(sq[~mask].mean()):.4f}")
    trained = set(data.train["item_id"].astype(str))
    ids = list(data.items.index.astype(str))
    rated = np.asarray([p is not None and ids[p] in trained for p in pred_of])
    print(f"  {rated.sum() / max(mask.sum(), 1):.0%} of the ratings with a predecessor have a "
          "predecessor with training ratings")
    for name in ("no graph", "predecessor"):
        sq = (np.asarray(rows[name]) - target) ** 2
        print(f"  {name:<12} RMSE, predecessor rated {np.sqrt(sq[rated].mean()):.4f}, "
              f"predecessor new {np.sqrt(sq[mask & ~rated].mean()):.4f}")
    reachable = np.where(rated, rows["predecessor"], rows["no graph"])
    value = float(np.sqrt(np.mean((reachable - target) ** 2)))
    print(f"  predecessor where it has training ratings only: RMSE {value:.4f}, "
          f"{100 * (1 - value / rmse['no graph']):.1f} % over no graph")
    if args.fit:
        _fitted_split(data, set(predecessor), item_pos)


def _fitted_split(data: Any, successors: set[int], item_pos: dict[str, int]) -> None:
    """graph-meta's item_cold RMSE on the ratings of items with a predecessor and the others,
    with and without the relation files."""
    import torch

    from graph_meta.config import load_config
    from graph_meta.model import GraphMetaRecommender

    for name, over in (("graph-meta", {}), ("no relations", {"model.use_relations": False})):
        torch.manual_seed(0)
        model = GraphMetaRecommender(load_config(None, **over)).fit(data)
        sq: dict[bool, list[float]] = {True: [], False: []}
        for task in data.tasks["item_cold"]:
            scores = model.predict(task.user_id, task.support, [i for i, _ in task.query])
            for (item_id, r), p in zip(task.query, scores, strict=True):
                sq[item_pos[item_id] in successors].append((p - r) ** 2)
        print(f"  {name:<12} RMSE on the ratings of items with a predecessor "
              f"{np.sqrt(np.mean(sq[True])):.4f}, of the others {np.sqrt(np.mean(sq[False])):.4f}")


if __name__ == "__main__":
    main()
