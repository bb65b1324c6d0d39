#!/usr/bin/env python3
"""Start and stop a real Neo4j 5.26 Community server for development, tests and CI.

There is no Docker and no Neo4j package on PyPI or Debian here, so the server is run straight
from its jars: ``scripts/neo4j/pom.xml`` names ``org.neo4j:neo4j:5.26.0`` and Maven copies it
with its dependencies (about 125 MB) once into a cache folder, ``$GRAPH_META_NEO4J_HOME/lib``
(default ``~/.cache/graph-meta/neo4j-5.26.0/lib``).  Each server then runs
``java -cp 'lib/*' org.neo4j.server.CommunityEntryPoint`` on a fresh temporary folder holding
its ``conf/neo4j.conf``, data and logs, listens for Bolt on a free port of 127.0.0.1 (HTTP off),
keeps authentication on, and gets its ``neo4j`` password changed from the initial one at start
(random unless one is given).  The password is never printed or logged.

What lives here:

* :class:`Neo4jServer` -- a context manager with ``start()``, ``stop()``, ``kill()`` (SIGKILL, to
  simulate a crash) and ``restart()`` (same data folder, port and password: crash recovery);
* :func:`fetch_jars` -- fill the jar cache (once; reused afterwards);
* a command line::

    python scripts/neo4j_server.py fetch
    python scripts/neo4j_server.py run -- CMD ARGS...      # CMD sees NEO4J_URI/USER/PASSWORD
    python scripts/neo4j_server.py start --env-file FILE   # detached; FILE gets the env vars
    python scripts/neo4j_server.py stop --env-file FILE

Only the standard library is needed, plus the ``neo4j`` driver for the readiness check and the
password change.  ``$GRAPH_META_NEO4J_PASSWORD`` gives the CLI a fixed password instead of a
random one (never put it on the command line).  Java 17 (or 21) and, for the first fetch, Maven
must be on ``PATH`` (``$JAVA_HOME/bin/java`` is preferred when ``JAVA_HOME`` is set).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import fcntl
import logging
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

NEO4J_VERSION = "5.26.0"
POM = Path(__file__).resolve().parent / "neo4j" / "pom.xml"
HOME_ENV = "GRAPH_META_NEO4J_HOME"
PASSWORD_ENV = "GRAPH_META_NEO4J_PASSWORD"
DEFAULT_HOME = Path("~/.cache/graph-meta") / f"neo4j-{NEO4J_VERSION}"
ENTRY_POINT = "org.neo4j.server.CommunityEntryPoint"
USER = "neo4j"
INITIAL_PASSWORD = "neo4j"
MIN_PASSWORD_LENGTH = 8  # dbms.security.auth_minimum_password_length
_COMPLETE_MARKER = ".complete"
_HOME_PREFIX = "graph-meta-neo4j-"
_PID_FILE = "graph-meta-neo4j.pid"  # in a server folder: "OWNER_PID JAVA_PID"
_KEY_JAR = f"neo4j-{NEO4J_VERSION}.jar"

log = logging.getLogger("graph_meta.neo4j_server")

# JVM flags from Neo4j's own default neo4j.conf (server.jvm.additional), less the ones that
# cost start time or memory (AlwaysPreTouch).  The heap is set from the constructor.
_JVM_FLAGS = (
    "-XX:+UseG1GC",
    "-XX:-OmitStackTraceInFastThrow",
    "-XX:+UnlockExperimentalVMOptions",
    "-XX:+TrustFinalNonStaticFields",
    "-XX:+DisableExplicitGC",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djdk.nio.maxCachedBufferSize=1024",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Djdk.tls.ephemeralDHKeySize=2048",
    "-Djdk.tls.rejectClientInitiatedRenegotiation=true",
    "-Dlog4j2.disable.jmx=true",
    "-Dfile.encoding=UTF-8",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--enable-native-access=ALL-UNNAMED",
)


class Neo4jServerError(RuntimeError):
    """The server could not be fetched, started or stopped."""


# --------------------------------------------------------------------------------------------
# jar cache


def neo4j_home() -> Path:
    """The cache folder of this Neo4j version: ``$GRAPH_META_NEO4J_HOME`` or the default."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser().resolve()


