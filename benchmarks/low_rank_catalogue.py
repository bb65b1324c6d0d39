"""A small, dense, strongly low-rank rating catalogue as a dataset folder (a benchmark input).

Usage::

    python benchmarks/low_rank_catalogue.py OUT [--users 300] [--items 200] [--seed 0]

Ratings are ``clip(round(3 + b_u + b_i + 0.35 <u, v_i> + N(0, 0.5^2)), 1, 5)`` with 4 latent
factors per user and item (N(0, 1); the first item factor also carries its category, one of
six, centred), user biases N(0, 0.4^2), item biases N(0, 0.6^2); each user rates 30 to 49
items drawn uniformly. The last fifth of the users and the last 35 % of the items are new.
Tasks follow PROTOCOL.md's four scenarios (10 query ratings, the rest of a user's ratings in
the scenario the support): ``warm`` takes 40 known users with at least 23 ratings of known
items and holds 18 of them out (their training rows keep the others); ``user_cold``,
``item_cold`` and ``user_item_cold`` take every user with at least 11 ratings in the scenario.
Items have a ``Category`` column, a price and a title; users a region and an age band.

Unlike movielens-1m (about 150 ratings per item) or ``graph-meta synth`` (about 30 to 150, with
most of a rating in biases), a known item here has about 40 ratings and a third of a
rating's variance in its factors: the catalogue on which ALS's usual precision (10) shrank
graph-meta's item states too far (README, "A small catalogue").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

CATEGORIES = ("phones", "laptops", "tents", "coffee", "shoes", "books")


def _tasks(rows: pd.DataFrame, query: int = 10) -> list[dict]:
    out = []
    for user, group in rows.groupby("u", sort=True):
        group = group.sample(frac=1.0, random_state=int(user))
        if len(group) < query + 1:
            continue
        pairs = [[f"i{i:03d}", float(r)] for i, r in zip(group.i, group.r, strict=True)]
        out.append({"user_id": f"u{user:03d}", "support": pairs[query:], "query": pairs[:query]})
    return out


def write_catalogue(out: Path, *, n_users: int = 300, n_items: int = 200, seed: int = 0) -> None:
    """Write the catalogue (module docstring) to ``out`` (a new folder)."""
    rng = np.random.default_rng(seed)
    u_f, i_f = rng.normal(0, 1, (n_users, 4)), rng.normal(0, 1, (n_items, 4))
    u_b, i_b = rng.normal(0, 0.4, n_users), rng.normal(0, 0.6, n_items)
    category = rng.integers(0, len(CATEGORIES), n_items)
    i_f[:, 0] += category - (len(CATEGORIES) - 1) / 2
    rows = []
    for u in range(n_users):
        for i in rng.choice(n_items, 30 + int(rng.integers(0, 20)), replace=False):
            score = 3 + u_b[u] + i_b[i] + 0.35 * u_f[u] @ i_f[i] + rng.normal(0, 0.5)
            rows.append((u, int(i), float(np.clip(np.rint(score), 1, 5))))
    frame = pd.DataFrame(rows, columns=["u", "i", "r"])
    new_user = frame.u >= n_users - n_users // 5
    new_item = frame.i >= n_items - int(0.35 * n_items)
    known = frame[~new_user & ~new_item]
    enough = known.groupby("u").size()
    warm_users = rng.choice(np.asarray(enough[enough >= 23].index), 40, replace=False)
    held = pd.concat([known[known.u == u].sample(n=18, random_state=int(u))
                      for u in sorted(warm_users)])
    tasks = {"warm": _tasks(held),
             "user_cold": _tasks(frame[new_user & ~new_item]),
             "item_cold": _tasks(frame[~new_user & new_item]),
             "user_item_cold": _tasks(frame[new_user & new_item])}
    train = known.drop(held.index)
    out.mkdir(parents=True)
    (out / "tasks").mkdir()
    pd.DataFrame({"user_id": [f"u{u:03d}" for u in train.u],
                  "item_id": [f"i{i:03d}" for i in train.i],
                  "rating": train.r.to_numpy()}).to_csv(out / "train.csv", index=False)
    pd.DataFrame({"user_id": [f"u{u:03d}" for u in range(n_users)],
                  "region": rng.choice(["north", "south", "east"], n_users),
                  "age_band": rng.choice(["18-24", "25-34", "35+"], n_users)}
                 ).to_csv(out / "users.csv", index=False)
    pd.DataFrame({"item_id": [f"i{i:03d}" for i in range(n_items)],
                  "category": [CATEGORIES[c] for c in category],
                  "price": np.round(rng.uniform(5, 500, n_items), 2),
                  "title": [f"{CATEGORIES[c]} item {i}" for i, c in enumerate(category)]}
                 ).to_csv(out / "items.csv", index=False)
    for name, lines in tasks.items():
        (out / "tasks" / f"{name}.jsonl").write_text(
            "".join(json.dumps(t) + "\n" for t in lines), encoding="utf-8")
    spec = {"name": "low-rank-catalogue", "rating_scale": [1, 5], "train": "train.csv",
            "users": {"file": "users.csv", "id": "user_id",
                      "columns": {"region": {"type": "categorical", "node": "Region"},
                                  "age_band": {"type": "categorical"}}},
            "items": {"file": "items.csv", "id": "item_id",
                      "columns": {"category": {"type": "categorical", "node": "Category"},
                                  "price": {"type": "numeric"}, "title": {"type": "text"}}},
            "tasks": {name: f"tasks/{name}.jsonl" for name in tasks}}
    (out / "dataset.json").write_text(json.dumps(spec, indent=2), encoding="utf-8")
    print(f"wrote {out}: {len(train)} training ratings, "
          + ", ".join(f"{k}: {len(v)} tasks" for k, v in tasks.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_catalogue(args.out, n_users=args.users, n_items=args.items, seed=args.seed)


if __name__ == "__main__":
    main()
