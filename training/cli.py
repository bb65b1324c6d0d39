"""The ``graph-meta`` command line.

Commands: ``synth``, ``import-movielens``, ``import-csv``, ``validate``, ``stats``, ``demo``.
Data errors are printed as one line naming file, line and field, with exit code 2.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import click

from graph_meta.errors import GraphMetaError


def _fail(exc: Exception) -> None:
    click.secho(f"error: {exc}", fg="red", err=True)
    sys.exit(2)


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except GraphMetaError as exc:
            _fail(exc)


@click.group(cls=_Group)
@click.version_option(package_name="graph-meta")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details.")
def main(verbose: bool) -> None:
    """graph-meta: graph-based meta-learning recommendations for cold start."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@main.command()
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
def synth(n_users: int, n_items: int, n_interactions: int, seed: int, new_user_fraction: float,
          new_item_fraction: float, out: Path, overwrite: bool) -> None:
    """Generate a synthetic e-commerce catalog as a dataset folder."""
    from loaders.folder import write_dataset
    from loaders.synthetic import generate_catalog

    t0 = time.perf_counter()
    dataset = generate_catalog(n_users=n_users, n_items=n_items, n_interactions=n_interactions,
                               seed=seed, new_user_fraction=new_user_fraction,
                               new_item_fraction=new_item_fraction, progress=True)
    write_dataset(dataset, out, overwrite=overwrite)
    click.echo(f"wrote {out} ({len(dataset.train)} training ratings, "
               + ", ".join(f"{s}: {len(t)} tasks" for s, t in dataset.tasks.items())
               + f") in {time.perf_counter() - t0:.1f} s")


@main.command("import-movielens")
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
    from loaders.movielens import download_movielens, import_movielens

    if download:
        source = download_movielens(source)
    path = import_movielens(source, out, seed=seed, new_user_fraction=new_user_fraction,
                            new_item_fraction=new_item_fraction, overwrite=overwrite)
    click.echo(f"wrote {path}")


@main.command("import-csv")
@click.argument("interactions", type=click.Path(path_type=Path))
@click.option("--items", "items_path", required=True, type=click.Path(path_type=Path),
              help="Items file (CSV or Parquet) with a category column.")
@click.option("--users", "users_path", type=click.Path(path_type=Path), default=None)
@click.option("--out", required=True, type=click.Path(path_type=Path))
@click.option("--user-col", default="user_id", show_default=True)
@click.option("--item-col", default="item_id", show_default=True)
@click.option("--rating-col", default="rating", show_default=True)
@click.option("--implicit", is_flag=True, help="No rating column: every row is a positive.")
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
                   overwrite: bool) -> None:
    """Import your own interactions (CSV or Parquet) and items into a dataset folder."""
    from loaders.csv_import import import_interactions

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
        node_columns=node_columns or None, name=name, seed=seed, overwrite=overwrite)
    click.echo(f"wrote {path}")


@main.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--strict", is_flag=True, help="Duplicate (user, item) rows are an error.")
def validate(dataset: Path, strict: bool) -> None:
    """Check a dataset folder; print problems with file, line and field."""
    from loaders.folder import read_dataset

    data = read_dataset(dataset, strict=strict)
    for warning in data.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    click.echo(f"{dataset}: valid ({len(data.users)} users, {len(data.items)} items, "
               f"{len(data.train)} training ratings, "
               f"{sum(len(t) for t in data.tasks.values())} tasks)")


@main.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stats(dataset: Path, as_json: bool) -> None:
    """Counts per node and edge type, tasks and cold users/items per scenario."""
    from graph_meta.store.embedded import EmbeddedGraphStore
    from loaders.folder import read_dataset

    t0 = time.perf_counter()
    data = read_dataset(dataset)
    store = EmbeddedGraphStore.from_dataset(data)
    counts = store.counts()
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


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Where to write the synthetic catalog (default: a temporary folder).")
@click.option("--seed", default=0, show_default=True)
def demo(out: Path | None, seed: int) -> None:
    """Synthesize a catalog, build its graph and show what the graph holds."""
    import tempfile

    from graph_meta.store.embedded import EmbeddedGraphStore
    from loaders.folder import read_dataset, write_dataset
    from loaders.synthetic import generate_catalog

    folder = out or Path(tempfile.mkdtemp(prefix="graph-meta-demo-")) / "catalog"
    click.echo("1. synthesizing an e-commerce catalog ...")
    dataset = generate_catalog(seed=seed, progress=True)
    write_dataset(dataset, folder, overwrite=True)
    click.echo(f"   wrote {folder}")
    click.echo("2. building the heterogeneous graph (embedded store) ...")
    store = EmbeddedGraphStore.from_dataset(read_dataset(folder), progress=True)
    counts = store.counts()
    for nt, n in counts.nodes.items():
        click.echo(f"   {nt:<12}{n:>8,} nodes")
    for et, n in counts.edges.items():
        click.echo(f"   {et!s:<44}{n:>8,} edges")
    co = store.schema.co_engaged
    if co is not None:
        click.echo("3. strongest cross-category links (CO_ENGAGED, NPMI):")
        batch = store.edge_batch(co)
        order = batch.properties["weight"].argsort()[::-1][:8]
        for k in order:
            click.echo(f"   {batch.src[k]:>22} -> {batch.dst[k]:<22}"
                       f"{batch.properties['weight'][k]:.3f}")


if __name__ == "__main__":
    main()
