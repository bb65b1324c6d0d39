"""Evaluate the baselines on a dataset folder with the cold-start protocol.

    python benchmarks/baselines.py ../shared/data/movielens-1m [--out DIR]
        [--support-k all 0 1 3 5 10] [--models global itembias mf mf-nofold] [--no-tune]

Each model is fitted on ``train.csv`` + side information (hyper-parameters chosen on
pseudo-tasks carved from ``train.csv`` unless ``--no-tune``), then every task of every
scenario is solved alone (:func:`graph_meta.eval.protocol.evaluate`). Prints the results JSON
(a list, one object per model, in PROTOCOL.md's shape, with ``wall_s`` added) and the markdown
tables; with ``--out DIR`` writes ``DIR/<model>.json``, ``DIR/baselines.json`` and
``DIR/baselines.md``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from graph_meta.baselines import BiasedMF, GlobalMean, ItemMeanUserBias
from graph_meta.eval.protocol import ColdStartModel, evaluate, results_table, write_results
from loaders.folder import read_dataset

MODELS = {
    "global": lambda tune: GlobalMean(),
    "itembias": lambda tune: ItemMeanUserBias(tune=tune),
    "mf": lambda tune: BiasedMF(tune=tune),
    "mf-nofold": lambda tune: BiasedMF(tune=tune, fold_in=False),
}


def _support_k(values: list[str]) -> list[int | None]:
    out: list[int | None] = []
    for v in values:
        out.append(None if v == "all" else int(v))
    return out


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="dataset folder (PROTOCOL.md format)")
    parser.add_argument("--out", type=Path, help="write the JSON and markdown here")
    parser.add_argument("--support-k", nargs="+", default=["all"],
                        help="support sizes: 'all' and/or integers (few-shot curves)")
    parser.add_argument("--models", nargs="+", default=["global", "itembias", "mf"],
                        choices=sorted(MODELS))
    parser.add_argument("--no-tune", action="store_true",
                        help="use the default hyper-parameters instead of the pseudo-task grid")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    dataset = read_dataset(args.dataset)
    print(f"read {dataset.name} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    support_k = _support_k(args.support_k)
    results = []
    for key in args.models:
        model: ColdStartModel = MODELS[key](not args.no_tune)
        t1 = time.perf_counter()
        res = evaluate(model, dataset, support_k=support_k, progress=not args.quiet)
        res["wall_s"] = round(time.perf_counter() - t1, 2)
        results.append(res)
        if args.out:
            write_results(res, args.out / f"{_slug(res['model'])}.json")
    table = results_table(results)
    print(json.dumps(results, indent=2))
    print(table)
    if args.out:
        write_results(results, args.out / "baselines.json")
        md = args.out / "baselines.md"
        md.write_text(f"# Baselines on {dataset.name}\n\n{table}", encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
