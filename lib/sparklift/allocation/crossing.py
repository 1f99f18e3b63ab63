"""A crowded crossing bucket, split in Spark until the driver can settle its part.

The driver settles a group from the breakpoints of the histogram bucket where its spend
crosses the budget. Scores with many equal or nearly equal ratios (a flat score per
segment, a price list) can put millions of breakpoints in that one bucket. Then, while it
holds more than ``limit``, one pass histograms it into :data:`SPLIT` parts in the settle
order (lambda descending, then customer id): the bucket by log lambda, a part of it by
lambda between the part's extremes, and a part whose breakpoints all have the same lambda
(a tie) by customer id. The part
where the spend crosses becomes the :class:`Region` the driver gets; every breakpoint
before it in that order is taken, every one after it is not (the greedy fill then works
inside the region). Only the histograms' aggregates reach the driver on the way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from sparklift.allocation import layout as L
from sparklift.allocation.settle import ID_MAX, ID_MIN
from sparklift.errors import SparkliftError

if TYPE_CHECKING:
    from sparklift.allocation.budgets import Plan

SPLIT = 4096  # parts per pass: a bucket of a billion breakpoints needs three passes
MAX_PASSES = 32  # log lambda resolves a double's 52 bits in <= 5, a 64-bit id in <= 6


@dataclass(frozen=True)
class Region:
    """The breakpoints of a group's crossing bucket that the driver settles: lambda in
    [lam_lo, lam_hi] and customer id in [id_lo, id_hi]. Those in the bucket with a larger
    lambda, or the same lambda as a tied region and a smaller id, are taken."""

    lam_lo: float = 0.0
    lam_hi: float = math.inf
    id_lo: int = ID_MIN
    id_hi: int = ID_MAX
    before: int | None = None  # a tied region's: the last id taken below it at its lambda

    @property
    def tied(self) -> bool:
        return self.lam_lo == self.lam_hi

    def taken_id_below(self) -> int:
        """Customers below this id take their step at lambda = lam_hi (a tied region's)."""
        return self.id_lo if self.tied else ID_MIN


def step_rows(env: DataFrame, groups: DataFrame, n_opt: int) -> DataFrame:
    """One row per breakpoint of the customers of ``groups`` (joined by budget_group,
    whose columns it keeps): step, lam, bucket, d_value, d_cost, to."""
    structs = [
        F.struct(
            F.lit(k).alias("step"),
            F.col(L.step_lambda(k)).alias("lam"),
            F.col(L.step_bucket(k)).alias("bucket"),
            F.col(L.step_value(k)).alias("d_value"),
            F.col(L.step_cost(k)).alias("d_cost"),
            F.col(L.step_option(k)).alias("to"),
        )
        for k in range(n_opt)
    ]
    return env.join(F.broadcast(groups), "budget_group").select(
        "budget_group", "customer_id", *groups.columns[1:], F.inline(F.array(*structs))
    )


def in_region() -> Column:
    """The breakpoint lies in its group's region (columns lam_lo, lam_hi, id_lo, id_hi)."""
    return F.col("lam").between(F.col("lam_lo"), F.col("lam_hi")) & F.col("customer_id").between(
        F.col("id_lo"), F.col("id_hi")
    )


def refine(env: DataFrame, plan: Plan, n_opt: int, budgets: dict[str, float], limit: int) -> int:
    """Split the crossing bucket of every group of ``plan`` that holds more than ``limit``
    breakpoints until its region holds at most ``limit``; updates ``plan`` (ranges: no
    fill below the region; regions). Returns the passes made."""
    todo = {g: Region() for g, n in plan.crossing_n.items() if n > limit}
    passes = 0
    while todo:
        passes += 1
        if passes > MAX_PASSES:
            raise SparkliftError(f"the crossing buckets of {sorted(todo)} did not split")
        parts = _histogram(env, plan, todo, n_opt)
        for g in list(todo):
            _, hi, spent_above, value_above = plan.ranges[g]
            h = parts[parts["budget_group"] == g].sort_values("key", ascending=False)
            cum = spent_above + h["d_cost"].cumsum().to_numpy()
            over = np.flatnonzero(cum > budgets[g])
            q = int(over[0]) if len(over) else len(h) - 1  # sums in another order: the last
            row = h.iloc[q]
            plan.ranges[g] = (
                hi,
                hi,
                spent_above + float(h["d_cost"].iloc[:q].sum()),
                value_above + float(h["d_value"].iloc[:q].sum()),
            )
            tied = row["lam_min"] == row["lam_max"]
            # Split by id, the parts before it hold the ids below, taken; split by lambda,
            # none shares its lambda.
            before = (
                (int(h["id_max"].iloc[q - 1]) if q else todo[g].before) if todo[g].tied else None
            )
            region = Region(
                float(row["lam_min"]),
                float(row["lam_max"]),
                int(row["id_min"]) if tied else ID_MIN,
                int(row["id_max"]) if tied else ID_MAX,
                before if tied else None,
            )
            plan.regions[g] = region
            plan.crossing_n[g] = int(row["n"])
            if row["n"] <= limit or (region.tied and region.id_lo == region.id_hi):
                del todo[g]
            else:
                todo[g] = region
    return passes


def _histogram(env: DataFrame, plan: Plan, todo: dict[str, Region], n_opt: int) -> pd.DataFrame:
    """Per group of ``todo`` and part of its region: summed cost and value, count, and the
    extreme lambdas and ids. Parts are keyed in the settle order, the largest key first."""
    spark = env.sparkSession
    rows = []
    for g, r in todo.items():
        hi = plan.ranges[g][1]
        whole = r.lam_hi == math.inf  # the bucket: log2 lambda in [hi, hi + 1) / PER_OCTAVE
        if whole:
            base, scale = hi / L.PER_OCTAVE, float(L.PER_OCTAVE * SPLIT)
        elif not r.tied:  # a part: lambda itself (two adjacent doubles can share a log2)
            base, scale = r.lam_lo, (SPLIT - 1) / (r.lam_hi - r.lam_lo)
        else:  # tied lambdas: split by id
            base, scale = 0.0, 0.0
        rows.append((g, hi, r.lam_lo, r.lam_hi, r.id_lo, r.id_hi, whole, r.tied, base, scale))
    groups = spark.createDataFrame(
        rows,
        "budget_group string, hi long, lam_lo double, lam_hi double, id_lo long, id_hi long, "
        "whole boolean, tied boolean, base double, scale double",
    )
    steps = step_rows(env, groups, n_opt).where((F.col("bucket") == F.col("hi")) & in_region())
    lam = F.when(F.col("whole"), F.log2("lam")).otherwise(F.col("lam"))
    by_lam = F.floor((lam - F.col("base")) * F.col("scale"))
    # Ids: the smaller first in the settle order, so the larger key; the width in doubles
    # (an id range can exceed a long).
    width = F.col("id_hi").cast("double") - F.col("id_lo").cast("double") + 1.0
    offset = F.col("customer_id").cast("double") - F.col("id_lo").cast("double")
    by_id = SPLIT - 1 - F.floor(offset / width * SPLIT)
    key: Column = F.least(F.greatest(F.when(F.col("tied"), by_id).otherwise(by_lam), F.lit(0)),
                          F.lit(SPLIT - 1)).cast("long")  # fmt: skip
    return (
        steps.withColumn("key", key)
        .groupBy("budget_group", "key")
        .agg(
            F.sum("d_cost").alias("d_cost"),
            F.sum("d_value").alias("d_value"),
            F.count(F.lit(1)).alias("n"),
            F.min("lam").alias("lam_min"),
            F.max("lam").alias("lam_max"),
            F.min("customer_id").alias("id_min"),
            F.max("customer_id").alias("id_max"),
        )
        .toPandas()
    )
