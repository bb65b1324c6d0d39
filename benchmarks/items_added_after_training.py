"""Benchmark: cold items that arrive after training, scored without retraining.

    python benchmarks/items_added_after_training.py DATASET [--config FILE]

Trains graph-meta on DATASET with its never-rated items removed from ``items.csv`` (the
catalogue as it was before they arrived), adds them with
:meth:`GraphMetaRecommender.add_items`, and runs the protocol's tasks. Prints JSON and the
RMSE (MAE) table, to compare with the ``graph-meta`` row of ``graph-meta benchmark``, whose
model knew those items (unrated) at training time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from graph_meta.config import load_config
from graph_meta.eval.protocol import evaluate, results_table, training_view
from graph_meta.model import GraphMetaRecommender
from loaders.folder import read_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--config", type=Path, default=None)
    args = parser.parse_args()

    data = read_dataset(args.dataset)
    rated = set(data.train["item_id"].astype(str))
    ids = data.items.index.astype(str)
    before = dataclasses.replace(data, items=data.items.loc[ids.isin(rated)], tasks={})
    model = GraphMetaRecommender(load_config(args.config))
    t = time.perf_counter()
    model.fit(training_view(before))
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    added = model.add_items(data)
    add_s = time.perf_counter() - t
    model.name = "graph-meta, cold items added after training"
    results = evaluate(model, data, fit=False)
    out = {"dataset": data.name, "items_at_training": int(ids.isin(rated).sum()),
           "items_added": len(added), "fit_s": round(fit_s, 1), "add_items_s": round(add_s, 2),
           "rmse": {s: round(b["rmse"], 4) for s, b in results["scenarios"].items()},
           "mae": {s: round(b["mae"], 4) for s, b in results["scenarios"].items()}}
    print(json.dumps(out))
    print(results_table([results]))


if __name__ == "__main__":
    main()
