"""Shared fixtures: a small synthetic catalog, a real Neo4j server, and both graph stores.

The Neo4j server is the one named by ``NEO4J_URI`` (with ``NEO4J_USER``/``NEO4J_PASSWORD``),
or else one that ``scripts/neo4j_server.py`` starts for the session. When no server can be
had the Neo4j tests are skipped, except under ``CI=true`` where that is a failure.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from graph_meta.dataset import Dataset
from graph_meta.eval.protocol import training_view
from graph_meta.implicit import GraphMetaImplicit
from loaders.folder import read_dataset, write_dataset
from loaders.synthetic_implicit import generate_implicit_catalog

ROOT = Path(__file__).resolve().parents[1]
SHARED_MOVIELENS = ROOT.parent / "shared" / "data" / "movielens-1m"


def _load_server_module():
    spec = importlib.util.spec_from_file_location("neo4j_server",
                                                  ROOT / "scripts" / "neo4j_server.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["neo4j_server"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def catalog_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic e-commerce catalog written as a dataset folder."""
    from loaders.synthetic import generate_catalog

    dataset = generate_catalog(n_users=400, n_items=150, n_interactions=8000, seed=7)
    return write_dataset(dataset, tmp_path_factory.mktemp("catalog") / "catalog")


@pytest.fixture(scope="session")
def catalog(catalog_dir: Path) -> Dataset:
    return read_dataset(catalog_dir)


@pytest.fixture(scope="session")
def neo4j_credentials() -> Iterator[dict[str, str]]:
    """Bolt URI and credentials of a real Neo4j server for this test session."""
    if os.environ.get("NEO4J_URI"):
        yield {"uri": os.environ["NEO4J_URI"], "user": os.environ.get("NEO4J_USER", "neo4j"),
               "password": os.environ.get("NEO4J_PASSWORD", "")}
        return
    server = _start_server()
    try:
        yield {"uri": server.uri, "user": server.user, "password": server.password,
               "server": server}
    finally:
        server.stop()


def _start_server():
    """A started server of our own, or a skip (a failure under ``CI=true``)."""
    server = _load_server_module().Neo4jServer()
    try:
        server.start()
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and no Neo4j server could be started: {exc}")
        pytest.skip(f"no Neo4j server (set NEO4J_URI or let scripts/neo4j_server.py start "
                    f"one): {exc}")
    return server


@pytest.fixture
def private_neo4j_server():
    """A Neo4j server for one test alone (which may kill and restart it)."""
    server = _start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def neo4j_store_factory(neo4j_credentials: dict):
    """Makes empty Neo4j stores for a spec (the database is cleared first)."""
    from graph_meta.store.neo4j import Neo4jGraphStore

    opened = []

    def make(spec, *, reset: bool = True, **kw):
        creds = {k: neo4j_credentials[k] for k in ("uri", "user", "password")}
        if reset:
            Neo4jGraphStore.wipe(**creds)
        store = Neo4jGraphStore(spec, **creds, **kw)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture(params=["embedded", "neo4j"])
def store(request: pytest.FixtureRequest, catalog: Dataset):
    """The catalog ingested into each store in turn; the same tests run against both."""
    if request.param == "embedded":
        from graph_meta.store.embedded import EmbeddedGraphStore

        yield EmbeddedGraphStore.from_dataset(catalog)
        return
    make = request.getfixturevalue("neo4j_store_factory")
    s = make(catalog.spec)
    s.ingest(catalog)
    yield s


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    if not (SHARED_MOVIELENS / "dataset.json").is_file():
        pytest.skip(f"movielens-1m is not at {SHARED_MOVIELENS}")
    return SHARED_MOVIELENS


@pytest.fixture(scope="module")
def planted_shop() -> Dataset:
    """A planted implicit shop with tasks in every scenario (52 item_cold, 8
    user_item_cold), one per test module."""
    return generate_implicit_catalog(n_users=1000, n_items=250, n_interactions=20000,
                                     seed=6).dataset


@pytest.fixture(scope="module")
def planted_ours(planted_shop: Dataset) -> GraphMetaImplicit:
    """graph-meta's implicit model fitted (quick) on :func:`planted_shop`'s training view."""
    return GraphMetaImplicit(quick=True, backend="numpy", seed=1).fit(
        training_view(planted_shop))
