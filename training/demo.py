"""``graph-meta demo``: the whole product on a synthetic shop, end to end, in a few minutes.

1. synthesize an e-commerce catalog (users, products, categories, brands, ratings) and write it
   as a dataset folder;
2. build the heterogeneous graph in the chosen store (embedded, or a Neo4j server) and show its
   strongest cross-category links;
3. meta-train graph-meta on ``train.csv``;
4. evaluate the four cold-start scenarios against item mean + user bias (PROTOCOL.md runner);
5. a brand-new user rates 5 products: their top 10, each with the graph path that proposed it;
6. a new product that nobody has rated yet (only its category, brand and price are known):
   the users it would be recommended to, and the graph path to each.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from graph_meta.dataset import ITEM_ID, Dataset

Echo = Callable[[str], None]
DEMO_USERS, DEMO_ITEMS, DEMO_INTERACTIONS = 2000, 500, 40_000


def run_demo(echo: Echo, *, out: Path | None = None, seed: int = 0, store_kind: str = "embedded",
             neo4j_uri: str | None = None, neo4j_user: str = "neo4j", wipe: bool = False,
             config_path: Path | None = None, device: str = "auto") -> dict[str, Any]:
    """Run the demo, printing through ``echo``; returns what it showed (for tests)."""
    from graph_meta.baselines import ItemMeanUserBias
    from graph_meta.config import load_config
    from graph_meta.eval.protocol import evaluate
    from graph_meta.model import GraphMetaRecommender
    from graph_meta.recommend import audience, recommend
    from loaders.folder import read_dataset, write_dataset
    from loaders.synthetic import generate_catalog

    t_start = time.perf_counter()
    folder = out or Path(tempfile.mkdtemp(prefix="graph-meta-demo-")) / "catalog"
    echo(f"1/6 synthesizing a shop: {DEMO_USERS:,} users, {DEMO_ITEMS:,} products, "
         f"{DEMO_INTERACTIONS:,} ratings")
    write_dataset(generate_catalog(n_users=DEMO_USERS, n_items=DEMO_ITEMS,
                                   n_interactions=DEMO_INTERACTIONS, seed=seed, progress=True),
                  folder, overwrite=True)
    data = read_dataset(folder)
    echo(f"    dataset folder: {folder}")

    echo(f"2/6 building the heterogeneous graph ({store_kind} store)")
    store = _open_store(data, store_kind, neo4j_uri, neo4j_user, wipe)
    with store:
        describe_graph(store, echo)

        echo("3/6 meta-training graph-meta on train.csv")
        t0 = time.perf_counter()
        model = GraphMetaRecommender(load_config(config_path))
        model.fit(data, device=device, progress=True,
                  store=store if store_kind == "neo4j" else None)
        echo(f"    trained in {time.perf_counter() - t0:.0f} s "
             f"({_epochs(model.fit_info)})")

        echo("4/6 the four cold-start scenarios (PROTOCOL.md: each task solved alone, "
             "query ratings hidden)")
        base = evaluate(ItemMeanUserBias(tune=False), data)
        ours = evaluate(model, data, fit=False)
        table = _scenario_table(base, ours)
        for line in table:
            echo("    " + line)

        echo("5/6 a brand-new user rates 5 products")
        rated = _new_user_ratings(data)
        for item, r in rated:
            echo(f"      {'*' * int(r):<5} {_describe(data, item)}")
        recs = recommend(store, model, rated=rated, k=10)
        echo("    their top 10, each with the graph path that proposed it:")
        for rank, rec in enumerate(recs, 1):
            echo(f"    {rank:>3}. {_describe(data, rec.item_id):<46} predicted "
                 f"{rec.predicted:.2f}  {rec.reason:<14} {_path(data, rec.path)}")

        echo("6/6 a new product nobody has rated yet (only category, brand and price are known)")
        item = _new_product(data)
        echo(f"      {_describe(data, item)}, price {data.items.loc[item, 'price']:.2f}")
        fans = audience(store, model, item, k=10)
        echo("    would be recommended to:")
        for rank, fan in enumerate(fans, 1):
            echo(f"    {rank:>3}. {fan.user_id:<8} predicted {fan.predicted:.2f}  "
                 f"{fan.reason:<15} {_path(data, fan.path)}")
        held_out = _held_out_ratings(data, item)
        if len(held_out) >= 4:
            existing = set(data.train["user_id"].astype(str))
            users = [u for u in sorted(held_out) if u in existing and u in model.user_pos]
            scores = model.score_all_users(item)
            pred = np.array([scores[model.user_pos[u]] for u in users])
            actual = np.array([held_out[u] for u in users])
            if len(pred) >= 4:
                order = np.argsort(-pred, kind="stable")
                half = len(order) // 2
                echo(f"    held-out truth: {len(actual)} existing users rated it later; those the "
                     f"model ranks in the top half gave {actual[order[:half]].mean():.2f} on "
                     f"average, the bottom half {actual[order[half:]].mean():.2f}")
    run = folder.parent / f"{folder.name}-run"
    model.save(run / "model.pt")
    echo(f"done in {time.perf_counter() - t_start:.0f} s. The model is in {run}; try:")
    store_flag = "" if store_kind == "embedded" else " --store neo4j"
    echo(f"    graph-meta recommend {folder} --run {run} --rated {rated[0][0]}:5 --explain"
         f"{store_flag}")
    echo(f"    graph-meta audience {folder} --run {run} --item {item}{store_flag}")
    return {"folder": folder, "run": run, "baseline": base, "model": ours, "recommendations": recs,
            "new_item": item, "audience": fans, "rated": rated}


def _epochs(info: dict[str, Any]) -> str:
    best = info.get("val_best_epoch")
    if best is None:
        return f"{info.get('epochs_run', 0)} epochs"
    if best == 0:
        return "validation preferred the untrained start: ALS + closed-form priors"
    return f"{best} epochs, the number validation chose"


def describe_graph(store: Any, echo: Echo) -> None:
    """The demo's graph lines: node and edge counts, the strongest ``CO_ENGAGED`` links."""
    counts = store.counts()
    echo("    " + ", ".join(f"{n:,} {t}" for t, n in counts.nodes.items()))
    echo("    " + ", ".join(f"{n:,} {e.rel}" for e, n in counts.edges.items()))
    links = _strongest_links(store, 5)
    if links:
        echo("    strongest cross-category links (CO_ENGAGED, NPMI of shared users):")
        for a, b, w in links:
            echo(f"      {a:>20} -> {b:<20} {w:.2f}")


