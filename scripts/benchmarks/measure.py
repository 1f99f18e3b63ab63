"""What every benchmark measures with: wall time and the peak memory of a process tree."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import psutil

T = TypeVar("T")

ACTIVE_SHARE = 0.228  # active user-days per user-day in the generator, measured


def users_for(rows: int, days: int) -> int:
    """Generator users that make about ``rows`` user_activity rows over ``days``."""
    return int(rows / (days * ACTIVE_SHARE))


class PeakRss:
    """Peak resident memory of this process and its children (the local JVM)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.2):
            procs = [me, *me.children(recursive=True)]
            total = 0
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            self.peak = max(self.peak, total)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """``fn()`` and its wall time in seconds."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def same_work(what: str, done: int, named: int) -> None:
    """Fail the benchmark when the work it timed (``done``) is not the work it reports."""
    if done != named:
        raise AssertionError(f"{what}: the timed work covered {done:,}, reported as {named:,}")
