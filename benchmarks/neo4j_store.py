"""Benchmark: Neo4j ingest (first run and rerun) and candidate-query latency on both stores.

    python scripts/neo4j_server.py run -- python benchmarks/neo4j_store.py DATASET \\
        [--queries 400] [--clients 1,16] [--processes] [--no-ingest] [--out results.json]

Uses the server named by ``NEO4J_URI``/``NEO4J_USER``/``NEO4J_PASSWORD`` (its database is
wiped and ingested twice, unless ``--no-ingest`` says it already holds DATASET). Queries:
existing users drawn from ``train.csv`` and new users given 5 ratings drawn from the tasks'
support sets, half each; every client (a thread, or with ``--processes`` a process with its
own driver, as web workers would be) sends its share of the queries back to back. The
``floor`` rows time ``RETURN 1`` the same way: what one Bolt round trip costs on this machine,
the least any candidate query can take. Prints JSON and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from graph_meta.store.embedded import EmbeddedGraphStore
from graph_meta.store.neo4j import Neo4jGraphStore
from loaders.folder import read_dataset


def _queries(dataset, n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    users = dataset.train["user_id"].astype(str).unique()
    tasks = [t for ts in dataset.tasks.values() for t in ts if len(t.support) >= 5]
    out: list[dict] = []
    for k in range(n):
        if k % 2 == 0 or not tasks:
            out.append({"user_id": str(users[rng.integers(len(users))])})
        else:
            task = tasks[rng.integers(len(tasks))]
            out.append({"rated": [(i, r) for i, r in task.support[:5]]})
    return out


_WORKER: dict = {}


def _open_worker() -> None:
    _WORKER["store"] = Neo4jGraphStore()  # the spec stored in the database


def _time_queries(args: tuple[list[dict], int, bool]) -> list[float]:
    chunk, k, floor = args
    store = _WORKER["store"]
    times = []
    for q in chunk:
        t = time.perf_counter()
        if floor:
            store._read("RETURN 1 AS one")
        else:
            store.candidates(k=k, **q)
        times.append(time.perf_counter() - t)
    return times


def _latencies(store, queries: list[dict], clients: int, k: int, *, floor: bool = False,
               processes: bool = False) -> dict[str, float]:
    chunks = [(queries[i::clients], k, floor) for i in range(clients)]
    if processes:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(clients, _open_worker) as pool:
            pool.map(_time_queries, [(c[0][:5], k, floor) for c in chunks])  # warm-up
            t0 = time.perf_counter()
            parts = pool.map(_time_queries, chunks)
            wall = time.perf_counter() - t0
    else:
        _WORKER["store"] = store
        t0 = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            parts = list(pool.map(_time_queries, chunks))
        wall = time.perf_counter() - t0
    times = np.concatenate([np.asarray(p) for p in parts])
    return {"clients": clients, "mode": "processes" if processes else "threads",
            "query": "RETURN 1" if floor else "candidates", "queries": len(queries),
            "p50_ms": round(float(np.percentile(times, 50)) * 1000, 2),
            "p99_ms": round(float(np.percentile(times, 99)) * 1000, 2),
            "qps": round(len(queries) / wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--clients", default="1,16")
    parser.add_argument("-k", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--processes", action="store_true",
                        help="Clients are processes (own driver each), not threads.")
    parser.add_argument("--no-ingest", action="store_true",
                        help="The database already holds DATASET: measure queries only.")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]

    data = read_dataset(args.dataset)
    result: dict = {"dataset": data.name, "date": time.strftime("%Y-%m-%d")}
    if not args.no_ingest:
        Neo4jGraphStore.wipe()
    for run in () if args.no_ingest else ("first", "rerun"):
        t = time.perf_counter()
        with Neo4jGraphStore(data.spec) as store:
            counts = store.ingest(data)
        result[f"neo4j_ingest_{run}_s"] = round(time.perf_counter() - t, 1)
        result[f"neo4j_counts_{run}"] = counts.as_dict()
    if not args.no_ingest:
        result["rerun_changed_counts"] = (result["neo4j_counts_first"]
                                          != result["neo4j_counts_rerun"])
    queries = _queries(data, args.queries)
    embedded = EmbeddedGraphStore.from_dataset(data)
    with Neo4jGraphStore(data.spec) as neo:
        for q in queries[:20]:  # warm-up, and the two stores must agree
            if neo.candidates(k=args.k, **q) != embedded.candidates(k=args.k, **q):
                raise AssertionError(f"stores disagree on {q}")
        result["neo4j_candidates"] = [
            _latencies(neo, queries, c, args.k, floor=floor, processes=args.processes)
            for c in clients for floor in (True, False)]
    result["embedded_candidates"] = [_latencies(embedded, queries, 1, args.k)]
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    print("\n| store | query | clients | p50 ms | p99 ms | queries/s |\n"
          "|---|---|---|---|---|---|")
    for store_name in ("neo4j", "embedded"):
        for r in result[f"{store_name}_candidates"]:
            print(f"| {store_name} | {r['query']} | {r['clients']} {r['mode']} | "
                  f"{r['p50_ms']} | {r['p99_ms']} | {r['qps']} |")
    if not args.no_ingest:
        print(f"\nNeo4j ingest: first {result['neo4j_ingest_first_s']} s, rerun "
              f"{result['neo4j_ingest_rerun_s']} s, counts changed: "
              f"{result['rerun_changed_counts']}")


if __name__ == "__main__":
    main()