def _open_store(data: Dataset, store_kind: str, uri: str | None, user: str, wipe: bool):
    if store_kind == "embedded":
        from graph_meta.store.embedded import EmbeddedGraphStore

        return EmbeddedGraphStore.from_dataset(data, progress=True)
    from graph_meta.graph.build import graph_records
    from graph_meta.store.neo4j import Neo4jGraphStore

    if wipe:
        Neo4jGraphStore.wipe(uri=uri, user=user)
    store = Neo4jGraphStore(data.spec, uri=uri, user=user)
    store.ingest(graph_records(data), progress=True)
    return store


def _strongest_links(store, n: int) -> list[tuple[str, str, float]]:
    co = store.schema.co_engaged
    if co is None:
        return []
    batch = store.edge_batch(co)
    w = batch.properties["weight"]
    order = np.lexsort((batch.dst, batch.src, -w))
    seen: set[frozenset[str]] = set()
    out = []
    for k in order:
        pair = frozenset((batch.src[k], batch.dst[k]))
        if pair not in seen:
            seen.add(pair)
            out.append((str(batch.src[k]), str(batch.dst[k]), float(w[k])))
        if len(out) == n:
            break
    return out


def _scenario_table(base: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    lines = [f"{'scenario':<16}{'tasks':>6}   {'RMSE item mean+user bias':>24}"
             f"{'graph-meta':>12}{'change':>9}   {'nDCG@5':>7}{'graph-meta':>12}",
             "-" * 90]
    for s, b in base["scenarios"].items():
        o = ours["scenarios"][s]
        change = 100.0 * (o["rmse"] - b["rmse"]) / b["rmse"]
        lines.append(f"{s:<16}{b['tasks']:>6}   {b['rmse']:>24.3f}{o['rmse']:>12.3f}"
                     f"{change:>+8.1f}%   {b['ndcg@5']:>7.3f}{o['ndcg@5']:>12.3f}")
    return lines


def _new_user_ratings(data: Dataset) -> list[tuple[str, float]]:
    """5 ratings of a held-out (new) user: the first cold-user task with 5 or more, taking the
    user's ratings in time order as they would arrive."""
    for task in data.tasks.get("user_cold", []):
        if len(task.support) >= 5:
            return [(str(i), float(r)) for i, r in task.support[:5]]
    row = data.train.iloc[0]
    return [(str(row[ITEM_ID]), float(row["rating"]))]


def _new_product(data: Dataset) -> str:
    """The item with no training rating that the most cold-item tasks ask about."""
    rated = set(data.train[ITEM_ID].astype(str))
    counts: dict[str, int] = {}
    for task in data.tasks.get("item_cold", []):
        for i, _ in task.query:
            if str(i) not in rated:
                counts[str(i)] = counts.get(str(i), 0) + 1
    if counts:
        return max(sorted(counts), key=counts.__getitem__)
    unrated = sorted(set(data.items.index.astype(str)) - rated)
    return unrated[0] if unrated else str(data.items.index[0])


def _held_out_ratings(data: Dataset, item: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for tasks in data.tasks.values():
        for task in tasks:
            for i, r in [*task.support, *task.query]:
                if str(i) == item:
                    out[str(task.user_id)] = float(r)
    return out


def _describe(data: Dataset, item: str) -> str:
    row = data.items.loc[item] if item in data.items.index else None
    if row is None or "title" not in row:
        return item
    return f"{item} {row['title']} [{row.get('category', '')}]"


def _path(data: Dataset, path) -> str:
    def name(label: str, node: str) -> str:
        if label == "Item" and node in data.items.index and "title" in data.items.columns:
            return f"'{data.items.loc[node, 'title']}'"
        return f"{label}:{node}"

    return " -> ".join(name(label, node) for label, node in path)
