"""Mean ± sd over seeds of `graph-meta benchmark` runs: one markdown table per metric.

Usage::

    graph-meta benchmark DATASET --out runs/s0 --online --seed 0   # and --seed 1, --seed 2
    python benchmarks/seed_table.py runs/s0 runs/s1 runs/s2 [--metric rmse] [--digits 3]
    python benchmarks/seed_table.py runs/s0 runs/s1 runs/s2 --few-shot user_cold [--metric ...]

    graph-meta category-transfer DATASET --out ct/s0 --seed 0      # and --seed 1, --seed 2
    python benchmarks/seed_table.py ct/s0 ct/s1 ct/s2

Reads ``results/*.json`` of every run folder (PROTOCOL.md's shape), groups them by model name
(offline rows and ``... online`` rows alike) and prints ``mean ± sd (n)`` per scenario, the
sample standard deviation over the runs (``ddof = 1``). A model missing from a run is averaged
over the runs that have it. Also prints ``speed.json``'s latency keys averaged the same way.

Run folders of ``graph-meta category-transfer`` (they hold ``category_transfer.json``) get
:func:`transfer_table` instead: per model and support size K the metric averaged over the
held-out categories of each run, then mean ± sd over the runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

SCENARIOS = ("warm", "user_cold", "item_cold", "user_item_cold")
TRANSFER_SUMMARY = "category_transfer.json"  # training/category_transfer.py's SUMMARY
SPEED_KEYS = ("adapt_score_ms_p50", "adapt_score_ms_p99", "observe_rescore_ms_p50",
              "observe_rescore_ms_p99", "fit_s")


def _cell(values: list[float], digits: int) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.{digits}f} (n=1)"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(runs: list[Path], metric: str, digits: int) -> str:
    """The markdown table of ``metric`` (mean ± sd over ``runs``) per model and scenario."""
    by_model: dict[str, dict[str, list[float]]] = {}
    order: list[str] = []
    for run in runs:
        files = sorted((run / "results").glob("*.json"))
        if not files:
            raise SystemExit(f"{run}: no results/*.json (not a benchmark output folder)")
        for path in files:
            res = json.loads(path.read_text(encoding="utf-8"))
            name = str(res.get("model", path.stem))
            if name not in by_model:
                by_model[name] = {s: [] for s in SCENARIOS}
                order.append(name)
            for s in SCENARIOS:
                block = res.get("scenarios", {}).get(s)
                if block and metric in block:
                    by_model[name][s].append(float(block[metric]))
    offline = [m for m in order if not m.endswith(" online")]
    online = [m for m in order if m.endswith(" online")]
    lines = [f"| model ({metric}, mean ± sd over {len(runs)} runs) | " + " | ".join(SCENARIOS)
             + " |", "|---|" + "---|" * len(SCENARIOS)]
    for name in offline + online:
        cells = [_cell(by_model[name][s], digits) for s in SCENARIOS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def few_shot_table(runs: list[Path], metric: str, digits: int, scenario: str) -> str:
    """``metric`` per model and support size K of one scenario's few-shot curve (the
    results' ``few_shot`` blocks), mean ± sd over ``runs``; models without a curve left out."""
    by_model: dict[str, dict[str, list[float]]] = {}
    ks: list[str] = []
    for run in runs:
        for path in sorted((run / "results").glob("*.json")):
            res = json.loads(path.read_text(encoding="utf-8"))
            curve = res.get("few_shot", {}).get(scenario, {})
            ks += [k for k in curve if k not in ks]
            for k, block in curve.items():
                if metric in block:
                    by_model.setdefault(str(res.get("model", path.stem)), {}).setdefault(
                        k, []).append(float(block[metric]))
    return _per_k_table(f"{scenario} {metric}, mean ± sd over {len(runs)} runs", ks, by_model,
                        digits)


def _per_k_table(title: str, ks: list[str], by_model: dict[str, dict[str, list[float]]],
                 digits: int) -> str:
    """A markdown table: a row per model, a ``K=k`` column per support size."""
    lines = [f"| model ({title}) | " + " | ".join(f"K={k}" for k in ks) + " |",
             "|---|" + "---|" * len(ks)]
    for name, per_k in by_model.items():
        lines.append(f"| {name} | " + " | ".join(_cell(per_k.get(k, []), digits) for k in ks)
                     + " |")
    return "\n".join(lines)


def transfer_table(runs: list[Path], metric: str, digits: int) -> str:
    """Category-transfer runs: ``metric`` per model and K (the run's mean over its held-out
    categories), mean ± sd over ``runs``."""
    by_model: dict[str, dict[str, list[float]]] = {}
    ks: list[str] = []
    cats: list[str] = []
    for run in runs:
        path = run / TRANSFER_SUMMARY
        if not path.is_file():
            raise SystemExit(f"{run}: no {TRANSFER_SUMMARY} (not a category-transfer folder)")
        summary = json.loads(path.read_text(encoding="utf-8"))
        ks += [str(k) for k in summary["support_k"] if str(k) not in ks]
        cats += [c for c in summary["categories"] if c not in cats]
        for model, per_k in summary["mean"].items():
            for k, block in per_k.items():
                if metric in block:
                    by_model.setdefault(model, {}).setdefault(k, []).append(float(block[metric]))
    return f"held out: {', '.join(cats)}\n\n" + _per_k_table(
        f"{metric}, mean over categories, mean ± sd over {len(runs)} runs", ks, by_model, digits)


def speed(runs: list[Path], digits: int) -> str:
    """``speed.json``'s latency and fit-time keys, mean ± sd over the runs."""
    values: dict[str, list[float]] = {k: [] for k in SPEED_KEYS}
    for run in runs:
        path = run / "speed.json"
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            for k in SPEED_KEYS:
                if k in data:
                    values[k].append(float(data[k]))
    return "\n".join(f"- {k}: {_cell(v, digits)}" for k, v in values.items() if v)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="benchmark output folders")
    parser.add_argument("--metric", action="append",
                        help="metric(s) to tabulate (default: rmse, mae, ndcg@5)")
    parser.add_argument("--digits", type=int, default=3)
    parser.add_argument("--few-shot", metavar="SCENARIO", action="append",
                        help="the few-shot curve (metric per K) of these scenarios instead")
    args = parser.parse_args(argv)
    if args.few_shot:
        for scenario in args.few_shot:
            for metric in args.metric or ["rmse"]:
                print(few_shot_table(args.runs, metric, args.digits, scenario))
                print()
        return 0
    if all((run / TRANSFER_SUMMARY).is_file() for run in args.runs):
        for metric in args.metric or ["rmse", "mae"]:
            print(transfer_table(args.runs, metric, args.digits))
            print()
        return 0
    for metric in args.metric or ["rmse", "mae", "ndcg@5"]:
        print(table(args.runs, metric, args.digits))
        print()
    print(speed(args.runs, 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
