"""Neo4j store under failure and attack: crash mid-ingest, reruns, credentials, the CLI.

These run against real servers: the session's (``neo4j_credentials``) and, for the crash
test, a private one that the test kills with SIGKILL in the middle of an ingest.
"""

from __future__ import annotations

import logging
import threading
import time

import neo4j
import pytest
from click.testing import CliRunner

from graph_meta.dataset import Dataset
from graph_meta.errors import GraphMetaError
from graph_meta.graph.build import graph_records
from graph_meta.store.neo4j import Neo4jGraphStore
from training.cli import main as cli

pytestmark = pytest.mark.neo4j


def _expected(dataset: Dataset):
    records = graph_records(dataset)
    return ({nt: len(b) for nt, b in records.nodes.items()},
            {et: len(b) for et, b in records.edges.items()})


def test_killed_mid_ingest_then_rerun_gives_exact_counts(catalog: Dataset,
                                                         private_neo4j_server) -> None:
    server = private_neo4j_server
    creds = {"uri": server.uri, "user": server.user, "password": server.password}
    store = Neo4jGraphStore(catalog.spec, batch_size=200, **creds)
    rated = store.schema.rated
    watcher = neo4j.GraphDatabase.driver(server.uri, auth=(server.user, server.password))
    killed = threading.Event()

    def kill_when_writing() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                n = watcher.execute_query(
                    "MATCH (:User)-[r:RATED]->(:Item) RETURN count(r) AS c").records[0]["c"]
            except Exception:
                return
            if n >= 1000:
                server.kill()
                killed.set()
                return
            time.sleep(0.05)

    thread = threading.Thread(target=kill_when_writing)
    thread.start()
    with pytest.raises(Exception):  # noqa: B017 - any driver error: the server is gone
        store.ingest(catalog)
    thread.join()
    watcher.close()
    store.close()
    assert killed.is_set(), "the ingest finished before the server could be killed"

    server.restart()
    store = Neo4jGraphStore(catalog.spec, **creds)
    partial = store.counts().edges[rated]
    nodes, edges = _expected(catalog)
    assert 0 < partial < edges[rated]
    store.ingest(catalog)
    counts = store.counts()
    assert counts.nodes == nodes
    assert counts.edges == edges
    store.ingest(catalog)
    assert store.counts() == counts
    store.close()


def test_credentials_never_leak(catalog: Dataset, neo4j_credentials: dict, caplog,
                                monkeypatch) -> None:
    creds = {k: neo4j_credentials[k] for k in ("uri", "user", "password")}
    secret = creds["password"]
    wrong = "not-the-password-" + secret[::-1]
    with pytest.raises(GraphMetaError) as err:
        Neo4jGraphStore(catalog.spec, uri=creds["uri"], user=creds["user"], password=wrong)
    assert wrong not in str(err.value) and secret not in str(err.value)
    assert "refused the credentials" in str(err.value)

    caplog.set_level(logging.DEBUG)
    Neo4jGraphStore.wipe(**creds)
    monkeypatch.setenv("NEO4J_URI", creds["uri"])
    monkeypatch.setenv("NEO4J_USER", creds["user"])
    monkeypatch.setenv("NEO4J_PASSWORD", secret)
    runner = CliRunner()
    folder = str(catalog.root)
    result = runner.invoke(cli, ["ingest", folder, "--store", "neo4j"])
    assert result.exit_code == 0, result.output
    assert "ingested" in result.output
    result2 = runner.invoke(cli, ["stats", folder, "--store", "neo4j", "--json"])
    assert result2.exit_code == 0, result2.output
    monkeypatch.setenv("NEO4J_PASSWORD", wrong)
    result3 = runner.invoke(cli, ["candidates", "--store", "neo4j", "--rated",
                                  f"{catalog.items.index[0]}:5"])
    assert result3.exit_code == 2
    assert "refused the credentials" in result3.output
    for text in (result.output, result2.output, result3.output, caplog.text):
        assert secret not in text and wrong not in text


def test_cli_candidates_same_on_both_stores(catalog: Dataset, neo4j_credentials: dict,
                                            monkeypatch) -> None:
    creds = {k: neo4j_credentials[k] for k in ("uri", "user", "password")}
    Neo4jGraphStore.wipe(**creds)
    monkeypatch.setenv("NEO4J_URI", creds["uri"])
    monkeypatch.setenv("NEO4J_PASSWORD", creds["password"])
    runner = CliRunner()
    folder = str(catalog.root)
    assert runner.invoke(cli, ["ingest", folder, "--store", "neo4j"]).exit_code == 0
    user = str(catalog.train["user_id"].value_counts().index[0])
    outs = [runner.invoke(cli, ["candidates", folder, "--store", kind, "--user", user,
                                "-k", "15", "--json"]) for kind in ("embedded", "neo4j")]
    assert all(o.exit_code == 0 for o in outs), [o.output for o in outs]
    assert outs[0].output == outs[1].output
    assert '"reason"' in outs[0].output
