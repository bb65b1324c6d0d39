"""One process against N data-parallel processes (torchrun, gloo on CPU), same config.

For every seed: ``graph-meta train`` in one process, then under ``torchrun --nproc_per_node=N``
(the same global meta-batch, ``episodes.batch_users``, split over the ranks), each model
evaluated on the dataset's tasks (the protocol's per-scenario RMSE, whole support sets). Prints
a markdown table: test RMSE per scenario, the carved-validation RMSE, wall seconds of the
fit (``fit_info["fit_s"]``), and the mean absolute difference N - 1 next to the one-process
spread over seeds (the noise).

    python scripts/ddp_compare.py DATASET --config FILE --nproc 2 --seeds 0,1,2 --work DIR
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _train(dataset: Path, config: Path, out: Path, nproc: int) -> None:
    args = ["-m", "training.cli", "train", str(dataset), "--out", str(out), "--config",
            str(config), "--device", "cpu"]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               f"--master_port={_free_port()}", *args]
    else:
        cmd = [sys.executable, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--work", type=Path, required=True)
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from graph_meta.config import load_config
    from graph_meta.eval.protocol import evaluate
    from graph_meta.model import GraphMetaRecommender
    from loaders.folder import read_dataset

    data = read_dataset(a.dataset)
    rows: dict[tuple[int, int], dict[str, float]] = {}
    for seed in (int(s) for s in a.seeds.split(",")):
        cfg_path = a.work / f"seed{seed}.toml"
        cfg_path.parent.mkdir(parents=True, exist_ok=True)
        text = a.config.read_text()
        load_config(a.config)  # fails early on a bad config
        cfg_path.write_text(text.replace("[train]", f"[train]\nseed = {seed}", 1))
        for n in (1, a.nproc):
            out = a.work / f"seed{seed}-n{n}"
            _train(a.dataset, cfg_path, out, n)
            model = GraphMetaRecommender.load(out / "model.pt")
            res = evaluate(model, data, fit=False)
            rows[(seed, n)] = {s: float(b["rmse"]) for s, b in res["scenarios"].items()} | {
                "val": float(model.fit_info["val_rmse"]), "fit_s": model.fit_info["fit_s"]}
    cols = list(next(iter(rows.values())))
    print("| seed | processes | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for (seed, n), r in rows.items():
        print(f"| {seed} | {n} | " + " | ".join(f"{r[c]:.4f}" if c != "fit_s" else
                                                f"{r[c]:.1f}" for c in cols) + " |")
    seeds = sorted({s for s, _ in rows})
    scen = [c for c in cols if c not in ("val", "fit_s")]
    diff = np.mean([abs(rows[(s, a.nproc)][c] - rows[(s, 1)][c]) for s in seeds for c in scen])
    spread = np.mean([np.std([rows[(s, 1)][c] for s in seeds]) for c in scen])
    print(f"\nmean |RMSE({a.nproc} processes) - RMSE(1)| over seeds and scenarios: {diff:.4f}; "
          f"1-process std over seeds: {spread:.4f}")
    print(json.dumps({f"{s}-{n}": r for (s, n), r in rows.items()}))


if __name__ == "__main__":
    main()
