"""A table's counting checks inside a job's own aggregation: one home for input contracts.

A job that reads a table already aggregates it once. The counting checks of the table's
quality spec (:mod:`.spec`: not null, ranges with non-finite values, accepted values) become
more columns of that aggregation (:func:`count_columns`), whatever it groups by; summed per
checked date, they are the metrics ``sparklift check`` computes, evaluated by the same rules
(:func:`failures`). Bad input then raises :class:`ContractError`: the job refuses it with
the failed check's name, and the job runner records the failed checks in
``quality_results`` (:mod:`sparklift.jobs.refusals`), so that a refusal is also data with
its history, as a failed ``sparklift check`` is.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
from collections.abc import Mapping, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, FloatType

from sparklift.errors import InputError
from sparklift.quality import rules
from sparklift.quality.spec import TableSpec

Day = dt.date | None  # the checked partition's date (None: an undated table, as of the run)


class ContractError(InputError):
    """Input that fails its table's error checks: the failed results by checked day, for
    the job runner to record (exit code 2, as every bad input)."""

    def __init__(self, table: str, failed: Mapping[Day, Sequence[rules.Result]], example: str):
        self.table = table
        self.failed = {d: list(rs) for d, rs in failed.items() if rs}
        day, results = next(iter(self.failed.items()))
        r = results[0]
        where = f" of {day}" if day else ""
        more = sum(len(rs) for rs in self.failed.values()) - 1
        also = f" (and {more} more failed check(s))" if more else ""
        super().__init__(
            f"table {table}{where}: check {r.check_name} failed: {r.message}{example}{also}"
        )


def _bad(spec: TableSpec, kind: str, column: str, types: Mapping[str, object]) -> Column:
    """The rows that fail check ``kind`` of ``column``."""
    x = F.col(column)
    if kind == "null_count":
        return x.isNull()
    if kind == "not_accepted":
        return x.isNotNull() & ~x.isin(*spec.checks.accepted[column])
    low, high = spec.checks.ranges[column]
    bad = F.lit(False)
    if low is not None:
        bad = bad | (x < F.lit(low))
    if high is not None:
        bad = bad | (x > F.lit(high))
    if isinstance(types[column], (DoubleType, FloatType)):
        bad = bad | F.isnan(x) | x.isin(float("inf"), float("-inf"))
    return bad


def counted(
    spec: TableSpec, df: DataFrame, nulls_also: Sequence[str] = ()
) -> list[tuple[str, str]]:
    """The (metric kind, column) pairs of ``spec``'s counting checks on ``df``'s columns:
    ``null_count`` (and of ``nulls_also``), ``out_of_range`` and ``not_accepted``."""
    have = set(df.columns)
    nulls = dict.fromkeys([*spec.not_null, *nulls_also])
    out = [("null_count", x) for x in nulls if x in have]
    out += [("out_of_range", x) for x in spec.checks.ranges if x in have]
    return out + [("not_accepted", x) for x in spec.checks.accepted if x in have]


def count_columns(spec: TableSpec, df: DataFrame, nulls_also: Sequence[str] = ()) -> list[Column]:
    """Aggregate columns counting each check's failing rows, named ``kind:column`` (the
    metric names of ``quality_metrics``)."""
    types = {f.name: f.dataType for f in df.schema.fields}
    return [
        F.count_if(_bad(spec, kind, x, types)).alias(f"{kind}:{x}")
        for kind, x in counted(spec, df, nulls_also)
    ]


def summed(names: Sequence[str]) -> list[Column]:
    """The per-group counts of :func:`count_columns` summed (over a job's groups)."""
    return [F.sum(F.col(f"`{n}`")).alias(n) for n in names]


def failures(spec: TableSpec, metrics: Mapping[str, float | None]) -> list[rules.Result]:
    """The failed ``error`` checks among those ``metrics`` counts (a check it has no count
    for is not judged here: ``sparklift check`` judges it)."""
    out = []
    for r in rules.contract_checks(spec, metrics, [], []):
        metric = _metric_of(r.check_name)
        if r.status == rules.FAIL and r.severity == "error" and metrics.get(metric) is not None:
            out.append(r)
    return out


def _metric_of(check_name: str) -> str | None:
    """The count metric a counting check reads (None: schema and freshness)."""
    kind, _, column = check_name.partition(":")
    names = {"not_null": "null_count", "range": "out_of_range", "accepted": "not_accepted",
             "reference": "orphans"}  # fmt: skip
    if kind == "unique_key":
        return "duplicate_keys"
    return f"{names[kind]}:{column}" if kind in names else None


def example(
    spec: TableSpec, df: DataFrame, result: rules.Result, keys: Sequence[str], day: Day = None
) -> str:
    """``, e.g. at k=v, ... (column=value)``: one row of ``df`` that fails ``result``'s
    check (read only on the error path), or '' for a check without a row predicate."""
    kind, _, column = result.check_name.partition(":")
    metric = {"not_null": "null_count", "range": "out_of_range", "accepted": "not_accepted"}
    if kind not in metric or column not in df.columns:
        return ""
    types = {f.name: f.dataType for f in df.schema.fields}
    where = [_bad(spec, metric[kind], column, types)]
    if day is not None and spec.date_column in df.columns:
        where.append(F.col(spec.date_column) == F.lit(day))
    shown = [k for k in keys if k in df.columns and k != column]
    row = df.where(functools.reduce(operator.and_, where)).select(*shown, column).first()
    if row is None:
        return ""
    at = ", ".join(f"{k}={row[k]}" for k in shown)
    return f", e.g. at {at} ({column}={row[column]})"
