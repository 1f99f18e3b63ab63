"""Zone x day features from ``user_activity``, declared in config (:class:`FeatureDef`).

One aggregation over the activity rows computes every base aggregate (counts, sums,
conditional counts) per (date, zone_id), together with, for validation, the counts of
user_activity's own checks (``quality.tables.user_activity``: nulls, ranges, non-finite
values, :mod:`sparklift.quality.contract`) and of NaN or infinite values of the other
float columns (a NaN would otherwise sum to NaN and leave the grid as 0). The result is
small (zones x days), so the checks run on it and the complete grid (every zone of
``zones`` on every date, zero activity giving zeros) is built from it without touching the
activity rows again.
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
from sparklift.quality.contract import (
    ContractError,
    count_columns,
    counted,
    example,
    failures,
    summed,
)
from sparklift.quality.spec import TableSpec

KEYS = ("date", "zone_id")


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
    for d in defs:  # a mean or share is over the rows where the value is known
        if d.agg in ("sum", "mean"):
            aggs[f"_sum_{d.column}"] = F.sum(d.column)
        if d.agg == "mean":
            aggs[f"_n_{d.column}"] = F.count(d.column)
        elif d.agg in ("count_if", "share"):
            aggs[f"_if_{d.name}"] = F.count_if(F.expr(d.where))
        if d.agg == "share":
            aggs[f"_known_{d.name}"] = F.count(F.expr(d.where))
    return [c.alias(name) for name, c in aggs.items()]


def aggregate_activity(
    activity: DataFrame, defs: Sequence[FeatureDef], spec: TableSpec
) -> DataFrame:
    """Per (date, zone_id): the base aggregates and, for checks, the counts of the table's
    counting checks (``spec``: user_activity's nulls, ranges and accepted values) and of
    the non-finite values of float columns without a range that is an error (a NaN would
    sum to NaN whatever a warning says)."""
    checks = count_columns(spec, activity)
    ranged = spec.checks.ranges if spec.severity_of("range") == "error" else {}
    checks += nonfinite_counts([c for c in float_columns(activity) if c not in ranged])
    return activity.groupBy(*KEYS).agg(*_base_aggs(defs), *checks)


def check_aggregates(
    agg: DataFrame,
    activity: DataFrame,
    zones: DataFrame,
    dates: Sequence[dt.date],
    spec: TableSpec,
) -> None:
    """Refuse what fails user_activity's error checks on any date (:class:`ContractError`,
    naming the check and an example row), NaN or infinite numbers, zone ids missing from
    ``zones`` (the grid is built from them), or dates with no activity (``activity``: the
    rows ``agg`` came from, to name an example)."""
    names = [f"{kind}:{x}" for kind, x in counted(spec, activity)]
    nonfinite = [c for c in agg.columns if c.startswith(PREFIX)]
    known = zones.select("zone_id").distinct().withColumn("_known", F.lit(True))
    orphan = F.col("zone_id").isNotNull() & F.col("_known").isNull()
    days = {
        r["date"]: {
            k: None if v is None else float(v) for k, v in r.asDict().items() if k != "date"
        }
        for r in agg.join(F.broadcast(known), "zone_id", "left")
        .groupBy("date")
        .agg(
            F.sum("_rows").alias("row_count"),
            F.sum(F.when(orphan, F.col("_rows")).otherwise(0)).alias("orphans:zone_id"),
            *summed(names),
            *[F.sum(c).alias(c) for c in nonfinite],
        )
        .collect()  # one row per date
    }
    keys = [c for c in (*KEYS, "user_id") if c in activity.columns]
    totals = {c[len(PREFIX) :]: sum(d[c] for d in days.values()) for c in nonfinite}
    refuse("user_activity", totals, activity, keys)
    ours = (  # the orphans counted, refused as the check (else as the grid's own need)
        spec.checks.references.get("zone_id") == "zones.zone_id"
        and spec.severity_of("reference") == "error"
    )
    failed = {
        d: failures(spec, m if ours else m | {"orphans:zone_id": None})
        for d, m in sorted(days.items())
    }
    if any(failed.values()):
        day, results = next((d, rs) for d, rs in failed.items() if rs)
        shown = example(spec, activity, results[0], keys, day)
        if results[0].check_name == "reference:zone_id":
            shown = f", e.g. {_unknown_zones(agg, known)}"
        raise ContractError("user_activity", failed, shown)
    if not ours and any(m["orphans:zone_id"] for m in days.values()):
        sample = _unknown_zones(agg, known)
        raise InputError(f"user_activity has zone_ids missing from table zones, e.g. {sample}")
    empty = sorted(set(dates) - set(days))
    if empty:
        raise InputNotReadyError(
            f"user_activity has no rows for {len(empty)} of the requested dates: "
            f"{[d.isoformat() for d in empty[:10]]}"
        )


def _unknown_zones(agg: DataFrame, known: DataFrame) -> list[int]:
    """Up to ten zone ids of ``agg`` that ``known`` lacks (the error path)."""
    unknown = agg.select("zone_id").distinct().join(known, "zone_id", "left_anti")
    return sorted(
        r.zone_id for r in unknown.where(F.col("zone_id").isNotNull()).limit(10).collect()
    )


def _feature_column(d: FeatureDef) -> Column:
    rows = F.col("_rows")
    safe = lambda num, den: F.when(den > 0, num / den).otherwise(0.0)  # noqa: E731
    if d.agg == "count":
        return rows
    if d.agg == "sum":
        return F.col(f"_sum_{d.column}")
    if d.agg == "mean":
        return safe(F.col(f"_sum_{d.column}").cast("double"), F.col(f"_n_{d.column}"))
    if d.agg == "count_if":
        return F.col(f"_if_{d.name}")
    if d.agg == "share":
        return safe(F.col(f"_if_{d.name}").cast("double"), F.col(f"_known_{d.name}"))
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
    base = [c for c in agg.columns if c.startswith(("_rows", "_sum_", "_if_", "_n_", "_known_"))]
    out = grid.join(agg.select(*KEYS, *base), list(KEYS), "left").fillna(0, subset=base)
    for d in defs:  # in order, so ratios see the features they refer to
        out = out.withColumn(d.name, _feature_column(d))
    return out.select(*KEYS, *(d.name for d in defs))
