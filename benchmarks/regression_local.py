"""The co-rating regression two ways on one trained model: exact (EASE over every rated item)
and local (one ridge per item over its co-rating neighbours, what serves past 15,000 rated
items); build time of each and the model's offline RMSE with each.

Usage::

    python benchmarks/regression_local.py DATASET --run RUN

Prints one JSON line: ``exact_s``, ``local_s``, ``rated_items``, ``exact`` / ``local``
(scenario -> RMSE, PROTOCOL.md's offline evaluation, whole support) and the peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from graph_meta.eval.protocol import evaluate
from graph_meta.graph.neighborhood import ItemNeighbors
from graph_meta.model import GraphMetaRecommender
from graph_meta.serving.state import co_rating_lists, training_residuals
from loaders.folder import read_dataset
from training.benchmark import SUPPORT_K


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--run", type=Path, required=True)
    args = parser.parse_args(argv)
    data = read_dataset(args.dataset)
    model = GraphMetaRecommender.load(args.run / "model.pt")
    c, m = model.state, model.config.model
    res = training_residuals(c)
    t = time.perf_counter()
    exact = ItemNeighbors.from_residuals(res, l2=m.regression_l2, top_k=m.neighbor_k,
                                         solver="exact")
    t_exact = time.perf_counter() - t
    t = time.perf_counter()
    local = ItemNeighbors.from_residuals(res, l2=m.regression_l2, top_k=m.neighbor_k,
                                         candidates=co_rating_lists(c), solver="local")
    t_local = time.perf_counter() - t
    out = {"exact_s": round(t_exact, 1), "local_s": round(t_local, 1),
           "rated_items": int((np.diff(sp.csc_matrix(res).indptr) > 0).sum())}
    for name, lists in (("exact", exact), ("local", local)):
        c.reg_indptr, c.reg_indices, c.reg_weight = lists.indptr, lists.indices, lists.sim
        model.reset_observed()
        result = evaluate(model, data, support_k=SUPPORT_K, fit=False)
        out[name] = {s: round(b["rmse"], 4) for s, b in result["scenarios"].items()}
    out["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
