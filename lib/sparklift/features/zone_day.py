"""Zone x day features from ``user_activity``, declared in config (:class:`FeatureDef`).

One aggregation over the activity rows computes every base aggregate (counts, sums,
conditional counts) per (date, zone_id), together with, for validation, the minimum of
each count column and the number of NaN or infinite values of each float column (a NaN
would otherwise sum to NaN and leave the grid as 0). The result is small (zones x days),
so the checks run on it and the complete grid (every zone of ``zones`` on every date,
zero activity giving zeros) is built from it without touching the activity rows again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, NumericType, StructField, StructType

from sparklift.config import FeatureDef
from sparklift.errors import ConfigError, InputError, InputNotReadyError
from sparklift.finite import PREFIX, float_columns, nonfinite_counts, refuse

KEYS = ("date", "zone_id")
COUNT_COLUMNS = ("visits", "orders", "items", "tenure_days", "prior_orders_28d")
NON_NEGATIVE = (*COUNT_COLUMNS, "gmv", "prior_gmv_28d")


def date_range(start: dt.date, end: dt.date) -> list[dt.date]:
    if end < start:
        raise InputError(f"--end {end} is before --start {start}")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def check_activity_schema(activity: DataFrame, defs: Sequence[FeatureDef]) -> None:
    """Every column the features read exists and is numeric; every condition parses."""
    types = {f.name: f.dataType for f in activity.schema.fields}
    needed = {*KEYS, *(d.column for d in defs if d.column)}
    missing = sorted(c for c in needed if c not in types)
    if missing:
        raise InputError(f"table user_activity lacks columns {missing} that the features need")
    for d in defs:
        if d.column and not isinstance(types[d.column], NumericType):
            raise InputError(
                f"user_activity.{d.column} is {types[d.column].simpleString()}, but feature "
                f"{d.name!r} needs a number"
            )
        if d.where:
            try:
                activity.select(F.expr(d.where).cast("boolean")).schema  # noqa: B018
            except AnalysisException as e:
                raise ConfigError(
                    f"feature {d.name!r}: condition {d.where!r} does not apply to "
                    f"user_activity: {str(e).splitlines()[0]}"
                ) from None


def _base_aggs(defs: Sequence[FeatureDef]) -> list[Column]:
    aggs: dict[str, Column] = {"_rows": F.count(F.lit(1))}
    for d in defs:
        if d.agg in ("sum", "mean"):
            aggs[f"_sum_{d.column}"] = F.sum(d.column)
        elif d.agg in ("count_if", "share"):
            aggs[f"_if_{d.name}"] = F.count_if(F.expr(d.where))
    return [c.alias(name) for name, c in aggs.items()]


def aggregate_activity(activity: DataFrame, defs: Sequence[FeatureDef]) -> DataFrame:
    """Per (date, zone_id): the base aggregates and, for checks, column minima and counts
    of non-finite values."""
    checks = [F.min(c).alias(f"_min_{c}") for c in NON_NEGATIVE if c in activity.columns]
    checks += nonfinite_counts(float_columns(activity))
    return activity.groupBy(*KEYS).agg(*_base_aggs(defs), *checks)


def check_aggregates(
    agg: DataFrame, activity: DataFrame, zones: DataFrame, dates: Sequence[dt.date]
) -> None:
    """Fail on NaN or infinite numbers, null or unknown zone ids, negative values, or dates
    with no activity (``activity``: the rows ``agg`` came from, to name an example)."""
    mins = [c for c in agg.columns if c.startswith("_min_")]
    nonfinite = [c for c in agg.columns if c.startswith(PREFIX)]
    row = agg.agg(
        F.sum(F.when(F.col("zone_id").isNull(), F.col("_rows"))).alias("null_zone_rows"),
        *[F.min(c).alias(c) for c in mins],
        *[F.sum(c).alias(c) for c in nonfinite],
        F.collect_set("date").alias("dates"),
    ).first()
    assert row is not None
    keys = [c for c in (*KEYS, "user_id") if c in activity.columns]
    refuse("user_activity", {c[len(PREFIX) :]: row[c] for c in nonfinite}, activity, keys)
    if row["null_zone_rows"]:
        raise InputError(f"user_activity has {row['null_zone_rows']} rows with a null zone_id")
    negative = {c[5:]: row[c] for c in mins if row[c] is not None and row[c] < 0}
    if negative:
        raise InputError(f"user_activity has negative values (column: minimum): {negative}")
    empty = sorted(set(dates) - set(row["dates"] or []))
    if empty:
        raise InputNotReadyError(
            f"user_activity has no rows for {len(empty)} of the requested dates: "
            f"{[d.isoformat() for d in empty[:10]]}"
        )
    unknown = agg.select("zone_id").distinct().join(zones.select("zone_id"), "zone_id", "left_anti")
    sample = [r.zone_id for r in unknown.limit(10).collect()]
    if sample:
        raise InputError(f"user_activity has zone_ids missing from table zones, e.g. {sample}")


def _feature_column(d: FeatureDef) -> Column:
    rows = F.col("_rows")
    safe = lambda num, den: F.when(den > 0, num / den).otherwise(0.0)  # noqa: E731
    if d.agg == "count":
        return rows
    if d.agg == "sum":
        return F.col(f"_sum_{d.column}")
    if d.agg == "mean":
        return safe(F.col(f"_sum_{d.column}").cast("double"), rows)
    if d.agg == "count_if":
        return F.col(f"_if_{d.name}")
    if d.agg == "share":
        return safe(F.col(f"_if_{d.name}").cast("double"), rows)
    return safe(F.col(str(d.numerator)).cast("double"), F.col(str(d.denominator)))


def complete_grid(
    spark: SparkSession,
    agg: DataFrame,
    zones: DataFrame,
    dates: Sequence[dt.date],
    defs: Sequence[FeatureDef],
) -> DataFrame:
    """Every zone on every date with its features; no activity gives zeros."""
    date_df = spark.createDataFrame(
        [(d,) for d in dates], StructType([StructField("date", DateType())])
    )
    grid = zones.select("zone_id").distinct().crossJoin(F.broadcast(date_df))
    base = [c for c in agg.columns if c.startswith(("_rows", "_sum_", "_if_"))]
    out = grid.join(agg.select(*KEYS, *base), list(KEYS), "left").fillna(0, subset=base)
    for d in defs:  # in order, so ratios see the features they refer to
        out = out.withColumn(d.name, _feature_column(d))
    return out.select(*KEYS, *(d.name for d in defs))
