"""``graph-meta demo --implicit``: the product on a synthetic shop's implicit feedback.

The same six steps as :mod:`training.demo`, on views, carts and purchases instead of ratings:

1. synthesize the shop's event log (:func:`loaders.synthetic_implicit.generate_implicit_catalog`)
   and write it as an implicit dataset folder (``train.csv``'s weight = summed event weights);
2. build the heterogeneous graph in the chosen store and show its strongest cross-category links;
3. train graph-meta's implicit model (:class:`graph_meta.implicit.GraphMetaImplicit`, tuned on
   pseudo-tasks carved from ``train.csv``);
4. rank the four cold-start scenarios' candidate pools (PROTOCOL.md, "Implicit feedback"):
   recall@20 and nDCG@20 against item popularity;
5. a brand-new user takes 5 products: their top 10, each with its relevance and graph path;
6. a new product nobody has taken yet: the users it would be recommended to, by relevance.

Scores are relevances (ranking scores with no scale), never ratings.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from graph_meta.dataset import ITEM_ID, Dataset
from training.demo import (
    DEMO_INTERACTIONS,
    DEMO_ITEMS,
    DEMO_USERS,
    _describe,
    _new_product,
    _open_store,
    _path,
    describe_graph,
)

Echo = Callable[[str], None]
SCENARIOS = ("warm", "user_cold", "item_cold", "user_item_cold")


def run_implicit_demo(echo: Echo, *, out: Path | None = None, seed: int = 0,
                      store_kind: str = "embedded", neo4j_uri: str | None = None,
                      neo4j_user: str = "neo4j", wipe: bool = False,
                      quick: bool = False) -> dict[str, Any]:
    """Run the implicit demo, printing through ``echo``; returns what it showed (for tests).

    ``quick``: the implicit model's small grid (a few seconds instead of about a minute).
    """
    from graph_meta.eval.protocol import training_view
    from graph_meta.eval.ranking import evaluate_implicit
    from graph_meta.implicit import GraphMetaImplicit
    from graph_meta.implicit_baselines import Popularity
    from graph_meta.recommend import audience, recommend
    from loaders.folder import read_dataset, write_dataset
    from loaders.synthetic_implicit import generate_implicit_catalog
    from training.implicit_cli import IMPLICIT_MODEL

    t_start = time.perf_counter()
    folder = out or Path(tempfile.mkdtemp(prefix="graph-meta-demo-")) / "catalog-implicit"
    echo(f"1/6 synthesizing a shop's event log: {DEMO_USERS:,} users, {DEMO_ITEMS:,} products, "
         f"about {DEMO_INTERACTIONS:,} viewed pairs (views, carts, purchases)")
    cat = generate_implicit_catalog(n_users=DEMO_USERS, n_items=DEMO_ITEMS,
                                    n_interactions=DEMO_INTERACTIONS, seed=seed)
    write_dataset(cat.dataset, folder, overwrite=True)
    data = read_dataset(folder)
    st = data.spec.stats
    echo(f"    {st['views']:,} views, {st['carts']:,} carts, {st['purchases']:,} purchases -> "
         f"{len(data.train):,} training positives (weight = summed event weights)")
    echo(f"    dataset folder: {folder}")

    echo(f"2/6 building the heterogeneous graph ({store_kind} store)")
    store = _open_store(data, store_kind, neo4j_uri, neo4j_user, wipe)
    with store:
        describe_graph(store, echo)

        echo("3/6 training graph-meta's implicit model on train.csv (tuned on pseudo-tasks "
             "carved from it)")
        t0 = time.perf_counter()
        with _quiet("graph_meta.split"):  # the carving's notes on too few warm users
            model = GraphMetaImplicit(quick=quick, seed=seed).fit(training_view(data))
        paths = model.params.get("item_paths", {})
        echo(f"    trained in {time.perf_counter() - t0:.0f} s; a new item's factors come "
             "from " + ", ".join(f"{name} ({w:+.2f})" for name, w in paths.items()))

        echo("4/6 the four cold-start scenarios (PROTOCOL.md, implicit: each task's candidate "
             "pool ranked, query positives hidden)")
        base = evaluate_implicit(Popularity(), data)
        ours = evaluate_implicit(model, data, fit=False)
        for line in _scenario_table(base, ours):
            echo("    " + line)

        echo("5/6 a brand-new user takes 5 products")
        took = _new_user_positives(data)
        for item in took:
            echo(f"      took {_describe(data, item)}")
        recs = recommend(store, model, positives=took, k=10)
        echo("    their top 10 (relevance: the model's ranking score), each with the graph "
             "path that proposed it:")
        for rank, rec in enumerate(recs, 1):
            echo(f"    {rank:>3}. {_describe(data, rec.item_id):<46} relevance "
                 f"{rec.score:.2f}  {rec.reason:<14} {_path(data, rec.path)}")

        echo("6/6 a new product nobody has taken yet (only category, brand and price are "
             "known)")
        item = _new_product(data)
        echo(f"      {_describe(data, item)}, price {data.items.loc[item, 'price']:.2f}")
        fans = audience(store, model, item, k=10)
        echo("    would be recommended to:")
        for rank, fan in enumerate(fans, 1):
            echo(f"    {rank:>3}. {fan.user_id:<8} relevance {fan.score:.2f}  "
                 f"{fan.reason:<15} {_path(data, fan.path)}")
        truth = _held_out_takers(data, item)
        users = model.user_ids
        scores = model.score_all_users(item)
        known = [u for u in truth if u in set(users)]
        if len(known) >= 4:
            rank = np.argsort(np.argsort(-scores, kind="stable"), kind="stable")
            where = {u: k for k, u in enumerate(users)}
            pct = 100.0 * np.mean([rank[where[u]] / len(users) for u in known])
            echo(f"    held-out truth: {len(known)} users took it later; on average the model "
                 f"ranks them in its top {pct:.0f} % of {len(users):,} users (chance: 50 %)")
    run = folder.parent / f"{folder.name}-run"
    model.save(run / IMPLICIT_MODEL)
    echo(f"done in {time.perf_counter() - t_start:.0f} s. The model is in {run}; try:")
    store_flag = "" if store_kind == "embedded" else " --store neo4j"
    echo(f"    graph-meta recommend {folder} --run {run} --positive {took[0]} --explain"
         f"{store_flag}")
    echo(f"    graph-meta audience {folder} --run {run} --item {item}{store_flag}")
    return {"folder": folder, "run": run, "baseline": base, "model": ours,
            "recommendations": recs, "new_item": item, "audience": fans, "positives": took}


class _quiet:
    """Raise one logger to ERROR for a block, unless the user asked for INFO (``-v``)."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)
        self.level = self.logger.level

    def __enter__(self) -> None:
        if not logging.getLogger().isEnabledFor(logging.INFO):
            self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        self.logger.setLevel(self.level)


