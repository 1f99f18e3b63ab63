"""``sparklift check --table T``: the data quality checks of a table's partition of the run
date -> ``quality_metrics`` (the history) and ``quality_results``.

The checks are its contract's (schema, key, not null) and those ``quality.tables`` adds
(:mod:`sparklift.quality.spec`). The metrics come from one compiled aggregation over the
partition, one of the sketches if any, and one of the key (:mod:`sparklift.quality.metrics`);
the anomaly checks compare them with the table's own
history in ``quality_metrics`` (:mod:`sparklift.quality.rules`). Both tables are written
before the verdict: a failed check of severity ``error`` then fails the job (exit 2, naming
the checks; exit 3, not ready, when only freshness failed: the partition may land later),
one of severity ``warn`` is logged. The table is read at one version, which each checked
date's row ``table_version`` of ``quality_results`` keeps: the verdicts hold for it
(:mod:`sparklift.jobs.fallback`). A re-run for the same date replaces that date's rows. A
check killed between its two commits leaves that date's new metrics without their
verdicts: later days do not train on them (:func:`_past`) until the date is checked again.
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

from sparklift.config import QualityConfig
from sparklift.errors import InputError, InputNotReadyError, SchemaMismatchError
from sparklift.features.zone_day import date_range
from sparklift.jobs import JobContext, log, retry_on_conflict, step, write_records
from sparklift.quality import rules
from sparklift.quality.metrics import compute, compute_days
from sparklift.quality.spec import TableSpec, missing_columns, psi_edges, table_spec
from sparklift.tables.changes import table_id
from sparklift.tables.publish import utcnow
from sparklift.tables.schema import check_schema

HELP = "check a table's partition of the run date into quality_metrics and quality_results"
# Stored with a date's metrics, table_version:<table id> = the version they measured.
READ_METRIC = f"{rules.VERSION_CHECK}:"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--table", required=True, help="the table's logical name, e.g. zones")
    parser.add_argument(
        "--start",
        type=dt.date.fromisoformat,
        help="check the dates from --start to the run date, in order, in one pass (a dated "
        "table's history backfilled: anomaly checks need window_days of it)",
    )


def run(ctx: JobContext, args: argparse.Namespace) -> dict:
    conf, catalog = ctx.config.quality, ctx.catalog
    spec = table_spec(args.table, conf)
    if not catalog.exists(spec.table):
        raise InputNotReadyError(f"table {spec.table} does not exist yet: nothing to check")
    start = getattr(args, "start", None)
    if start and start > ctx.run_date:
        raise InputError(f"--start {start} is after the run date {ctx.run_date}")
    days = date_range(start, ctx.run_date) if start else [ctx.run_date]
    partitioned = spec.date_column in catalog.partition_columns(spec.table)
    pruned = [(spec.date_column, "in", days)] if partitioned else []  # those partitions only
    checked = catalog.version(spec.table)  # the verdicts hold for this version's rows
    checked_id = table_id(catalog.path(spec.table), checked)  # of this table
    df = catalog.read(spec.table, version=checked, where=pruned)
    missing = missing_columns(spec, df.columns)
    problems = _schema_problems(spec, df, missing)
    _refuse_non_numeric(spec, df)
    dated = bool(spec.date_column) and spec.date_column not in missing  # else freshness fails
    if len(days) > 1 and not dated:
        raise InputError(f"--start: table {spec.table} has no date column to check day by day")
    references = _references(ctx, spec, missing, len(days) > 1)
    history, failed = _past(ctx, spec.table, days[0])
    where = f" of {spec.date_column} = {_span(days)}" if dated else f" as of {ctx.run_date}"
    with step(f"checking table {spec.table}{where}"):
        metrics = _metrics(spec, df, dated, references, history, days, conf)
    results: dict[dt.date, list[rules.Result]] = {}
    for day in days:  # in order: each day is the next one's history
        results[day] = rules.contract_checks(spec, metrics[day], problems, missing)
        results[day] += rules.anomaly_checks(spec, metrics[day], history, day, conf, failed)
        history[day] = metrics[day]
        failed[day] = {r.check_name: r.severity for r in results[day] if r.status == rules.FAIL}
    now = utcnow()
    key = {"table_name": spec.table, "run_date": days}
    # A check of the same partitions by another job (features and user-history both check
    # user_activity, side by side under Airflow) may commit first: write again after it.
    measured = [{"table_name": spec.table, "run_date": d, "metric": k, "value": v,
                 "computed_at": now} for d in days
                for k, v in (metrics[d] | {READ_METRIC + checked_id: float(checked)}).items()
                ]  # fmt: skip
    read = rules.version_row(checked, checked_id)
    verdicts = [{"table_name": spec.table, "run_date": d} | asdict(r) | {"computed_at": now}
                for d in days for r in [*results[d], read]]  # fmt: skip
    retry_on_conflict(
        lambda: write_records(catalog, "quality_metrics", measured, key), "quality_metrics"
    )
    version = retry_on_conflict(
        lambda: write_records(catalog, "quality_results", verdicts, key), "quality_results"
    )
    failures = [(d, r) for d in days for r in results[d] if r.status == rules.FAIL]
    for d, r in failures:
        level = logging.ERROR if r.severity == "error" else logging.WARNING
        log.log(level, "table %s, %s: check %s failed (%s): %s",
                spec.table, d, r.check_name, r.severity, r.message)  # fmt: skip
    errors = [(d, r) for d, r in failures if r.severity == "error"]
    if errors:
        listed = "; ".join(
            (f"{d} " if len(days) > 1 else "") + f"{r.check_name}: {r.message}" for d, r in errors
        )
        late = all(r.kind == "freshness" for _, r in errors)  # not landed yet: may land later
        raise (InputNotReadyError if late else InputError)(
            f"table {spec.table}{where}: {len(errors)} error check(s) failed: {listed} "
            f"(quality_results version {version})"
        )
    counts: dict[str, int] = defaultdict(int)
    for d in days:
        for r in results[d]:
            counts[r.status] += 1
    return {
        "table": spec.table,
        "run_date": _span(days),
        "rows": sum(int(metrics[d].get("row_count") or 0) for d in days),
        "checks": dict(counts),
        "warnings": [(f"{d} " if len(days) > 1 else "") + r.check_name for d, r in failures],
        "table_version": checked,
        "results_version": version,
    }


def _span(days: list[dt.date]) -> str:
    return str(days[0]) if len(days) == 1 else f"{days[0]}..{days[-1]}"


def _metrics(
    spec: TableSpec,
    df: DataFrame,
    dated: bool,
    references: dict[str, DataFrame],
    history: dict[dt.date, dict[str, float | None]],
    days: list[dt.date],
    conf: QualityConfig,
) -> dict[dt.date, dict[str, float | None]]:
    """Each day's metrics: of the whole table when it is not ``dated``, else of its
    partitions. A PSI column without carried edges gets them from the first day with rows
    (which has no bins, as in a daily run); the days after it come from one grouped
    aggregation (a day without rows from its own, to count the nothing it has)."""
    bins = conf.psi_bins
    edges = _edges(spec, history, bins)
    if not dated:
        return {days[0]: compute(spec, df, references, edges, bins)}
    column = F.col(spec.date_column)  # type: ignore[arg-type]
    out: dict[dt.date, dict[str, float | None]] = {}
    todo = list(days)
    while todo and (any(c not in edges for c in spec.checks.anomaly.psi) or len(days) == 1):
        first = todo.pop(0)  # alone, as in a daily run: it sets the edges (if it has rows)
        part = df.where(column == F.lit(first))
        out[first] = compute(spec, part, references, edges, bins, (spec.date_column,))
        for c in spec.checks.anomaly.psi:
            found = psi_edges(out[first], c, bins)
            if c not in edges and found is not None:
                edges[c] = found
    if todo:
        grouped = compute_days(spec, df.where(column.isin(todo)), references, edges, bins)
        for day in todo:
            out[day] = grouped.get(day) or compute(
                spec, df.where(column == F.lit(day)), references, edges, bins, (spec.date_column,)
            )
    return out


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


def _references(
    ctx: JobContext, spec: TableSpec, missing: list[str], ranged: bool = False
) -> dict[str, DataFrame]:
    """Per reference column, the referenced table's keys (its run date's, if dated; a
    range of dates is refused then: each day would need its own day's keys)."""
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
        if dated and dated in keys.columns and ranged:
            raise InputError(
                f"--start: {spec.table}.{column} references {target}, a dated table whose "
                "keys differ by day: check this table day by day"
            )
        if dated and dated in keys.columns:
            keys = keys.where(F.col(dated) == F.lit(ctx.run_date))
        out[column] = keys.select(ref)
    return out


