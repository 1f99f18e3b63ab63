"""Faults of a daily feed, injected into one date of ``user_activity`` on demand.

The data quality checks (``sparklift check``) are tested against the failures upstream
loads really have: half a day's rows lost, a column's nulls spiking, a partition delivered
twice, a shifted distribution (a currency or unit change), a partition that has not landed
yet, and zone ids remapped to a scheme the ``zones`` table does not know. Each fault is a
pure transform of the frame, deterministic in the seed (rows are chosen by a hash of the
user id, not by ``rand``), and touches only its date's rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from sparklift.config import FaultConfig

ZONE_ID_OFFSET = 100_000  # remap_zones: zone z becomes z + 100000, an id zones lacks


def _share(seed: int, salt: int) -> Column:
    """A uniform [0, 1) number per user, fixed by the seed (the same user, the same draw)."""
    return F.pmod(F.xxhash64(F.col("user_id"), F.lit(seed), F.lit(salt)), F.lit(1 << 20)) / float(
        1 << 20
    )


def inject(df: DataFrame, faults: Sequence[FaultConfig], seed: int) -> DataFrame:
    """``df`` (user_activity rows) with every fault applied to its date's rows."""
    for i, fault in enumerate(faults):
        on = F.col("date") == F.lit(fault.date)
        if fault.kind == "drop_half":
            df = df.where(~on | (_share(seed, i) >= 0.5))
        elif fault.kind == "late":
            df = df.where(~on)
        elif fault.kind == "duplicate":
            df = df.unionByName(df.where(on))
        elif fault.kind == "null_spike":
            hit = on & (_share(seed, i) < fault.share)
            df = df.withColumn(fault.column, F.when(~hit, F.col(fault.column)))
        elif fault.kind == "shift":
            kind = df.schema[fault.column].dataType
            shifted = (F.col(fault.column) * F.lit(fault.factor)).cast(kind)
            df = df.withColumn(fault.column, F.when(on, shifted).otherwise(F.col(fault.column)))
        else:  # remap_zones
            remapped = (F.col("zone_id") + F.lit(ZONE_ID_OFFSET)).cast("int")
            df = df.withColumn("zone_id", F.when(on, remapped).otherwise(F.col("zone_id")))
    return df
