"""Neo4j faults after the connection is open (issue 18, item 2).

A real server, frozen with SIGSTOP or killed with SIGKILL in the middle of a run: the command
line exits with code 2 and one error line naming the server and what failed, within the
configured bound (default 10 s, ``GRAPH_META_NEO4J_TIMEOUT``) plus slack for the process to
end; the Python API raises :class:`Neo4jUnavailable` within the store's ``timeout`` and
reconnects once the server answers again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import neo4j
import pytest

from graph_meta.store.neo4j import DEFAULT_TIMEOUT, Neo4jGraphStore, Neo4jUnavailable

pytestmark = pytest.mark.neo4j

ROOT = Path(__file__).resolve().parents[1]
SLACK_S = 6.0  # the process ending (interpreter shutdown) and the watcher's poll interval


def _server_class():
    from conftest import _load_server_module  # the launcher, loaded as the fixtures load it

    return _load_server_module().Neo4jServer


@pytest.fixture(scope="module")
def server():
    """A server of this module's own, which its tests freeze and kill."""
    if os.environ.get("NEO4J_URI"):
        pytest.skip("these tests freeze and kill a server of their own")
    srv = _server_class()()
    try:
        srv.start()
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no Neo4j server: {exc}")
        pytest.skip(f"no Neo4j server: {exc}")
    try:
        yield srv
    finally:
        if srv.pid:
            os.kill(srv.pid, signal.SIGCONT)
        srv.stop()


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A catalog large enough for an ingest in small batches to take a while."""
    from loaders.folder import write_dataset
    from loaders.synthetic import generate_catalog

    data = generate_catalog(n_users=2000, n_items=500, n_interactions=40000, seed=1)
    return write_dataset(data, tmp_path_factory.mktemp("faults") / "shop")


def _creds(srv) -> dict[str, str]:
    return {"uri": srv.uri, "user": srv.user, "password": srv.password}


def _rated(srv) -> int:
    with neo4j.GraphDatabase.driver(srv.uri, auth=(srv.user, srv.password),
                                    connection_timeout=5) as driver:
        return driver.execute_query("MATCH (:User)-[r:RATED]->() RETURN count(r) AS c"
                                    ).records[0]["c"]


def _wait_answering(srv, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while True:
        try:
            _rated(srv)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _ingest_with_fault(srv, folder: Path, fault, env: dict[str, str]) -> tuple[
        subprocess.CompletedProcess, float]:
    """Run ``graph-meta ingest`` in small batches and call ``fault()`` once it has written
    some ratings; returns the finished process and the seconds from the fault to its end."""
    start_count = _rated(srv)
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("NEO4J_", "GRAPH_META_NEO4J"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "training.cli", "ingest", str(folder), "--store", "neo4j",
         "--batch-size", "100"],
        cwd=ROOT, env={**clean, "NEO4J_URI": srv.uri, "NEO4J_USER": srv.user,
                       "NEO4J_PASSWORD": srv.password, "OMP_NUM_THREADS": "1", **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    fault_at: list[float] = []
    watcher = neo4j.GraphDatabase.driver(srv.uri, auth=(srv.user, srv.password))
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            n = watcher.execute_query("MATCH (:User)-[r:RATED]->() RETURN count(r) AS c"
                                      ).records[0]["c"]
            if n >= start_count + 1500:
                fault()
                fault_at.append(time.monotonic())
                break
            time.sleep(0.05)
    finally:
        watcher.close()
    try:
        out, err = proc.communicate(timeout=DEFAULT_TIMEOUT + 120)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the CLI was still running {DEFAULT_TIMEOUT + 120:.0f} s after the fault")
    assert fault_at, f"the ingest ended before the fault: {err[-2000:]}"
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return done, time.monotonic() - fault_at[0]


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    assert len(errors) == 1, stderr[-3000:]
    assert "Traceback" not in stderr
    return errors[0]


def test_cli_exits_2_within_the_bound_when_the_server_freezes(server, shop: Path) -> None:
    try:
        result, elapsed = _ingest_with_fault(
            server, shop, lambda: os.kill(server.pid, signal.SIGSTOP), {})
    finally:
        os.kill(server.pid, signal.SIGCONT)
    line = _one_error_line(result.stderr)
    assert result.returncode == 2, result.stderr[-2000:]
    assert server.uri in line and "did not answer within 10 s while writing" in line, line
    assert elapsed < DEFAULT_TIMEOUT + SLACK_S, (elapsed, line)
    _wait_answering(server)  # thawed: the server serves again


def test_api_raises_within_the_timeout_and_recovers(server, catalog) -> None:
    Neo4jGraphStore.wipe(**_creds(server))
    user = str(catalog.train["user_id"].iloc[0])
    with Neo4jGraphStore(catalog.spec, **_creds(server)) as loader:  # the default bound
        loader.ingest(catalog)
        before = loader.candidates(user_id=user, k=10)  # planned once: the server caches it
    store = Neo4jGraphStore(catalog.spec, timeout=3, **_creds(server))
    try:
        assert store.candidates(user_id=user, k=10) == before
        os.kill(server.pid, signal.SIGSTOP)
        try:
            for call in (lambda: store.candidates(user_id=user, k=10), store.counts,
                         lambda: list(store.iter_edges(store.schema.rated))):
                t0 = time.monotonic()
                with pytest.raises(Neo4jUnavailable, match="did not answer within 3 s"):
                    call()
                assert time.monotonic() - t0 < 3 + 2
        finally:
            os.kill(server.pid, signal.SIGCONT)
        _wait_answering(server)
        for attempt in range(3):  # the same store, on a new connection (a thawed JVM may lag)
            try:
                assert store.candidates(user_id=user, k=10) == before
                break
            except Neo4jUnavailable:
                if attempt == 2:
                    raise
    finally:
        store.close()


def test_a_call_that_outruns_the_transaction_timeout_is_one_error(server, catalog) -> None:
    store = Neo4jGraphStore(catalog.spec, timeout=2, **_creds(server))
    try:
        t0 = time.monotonic()
        with pytest.raises(Neo4jUnavailable, match=r"2 s"):
            store._read("UNWIND range(1, 1000000000) AS x WITH x WHERE x < 0 RETURN count(x)",
                        what="a slow query")
        assert time.monotonic() - t0 < 2 + 2
        assert store.counts().nodes  # the store is still usable
    finally:
        store.close()


def test_cli_exits_2_within_the_bound_when_the_server_dies(server, shop: Path) -> None:
    _wait_answering(server)
    result, elapsed = _ingest_with_fault(server, shop, server.kill,
                                         {"GRAPH_META_NEO4J_TIMEOUT": "6"})
    line = _one_error_line(result.stderr)
    assert result.returncode == 2, result.stderr[-2000:]
    assert server.uri in line and "while writing" in line, line
    assert elapsed < 6 + SLACK_S, (elapsed, line)
    server.restart()  # for the fixture's stop


def test_the_timeout_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from graph_meta.errors import GraphMetaError
    from graph_meta.store.neo4j import TIMEOUT_ENV, resolve_timeout

    monkeypatch.delenv(TIMEOUT_ENV, raising=False)
    assert resolve_timeout() == DEFAULT_TIMEOUT <= 15
    monkeypatch.setenv(TIMEOUT_ENV, "2.5")
    assert resolve_timeout() == 2.5 and resolve_timeout(7) == 7.0
    for bad in ("soon", "0", "-1", "nan"):
        monkeypatch.setenv(TIMEOUT_ENV, bad)
        with pytest.raises(GraphMetaError, match="seconds"):
            resolve_timeout()

