"""graph-meta, item mean + user bias and the tuned MF, offline and online, for one seed.

Usage::

    python benchmarks/online_seeds.py DATASET OUT SEED

The rows of ``graph-meta benchmark DATASET --out OUT --online --seed SEED`` for these three
models alone (no MeLU, no global mean: a shorter run per extra seed), written the same way
(``OUT/results/*.json``, ``OUT/speed.json``) so that ``benchmarks/seed_table.py`` averages
them with full benchmark runs.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from graph_meta.baselines import BiasedMF, ItemMeanUserBias
from graph_meta.config import load_config
from graph_meta.eval.protocol import evaluate, evaluate_online, write_results
from graph_meta.model import GraphMetaRecommender
from loaders.folder import read_dataset
from training.benchmark import SUPPORT_K, latency_new_user, latency_observe


def _rmse(res: dict) -> dict[str, float]:
    return {s: round(b["rmse"], 4) for s, b in res["scenarios"].items()}


def main(argv: list[str]) -> int:
    dataset, out, seed = read_dataset(argv[0]), Path(argv[1]), int(argv[2])
    (out / "results").mkdir(parents=True, exist_ok=True)
    cfg = load_config(None).replace(**{"train.seed": seed})
    torch.manual_seed(seed)
    ours = GraphMetaRecommender(cfg)
    t = time.perf_counter()
    ours.fit(dataset, progress=False, checkpoint_dir=out / "run")
    fit_s = time.perf_counter() - t
    rows = []
    for model, fit in ((ItemMeanUserBias(tune=True, seed=seed), True),
                       (BiasedMF(tune=True, seed=seed), True), (ours, False)):
        offline = evaluate(model, dataset, support_k=SUPPORT_K, fit=fit)
        online = evaluate_online(model, dataset, fit=False)
        online["model"] += " online"
        rows += [offline, online]
        print(offline["model"], _rmse(offline), _rmse(online), flush=True)
    for res in rows:
        name = res["model"].replace(" ", "_").replace("/", "_")
        write_results(res, out / "results" / f"{name}.json")
    speed = {"fit_s": round(fit_s, 1), **latency_new_user(ours, dataset),
             **latency_observe(ours, dataset)}
    (out / "speed.json").write_text(json.dumps(speed, indent=2) + "\n")
    print(speed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
