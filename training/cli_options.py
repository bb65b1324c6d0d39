"""Options and helpers every ``graph-meta`` command module shares: the store options, opening
the store they name, and the one-line error exit."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from graph_meta.errors import redact

__all__ = ["fail", "open_store", "store_options"]


def store_options(fn):
    """``--store``, ``--neo4j-uri`` and ``--neo4j-user`` for commands that read a graph."""
    fn = click.option("--neo4j-user", envvar="NEO4J_USER", default="neo4j", show_default=True,
                      help="Neo4j user (or NEO4J_USER); the password comes from "
                           "NEO4J_PASSWORD.")(fn)
    fn = click.option("--neo4j-uri", envvar="NEO4J_URI", default=None,
                      help="Bolt URI of the Neo4j server (or NEO4J_URI).")(fn)
    return click.option("--store", "store_kind", type=click.Choice(["embedded", "neo4j"]),
                        default="embedded", show_default=True,
                        help="Where the graph lives.")(fn)


def open_store(dataset: Path | None, store_kind: str, neo4j_uri: str | None,
               neo4j_user: str, *, data=None):
    """The embedded store built from DATASET (``data``: the folder already read), or the
    Neo4j store at the given URI."""
    if store_kind == "neo4j":
        from graph_meta.store.neo4j import Neo4jGraphStore

        spec = None
        if dataset is not None:
            from graph_meta.schema import DatasetSpec

            spec = DatasetSpec.from_file(dataset / "dataset.json")
        return Neo4jGraphStore(spec, uri=neo4j_uri, user=neo4j_user)
    if dataset is None:
        raise click.UsageError("the embedded store needs a DATASET folder")
    from graph_meta.store.embedded import EmbeddedGraphStore
    from loaders.folder import read_dataset

    return EmbeddedGraphStore.from_dataset(data if data is not None
                                           else read_dataset(dataset, tasks=False))


def fail(exc: Exception) -> None:
    """Print the error on one line (no URI userinfo, no NEO4J_PASSWORD) and exit with 2."""
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    text = redact(" ".join(str(text).splitlines()), [os.environ.get("NEO4J_PASSWORD")])
    click.secho(f"error: {text}", fg="red", err=True)
    sys.exit(2)