def _scenario_table(base: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    lines = [f"{'scenario':<16}{'tasks':>6}{'pool':>6}   {'recall@20 popularity':>21}"
             f"{'graph-meta':>12}   {'nDCG@20 popularity':>19}{'graph-meta':>12}",
             "-" * 95]
    for s in SCENARIOS:
        b, o = base["scenarios"].get(s), ours["scenarios"].get(s)
        if b is None or o is None:
            continue
        lines.append(f"{s:<16}{b['tasks']:>6}{b.get('pool_size', 0):>6.0f}   "
                     f"{b['recall@20']:>21.3f}{o['recall@20']:>12.3f}   "
                     f"{b['ndcg@20']:>19.3f}{o['ndcg@20']:>12.3f}")
    return lines


def _new_user_positives(data: Dataset) -> list[str]:
    """The first 5 positives of the first cold-user task with 5 or more (in time order, as
    they would arrive)."""
    for task in data.tasks.get("user_cold", []):
        if len(task.support) >= 5:
            return [str(i) for i, _ in task.support[:5]]
    return [str(data.train[ITEM_ID].iloc[0])]


def _held_out_takers(data: Dataset, item: str) -> list[str]:
    """The users whose tasks hold ``item`` (they took it after the training cut)."""
    out: set[str] = set()
    for tasks in data.tasks.values():
        for task in tasks:
            if any(str(i) == item for i, _ in [*task.support, *task.query]):
                out.add(str(task.user_id))
    return sorted(out)
