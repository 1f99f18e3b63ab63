"""The allocation tables and how to read them consistently.

A run appends its allocations under a fresh ``run_id`` (a partition of its own), then
replaces the run date's and campaign's rows of ``allocation_summary`` (one commit: this
publishes the run). A reader that takes the allocations of the ``run_id`` named by the
summary (:func:`published_allocations`) therefore sees either the previous run or the
complete new one, never a mix and never allocations without their summary.

After publishing at version V, a run removes only what it provably superseded: the run
the summary named at V - 1 (:func:`replaced_run`), never a run merely present, which may
be a concurrent run about to publish. Runs that published in turn thus each remove their
predecessor and the last one's rows stay. A run that dies before publishing leaves an
unreferenced partition; its ``run_id`` starts with its UTC start time, so a later run
removes it once it is older than any run can last (:func:`abandoned`).
"""

from __future__ import annotations

import datetime as dt
import uuid

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DateType,
    DoubleType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from sparklift.errors import InputNotReadyError
from sparklift.tables import Catalog

ALLOCATIONS = StructType(
    [
        StructField("run_date", DateType()),
        StructField("campaign_id", StringType()),
        StructField("run_id", StringType()),
        StructField("customer_id", LongType()),
        StructField("budget_group", StringType()),
        StructField("voucher_id", StringType()),
        StructField("expected_uplift", DoubleType()),
        StructField("expected_cost", DoubleType()),
        StructField("model_id", StringType()),
    ]
)
ALLOCATIONS_PARTITIONS = ["run_date", "campaign_id", "run_id"]

ALLOCATION_SUMMARY = StructType(
    [
        StructField("run_date", DateType()),
        StructField("campaign_id", StringType()),
        StructField("run_id", StringType()),
        StructField("budget_group", StringType()),
        StructField("budget", DoubleType()),
        StructField("spent", DoubleType()),
        StructField("objective", DoubleType()),
        StructField("dual_bound", DoubleType()),
        StructField("gap", DoubleType()),
        StructField("gap_rel", DoubleType()),
        StructField("lambda", DoubleType()),
        StructField("n_customers", LongType()),
        StructField("n_allocated", LongType()),
        StructField("voucher_counts", MapType(StringType(), LongType())),
        StructField("cap_multipliers", MapType(StringType(), DoubleType())),
        StructField("solver", StringType()),
        StructField("passes", LongType()),
        StructField("model_id", StringType()),
        StructField("computed_at", TimestampType()),
    ]
)
SUMMARY_PARTITIONS = ["run_date", "campaign_id"]
RUN_ID_TIME = "%Y%m%dT%H%M%S"


def new_run_id(now: dt.datetime) -> str:
    """A unique run id that tells when the run started (UTC), e.g. 20260630T021500-1f2e3d4c."""
    return f"{now:{RUN_ID_TIME}}-{uuid.uuid4().hex[:8]}"


def abandoned(run_id: str, now: dt.datetime, after_hours: float) -> bool:
    """Whether an unpublished run started more than ``after_hours`` before ``now`` (a run id
    without a start time, from before ids carried one, counts as abandoned)."""
    try:
        started = dt.datetime.strptime(run_id.split("-")[0], RUN_ID_TIME)
    except ValueError:
        return True
    return now - started > dt.timedelta(hours=after_hours)


def published_run(
    catalog: Catalog, run_date: dt.date, campaign_id: str, version: int | None = None
) -> str | None:
    """The run id ``allocation_summary`` names for the date and campaign (at ``version``)."""
    if (version is not None and version < 0) or not catalog.exists("allocation_summary"):
        return None
    rows = (
        catalog.read("allocation_summary", version=version, where=[("run_date", "=", run_date)])
        .where(F.col("campaign_id") == campaign_id)
        .select("run_id")
        .distinct()
        .collect()
    )
    return rows[0][0] if rows else None


def replaced_run(
    catalog: Catalog, run_date: dt.date, campaign_id: str, published_at: int
) -> str | None:
    """The run a publish at version ``published_at`` replaced: commits are serial, so the
    summary just before it is exactly what that commit superseded."""
    return published_run(catalog, run_date, campaign_id, version=published_at - 1)


def published_allocations(catalog: Catalog, run_date: dt.date, campaign_id: str) -> DataFrame:
    """The allocations of the run that ``allocation_summary`` publishes for the date and
    campaign (what campaign systems should read)."""
    run_id = published_run(catalog, run_date, campaign_id)
    if run_id is None:
        raise InputNotReadyError(
            f"allocation_summary has no run of campaign {campaign_id} on {run_date}"
        )
    return catalog.read(
        "allocations",
        where=[
            ("run_date", "=", run_date),
            ("campaign_id", "=", campaign_id),
            ("run_id", "=", run_id),
        ],
    )
