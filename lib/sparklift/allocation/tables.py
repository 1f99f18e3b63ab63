"""The allocation tables and how to read them consistently.

A run appends its allocations under a fresh ``run_id`` (a partition of its own), then
replaces the run date's and campaign's rows of ``allocation_summary`` (one commit: this
publishes the run). A reader that takes the allocations of the ``run_id`` named by the
summary (:func:`published_allocations`) therefore sees either the previous run or the
complete new one, never a mix and never allocations without their summary.

After publishing, a run removes the run it replaced and abandoned runs, never a concurrent
one (:mod:`sparklift.tables.publish`): runs that publish in turn each remove their
predecessor, and the last one's rows stay.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
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
from sparklift.tables import Catalog, PartitionFilter
from sparklift.tables.publish import named_id

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


def summary_where(run_date: dt.date, campaign_id: str) -> list[PartitionFilter]:
    """The partition of ``allocation_summary`` (the commit point) of a date and campaign."""
    return [("run_date", "=", run_date), ("campaign_id", "=", campaign_id)]


def published_allocations(catalog: Catalog, run_date: dt.date, campaign_id: str) -> DataFrame:
    """The allocations of the run that ``allocation_summary`` publishes for the date and
    campaign (what campaign systems should read)."""
    run_id = named_id(catalog, "allocation_summary", "run_id", summary_where(run_date, campaign_id))
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
