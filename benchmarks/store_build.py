"""Benchmark: build a dataset's graph and HeteroData, then insert new items one at a time.

    python benchmarks/store_build.py DATASET [--new-items 1000] [--store embedded|neo4j]

Prints JSON and a table: seconds and peak memory (max RSS) of reading the folder, building
the store, exporting the ``HeteroData`` snapshot, and inserting ``--new-items`` items one by
one, each followed by a query proving it is reachable through its category.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

from graph_meta.schema import CATEGORY, ITEM
from loaders.folder import read_dataset


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--new-items", type=int, default=1000)
    parser.add_argument("--store", choices=["embedded", "neo4j"], default="embedded")
    args = parser.parse_args()

    out: dict[str, float | int | str] = {"dataset": str(args.dataset), "store": args.store}
    t = time.perf_counter()
    data = read_dataset(args.dataset, tasks=False)
    out["read_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    if args.store == "embedded":
        from graph_meta.store.embedded import EmbeddedGraphStore

        store = EmbeddedGraphStore.from_dataset(data)
    else:
        from graph_meta.store.neo4j import Neo4jGraphStore

        Neo4jGraphStore.wipe()
        store = Neo4jGraphStore(data.spec)
        store.ingest(data)
    out["build_store_s"] = round(time.perf_counter() - t, 2)
    out["peak_rss_after_store_mb"] = round(_peak_mb())
    t = time.perf_counter()
    snapshot = store.snapshot()
    out["snapshot_s"] = round(time.perf_counter() - t, 2)
    out["snapshot_edges"] = int(sum(snapshot[et].edge_index.shape[1]
                                    for et in snapshot.edge_types))
    out["peak_rss_after_snapshot_mb"] = round(_peak_mb())

    cat_col = next(c for c, s in data.spec.items.columns.items() if s.node == CATEGORY)
    sep = data.spec.items.columns[cat_col].sep
    categories = data.items[cat_col].astype(str).str.split(sep or "\x00").str[0].to_numpy()
    rng = np.random.default_rng(0)
    rated = store.schema.rated
    has_cat = next(a.edge_type for a in store.schema.attribute_edges
                   if a.owner == ITEM and a.edge_type.dst == CATEGORY)
    latencies = []
    t = time.perf_counter()
    for k in range(args.new_items):
        category = categories[rng.integers(len(categories))]
        item_id = f"bench-new-item-{k}"
        t0 = time.perf_counter()
        store.add_items(pd.DataFrame({cat_col: [category]}, index=[item_id]))
        user = str(data.train["user_id"].iat[int(rng.integers(len(data.train)))])
        store.add_ratings([user], [item_id], [float(data.spec.rating_scale[1])])
        found = store.neighbors(ITEM, [item_id], has_cat, "out")
        latencies.append(time.perf_counter() - t0)
        if found[0][1] != category:
            raise AssertionError(f"{item_id} not reachable through {category}")
    out["insert_items"] = args.new_items
    out["insert_total_s"] = round(time.perf_counter() - t, 2)
    if latencies:  # --new-items 0: the build alone
        out["insert_ms_p50"] = round(float(np.percentile(latencies, 50)) * 1000, 2)
        out["insert_ms_p99"] = round(float(np.percentile(latencies, 99)) * 1000, 2)
    out["rated_edges_after"] = store.counts().edges[rated]
    out["peak_rss_mb"] = round(_peak_mb())
    print(json.dumps(out, indent=2))
    print("\n| measure | value |\n|---|---|")
    for key, value in out.items():
        print(f"| {key} | {value} |")


if __name__ == "__main__":
    main()
