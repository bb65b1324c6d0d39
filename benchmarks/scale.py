"""Cost curve: wall time and peak memory of every stage against the catalogue's size.

Usage::

    python benchmarks/scale.py OUT --size 10000,2000,200000 [--size U,I,N ...]
        [--config FILE] [--neo4j-max 2000000] [--from-stage train] [--device cuda]
    python benchmarks/scale.py OUT --plot          # the log-log plot of OUT/scale.json
    python scripts/neo4j_server.py run -- python benchmarks/scale.py OUT --size ...  # + Neo4j

For each size (users, items, interactions) a synthetic catalogue (``graph-meta synth``) is
made in ``OUT/data-N`` and every stage runs as its own process under GNU ``time`` (wall seconds
and peak RSS, in GiB, of that process alone): ``synth``, ``validate``, the graph and embedded store
build (``benchmarks/store_build.py``: reading the folder, the store, the ``HeteroData``
snapshot), the Neo4j ingest (``graph-meta ingest --store neo4j --wipe``, when ``NEO4J_URI`` is
set and the size is at most ``--neo4j-max`` interactions), ``train`` (its per-epoch seconds and
epochs to early stop read from ``RUN/train_log.csv``), ``evaluate`` (the protocol's four
scenarios, whole support), and the latency of adapting to a new user from 10 ratings and
scoring every item (p50/p99 ms). Each size's record is written to ``OUT/scale.json`` after every
stage (a killed run keeps what it measured; a size not finished says ``"complete": false``);
a stage that fails is recorded with its exit status and the rest of that size is skipped.
``OUT/scale.log`` holds each command with the tail of its output, ``OUT/logs/N-STAGE.log`` all
of it (training's progress lines give each step's time and memory).
``--from-stage NAME`` runs a size from that stage on, over the ``OUT/data-N`` an earlier run
left, keeping the earlier stages' records (e.g. after a change to training only).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TIME = "/usr/bin/time"
LATENCY = """
import json, sys
from graph_meta.model import GraphMetaRecommender
from loaders.folder import read_dataset
from training.benchmark import latency_new_user
model = GraphMetaRecommender.load(sys.argv[2])
print(json.dumps(latency_new_user(model, read_dataset(sys.argv[1]))))
"""


def _timed(cmd: list[str], log: Path, full_log: Path | None = None) -> dict[str, Any]:
    """Run ``cmd`` under GNU time: ``{"wall_s", "peak_rss_gb", "rc", "stdout"}`` (the peak
    resident set in GiB, 2^30 bytes: GNU time's kilobytes / 1024^2; 1 GiB = 1.074 GB). ``log``
    gets the command and the tails of its output, ``full_log`` (if given) all of it (the
    progress lines with each step's time and memory)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as stamp:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        proc = subprocess.run([TIME, "-f", "%e %M", "-o", stamp.name, *cmd], cwd=ROOT,
                              capture_output=True, text=True, env=env)
        with log.open("a") as f:
            f.write(f"$ {' '.join(cmd)}\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}\n")
        if full_log is not None:
            full_log.parent.mkdir(parents=True, exist_ok=True)
            full_log.write_text(f"$ {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}\n")
        parts = Path(stamp.name).read_text().split()
    wall, rss_kb = (float(parts[-2]), float(parts[-1])) if len(parts) >= 2 else (0.0, 0.0)
    return {"wall_s": round(wall, 2), "peak_rss_gb": round(rss_kb / 1024 ** 2, 3),
            "rc": proc.returncode, "stdout": proc.stdout}


def _epochs(run: Path) -> dict[str, Any]:
    """Epochs run per phase (the carved-validation phase that finds the early stop, then
    the refit) and the mean seconds of an epoch, from ``RUN/train_log.csv``."""
    path = run / "train_log.csv"
    if not path.exists():
        return {}
    with path.open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("seconds")]
    phases: dict[str, int] = {}
    for r in rows:
        phases[r["phase"]] = phases.get(r["phase"], 0) + 1
    secs = [float(r["seconds"]) for r in rows]
    rates = [float(r["tasks_per_s"]) for r in rows if r.get("tasks_per_s")]
    return {"epochs_run": phases,
            "epoch_s_mean": round(sum(secs) / len(secs), 2) if secs else None,
            "tasks_per_s_mean": round(sum(rates) / len(rates), 1) if rates else None}


