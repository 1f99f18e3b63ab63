"""Progress of long Spark work: a background thread logs the active stages' task counts.

Spark's console progress bar is off (it garbles logs); instead, while a step runs, every
``interval_s`` seconds one line per active stage says how many of its tasks are done, so a
nightly run's log shows where a slow step is and that it is moving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pyspark import SparkContext

log = logging.getLogger("sparklift.progress")


@contextmanager
def spark_progress(sc: SparkContext, label: str, interval_s: float) -> Iterator[None]:
    """Log the progress of Spark stages every ``interval_s`` seconds while the block runs
    (0 = never)."""
    if interval_s <= 0:
        yield
        return
    stop = threading.Event()

    def report() -> None:
        tracker = sc.statusTracker()
        while not stop.wait(interval_s):
            for stage_id in tracker.getActiveStageIds():
                info = tracker.getStageInfo(stage_id)
                if info is None:
                    continue
                log.info(
                    "%s: stage %d (%s): %d of %d tasks done, %d running",
                    label,
                    stage_id,
                    info.name.split(" at ")[0],
                    info.numCompletedTasks,
                    info.numTasks,
                    info.numActiveTasks,
                    extra={
                        "step": label,
                        "stage": stage_id,
                        "tasks_done": info.numCompletedTasks,
                        "tasks": info.numTasks,
                    },
                )

    thread = threading.Thread(target=report, name=f"progress-{label}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