def _past(
    ctx: JobContext, table: str, first: dt.date
) -> tuple[dict[dt.date, dict[str, float | None]], dict[dt.date, dict[str, str]]]:
    """The table's stored metrics by checked date before ``first`` (the training windows'
    days and every day's PSI edges: a few thousand numbers per table and year), and the
    checks that failed on the windows' days with their severities (a day that failed an
    error check is not trained on, :func:`rules.anomaly_checks`). A window day's metrics
    count only beside the verdicts of the same run (the same ``computed_at`` in
    ``quality_results``) or of the same table version (two checks of one version at once,
    whose commits interleaved, measured the same rows): a check killed between its two
    commits after the table changed leaves metrics without their verdicts, and no later day
    trains on them until that date is checked again."""
    if not ctx.catalog.exists("quality_metrics"):
        return {}, {}
    since = min(rules.history_days(first, ctx.config.quality))
    window = (F.col("run_date") < F.lit(first)) & (F.col("run_date") >= F.lit(since))
    stamps: dict[dt.date, set] = defaultdict(set)
    read: dict[dt.date, tuple] = {}  # the table version (and id) each date's verdicts hold for
    failed: dict[dt.date, dict[str, str]] = defaultdict(dict)  # check -> its severity
    if ctx.catalog.exists("quality_results"):
        verdicts = ctx.catalog.read("quality_results", where=[("table_name", "=", table)])
        for r in verdicts.where(window).select("run_date", "check_name", "severity",
                                               "status", "statistic", "message",
                                               "computed_at").collect():  # fmt: skip
            stamps[r["run_date"]].add(r["computed_at"])
            if r["check_name"] == rules.VERSION_CHECK:
                read[r["run_date"]] = (r["statistic"], rules.checked_table_id(r["message"]))
            if r["status"] == rules.FAIL:
                failed[r["run_date"]][r["check_name"]] = r["severity"]
    rows = (
        ctx.catalog.read("quality_metrics", where=[("table_name", "=", table)])
        .where((F.col("run_date") < F.lit(first))
               & ((F.col("run_date") >= F.lit(since)) | F.col("metric").startswith("psi_edge:")))
        .select("run_date", "metric", "value", "computed_at")
        .collect()
    )  # fmt: skip
    by_day: dict[dt.date, list] = defaultdict(list)  # one run's rows per date
    for r in rows:
        by_day[r["run_date"]].append(r)
    history: dict[dt.date, dict[str, float | None]] = {}
    for day, day_rows in by_day.items():
        stored = {r["metric"]: r["value"] for r in day_rows}
        versions = [(stored.pop(k), k[len(READ_METRIC) :]) for k in list(stored)
                    if k.startswith(READ_METRIC)]  # fmt: skip
        same_run = any(r["computed_at"] in stamps[day] for r in day_rows)
        same_version = bool(versions) and versions[0] == read.get(day)
        if day < since or same_run or same_version:
            history[day] = stored
    return history, dict(failed)


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
