"""graph-meta, item mean + user bias and the tuned MF, offline and online, for one seed.

Usage::

    python benchmarks/online_seeds.py DATASET OUT SEED [--no-baselines] [--ablation NAME ...]
        [--fixed-live-precision] [--ablations-only] [--offline] [--set KEY=VALUE ...]

The rows of ``graph-meta benchmark DATASET --out OUT --online --seed SEED`` for these three
models alone (no MeLU, no global mean: a shorter run per extra seed), written the same way
(``OUT/results/*.json``, ``OUT/speed.json``) so that ``benchmarks/seed_table.py`` averages
them with full benchmark runs. ``--no-baselines`` leaves the two baselines out (their rows do
not depend on graph-meta's code: reuse an earlier run's); ``--ablation`` adds an offline row
of :data:`training.benchmark.ABLATIONS` by name (e.g. ``"graph-meta (no graph)"``);
``--fixed-live-precision`` an online row of graph-meta fitted with ``model.live_precision =
1`` (the learned item precision as it is; the default, 0, chooses its scale on held-out items,
:mod:`graph_meta.live_tuning`);
``--ablations-only`` fits and writes the ``--ablation`` rows alone (no graph-meta row, no
baselines, no ``speed.json``): more rows for a run already made; ``--offline`` leaves the
online replay out (offline rows only, and no live-update latency); ``--set`` changes the
config of every graph-meta row (``--set train.prior_search=true``; the value is read as JSON,
else as a string).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from graph_meta.baselines import BiasedMF, ItemMeanUserBias
from graph_meta.config import load_config
from graph_meta.eval.protocol import evaluate, evaluate_online, write_results
from graph_meta.model import GraphMetaRecommender
from loaders.folder import read_dataset
from training.benchmark import ABLATIONS, SUPPORT_K, latency_new_user, latency_observe


def _write(res: dict, out: Path) -> None:
    """``OUT/results/<model>.json`` as soon as a row is measured (a killed run keeps them)."""
    name = res["model"].replace(" ", "_").replace("/", "_")
    write_results(res, out / "results" / f"{name}.json")


def _rmse(res: dict) -> dict[str, float]:
    return {s: round(b["rmse"], 4) for s, b in res["scenarios"].items()}


def _override(kv: str, parser: argparse.ArgumentParser) -> tuple[str, object]:
    key, sep, raw = kv.partition("=")
    if not sep or not key:
        parser.error(f"--set takes KEY=VALUE, got {kv!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("seed", type=int)
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--ablation", action="append", default=[],
                        choices=[name for name, _, _ in ABLATIONS])
    parser.add_argument("--fixed-live-precision", action="store_true")
    parser.add_argument("--ablations-only", action="store_true")
    parser.add_argument("--offline", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if args.ablations_only and (args.fixed_live_precision or not args.ablation):
        parser.error("--ablations-only takes --ablation rows and no --fixed-live-precision")
    if args.offline and args.fixed_live_precision:
        parser.error("--fixed-live-precision is an online row: not with --offline")
    dataset, out, seed = read_dataset(args.dataset), args.out, args.seed
    (out / "results").mkdir(parents=True, exist_ok=True)
    cfg = load_config(None).replace(**{"train.seed": seed, **dict(
        _override(kv, parser) for kv in args.set)})
    rows = []
    ours = None
    if not args.ablations_only:
        torch.manual_seed(seed)
        ours = GraphMetaRecommender(cfg)
        t = time.perf_counter()
        ours.fit(dataset, progress=False, checkpoint_dir=out / "run")
        fit_s = time.perf_counter() - t
        print("path-type weights chosen:", ours.fit_info.get("path_weights"), flush=True)
    baselines = [] if args.no_baselines or ours is None else [
        (ItemMeanUserBias(tune=True, seed=seed), True), (BiasedMF(tune=True, seed=seed), True)]
    for model, fit in (*baselines, *([(ours, False)] if ours is not None else [])):
        offline = evaluate(model, dataset, support_k=SUPPORT_K, fit=fit)
        rows.append(offline)
        _write(offline, out)
        if args.offline:
            print(offline["model"], _rmse(offline), flush=True)
            continue
        online = evaluate_online(model, dataset, fit=False)
        online["model"] += " online"
        rows.append(online)
        _write(online, out)
        print(offline["model"], _rmse(offline), _rmse(online), flush=True)
    for name, overrides, fine_tune in ABLATIONS:
        if name not in args.ablation:
            continue
        if fine_tune:
            raise SystemExit(f"{name}: run it with graph-meta benchmark --ablations")
        torch.manual_seed(seed)
        variant = GraphMetaRecommender(cfg.replace(**overrides))
        variant.name = name
        variant.fit(dataset, progress=False)
        rows.append(evaluate(variant, dataset, support_k=SUPPORT_K, fit=False))
        _write(rows[-1], out)
        print(name, _rmse(rows[-1]), flush=True)
    if args.fixed_live_precision:
        torch.manual_seed(seed)
        fixed = GraphMetaRecommender(cfg.replace(**{"model.live_precision": 1.0}))
        fixed.name = "graph-meta (live precision 1)"
        fixed.fit(dataset, progress=False)
        rows.append(evaluate_online(fixed, dataset, fit=False))
        rows[-1]["model"] += " online"
        _write(rows[-1], out)
        print(rows[-1]["model"], fixed.fit_info.get("live_precision"), _rmse(rows[-1]),
              flush=True)
    if ours is None:
        return 0
    speed = {"fit_s": round(fit_s, 1), **latency_new_user(ours, dataset),
             **({} if args.offline else latency_observe(ours, dataset))}
    (out / "speed.json").write_text(json.dumps(speed, indent=2) + "\n")
    print(speed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