def measure(out: Path, users: int, items: int, interactions: int, *, config: Path | None,
            neo4j_max: int, save: Any = None, from_stage: str | None = None,
            earlier: dict[str, Any] | None = None, device: str = "auto") -> dict[str, Any]:
    """Every stage of one size (module docstring); ``save(record)`` after each stage, so a
    size stopped midway keeps the stages it finished (``"complete": false``). With
    ``from_stage`` the stages before it are skipped and their records taken from
    ``earlier`` (the size's record of an earlier run)."""
    data, run, log = out / f"data-{interactions}", out / f"run-{interactions}", out / "scale.log"
    gm = [sys.executable, "-m", "training.cli"]
    rec: dict[str, Any] = {"users": users, "items": items, "interactions": interactions,
                           "complete": False, "stages": {}}
    train = [*gm, "train", str(data), "--out", str(run), "--device", device]
    if config is not None:
        train += ["--config", str(config)]
    stages: list[tuple[str, list[str]]] = [
        ("synth", [*gm, "synth", "--users", str(users), "--items", str(items),
                   "--interactions", str(interactions), "--out", str(data)]),
        ("validate", [*gm, "validate", str(data)]),
        ("graph + embedded store", [sys.executable, "benchmarks/store_build.py", str(data),
                                    "--new-items", "0"]),
    ]
    if os.environ.get("NEO4J_URI") and interactions <= neo4j_max:
        stages.append(("neo4j ingest", [*gm, "ingest", str(data), "--store", "neo4j",
                                        "--wipe"]))
    stages += [("train", train),
               ("evaluate", [*gm, "evaluate", str(data), "--run", str(run), "--out",
                             str(run / "results.json"), "--support-k", "all"]),
               ("latency", [sys.executable, "-c", LATENCY, str(data),
                            str(run / "model.pt")])]
    if from_stage is not None:
        names = [name for name, _ in stages]
        if from_stage not in names:
            raise ValueError(f"--from-stage {from_stage!r}: not one of {names}")
        if not (data / "dataset.json").exists():
            raise ValueError(f"--from-stage {from_stage!r}: {data} holds no dataset.json "
                             "(run the size from its start once)")
        start = names.index(from_stage)
        done = (earlier or {}).get("stages", {})
        rec["stages"] = {name: done[name] for name in names[:start] if name in done}
        stages = stages[start:]
    for name, cmd in stages:
        stem = re.sub(r"\W+", "_", name)
        got = _timed(cmd, log, out / "logs" / f"{interactions}-{stem}.log")
        stdout = got.pop("stdout")
        if name == "train":
            got.update(_epochs(run))
        if name == "latency" and got["rc"] == 0:
            got.update(json.loads(stdout.strip().splitlines()[-1]))
        if name == "graph + embedded store" and got["rc"] == 0:  # its own split of the time
            report = json.loads(stdout[:stdout.rindex("}") + 1])
            got.update({k: report[k] for k in ("read_s", "build_store_s", "snapshot_s")})
        rec["stages"][name] = got
        print(f"{interactions:>10,} {name:<24} {got['wall_s']:>9.1f} s "
              f"{got['peak_rss_gb']:>7.2f} GiB rc={got['rc']}", flush=True)
        if got["rc"] != 0:
            rec["failed"] = name
        if save is not None:
            save(rec)
        if got["rc"] != 0:
            break
    else:
        rec["complete"] = True
        if save is not None:
            save(rec)
    return rec


def plot(out: Path) -> Path:
    """``OUT/scale.png``: wall time and peak RSS of every stage against interactions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = json.loads((out / "scale.json").read_text())
    names = list(dict.fromkeys(n for r in records for n in r["stages"]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in names:
        pts = sorted((r["interactions"], r["stages"][name]) for r in records
                     if name in r["stages"] and r["stages"][name]["rc"] == 0)
        if not pts:
            continue
        x = [p[0] for p in pts]
        axes[0].plot(x, [p[1]["wall_s"] for p in pts], marker="o", label=name)
        axes[1].plot(x, [p[1]["peak_rss_gb"] for p in pts], marker="o", label=name)
    for ax, label in zip(axes, ("wall seconds", "peak RSS (GiB)"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("interactions")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path = out / "scale.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", action="append", default=[],
                        help="USERS,ITEMS,INTERACTIONS (repeatable)")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--neo4j-max", type=int, default=2_000_000)
    parser.add_argument("--plot", action="store_true")
    parser.add_argument("--from-stage", help="run each size from this stage on, over the "
                        "data an earlier run left (e.g. train)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where `train` runs (its mean tasks/s lands in scale.json)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.plot:
        print(plot(args.out))
        return 0
    if not args.size:
        parser.error("give at least one --size USERS,ITEMS,INTERACTIONS (or --plot)")
    path = args.out / "scale.json"
    records = json.loads(path.read_text()) if path.exists() else []

    def save(rec: dict[str, Any]) -> None:
        nonlocal records
        records = [r for r in records if r["interactions"] != rec["interactions"]] + [rec]
        path.write_text(json.dumps(sorted(records, key=lambda r: r["interactions"]),
                                   indent=1))

    for spec in args.size:
        try:
            users, items, interactions = (int(v) for v in spec.split(","))
        except ValueError:
            parser.error(f"--size {spec!r}: expected USERS,ITEMS,INTERACTIONS")
        earlier = next((r for r in records if r["interactions"] == interactions), None)
        try:
            measure(args.out, users, items, interactions, config=args.config,
                    neo4j_max=args.neo4j_max, save=save, from_stage=args.from_stage,
                    earlier=earlier, device=args.device)
        except ValueError as err:
            parser.error(str(err))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
