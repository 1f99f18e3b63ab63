"""The pipeline's run log."""

from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    TimestampType,
)

from sparklift.contracts.contract import TableContract, fields

PIPELINE_RUNS = TableContract(
    "pipeline_runs",
    fields(
        ("run_date", DateType()),
        ("step", StringType()),  # features | analyze:<id> | score | allocate:<id>
        ("kind", StringType()),
        ("target", StringType()),  # experiment_id or campaign_id
        ("status", StringType()),  # succeeded | failed | blocked
        ("started_at", TimestampType()),
        ("ended_at", TimestampType()),
        ("duration_s", DoubleType()),
        ("input_rows", MapType(StringType(), LongType())),
        ("input_versions", MapType(StringType(), LongType())),
        ("output_rows", MapType(StringType(), LongType())),
        ("output_versions", MapType(StringType(), LongType())),
        ("exit_code", IntegerType()),  # 0, or the job's exit code
        ("error", StringType()),
        ("depends_on", ArrayType(StringType())),
        ("summary", StringType()),  # the job's summary, JSON
        ("pipeline_run_id", StringType()),  # one invocation of the pipeline
        ("app_id", StringType()),  # Spark application id
        ("sparklift_version", StringType()),
    ),
    partition_by=("run_date",),
    key=("pipeline_run_id", "run_date", "step"),
    description="step run of a run date (append-only: a step's state is its latest row)",
)

CONTRACTS = (PIPELINE_RUNS,)
