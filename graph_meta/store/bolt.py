"""The bounded Bolt connection under :class:`graph_meta.store.neo4j.Neo4jGraphStore`.

Every call to the server is bounded (``timeout``, default :data:`DEFAULT_TIMEOUT` seconds, or
``$GRAPH_META_NEO4J_TIMEOUT``): the driver's connection, acquisition, write and retry
timeouts are set from it, each statement carries it as its server-side transaction timeout,
and each call runs in a worker thread that is waited for at most that long, so a server that
freezes (the Python driver has no read timeout of its own) or dies mid-query gives a
:class:`Neo4jUnavailable` error naming the server and the operation within the bound. Reads
of any length are streamed ``FETCH_SIZE`` records per bounded call. After a timeout the
connection is reopened on the next call.

A URI holding credentials (``bolt://user:pw@host``) is refused, shown with them masked
(:func:`check_uri`); the driver's errors are passed on with the password masked
(:func:`driver_message`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import re
import threading
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any, TypeVar

from graph_meta.errors import GraphMetaError, redact

__all__ = ["DEFAULT_TIMEOUT", "FETCH_SIZE", "TIMEOUT_ENV", "Bolt", "Neo4jUnavailable",
           "check_uri", "driver_message", "resolve_timeout"]

log = logging.getLogger("graph_meta.neo4j")

DEFAULT_TIMEOUT = 10.0  # seconds: the bound of every call to the server
TIMEOUT_ENV = "GRAPH_META_NEO4J_TIMEOUT"
FETCH_SIZE = 10_000  # records per fetch of a streamed read (one bounded call each)
_T = TypeVar("_T")


class Neo4jUnavailable(GraphMetaError):
    """The Neo4j server did not answer within the bound, or the connection to it failed."""


def resolve_timeout(timeout: float | None = None) -> float:
    """``timeout``, else ``$GRAPH_META_NEO4J_TIMEOUT``, else :data:`DEFAULT_TIMEOUT` (seconds,
    a positive number)."""
    if timeout is None:
        raw = os.environ.get(TIMEOUT_ENV, "").strip()
        if not raw:
            return DEFAULT_TIMEOUT
        try:
            timeout = float(raw)
        except ValueError:
            raise GraphMetaError(f"{TIMEOUT_ENV} must be a number of seconds, got "
                                 f"{raw[:40]!r}") from None
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise GraphMetaError(f"the Neo4j timeout must be a positive number of seconds, got "
                             f"{timeout!r}")
    return float(timeout)


def _is_driver_error(exc: BaseException) -> bool:
    return type(exc).__module__.partition(".")[0] == "neo4j"


def _uri_without_userinfo(uri: str) -> tuple[str, bool]:
    """``uri`` with any ``user:password@`` masked as ``***@``, and whether it had one."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        scheme, rest = "", uri
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" not in authority:
        return uri, False
    host = authority.rpartition("@")[2]
    return f"{scheme}{sep}***@{host}{rest[len(authority):]}", True


def check_uri(uri: str) -> str:
    """``uri``, or a GraphMetaError (showing it masked) if it holds credentials."""
    shown, has_userinfo = _uri_without_userinfo(uri)
    if has_userinfo:
        raise GraphMetaError(f"the Neo4j URI {shown} holds credentials: give it without them "
                             "and set NEO4J_USER and NEO4J_PASSWORD")
    return uri


def driver_message(exc: BaseException, password: str | None) -> str:
    """A driver error's message on one line, cut short, with the password masked."""
    text = " ".join(redact(str(exc), [password]).split())
    return text if len(text) <= 300 else text[:300] + "..."


class _Worker(threading.Thread):
    """A daemon thread that runs the calls given to it, then waits for the next one."""

    def __init__(self, pool: _Workers) -> None:
        super().__init__(name="graph-meta-neo4j", daemon=True)
        self.pool = pool
        self.jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()

    def run(self) -> None:
        while True:
            self.jobs.get()()
            with self.pool.lock:
                self.pool.idle.append(self)


