"""This run's allocations among the others of its (run date, campaign): appended under
their own run_id, and the runs a publish supersedes or that were abandoned, removed
(:mod:`sparklift.allocation.tables`)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparklift.allocation.tables import summary_where
from sparklift.contracts.vouchers import ALLOCATIONS
from sparklift.errors import TableConflictError
from sparklift.jobs import JobContext, log
from sparklift.tables.publish import superseded


def append(
    ctx: JobContext, campaign_id: str, run_id: str, model_id: str, rows: DataFrame
) -> DataFrame:
    """Write this run's allocations as a partition of their own; return them as written."""
    rows = rows.select(
        F.lit(ctx.run_date).alias("run_date"),
        F.lit(campaign_id).alias("campaign_id"),
        F.lit(run_id).alias("run_id"),
        *rows.columns,
        F.lit(model_id).alias("model_id"),
    )
    rows = rows.select(*[F.col(f.name).cast(f.dataType) for f in ALLOCATIONS.schema.fields])
    version = ctx.catalog.write("allocations", rows, mode="append")
    where = [
        ("run_date", "=", ctx.run_date),
        ("campaign_id", "=", campaign_id),
        ("run_id", "=", run_id),
    ]
    return ctx.catalog.read("allocations", version=version, where=where)


def run_ids(ctx: JobContext, campaign_id: str) -> set[str]:
    """The run ids with allocations for the run date and campaign."""
    if not ctx.catalog.exists("allocations"):
        return set()
    where = [("run_date", "=", ctx.run_date), ("campaign_id", "=", campaign_id)]
    return ctx.catalog.partition_values("allocations", "run_id", where)


def drop_superseded(ctx: JobContext, campaign_id: str, run_id: str, published_at: int) -> None:
    """After publishing at ``published_at``: remove the run it replaced and runs abandoned
    longer than ``maintain.vacuum_retention_hours`` (the age after which a write that never
    committed is garbage); a concurrent run's rows stay. Best effort: on a conflict the
    rows stay for the next run (no reader sees them: the summary names another run)."""
    drop = superseded(
        ctx.catalog,
        "allocation_summary",
        "run_id",
        summary_where(ctx.run_date, campaign_id),
        published_at,
        run_ids(ctx, campaign_id) - {run_id},
        ctx.config.maintain.vacuum_retention_hours,
    )
    if drop:
        try:
            drop_runs(ctx, campaign_id, sorted(drop))
        except TableConflictError as e:
            log.warning("superseded runs %s not removed (%s); the next run will", drop, e)


def drop_runs(ctx: JobContext, campaign_id: str, run_ids: list[str]) -> None:
    """Remove the allocations of ``run_ids`` (unpublished or superseded runs)."""
    if not ctx.catalog.exists("allocations"):
        return
    empty = ctx.spark.createDataFrame([], ALLOCATIONS.schema)
    replace = {"run_date": ctx.run_date, "campaign_id": campaign_id, "run_id": run_ids}
    ctx.catalog.write("allocations", empty, mode="replace", replace_where=replace)
