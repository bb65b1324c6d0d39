"""Diagnostic: how much of the cold-item error only other tasks' ratings could remove.

    python benchmarks/cold_item_ceiling.py DATASET

Not a model and not a protocol result: it reads the query ratings of *every* task, which
PROTOCOL.md forbids a model to do. It fits the tuned biased MF with fold-in, predicts the
``item_cold`` and ``user_item_cold`` tasks, then adds to each prediction an *oracle* offset
for the cold item: the item's mean residual over the query ratings of all the other tasks.
The task-averaged RMSE with that offset bounds what better side information about cold items
could buy the MF; the printed "share needed" is the fraction of that gain a model must get
from side information alone to reach ``--target``.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from graph_meta.baselines import BiasedMF
from graph_meta.eval.protocol import training_view
from loaders.folder import read_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--target", type=float, default=0.98)
    args = parser.parse_args()

    data = read_dataset(args.dataset)
    mf = BiasedMF().fit(training_view(data))
    out = {}
    for scenario in ("item_cold", "user_item_cold"):
        tasks = data.tasks.get(scenario, [])
        if not tasks:
            continue
        per_task = []
        residuals: dict[str, list[float]] = defaultdict(list)
        for task in tasks:
            items = [i for i, _ in task.query]
            y = np.array([r for _, r in task.query], dtype=np.float64)
            e = y - mf.predict(task.user_id, task.support, items)
            per_task.append((items, e))
            for item, err in zip(items, e, strict=True):
                residuals[item].append(float(err))
        total = {i: (sum(v), len(v)) for i, v in residuals.items()}
        plain, oracle = [], []
        for items, e in per_task:
            offset = np.array([(total[i][0] - err) / (total[i][1] - 1) if total[i][1] > 1
                               else 0.0 for i, err in zip(items, e, strict=True)])
            plain.append(np.sqrt(np.mean(e ** 2)))
            oracle.append(np.sqrt(np.mean((e - offset) ** 2)))
        base, best = float(np.mean(plain)), float(np.mean(oracle))
        out[scenario] = {"tasks": len(tasks), "mf_rmse": round(base, 4),
                         "with_oracle_item_offset": round(best, 4),
                         "share_needed_for_target": round((base - args.target)
                                                          / max(base - best, 1e-12), 3)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
