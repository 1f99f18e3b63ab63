"""The solver's cached customer rows, each cache built by one pass with its histogram.

:func:`build` persists the rows a builder of :mod:`.layout` makes and runs the pass: the
Python workers build the rows and sum their histogram into an accumulator (:mod:`.sums`).
:func:`unshuffled` does it for the scores' plain Parquet files, and proves each customer
lay in one place or sends the caller to the shuffle. :func:`uncompressed` leaves Spark's
columnar cache uncompressed while the solver builds its caches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial

import pandas as pd
from pyspark.accumulators import Accumulator
from pyspark.sql import DataFrame, SparkSession
from pyspark.storagelevel import StorageLevel

from sparklift.allocation.arms import PolicyArm
from sparklift.allocation.budgets import repeated_ids
from sparklift.allocation.layout import from_files
from sparklift.allocation.sums import FileIds, Sums, overlapping

log = logging.getLogger("sparklift")
CACHE_COMPRESSED = "spark.sql.inMemoryColumnarStorage.compressed"


@contextmanager
def uncompressed(spark: SparkSession) -> Iterator[None]:
    """Spark's columnar cache left uncompressed while the solver builds its caches: their
    columns are doubles and small integers that compress little, and at 10M customers the
    first pass took 38-42 s instead of 42-50 s for 5% more memory (bench/RESULTS.md)."""
    before = spark.conf.get(CACHE_COMPRESSED, None)
    spark.conf.set(CACHE_COMPRESSED, "false")
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(CACHE_COMPRESSED)
        else:
            spark.conf.set(CACHE_COMPRESSED, before)


def build(
    spark: SparkSession, frame_of: Callable[[Accumulator], DataFrame]
) -> tuple[DataFrame, pd.DataFrame, dict[int, FileIds]]:
    """One pass: the customer rows ``frame_of`` builds (its workers summing into the
    accumulator it is given), cached; their histogram; the files' ids the workers noted."""
    sums = Sums(spark)
    frame = frame_of(sums.acc).persist(StorageLevel.MEMORY_AND_DISK)
    frame.count()
    return frame, *sums.take()


def unshuffled(
    spark: SparkSession, paths: Sequence[str], keep: PolicyArm, vouchers: list[str]
) -> tuple[DataFrame, pd.DataFrame, int] | tuple[None, None, int]:
    """The customers ``keep`` keeps, read from the scores' files ``paths`` without a
    shuffle, cached, their histogram, and the passes it took beyond the first; or nothing
    (nothing cached) when a customer came twice: its rows were not together in one file,
    or the scores repeat it. The shuffle then brings them together, or refuses the repeat."""
    env, hist, files = build(spark, partial(from_files, spark, paths, vouchers, keep))
    if not overlapping(files):
        return env, hist, 0
    repeats = repeated_ids(env)
    if not repeats:
        return env, hist, 1
    env.unpersist()
    log.info("allocation: %d customers' scores lie in more than one place: shuffling", repeats)
    return None, None, 2
