"""Add (or redo) rows of an implicit benchmark run: selected models on the implicit protocol.

Usage::

    python benchmarks/implicit_rows.py DATASET OUT --seed N [--models graph-meta,...]
        [--support-k 0,1,3,5,10,all]

Writes ``OUT/results/<model>.json`` exactly as ``graph-meta benchmark`` on an implicit folder
does (:mod:`training.implicit_benchmark`), and merges the rank-the-pool latency into
``OUT/speed.json``. graph-meta takes the ALS settings the iALS row's tuning chose when
``OUT/results/implicit_ALS_+_fold-in.json`` exists (as the benchmark does), else tunes them.
Models: ``popularity``, ``ials``, ``lightfm``, ``content``, ``graph-meta``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default="graph-meta")
    parser.add_argument("--support-k", default="0,1,3,5,10,all")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from graph_meta.eval.protocol import write_results
    from graph_meta.eval.ranking import evaluate_implicit
    from graph_meta.implicit import GraphMetaImplicit
    from graph_meta.implicit_baselines import (
        ContentProfile,
        ImplicitALS,
        LightFMBaseline,
        Popularity,
    )
    from loaders.folder import read_dataset
    from training.implicit_benchmark import latency_pool

    ks = [None if k == "all" else int(k) for k in args.support_k.split(",")]
    data = read_dataset(args.dataset)
    out = args.out
    (out / "results").mkdir(parents=True, exist_ok=True)
    ials_json = out / "results" / "implicit_ALS_+_fold-in.json"
    als_params = json.loads(ials_json.read_text())["params"] if ials_json.is_file() else None
    makers = {
        "popularity": lambda: Popularity(),
        "ials": lambda: ImplicitALS(tune=True, seed=args.seed),
        "lightfm": lambda: LightFMBaseline(seed=args.seed),
        "content": lambda: ContentProfile(),
        "graph-meta": lambda: GraphMetaImplicit(seed=args.seed, tune=True,
                                                als_params=als_params),
    }
    speed_path = out / "speed.json"
    speed = json.loads(speed_path.read_text()) if speed_path.is_file() else {}
    for key in args.models.split(","):
        model = makers[key]()
        t0 = time.perf_counter()
        res = evaluate_implicit(model, data, support_k=ks, progress=True)
        res["wall_s"] = round(time.perf_counter() - t0, 1)
        name = res["model"].replace(" ", "_").replace("/", "_")
        write_results(res, out / "results" / f"{name}.json")
        speed[res["model"]] = {"fit_s": res["fit_s"], **latency_pool(model, data,
                                                                     seed=args.seed)}
        speed_path.write_text(json.dumps(speed, indent=2, default=str) + "\n")
        print(f"wrote {out / 'results' / f'{name}.json'} ({res['wall_s']} s)")


if __name__ == "__main__":
    main()