def _jars_ready(lib: Path) -> bool:
    return (lib / _COMPLETE_MARKER).is_file() and (lib / _KEY_JAR).is_file()


def fetch_jars(home: Path | None = None, *, force: bool = False) -> Path:
    """Make sure the server jars are in ``HOME/lib`` and return that folder.

    Maven copies them into a temporary folder beside ``lib`` which is renamed into place only
    once complete, so an interrupted fetch never leaves a half cache.  A file lock keeps two
    processes from fetching at the same time.
    """
    home = (home or neo4j_home()).expanduser().resolve()
    lib = home / "lib"
    if not force and _jars_ready(lib):
        return lib
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and _jars_ready(lib):
            return lib
        mvn = shutil.which("mvn")
        if mvn is None:
            raise Neo4jServerError("Maven (mvn) is not on PATH: it is needed once to fetch the "
                                   f"Neo4j {NEO4J_VERSION} jars into {lib}")
        for stale in home.glob("lib.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix="lib.tmp-", dir=home))
        try:
            log.info("fetching Neo4j %s jars with Maven into %s", NEO4J_VERSION, lib)
            started = time.monotonic()
            cmd = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
                   f"-DoutputDirectory={tmp}"]
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  check=False)
            if proc.returncode != 0 or not (tmp / _KEY_JAR).is_file():
                tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
                raise Neo4jServerError(f"Maven could not fetch the Neo4j jars "
                                       f"(exit {proc.returncode}):\n{tail}")
            (tmp / _COMPLETE_MARKER).write_text(f"org.neo4j:neo4j:{NEO4J_VERSION}\n")
            if lib.exists():
                old = home / f"lib.old-{os.getpid()}"
                lib.rename(old)
                shutil.rmtree(old, ignore_errors=True)
            tmp.rename(lib)
            log.info("fetched %d jars in %.1f s", len(list(lib.glob("*.jar"))),
                     time.monotonic() - started)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return lib


# --------------------------------------------------------------------------------------------
# helpers


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise Neo4jServerError("java is not on PATH (Neo4j 5.26 needs Java 17 or 21)")
    return java


