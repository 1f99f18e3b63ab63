"""The data quality tables: every checked partition's metrics (the history the anomaly
checks compare with) and every check's result."""

from __future__ import annotations

from pyspark.sql.types import DateType, DoubleType, StringType, TimestampType

from sparklift.contracts.contract import TableContract, fields

QUALITY_METRICS = TableContract(
    "quality_metrics",
    fields(
        ("table_name", StringType()),
        ("run_date", DateType()),  # the partition checked (a table without one: as of then)
        # e.g. row_count, null_count:zone_id, mean:gmv, psi_bin:gmv:3;
        # table_version:<table id>: the version of the table measured
        ("metric", StringType()),
        ("value", DoubleType()),
        ("computed_at", TimestampType()),
    ),
    partition_by=("table_name", "run_date"),
    key=("table_name", "run_date", "metric"),
    description="table x checked partition x metric (the aggregations' results: the history)",
)

QUALITY_RESULTS = TableContract(
    "quality_results",
    fields(
        ("table_name", StringType()),
        ("run_date", DateType()),
        ("check_name", StringType()),  # kind:column, e.g. not_null:zone_id, anomaly:row_count
        ("kind", StringType()),  # schema | freshness | not_null | unique_key | range | ...
        ("severity", StringType()),  # error | warn
        ("statistic", DoubleType()),  # the value tested (a count, |z|, a PSI)
        ("threshold", StringType()),  # what passes, e.g. "= 0", "|z| <= 3 (mean 120, sd 4)"
        ("status", StringType()),  # pass | fail | skipped
        ("message", StringType()),
        ("computed_at", TimestampType()),
    ),
    partition_by=("table_name", "run_date"),
    key=("table_name", "run_date", "check_name"),
    description="table x checked partition x check: statistic, threshold, status",
)

CONTRACTS = (QUALITY_METRICS, QUALITY_RESULTS)
