"""Seconds and memory of meta-training batches with full-graph vs sampled encoding.

Usage::

    python benchmarks/sampled_encoding.py DATA full [--batches 12]
    python benchmarks/sampled_encoding.py DATA sampled [--batches 12] [--fanouts 20,20]

Builds the training phase on the whole of ``DATA``'s training ratings (``train.validate``
off, 2 ALS sweeps, no per-epoch hold-out), then times ``--batches`` meta-batches (episodes,
``task_losses``, the ``prior_match`` term, backward, Adam step) with ``train.encode`` set to the
mode given, on one torch thread. Prints the seconds per batch, that times the batches of an
epoch, the resident memory before and after, and the process's peak (GB = 1024^3 bytes, as
``benchmarks/scale.py``). Run one mode per process:
the peak of a process is what the mode itself costs.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch

from graph_meta.config import Config
from graph_meta.eval.protocol import training_view
from graph_meta.fitting.train import _Phase
from graph_meta.model import GraphMetaRecommender
from loaders.folder import read_dataset


def _rss_gb() -> float:
    return float(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 1024 ** 3


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # KiB -> GiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("mode", choices=["full", "sampled"])
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--fanouts", default="", help="comma-separated, one per layer")
    args = parser.parse_args()
    torch.set_num_threads(1)
    over = {"train.validate": False, "train.als_iters": 2, "train.query_holdout": 0.0,
            "train.encode": args.mode}
    if args.fanouts:
        over["train.fanouts"] = [int(f) for f in args.fanouts.split(",")]
    cfg = Config().replace(**over)
    phase = _Phase(GraphMetaRecommender(cfg), training_view(read_dataset(args.data)), cfg,
                   torch.device("cpu"))
    net = phase.model.net
    assert net is not None
    nodes = sum(int(phase.data[nt].num_nodes) for nt in phase.data.node_types)
    print(f"{args.mode} {phase.fanouts}: {nodes:,} nodes; before the batches RSS "
          f"{_rss_gb():.2f} GB, peak {_peak_gb():.2f} GB", flush=True)
    rng = np.random.default_rng(0)
    chunks = phase.sampler.epoch_users(rng, cfg.episodes.batch_users)
    t0 = time.perf_counter()
    for users in chunks[:args.batches]:
        batch = phase.sampler.batch(rng, users, cfg.episodes.batch_items)
        out = phase.task_losses(batch)
        rows = slice(None) if out.prior_rows is None else out.prior_rows
        loss = out.user_loss + cfg.train.prior_match * (
            (out.item_prior[rows] - net.item_emb.weight[rows].detach()) ** 2).mean()
        if out.item_loss is not None:
            loss = loss + cfg.episodes.item_task_weight * out.item_loss
        phase.opt.zero_grad(set_to_none=True)
        loss.backward()
        phase.opt.step()
    per = (time.perf_counter() - t0) / max(1, min(args.batches, len(chunks)))
    print(f"{args.mode}: {per:.3f} s per batch x {len(chunks)} batches = {per * len(chunks):.0f} "
          f"s per epoch (batches only); RSS after {_rss_gb():.2f} GB, peak {_peak_gb():.2f} GB")


if __name__ == "__main__":
    main()