def _tail(path: Path, lines: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _pdeathsig_preexec(parent: int) -> None:
    """Runs in the child before exec: SIGTERM it when the parent (thread) dies."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)


def _process_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def sweep_stale_homes(min_age: float = 60.0) -> list[Path]:
    """Delete server folders left in the temp dir by processes that died without ``stop()``.

    A folder goes only when neither the Python process that made it nor its java is alive
    (a killed server whose owner may still ``restart()`` it is kept), and it is older than
    ``min_age`` seconds (or a day, when it has no pid file: a server being set up right now).
    """
    removed = []
    now = time.time()
    for home in Path(tempfile.gettempdir()).glob(f"{_HOME_PREFIX}*"):
        try:
            age = now - home.stat().st_mtime
            pids = [int(p) for p in (home / _PID_FILE).read_text().split()]
        except FileNotFoundError:
            pids, age = [], age - 86400.0
        except (OSError, ValueError):
            continue
        if age < min_age or any(_process_alive(pid) for pid in pids):
            continue
        shutil.rmtree(home, ignore_errors=True)
        removed.append(home)
    if removed:
        log.info("removed %d stale Neo4j folder(s) from %s", len(removed), tempfile.gettempdir())
    return removed


def _connection_errors() -> tuple[type[BaseException], ...]:
    from neo4j import exceptions

    return (exceptions.ServiceUnavailable, exceptions.SessionExpired, exceptions.TransientError,
            OSError)


# --------------------------------------------------------------------------------------------
# the server


class Neo4jServer:
    """One Neo4j 5.26 Community server on 127.0.0.1, in a temporary folder of its own.

    ``start()`` fetches the jars if needed, starts java in its own process group, waits until
    Bolt answers and sets the password; ``stop()`` shuts it down (SIGTERM, then SIGKILL after
    ``stop_timeout``) and deletes the folder.  ``kill()`` SIGKILLs it and keeps the folder, and
    ``restart()`` starts it again on the same folder, port and password.  A server still running
    when Python exits is stopped then.  With ``die_with_parent`` (the default) java also gets
    SIGTERM when the process that started it dies (even by SIGKILL), so a crashed test run leaves
    no java behind; this is Linux's PR_SET_PDEATHSIG, which fires when the *thread* that called
    ``start()``/``restart()`` ends, so call them from a thread that outlives the server (or pass
    ``die_with_parent=False``).  Folders of servers whose owner died are swept at the next start.
    """

    def __init__(
        self,
        *,
        password: str | None = None,
        port: int | None = None,
        home: Path | str | None = None,
        jar_dir: Path | str | None = None,
        heap: str = "1g",
        page_cache: str = "256m",
        startup_timeout: float = 120.0,
        stop_timeout: float = 60.0,
        die_with_parent: bool = True,
    ) -> None:
        if password is not None and (len(password) < MIN_PASSWORD_LENGTH
                                     or password == INITIAL_PASSWORD):
            raise ValueError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters "
                             f"and differ from {INITIAL_PASSWORD!r}")
        self._password = password or secrets.token_urlsafe(24)
        self._port = port
        self._auto_port = port is None
        self._keep_home = home is not None
        self._home: Path | None = Path(home).resolve() if home is not None else None
        self._jar_dir = Path(jar_dir).resolve() if jar_dir is not None else None
        self.heap = heap
        self.page_cache = page_cache
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.die_with_parent = die_with_parent
        self._proc: subprocess.Popen[bytes] | None = None
        self._password_set = False

    # -- properties ----------------------------------------------------------------------

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        if self._port is None:
            raise Neo4jServerError("the server has no port yet: call start() first")
        return self._port

    @property
    def uri(self) -> str:
        return f"bolt://{self.host}:{self.port}"

    @property
    def user(self) -> str:
        return USER

    @property
    def password(self) -> str:
        return self._password

    @property
    def home(self) -> Path | None:
        """The server's folder (conf/, data/, logs/) or None before ``start()``."""
        return self._home

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_file(self) -> Path | None:
        return self._home / "logs" / "neo4j.log" if self._home is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def env(self) -> dict[str, str]:
        """``NEO4J_URI``, ``NEO4J_USER`` and ``NEO4J_PASSWORD`` for a client process."""
        return {"NEO4J_URI": self.uri, "NEO4J_USER": self.user, "NEO4J_PASSWORD": self.password}

    def __repr__(self) -> str:  # never shows the password
        state = "running" if self.is_running() else "stopped"
        where = self.uri if self._port is not None else "no port yet"
        return f"<Neo4jServer {NEO4J_VERSION} {where} {state}>"

    # -- context manager -----------------------------------------------------------------

    def __enter__(self) -> Neo4jServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Neo4jServer:
        """Start the server on a new folder and port and wait until it takes queries."""
        if self.is_running():
            raise Neo4jServerError(f"{self!r} is already running")
        if self._jar_dir is None:
            self._jar_dir = fetch_jars()
        elif not (self._jar_dir / _KEY_JAR).is_file():
            raise Neo4jServerError(f"{self._jar_dir} has no {_KEY_JAR}")
        created = False
        if self._home is None:
            with contextlib.suppress(OSError):
                sweep_stale_homes()
            self._home = Path(tempfile.mkdtemp(prefix=_HOME_PREFIX))
            created = True
        atexit.register(self._stop_at_exit)
        try:
            for attempt in range(3):
                if self._auto_port:
                    self._port = free_port(self.host)
                self._write_conf()
                try:
                    self._launch()
                    break
                except Neo4jServerError:
                    # another process took the free port between our check and java's bind
                    if not self._auto_port or attempt == 2 or not self._port_clash():
                        raise
                    log.info("port %d was taken meanwhile: trying another", self._port)
        except BaseException:
            self._terminate(kill=True)
            if created:
                self._remove_home()
            atexit.unregister(self._stop_at_exit)
            raise
        return self

    def restart(self) -> Neo4jServer:
        """Start again on the same folder, port and password (stops it first if running).

        After :meth:`kill` this is a crash recovery: Neo4j replays its transaction log.
        """
        if self._home is None or not self._home.is_dir():
            raise Neo4jServerError("restart() needs a server that was started and not stopped")
        if self.is_running():
            self._terminate(kill=False)
        self._launch()
        return self

    def stop(self) -> None:
        """Shut the server down (SIGTERM, SIGKILL after ``stop_timeout``) and delete its folder."""
        self._terminate(kill=False)
        self._remove_home()
        atexit.unregister(self._stop_at_exit)

    def _stop_at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()

    def kill(self) -> None:
        """SIGKILL the server at once, as a crash would; its folder is kept for :meth:`restart`."""
        self._terminate(kill=True)

    def detach(self) -> None:
        """Forget the process without stopping it (the CLI's detached ``start``)."""
        if self._proc is not None and self._home is not None:
            (self._home / _PID_FILE).write_text(f"{self._proc.pid}\n")
        self._proc = None
        self._keep_home = True
        atexit.unregister(self._stop_at_exit)

    # -- internals -----------------------------------------------------------------------

    def _write_conf(self) -> None:
        assert self._home is not None
        home = self._home
        for sub in ("conf", "data", "logs", "plugins", "import", "run", "licenses"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        settings = {
            "server.default_listen_address": self.host,
            "server.default_advertised_address": self.host,
            "server.bolt.enabled": "true",
            "server.bolt.listen_address": f"{self.host}:{self.port}",
            "server.bolt.advertised_address": f"{self.host}:{self.port}",
            "server.bolt.tls_level": "DISABLED",
            "server.http.enabled": "false",
            "server.https.enabled": "false",
            # server-side routing opens a second Bolt port (7688): off, so servers can coexist
            "dbms.routing.enabled": "false",
            "dbms.security.auth_enabled": "true",
            "dbms.usage_report.enabled": "false",
            "server.directories.data": str(home / "data"),
            "server.directories.logs": str(home / "logs"),
            "server.directories.plugins": str(home / "plugins"),
            "server.directories.import": str(home / "import"),
            "server.directories.run": str(home / "run"),
            "server.directories.licenses": str(home / "licenses"),
            "server.directories.lib": str(self._jar_dir),
            "server.memory.heap.initial_size": self.heap,
            "server.memory.heap.max_size": self.heap,
            "server.memory.pagecache.size": self.page_cache,
            "db.tx_log.preallocate": "false",
            # Netty's graceful shutdown waits this long (default 5 s) for each of two event loop
            # groups: 0 makes stop() take about a second instead of ten
            "internal.dbms.bolt.netty_server_shutdown_quiet_period": "0",
        }
        text = "".join(f"{key}={value}\n" for key, value in settings.items())
        (home / "conf" / "neo4j.conf").write_text(
            "# written by scripts/neo4j_server.py; the server is started by it, not by bin/neo4j\n"
            + text)

    def _command(self) -> list[str]:
        assert self._home is not None and self._jar_dir is not None
        return [
            _java(),
            f"-Xms{self.heap}", f"-Xmx{self.heap}",
            *_JVM_FLAGS,
            "-cp", f"{self._jar_dir}/*",
            ENTRY_POINT,
            f"--home-dir={self._home}",
            f"--config-dir={self._home / 'conf'}",
        ]

    def _launch(self) -> None:
        assert self._home is not None and self.log_file is not None
        parent = os.getpid()
        preexec = (lambda: _pdeathsig_preexec(parent)) if self.die_with_parent else None
        started = time.monotonic()
        with open(self.log_file, "ab") as out:
            self._proc = subprocess.Popen(
                self._command(), cwd=self._home, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=preexec)
        (self._home / _PID_FILE).write_text(f"{os.getpid()} {self._proc.pid}\n")
        log.info("started Neo4j %s (pid %d) for %s in %s", NEO4J_VERSION, self._proc.pid,
                 self.uri, self._home)
        self._wait_ready(started)
        log.info("Neo4j ready at %s after %.1f s", self.uri, time.monotonic() - started)

    def _wait_ready(self, started: float) -> None:
        from neo4j import GraphDatabase
        from neo4j.exceptions import AuthError

        deadline = started + self.startup_timeout
        errors = _connection_errors()
        last: BaseException | None = None
        while True:
            if self._proc is None or self._proc.poll() is not None:
                code = self._proc.returncode if self._proc is not None else None
                raise Neo4jServerError(
                    f"Neo4j exited with code {code} before Bolt answered on {self.uri}\n"
                    + self._log_tail())
            if time.monotonic() > deadline:
                self._terminate(kill=True)
                raise Neo4jServerError(
                    f"Neo4j did not answer on {self.uri} within {self.startup_timeout:.0f} s "
                    f"(last error: {last!r})\n" + self._log_tail())
            if self._port_open():
                password = self._password if self._password_set else INITIAL_PASSWORD
                try:
                    with GraphDatabase.driver(self.uri, auth=(USER, password),
                                              connection_timeout=5.0) as driver:
                        driver.verify_connectivity()
                        if not self._password_set:
                            self._change_password(driver)
                        else:
                            driver.execute_query("RETURN 1", database_="neo4j")
                    return
                except AuthError as exc:
                    self._terminate(kill=True)
                    raise Neo4jServerError(
                        f"Neo4j at {self.uri} refused the credentials of user {USER!r}: "
                        f"{type(exc).__name__}") from None
                except errors as exc:  # not listening yet, or a database still starting
                    last = exc
            time.sleep(0.5)

    def _change_password(self, driver: Any) -> None:
        driver.execute_query("ALTER CURRENT USER SET PASSWORD FROM $old TO $new",
                             old=INITIAL_PASSWORD, new=self._password, database_="system")
        self._password_set = True
        from neo4j import GraphDatabase

        with GraphDatabase.driver(self.uri, auth=(USER, self._password)) as fresh:
            fresh.execute_query("RETURN 1", database_="neo4j")

    def _port_open(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def _port_clash(self) -> bool:
        try:
            text = self.log_file.read_text(errors="replace") if self.log_file else ""
        except OSError:
            return False
        return "PortBindException" in text or "Address already in use" in text

    def _log_tail(self, lines: int = 40) -> str:
        if self._home is None:
            return ""
        parts = []
        for name in ("neo4j.log", "debug.log"):
            tail = _tail(self._home / "logs" / name, lines)
            if tail:
                parts.append(f"--- last lines of logs/{name} ---\n{tail}")
        return "\n".join(parts).replace(self._password, "***")

    def _terminate(self, *, kill: bool) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            sig = signal.SIGKILL if kill else signal.SIGTERM
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=30.0 if kill else self.stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning("Neo4j (pid %d) ignored SIGTERM for %.0f s: SIGKILL", proc.pid,
                            self.stop_timeout)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30.0)
        # anything left in its process group (there should be nothing)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        log.info("Neo4j (pid %d) %s, exit code %s", proc.pid, "killed" if kill else "stopped",
                 proc.returncode)

    def _remove_home(self) -> None:
        if self._home is not None and not self._keep_home:
            shutil.rmtree(self._home, ignore_errors=True)
            self._home = None
            self._password_set = False


# --------------------------------------------------------------------------------------------
# env files for the detached CLI


def _write_env_file(path: Path, values: dict[str, str]) -> None:
    """Write ``KEY=value`` lines (shell-quoted, so ``. FILE`` works), readable by the owner only."""
    text = "".join(f"{key}={shlex.quote(value)}\n" for key, value in values.items())
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    tmp.replace(path)


def _read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, raw = line.partition("=")
            parsed = shlex.split(raw)
            values[key.strip()] = parsed[0] if parsed else ""
    return values


def stop_detached(env_file: Path, timeout: float = 60.0) -> bool:
    """Stop the server that ``start --env-file`` left running; False if it was not running."""
    values = _read_env_file(env_file)
    pid = int(values["NEO4J_SERVER_PID"])
    home = Path(values["NEO4J_SERVER_HOME"])
    stopped = False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace")
    except OSError:
        cmdline = ""
    if ENTRY_POINT in cmdline and str(home) in cmdline and _process_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _process_alive(pid):
            log.warning("Neo4j (pid %d) ignored SIGTERM for %.0f s: SIGKILL", pid, timeout)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while _process_alive(pid) and time.monotonic() < deadline + 30:
                time.sleep(0.2)
        stopped = True
        log.info("Neo4j (pid %d) stopped", pid)
    else:
        log.warning("no Neo4j server with pid %d is running", pid)
    if home.name.startswith(_HOME_PREFIX):
        shutil.rmtree(home, ignore_errors=True)
    env_file.unlink(missing_ok=True)
    return stopped


# --------------------------------------------------------------------------------------------
# command line


class _Terminated(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def _run(server: Neo4jServer, cmd: Sequence[str]) -> int:
    """Start the server, run ``cmd`` with its env, stop the server; ``cmd``'s exit code."""

    def on_term(signum: int, _frame: object) -> None:
        raise _Terminated(signum)

    previous = signal.signal(signal.SIGTERM, on_term)
    child: subprocess.Popen[bytes] | None = None
    try:
        server.start()
        child = subprocess.Popen(list(cmd), env={**os.environ, **server.env()})
        code = child.wait()
        return code if code >= 0 else 128 - code
    except (KeyboardInterrupt, _Terminated) as exc:
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        return 128 + (exc.signum if isinstance(exc, _Terminated) else signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="neo4j_server.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"environment:\n  {HOME_ENV}  jar cache folder (default {DEFAULT_HOME}; "
               f"jars in its lib/)\n  {PASSWORD_ENV}  a fixed password for run/start "
               "(default: random)\nrun and start give NEO4J_URI, NEO4J_USER and NEO4J_PASSWORD.")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="fetch the jars into the cache (once)")
    fetch.add_argument("--force", action="store_true", help="fetch again even if cached")
    for name, text in (("run", "start a server, run CMD with NEO4J_* set, stop the server"),
                       ("start", "start a detached server and write its env to --env-file")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--heap", default="1g", help="Java heap (default 1g)")
        p.add_argument("--page-cache", default="256m", help="page cache (default 256m)")
        p.add_argument("--port", type=int, default=None, help="Bolt port (default: a free one)")
        p.add_argument("--startup-timeout", type=float, default=120.0)
    sub.choices["run"].add_argument("cmd", nargs=argparse.REMAINDER,
                                    help="the command, after --")
    sub.choices["start"].add_argument("--env-file", type=Path, required=True)
    stop = sub.add_parser("stop", help="stop the server that `start --env-file FILE` started")
    stop.add_argument("--env-file", type=Path, required=True)
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="[neo4j_server] %(message)s", stream=sys.stderr)
    try:
        if args.command == "fetch":
            print(fetch_jars(force=args.force))
            return 0
        if args.command == "stop":
            stop_detached(args.env_file)
            return 0
        # the password is supplied through the environment only, never on the command line
        options: dict[str, Any] = {
            "heap": args.heap, "page_cache": args.page_cache, "port": args.port,
            "startup_timeout": args.startup_timeout,
            "password": os.environ.get(PASSWORD_ENV) or None,
        }
        if args.command == "run":
            cmd = list(args.cmd)
            if cmd and cmd[0] == "--":
                cmd = cmd[1:]
            if not cmd:
                parser.error("run needs a command: run -- CMD ARGS...")
            return _run(Neo4jServer(**options), cmd)
        server = Neo4jServer(**options, die_with_parent=False)
        server.start()
        assert server.home is not None and server.pid is not None
        _write_env_file(args.env_file, {**server.env(), "NEO4J_SERVER_PID": str(server.pid),
                                        "NEO4J_SERVER_HOME": str(server.home)})
        server.detach()
        log.info("Neo4j runs detached at %s; env in %s; stop with: %s stop --env-file %s",
                 server.uri, args.env_file, sys.argv[0], args.env_file)
        return 0
    except (Neo4jServerError, ValueError) as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
