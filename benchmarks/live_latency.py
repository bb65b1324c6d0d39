"""Cost of a live update on a trained model, in the state a live shop reaches.

Usage::

    python benchmarks/live_latency.py DATASET --run RUN [--warmup 0.5] [--repeats 200]
        [--batch-warmup]

Loads ``RUN/model.pt``, observes the support ratings of the first ``--warmup`` share of the
online replay's tasks (PROTOCOL.md order, untimed: items now have dozens to hundreds of
observed raters), then times ``--repeats`` single ratings drawn from the remaining tasks'
supports on new items, each: ``observe([rating])``, then ``score_all_users(item)`` (the item
re-scored for every user) and ``predict`` of a user on 10 new items. Prints JSON: p50/p99 in
ms of each step and of absorb + re-score, and the rated item's observed-rater counts.
``--batch-warmup`` observes the warm-up ratings in one call (the same state: observe does not
depend on the order ratings came in) and scores one item before timing, so the caches exist.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from graph_meta.eval.protocol import replay_order
from graph_meta.model import GraphMetaRecommender
from loaders.folder import read_dataset


def _ms(values: list[float]) -> dict[str, float]:
    return {"p50": round(float(np.percentile(values, 50)) * 1e3, 3),
            "p99": round(float(np.percentile(values, 99)) * 1e3, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-warmup", action="store_true")
    args = parser.parse_args(argv)
    data = read_dataset(args.dataset)
    model = GraphMetaRecommender.load(args.run / "model.pt")
    order = replay_order(data)
    cut = int(len(order) * args.warmup)
    t0 = time.perf_counter()
    warm = [[(data.tasks[s][j].user_id, str(i), float(r)) for i, r in data.tasks[s][j].support]
            for s, j in order[:cut]]
    if args.batch_warmup:
        model.observe([r for task in warm for r in task])
    else:
        for task in warm:
            model.observe(task)
    warm_s = time.perf_counter() - t0
    trained = set(data.train["item_id"].astype(str))
    pool = [(data.tasks[s][j].user_id, str(i), float(r)) for s, j in order[cut:]
            for i, r in data.tasks[s][j].support
            if str(i) not in trained and str(i) in model.item_pos]
    if not pool:
        raise SystemExit("no rating of a new item left after the warm-up")
    rng = np.random.default_rng(args.seed)
    picks = rng.choice(len(pool), size=min(args.repeats, len(pool)), replace=False)
    new_items = sorted({i for _, i, _ in pool})
    absorb, rescore, total, scored, raters = [], [], [], [], []
    users = model.user_ids
    if args.batch_warmup:
        model.score_all_users(pool[0][1])
    for k in picks:
        rating = pool[int(k)]
        t = time.perf_counter()
        model.observe([rating])
        t_obs = time.perf_counter()
        model.score_all_users(rating[1])
        t_all = time.perf_counter()
        absorb.append(t_obs - t)
        rescore.append(t_all - t_obs)
        total.append(t_all - t)
        user = users[int(rng.integers(len(users)))]
        query = [new_items[int(q)] for q in rng.choice(len(new_items), size=10)]
        t = time.perf_counter()
        model.predict(user, [], query)
        scored.append(time.perf_counter() - t)
        raters.append(len(model.live.item(rating[1])))
    print(json.dumps({
        "warmup_tasks": cut, "warmup_s": round(warm_s, 1), "observed": len(model.live),
        "ratings_timed": len(total), "item_observed_raters_p50": float(np.median(raters)),
        "observe_ms": _ms(absorb), "score_all_users_ms": _ms(rescore),
        "observe_and_rescore_ms": _ms(total), "predict_10_new_items_ms": _ms(scored),
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
