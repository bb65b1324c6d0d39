"""Progress lines of a training run on stderr: every setup step says when it starts and
ends, with a heartbeat while it runs. The printer of the run in progress lives in a context
variable (:func:`current_progress`), so deep steps print without passing it around."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["Progress", "current_progress", "rss_gb", "use_progress"]

_HEARTBEAT_S = 10.0  # seconds between "still running" lines of a long step


def rss_gb() -> float | None:
    """The process's resident memory now, in GB (None where /proc is not available)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e9
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class Progress:
    """Progress lines on stderr, ``[graph-meta 12.3s] ...``: every setup step says when it
    starts and ends, and while one runs a heartbeat line follows every ``_HEARTBEAT_S`` with
    its ``detail`` (e.g. the ALS sweep) and the process's RSS. Disabled: silent."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self.detail = ""

    def say(self, text: str) -> None:
        if self.enabled:
            print(f"[graph-meta {time.perf_counter() - self.t0:6.1f}s] {text}", file=sys.stderr,
                  flush=True)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        self.say(f"{name} ...")
        start = time.perf_counter()
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(_HEARTBEAT_S):
                rss = rss_gb()
                extra = [f"{time.perf_counter() - start:.0f} s"]
                if self.detail:
                    extra.append(self.detail)
                if rss is not None:
                    extra.append(f"RSS {rss:.2f} GB")
                self.say(f"{name}: still running ({', '.join(extra)})")

        thread = threading.Thread(target=beat, name="graph-meta-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.detail = ""
        self.say(f"{name}: done in {time.perf_counter() - start:.1f} s")


_PROGRESS: ContextVar[Progress | None] = ContextVar("graph_meta_progress", default=None)
_SILENT = Progress(False)


def current_progress() -> Progress:
    """The progress printer of the training run in this context (silent outside one)."""
    return _PROGRESS.get() or _SILENT


@contextmanager
def use_progress(printer: Progress) -> Iterator[Progress]:
    """Make ``printer`` the :func:`current_progress` of this context while the block runs."""
    token = _PROGRESS.set(printer)
    try:
        yield printer
    finally:
        _PROGRESS.reset(token)
