"""ALS's held-out RMSE on a dataset folder's training ratings, per latent dimension and precision.

Usage::

    python benchmarks/als_heldout.py DATASET [DATASET ...] [--dims 8,16,32] [--seed 0]

For each folder and each dimension: the held-out RMSE of ALS at every precision of
:data:`graph_meta.fitting.als.PRECISION_GRID` (a seeded 10 % of ``train.csv``'s ratings
held out, as ``train.precision_search`` does; :func:`graph_meta.fitting.als.choose_precision`;
every coordinate, the bias's included, at the same precision: ``meta.init_precision_bias`` is
not read), the best of them and the time taken. It is the proxy behind ``model.dim``'s default
(8) and the precision search: a catalogue whose ALS prefers another dimension by a wide
margin is one to try ``[model] dim`` on (graph-meta's own benchmark decides; README, "Eight
latent dimensions").
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from graph_meta.dataset import ITEM_ID, RATING, USER_ID
from graph_meta.eval.protocol import training_view
from graph_meta.fitting.als import PRECISION_GRID, choose_precision
from loaders.folder import read_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", type=Path, nargs="+")
    parser.add_argument("--dims", default="8,16,32",
                        help="comma-separated latent dimensions (default 8,16,32)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iters", type=int, default=20, help="ALS sweeps (default 20)")
    args = parser.parse_args(argv)
    try:
        dims = [int(d) for d in args.dims.split(",")]
    except ValueError:
        parser.error(f"--dims takes comma-separated integers, got {args.dims!r}")
    if any(d < 1 for d in dims):
        parser.error(f"--dims: every dimension must be at least 1, got {args.dims!r}")
    if args.iters < 1:
        parser.error(f"--iters must be at least 1, got {args.iters}")
    print("| dataset | dim | " + " | ".join(f"precision {p:g}" for p in PRECISION_GRID)
          + " | best | seconds |")
    print("|---|---|" + "---|" * (len(PRECISION_GRID) + 2))
    for path in args.datasets:
        train = training_view(read_dataset(path, tasks=False)).train
        user = pd.factorize(train[USER_ID])[0]
        item = pd.factorize(train[ITEM_ID])[0]
        rating = train[RATING].to_numpy()
        for dim in dims:
            t0 = time.perf_counter()
            _, scores = choose_precision(user, item, rating, dim, PRECISION_GRID, args.iters,
                                         args.seed, default=PRECISION_GRID[0])
            if not scores:
                print(f"| {path.name} | {dim} | too few ratings to hold any out |")
                continue
            best = min(scores, key=scores.__getitem__)
            cells = " | ".join(f"{scores[p]:.4f}" for p in PRECISION_GRID)
            print(f"| {path.name} | {dim} | {cells} | {scores[best]:.4f} at {best:g} | "
                  f"{time.perf_counter() - t0:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
