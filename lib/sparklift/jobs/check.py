"""``sparklift check --table T``: the data quality checks of a table's partition of the run
date -> ``quality_metrics`` (the history) and ``quality_results``.

The checks are its contract's (schema, key, not null) and those ``quality.tables`` adds
(:mod:`sparklift.quality.spec`). Every metric comes from one aggregation over the partition
(:mod:`sparklift.quality.metrics`); the anomaly checks compare them with the table's own
history in ``quality_metrics`` (:mod:`sparklift.quality.rules`). Both tables are written
before the verdict: a failed check of severity ``error`` then fails the job (exit 2, naming
the checks), one of severity ``warn`` is logged. A re-run for the same date replaces that
date's rows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from collections import defaultdict
from dataclasses import asdict

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType

from sparklift.errors import InputError, InputNotReadyError, SchemaMismatchError
from sparklift.jobs import JobContext, log, step, write_records
from sparklift.quality import rules
from sparklift.quality.metrics import compute, psi_edges
from sparklift.quality.spec import TableSpec, missing_columns, table_spec
from sparklift.tables.publish import utcnow
from sparklift.tables.schema import check_schema

HELP = "check a table's partition of the run date into quality_metrics and quality_results"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--table", required=True, help="the table's logical name, e.g. zones")


def run(ctx: JobContext, args: argparse.Namespace) -> dict:
    conf, catalog, day = ctx.config.quality, ctx.catalog, ctx.run_date
    spec = table_spec(args.table, conf)
    if not catalog.exists(spec.table):
        raise InputNotReadyError(f"table {spec.table} does not exist yet: nothing to check")
    df = catalog.read(spec.table)
    missing = missing_columns(spec, df.columns)
    problems = _schema_problems(spec, df, missing)
    _refuse_non_numeric(spec, df)
    dated = spec.date_column and spec.date_column not in missing  # else freshness fails
    if dated:
        df = df.where(F.col(spec.date_column) == F.lit(day))
    references = _references(ctx, spec, missing)
    history = _history(ctx, spec.table)
    edges = _edges(spec, history, conf.psi_bins)
    where = f" of {spec.date_column} = {day}" if dated else f" as of {day}"
    with step(f"checking table {spec.table}{where}"):
        metrics = compute(spec, df, references, edges, conf.psi_bins)
    results = rules.contract_checks(spec, metrics, problems, missing)
    results += rules.anomaly_checks(spec, metrics, history, day, conf)
    now = utcnow()
    key = {"table_name": spec.table, "run_date": day}
    write_records(catalog, "quality_metrics",
                  [key | {"metric": k, "value": v, "computed_at": now} for k, v in metrics.items()],
                  key)  # fmt: skip
    version = write_records(catalog, "quality_results",
                            [key | asdict(r) | {"computed_at": now} for r in results],
                            key)  # fmt: skip
    failed = [r for r in results if r.status == rules.FAIL]
    for r in failed:
        level = logging.ERROR if r.severity == "error" else logging.WARNING
        log.log(level, "table %s, %s: check %s failed (%s): %s",
                spec.table, day, r.check_name, r.severity, r.message)  # fmt: skip
    errors = [r for r in failed if r.severity == "error"]
    if errors:
        listed = "; ".join(f"{r.check_name}: {r.message}" for r in errors)
        raise InputError(
            f"table {spec.table}{where}: {len(errors)} error check(s) failed: {listed} "
            f"(quality_results version {version})"
        )
    counts = defaultdict(int)
    for r in results:
        counts[r.status] += 1
    return {
        "table": spec.table,
        "run_date": str(day),
        "rows": int(metrics.get("row_count") or 0),
        "checks": dict(counts),
        "warnings": [r.check_name for r in failed],
        "results_version": version,
    }


def _schema_problems(spec: TableSpec, df: DataFrame, missing: list[str]) -> list[str]:
    """The contract's columns the table lacks or types differently (and further columns of
    a closed contract), and the columns the checks name that it lacks."""
    out = []
    if spec.schema is not None:
        try:
            check_schema(spec.table, spec.schema, df.schema, spec.open_schema)
        except SchemaMismatchError as e:
            out.append(str(e).replace(f"cannot write to table {spec.table}: ", ""))
    if missing:
        out.append(f"columns the checks name are missing: {missing}")
    return out


def _refuse_non_numeric(spec: TableSpec, df: DataFrame) -> None:
    """Means, quantiles and PSI need numbers: name the column and its type otherwise."""
    a = spec.checks.anomaly
    types = {f.name: f.dataType for f in df.schema.fields}
    for x in dict.fromkeys([*a.mean, *a.quantiles, *a.psi]):
        if x in types and not isinstance(types[x], NumericType):
            raise InputError(f"quality.tables.{spec.table}.anomaly: column {x} is "
                             f"{types[x].simpleString()}, a mean, quantile or PSI needs a "
                             "numeric column")  # fmt: skip


def _references(ctx: JobContext, spec: TableSpec, missing: list[str]) -> dict[str, DataFrame]:
    """Per reference column, the referenced table's keys (its run date's, if dated)."""
    out = {}
    for column, target in spec.checks.references.items():
        table, ref = target.split(".")
        if column in missing:
            continue
        if not ctx.catalog.exists(table):
            raise InputNotReadyError(
                f"table {spec.table}: {column} references {target}, and {table} does not exist"
            )
        keys = ctx.catalog.read(table)
        if ref not in keys.columns:
            raise InputError(f"quality.tables.{spec.table}.references.{column}: table {table} "
                             f"has no column {ref}")  # fmt: skip
        dated = table_spec(table, ctx.config.quality).date_column
        if dated and dated in keys.columns:
            keys = keys.where(F.col(dated) == F.lit(ctx.run_date))
        out[column] = keys.select(ref)
    return out


def _history(ctx: JobContext, table: str) -> dict[dt.date, dict[str, float | None]]:
    """The table's stored metrics by checked date: the training windows' days and every
    day's PSI edges (a few thousand numbers per table and year)."""
    if not ctx.catalog.exists("quality_metrics"):
        return {}
    conf = ctx.config.quality
    since = min(rules.training_days(ctx.run_date, conf))
    rows = (
        ctx.catalog.read("quality_metrics", where=[("table_name", "=", table)])
        .where(
            (F.col("run_date") < F.lit(ctx.run_date))
            & ((F.col("run_date") >= F.lit(since)) | F.col("metric").startswith("psi_edge:"))
        )
        .select("run_date", "metric", "value")
        .collect()
    )
    out: dict[dt.date, dict[str, float | None]] = defaultdict(dict)
    for r in rows:
        out[r["run_date"]][r["metric"]] = r["value"]
    return dict(out)


def _edges(
    spec: TableSpec, history: dict[dt.date, dict[str, float | None]], bins: int
) -> dict[str, list[float]]:
    """Per PSI column, the bin edges of the latest earlier checked day that has them."""
    out = {}
    for column in spec.checks.anomaly.psi:
        for d in sorted(history, reverse=True):
            edges = psi_edges(history[d], column, bins)  # type: ignore[arg-type]
            if edges is not None:
                out[column] = edges
                break
    return out
