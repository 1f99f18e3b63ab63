"""The histogram summed where the customer rows are built, gathered by an accumulator.

Each pass that builds the solver's cached customer rows (:mod:`.layout`) runs in Python
workers, an Arrow batch at a time. The worker sums each batch there: per (group, bucket
of lambda) the breakpoints' cost and value change and their count, and per group a
totals row (bucket TOTALS): customers, summed base value and the input's defect counts
(:data:`FLAGS`). At the end of its partition it hands the partition's sums to a
Spark accumulator. So the pass that caches the rows is the histogram's pass too: no
query reads the cache again to explode the breakpoints (at 10M customers pass 1 took
24-28 s instead of 39-50 s), and the defect counts are not cached.

The driver merges each partition's sums once, as they arrive, so it holds one merged
frame whatever the partition count. A partition computed again (a retried task, an
evicted cache block) brings the same sums and is skipped. The files reader also notes,
per file, its range of customer ids and how many of them it saw in two places, for the
check that each customer's rows lay together (:mod:`.cache`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark import TaskContext
from pyspark.accumulators import Accumulator, AccumulatorParam
from pyspark.sql import SparkSession

from sparklift.allocation.envelope import Envelope

TOTALS = -(2**62)  # the histogram's bucket key of the per-group totals row
FLAGS = ("dup", "bad", "other", "multi", "nogroup")
COLUMNS = ["budget_group", "bucket", "d_cost", "d_value", "n", *FLAGS]
COMPACT_ROWS = 1_000_000  # a worker merges its batches' sums when they pass this many rows


@dataclass
class FileIds:
    """The customer ids a file held (after the arm's filter): smallest, largest, and how
    many of them came in two places of it (runs of rows apart)."""

    low: int
    high: int
    twice: int


@dataclass
class Parts:
    """Merged sums of the partitions in ``seen``, and the files' ids read so far."""

    seen: set[int] = field(default_factory=set)
    frame: pd.DataFrame | None = None
    files: dict[int, FileIds] = field(default_factory=dict)


class _PartsParam(AccumulatorParam):
    def zero(self, value: Parts) -> Parts:
        return Parts()

    def addInPlace(self, a: Parts, b: Parts) -> Parts:
        if b.seen - a.seen and b.frame is not None:
            a.frame = _merge([f for f in (a.frame, b.frame) if f is not None])
        a.seen |= b.seen
        a.files.update(b.files)
        return a


class Sums:
    """One pass's accumulator: hand ``acc`` to the workers, then :meth:`take` the sums."""

    def __init__(self, spark: SparkSession) -> None:
        self.acc: Accumulator = spark.sparkContext.accumulator(Parts(), _PartsParam())

    def take(self) -> tuple[pd.DataFrame, dict[int, FileIds]]:
        """The histogram: per (group, bucket) and per group (TOTALS) the summed rows
        (:data:`COLUMNS`); and the files' ids. The accumulator is emptied (it stays
        registered with the Spark context)."""
        parts = self.acc.value
        self.acc.value = Parts()
        frame = parts.frame if parts.frame is not None else pd.DataFrame(columns=COLUMNS)
        out = frame.reindex(columns=COLUMNS)
        out[["bucket", "n", *FLAGS]] = out[["bucket", "n", *FLAGS]].fillna(0).astype("int64")
        return out.astype({"d_cost": "float64", "d_value": "float64"}), parts.files


class Partition:
    """A worker's sums over one partition, batch by batch."""

    def __init__(self) -> None:
        self.parts: list[pd.DataFrame] = []
        self.rows = 0
        self.files: dict[int, FileIds] = {}

    def add(
        self,
        group: pa.Array,
        env: Envelope,
        steps: np.ndarray,
        buckets: np.ndarray,
        flags: Mapping[str, np.ndarray] | None,
    ) -> None:
        """One batch: customers' ``group``, envelopes, which steps exist and their buckets,
        and the defect counts per customer (None: all 0)."""
        encoded = group.dictionary_encode()
        names = np.array([*encoded.dictionary.to_pylist(), None], dtype=object)
        codes = pc.fill_null(encoded.indices, len(names) - 1).to_numpy().astype(np.int64)
        per_step = np.broadcast_to(codes[:, None], steps.shape)[steps]
        step_rows = pd.DataFrame(
            {
                "g": per_step,
                "bucket": buckets[steps],
                "d_cost": env.d_cost[steps],
                "d_value": env.d_value[steps],
                "n": 1,
            }
        )
        totals = pd.DataFrame(
            {"g": codes, "bucket": TOTALS, "d_cost": 0.0, "d_value": env.base_value, "n": 1}
        )
        for f, counts in (flags or {}).items():
            totals[f] = counts
        out = pd.concat(
            [
                step_rows.groupby(["g", "bucket"], sort=False, as_index=False).sum(),
                totals.groupby(["g", "bucket"], sort=False, as_index=False).sum(),
            ],
            ignore_index=True,
        )
        out.insert(0, "budget_group", names[out.pop("g").to_numpy()])
        self.parts.append(out)
        self.rows += len(out)
        if self.rows > COMPACT_ROWS:
            self.parts = [_merge(self.parts)]
            self.rows = len(self.parts[0])

    def file(self, index: int, runs: list[np.ndarray]) -> None:
        """File ``index`` held customers ``runs`` (each batch's, one per run of rows)."""
        ids = np.sort(np.concatenate(runs)) if runs else np.empty(0, np.int64)
        if len(ids):
            self.files[index] = FileIds(int(ids[0]), int(ids[-1]), int(np.sum(ids[1:] == ids[:-1])))

    def send(self, acc: Accumulator) -> None:
        """Hand the partition's sums to the driver (at the end of the partition)."""
        pid = TaskContext.get().partitionId()
        acc.add(Parts({pid}, _merge(self.parts) if self.parts else None, self.files))


def _merge(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frame = pd.concat(frames, ignore_index=True)
    flags = [f for f in FLAGS if f in frame.columns]
    frame[flags] = frame[flags].fillna(0)
    return frame.groupby(["budget_group", "bucket"], sort=False, dropna=False, as_index=False).sum()


def overlapping(files: Mapping[int, FileIds]) -> bool:
    """Whether a customer may lie in two places: a file saw one twice, or two files' id
    ranges meet."""
    ranges = sorted((f.low, f.high) for f in files.values())
    if any(f.twice for f in files.values()):
        return True
    return any(nxt[0] <= prev[1] for prev, nxt in pairwise(ranges))
