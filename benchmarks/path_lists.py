"""Benchmark: the attribute-path neighbour lists of a large catalogue, pruned against exact.

    python benchmarks/path_lists.py --items 200000 [--top-k 200] [--no-exact]

Draws a synthetic catalogue's items (``graph-meta synth``'s generator: departments >
categories > brands, rating counts from a small draw of interactions), builds their path
profiles (one row-normalised block per item node column, as :func:`path_blocks` does from a
graph) and times :meth:`ItemNeighbors.from_blocks` with pruned candidates
(:data:`~graph_meta.graph.neighborhood.PATH_PRUNE_ABOVE`) and, unless ``--no-exact``, exactly;
prints JSON with both times, peak RSS and whether the two lists are identical (else the mean
share of an item's exact neighbours that the pruned list keeps).
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np

from graph_meta.graph.neighborhood import ItemNeighbors, _row_normalised
from graph_meta.implicit_prior import incidence
from loaders.synthetic import generate_catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--top-k", type=int, default=200)
    parser.add_argument("--no-exact", action="store_true")
    args = parser.parse_args()
    data = generate_catalog(n_users=2000, n_items=args.items,
                            n_interactions=max(20_000, args.items), seed=0)
    ids = data.items.index.astype(str)
    blocks = {col.node: _row_normalised(incidence(data.items, col, ids))
              for col in data.spec.items.columns.values() if col.node}
    counts = np.bincount(ids.get_indexer(data.train["item_id"].astype(str)),
                         minlength=len(ids)).astype(np.float64)
    out: dict[str, object] = {
        "items": args.items, "top_k": args.top_k,
        "largest_node": {name: int(np.diff(b.tocsc().indptr).max())
                         for name, b in blocks.items()}}
    t = time.perf_counter()
    pruned = ItemNeighbors.from_blocks(blocks, None, top_k=args.top_k, tie_break=counts,
                                       prune_above=0)
    out["pruned_s"] = round(time.perf_counter() - t, 2)
    if not args.no_exact:
        t = time.perf_counter()
        exact = ItemNeighbors.from_blocks(blocks, None, top_k=args.top_k, tie_break=counts,
                                          prune_above=None)
        out["exact_s"] = round(time.perf_counter() - t, 2)
        same = (np.array_equal(exact.indptr, pruned.indptr)
                and np.array_equal(exact.indices, pruned.indices))
        out["identical"] = bool(same)
        if not same:
            kept = [len(np.intersect1d(exact.indices[a:b], pruned.indices[c:d])) / max(b - a, 1)
                    for a, b, c, d in zip(exact.indptr[:-1], exact.indptr[1:],
                                          pruned.indptr[:-1], pruned.indptr[1:], strict=True)]
            out["mean_share_kept"] = round(float(np.mean(kept)), 4)
    out["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