class _Workers:
    """Reusable worker threads (starting a thread per call costs more than the handoff); a
    worker stuck on a frozen server simply stays busy until its call ends."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: list[_Worker] = []

    def submit(self, job: Callable[[], None]) -> None:
        with self.lock:
            worker = self.idle.pop() if self.idle else None
        if worker is None:
            worker = _Worker(self)
            worker.start()
        worker.jobs.put(job)


_WORKERS = _Workers()


class Bolt:
    """A driver whose every call is bounded by ``timeout`` seconds (module docstring)."""

    def __init__(self, uri: str, user: str, password: str, database: str,
                 timeout: float) -> None:
        self.uri = uri
        self.database = database
        self.timeout = timeout
        self._auth = (user, password)
        self._lock = threading.Lock()
        self._driver: Any = None
        self._open()

    def _open(self) -> Any:
        import neo4j

        t = self.timeout
        with self._lock:
            if self._driver is None:
                try:
                    self._driver = neo4j.GraphDatabase.driver(
                        self.uri, auth=self._auth, notifications_min_severity="OFF",
                        connection_timeout=t / 2, connection_acquisition_timeout=t,
                        connection_write_timeout=t, max_transaction_retry_time=t / 2)
                except (neo4j.exceptions.DriverError, ValueError) as exc:
                    raise GraphMetaError(f"cannot use the Neo4j URI {self.uri}: "
                                         f"{driver_message(exc, self._auth[1])}") from None
            return self._driver

    def message(self, exc: BaseException) -> str:
        return driver_message(exc, self._auth[1])

    def call(self, what: str, fn: Callable[[Any], _T], *, timeout: float | None = None) -> _T:
        """``fn(driver)``, waited for at most ``timeout`` (default: the store's) seconds.

        It runs in a daemon worker thread: when the bound passes, the driver is abandoned
        (closed in the background, which wakes the worker) and :class:`Neo4jUnavailable`
        is raised; the next call opens a new driver. The driver's own errors become a
        :class:`Neo4jUnavailable` (connection lost) or :class:`GraphMetaError` naming the
        server and ``what``; other errors pass unchanged."""
        import neo4j

        bound = self.timeout if timeout is None else timeout
        driver = self._open()
        box: dict[str, Any] = {}
        done = threading.Event()

        def work() -> None:
            try:
                box["value"] = fn(driver)
            except BaseException as exc:  # handed to the caller
                box["error"] = exc
            finally:
                done.set()

        _WORKERS.submit(work)
        if not done.wait(bound):
            self.abandon(driver)
            raise Neo4jUnavailable(
                f"Neo4j at {self.uri} did not answer within {bound:g} s while {what} (server "
                f"frozen, overloaded or unreachable; {TIMEOUT_ENV} sets the bound)")
        if "error" not in box:
            return box["value"]
        exc = box["error"]
        if isinstance(exc, neo4j.exceptions.ServiceUnavailable | neo4j.exceptions.SessionExpired
                      | ConnectionError | OSError):
            self.abandon(driver)
            raise Neo4jUnavailable(f"Neo4j at {self.uri}: connection lost while {what}: "
                                   f"{self.message(exc)}") from None
        if isinstance(exc, neo4j.exceptions.AuthError):
            raise GraphMetaError(f"Neo4j at {self.uri} refused the credentials of user "
                                 f"{self._auth[0]!r}") from None
        code = getattr(exc, "code", None) or ""
        if "TransactionTimedOut" in code:
            raise Neo4jUnavailable(f"Neo4j at {self.uri} stopped a transaction at its "
                                   f"{bound:g} s timeout while {what} ({TIMEOUT_ENV} sets "
                                   "the bound)") from None
        if _is_driver_error(exc):
            raise GraphMetaError(f"Neo4j at {self.uri} failed while {what}: "
                                 f"{self.message(exc)}") from None
        raise exc

    def query(self, what: str, text: str, params: dict[str, Any], *, read: bool = False
              ) -> list[Any]:
        """The records of one statement in a managed transaction (retried by the driver on
        transient errors within the bound), with the bound as its server-side timeout."""
        import neo4j

        q = neo4j.Query(text, timeout=self.timeout)
        routing = "r" if read else "w"
        return self.call(what, lambda d: d.execute_query(q, params, database_=self.database,
                                                         routing_=routing).records)

    def stream(self, what: str, text: str, params: dict[str, Any]) -> Iterator[Any]:
        """The records of a read of any length, fetched ``FETCH_SIZE`` at a time, each fetch
        one bounded call (no server-side timeout: the whole read may take long)."""
        session = self._open().session(database=self.database, default_access_mode="READ",
                                       fetch_size=FETCH_SIZE)  # no I/O yet
        failed = False
        try:
            result = self.call(what, lambda _: session.run(text, params))
            while True:
                chunk = self.call(what, lambda _: list(islice(result, FETCH_SIZE)))
                yield from chunk
                if len(chunk) < FETCH_SIZE:
                    return
        except Neo4jUnavailable:
            failed = True  # the driver is abandoned: nothing to close
            raise
        finally:
            if not failed:  # done, or the consumer stopped early: release the connection
                with contextlib.suppress(GraphMetaError):
                    self.call("closing a session", lambda _: session.close())

    def abandon(self, driver: Any) -> None:
        """Drop ``driver`` (closed in the background); the next call opens a new one."""
        with self._lock:
            if self._driver is driver:
                self._driver = None
        threading.Thread(target=_close_quietly, args=(driver,), daemon=True).start()

    def close(self) -> None:
        with self._lock:
            driver, self._driver = self._driver, None
        if driver is not None:
            closer = threading.Thread(target=_close_quietly, args=(driver,), daemon=True)
            closer.start()
            closer.join(self.timeout)


def _close_quietly(driver: Any) -> None:
    try:
        driver.close()
    except Exception:  # closing a driver whose server is gone
        log.debug("closing an abandoned Neo4j driver failed", exc_info=True)
