"""The ``graph-meta`` commands that make and inspect dataset folders and graphs: ``synth``,
``import-movielens``, ``import-csv``, ``make-implicit``, ``validate``, ``stats``, ``ingest``
(registered on the group in :mod:`training.cli`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from training.cli_options import open_store, store_options


@click.command()
@click.option("--users", "n_users", default=2000, show_default=True, type=click.IntRange(10))
@click.option("--items", "n_items", default=500, show_default=True, type=click.IntRange(10))
@click.option("--interactions", "n_interactions", default=40000, show_default=True,
              type=click.IntRange(100))
@click.option("--seed", default=0, show_default=True)
@click.option("--new-user-fraction", default=0.2, show_default=True)
@click.option("--new-item-fraction", default=0.2, show_default=True)
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Dataset folder to write.")
@click.option("--overwrite", is_flag=True, help="Replace an existing folder.")
@click.option("--planted-graph", is_flag=True,
              help="Also plant item successors and friend circles, held only by relation "
                   "files (successors.csv, friends.csv): signal only the graph can carry.")
@click.option("--planted-makers", is_flag=True,
              help="Thin brands (about four items each) grouped under makers; a maker's "
                   "quality offset and latent factors reach every item of its brands. The "
                   "maker is only in the relation file makers.csv (Brand -MADE_BY-> Maker), "
                   "two hops from an item: signal no items column holds.")
@click.option("--implicit", is_flag=True,
              help="Implicit feedback: views, carts and purchases driven by the planted "
                   "preferences; train.csv's weight = summed event weights.")
@click.option("--events", "events_path", type=click.Path(path_type=Path), default=None,
              help="With --implicit: also write the raw event log (user_id, item_id, event, "
                   "timestamp) to this CSV file, e.g. for import-csv --weight-col event.")
def synth(n_users: int, n_items: int, n_interactions: int, seed: int, new_user_fraction: float,
          new_item_fraction: float, out: Path, overwrite: bool, planted_graph: bool,
          planted_makers: bool, implicit: bool, events_path: Path | None) -> None:
    """Generate a synthetic e-commerce catalog as a dataset folder."""
    from loaders.folder import check_output_folder, write_dataset
    from loaders.synthetic import generate_catalog

    check_output_folder(out, overwrite=overwrite)  # before generating
    t0 = time.perf_counter()
    if events_path is not None and not implicit:
        raise click.UsageError("--events needs --implicit")
    if implicit:
        from training.implicit_cli import synth_implicit

        synth_implicit(n_users=n_users, n_items=n_items, n_interactions=n_interactions,
                       seed=seed, new_user_fraction=new_user_fraction,
                       new_item_fraction=new_item_fraction, out=out, overwrite=overwrite,
                       planted_graph=planted_graph, events_path=events_path, echo=click.echo,
                       planted_makers=planted_makers)
        return
    dataset = generate_catalog(n_users=n_users, n_items=n_items, n_interactions=n_interactions,
                               seed=seed, new_user_fraction=new_user_fraction,
                               new_item_fraction=new_item_fraction,
                               planted_graph=planted_graph, planted_makers=planted_makers,
                               progress=True)
    write_dataset(dataset, out, overwrite=overwrite)
    click.echo(f"wrote {out} ({len(dataset.train)} training ratings, "
               + ", ".join(f"{s}: {len(t)} tasks" for s, t in dataset.tasks.items())
               + f") in {time.perf_counter() - t0:.1f} s")


@click.command("import-movielens")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path))
@click.option("--download", is_flag=True, help="Download ml-1m.zip from GroupLens into SOURCE.")
@click.option("--seed", default=0, show_default=True)
@click.option("--new-user-fraction", default=0.2, show_default=True)
@click.option("--new-item-fraction", default=0.2, show_default=True)
@click.option("--overwrite", is_flag=True)
def import_movielens_cmd(source: Path, out: Path, download: bool, seed: int,
                         new_user_fraction: float, new_item_fraction: float,
                         overwrite: bool) -> None:
    """Import MovieLens-1M (ratings.dat, users.dat, movies.dat in SOURCE)."""
    from graph_meta.eval.split import SplitOptions
    from loaders.movielens import download_movielens, import_movielens

    if download:
        source = download_movielens(source)
    split = SplitOptions(seed=seed, new_user_fraction=new_user_fraction,
                         new_item_fraction=new_item_fraction)
    path = import_movielens(source, out, split=split, overwrite=overwrite)
    click.echo(f"wrote {path}")


@click.command("import-csv")
@click.argument("interactions", type=click.Path(path_type=Path))
@click.option("--items", "items_path", required=True, type=click.Path(path_type=Path),
              help="Items file (CSV or Parquet) with a category column.")
@click.option("--users", "users_path", type=click.Path(path_type=Path), default=None)
@click.option("--out", required=True, type=click.Path(path_type=Path))
@click.option("--user-col", default="user_id", show_default=True)
@click.option("--item-col", default="item_id", show_default=True)
@click.option("--rating-col", default="rating", show_default=True)
@click.option("--implicit", is_flag=True, help="No rating column: every row is a positive.")
@click.option("--weight-col", default=None,
              help="With --implicit: each row's confidence, a number or (with --weights) an "
                   "event name; a pair's rows are summed.")
@click.option("--weights", "weights_text", default=None, metavar="EVENT=W,...",
              help="Event weights for --weight-col, e.g. view=1,cart=3,purchase=5.")
@click.option("--timestamp-col", default=None)
@click.option("--category-col", default="category", show_default=True)
@click.option("--category-sep", default=None, help="Separator of several categories.")
@click.option("--node", "nodes", multiple=True, metavar="COLUMN=Label",
              help="Make an item/user column a node type, e.g. brand=Brand (repeatable).")
@click.option("--name", default=None)
@click.option("--seed", default=0, show_default=True)
@click.option("--overwrite", is_flag=True)
def import_csv_cmd(interactions: Path, items_path: Path, users_path: Path | None, out: Path,
                   user_col: str, item_col: str, rating_col: str, implicit: bool,
                   timestamp_col: str | None, category_col: str, category_sep: str | None,
                   nodes: tuple[str, ...], name: str | None, seed: int,
                   overwrite: bool, weight_col: str | None, weights_text: str | None) -> None:
    """Import your own interactions (CSV or Parquet) and items into a dataset folder."""
    from graph_meta.eval.split import SplitOptions
    from loaders.csv_import import import_interactions

    if weight_col is not None and not implicit:
        raise click.UsageError("--weight-col needs --implicit")
    if weights_text is not None and weight_col is None:
        raise click.UsageError("--weights needs --weight-col (the event column)")
    weights = None
    if weights_text is not None:
        from loaders.implicit import parse_weights

        weights = parse_weights(weights_text)

    node_columns = {}
    for spec in nodes:
        col, sep, label = spec.partition("=")
        if not sep or not col or not label:
            raise click.BadParameter(f"{spec!r}: expected COLUMN=Label", param_hint="--node")
        node_columns[col] = label
    path = import_interactions(
        interactions, items_path, out, users_path=users_path, user_col=user_col,
        item_col=item_col, rating_col=None if implicit else rating_col,
        timestamp_col=timestamp_col, category_col=category_col, category_sep=category_sep,
        node_columns=node_columns or None, name=name, split=SplitOptions(seed=seed),
        overwrite=overwrite, **({"weight_col": weight_col, "weights": weights}
                                if weight_col is not None else {}))
    click.echo(f"wrote {path}")


@click.command("make-implicit")
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--min-rating", default=4.0, show_default=True, type=float,
              help="A rating at least this high is a positive; the others are dropped.")
@click.option("--name", default=None, help="Dataset name (default: SOURCE's name + -implicit).")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it is a dataset folder.")
def make_implicit_cmd(source: Path, out: Path, min_rating: float, name: str | None,
                      overwrite: bool) -> None:
    """Derive an implicit dataset folder OUT from the rating folder SOURCE: same users, items
    and scenarios, positives = ratings >= --min-rating, tasks re-derived (K = 0 allowed)."""
    from training.implicit_cli import make_implicit_folder

    make_implicit_folder(source, out, min_rating=min_rating, name=name, overwrite=overwrite,
                         echo=click.echo)


@click.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--strict", is_flag=True,
              help="Duplicate (user, item) rows, repeated relation edges and tasks that "
                   "contradict their scenario are an error.")
def validate(dataset: Path, strict: bool) -> None:
    """Check a dataset folder; print problems with file, line and field."""
    from graph_meta.schema import CATEGORY, CO_ENGAGED
    from loaders.folder import read_dataset, scenario_problems

    data = read_dataset(dataset, strict=strict)
    problems = scenario_problems(data)
    if strict and problems:
        raise problems[0]
    for warning in [*data.warnings, *map(str, problems)]:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    if not any(col.node == CATEGORY for col in data.spec.items.columns.values()):
        click.secho(f"note: no item column has \"node\": \"{CATEGORY}\", so the items have no "
                    f"categories and there are no {CO_ENGAGED} links between them; mark the "
                    f"column that holds the categories with it in dataset.json "
                    f"(items.columns.<name>.node)", err=True)
    listed = {(dataset / f).resolve() for f in data.spec.tasks.values()}
    unlisted = sorted(p.name for p in (dataset / "tasks").glob("*.jsonl")
                      if p.resolve() not in listed)
    if unlisted:
        click.secho(f"note: {', '.join(unlisted)} in {dataset / 'tasks'} not listed under "
                    f"\"tasks\" in dataset.json: not read, and a benchmark leaves those "
                    f"scenarios out", err=True)
    empty = [name for name, tasks in data.tasks.items() if not tasks]
    if empty:
        click.secho(f"note: no task in {', '.join(empty)}: a benchmark reports those "
                    f"scenarios with 0 tasks and no metrics", err=True)
    click.echo(f"{dataset}: valid ({len(data.users)} users, {len(data.items)} items, "
               f"{len(data.train)} training ratings, "
               f"{sum(len(t) for t in data.tasks.values())} tasks)")


@click.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@store_options
def stats(dataset: Path, as_json: bool, store_kind: str, neo4j_uri: str | None,
          neo4j_user: str) -> None:
    """Counts per node and edge type, tasks and cold users/items per scenario."""
    from graph_meta.store.embedded import EmbeddedGraphStore
    from loaders.folder import read_dataset

    t0 = time.perf_counter()
    data = read_dataset(dataset)
    if store_kind == "neo4j":
        with open_store(dataset, store_kind, neo4j_uri, neo4j_user) as store:
            counts = store.counts()
    else:
        counts = EmbeddedGraphStore.from_dataset(data).counts()
    report = {
        "dataset": data.name,
        "users": len(data.users),
        "items": len(data.items),
        "train_ratings": len(data.train),
        "train_users": int(data.train["user_id"].nunique()),
        "train_items": int(data.train["item_id"].nunique()),
        **counts.as_dict(),
        "scenarios": data.cold_counts(),
        "warnings": data.warnings,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"dataset {data.name}: {report['users']} users, {report['items']} items, "
               f"{report['train_ratings']} training ratings "
               f"({report['train_users']} users and {report['train_items']} items in train)")
    click.echo("\nnodes")
    for nt, n in counts.nodes.items():
        click.echo(f"  {nt:<24}{n:>12,}")
    click.echo("\nedges")
    for et, n in counts.edges.items():
        click.echo(f"  {et!s:<48}{n:>12,}")
    click.echo("\nscenario          tasks   users  cold users   items  cold items  support  query")
    for s, c in report["scenarios"].items():
        click.echo(f"  {s:<15}{c['tasks']:>7}{c['users']:>8}{c['cold_users']:>12}"
                   f"{c['items']:>8}{c['cold_items']:>12}{c['support_ratings']:>9}"
                   f"{c['query_ratings']:>7}")
    for warning in data.warnings:
        click.secho(f"\nwarning: {warning}", fg="yellow")
    click.echo(f"\n({report['seconds']} s)")


@click.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@store_options
@click.option("--wipe", is_flag=True, help="Delete everything in the Neo4j database first.")
@click.option("--batch-size", default=5000, show_default=True, type=click.IntRange(1))
def ingest(dataset: Path, store_kind: str, neo4j_uri: str | None, neo4j_user: str, wipe: bool,
           batch_size: int) -> None:
    """Load a dataset folder's graph into the chosen store (idempotent: rerun at will)."""
    from graph_meta.graph.build import graph_records
    from loaders.folder import read_dataset

    t0 = time.perf_counter()
    data = read_dataset(dataset, tasks=False)
    if store_kind == "embedded":
        from graph_meta.store.embedded import EmbeddedGraphStore

        counts = EmbeddedGraphStore.from_dataset(data, progress=True).counts()
    else:
        from graph_meta.store.neo4j import Neo4jGraphStore

        if wipe:
            Neo4jGraphStore.wipe(uri=neo4j_uri, user=neo4j_user)
        with Neo4jGraphStore(data.spec, uri=neo4j_uri, user=neo4j_user,
                             batch_size=batch_size) as store:
            counts = store.ingest(graph_records(data), progress=True)
    for nt, n in counts.nodes.items():
        click.echo(f"  {nt:<24}{n:>12,}")
    for et, n in counts.edges.items():
        click.echo(f"  {et!s:<48}{n:>12,}")
    click.echo(f"ingested {data.name} into the {store_kind} store in "
               f"{time.perf_counter() - t0:.1f} s")


#: the commands of this module, in the order ``graph-meta --help`` lists them
DATA_COMMANDS = (synth, import_movielens_cmd, import_csv_cmd, make_implicit_cmd, validate, stats,
                 ingest)
