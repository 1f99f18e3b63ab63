"""NaN and infinity in input numbers are refused, never summed, zero-filled or compared.

Spark sums NaN to NaN, orders it above every number and counts it as a value, so one bad
float silently corrupts an aggregate (or vanishes in a ``fillna``). Jobs count non-finite
values inside the aggregation they already run (:func:`nonfinite_counts`) and, only when
there are some, look up one example row to name (:func:`refuse`). Integer and decimal
columns cannot hold either, so only float and double columns are checked.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, FloatType

from sparklift.errors import InputError

PREFIX = "_nonfinite_"


def float_columns(df: DataFrame, columns: Sequence[str] | None = None) -> list[str]:
    """The float/double columns of ``df`` (among ``columns`` if given)."""
    wanted = set(df.columns if columns is None else columns)
    return [
        f.name
        for f in df.schema.fields
        if f.name in wanted and isinstance(f.dataType, (FloatType, DoubleType))
    ]


def nonfinite(column: str) -> Column:
    """True where a float column holds NaN, +inf or -inf (null where it is null)."""
    c = F.col(column)
    return F.isnan(c) | c.isin(float("inf"), float("-inf"))


def nonfinite_counts(columns: Sequence[str]) -> list[Column]:
    """Aggregates counting the non-finite values of each column, named ``_nonfinite_<c>``."""
    return [F.count_if(nonfinite(c)).alias(f"{PREFIX}{c}") for c in columns]


def refuse(table: str, counts: Mapping[str, int], rows: DataFrame, keys: Sequence[str]) -> None:
    """Raise naming the table, the columns with their counts and one example key, if any
    count is positive; ``rows`` is the input the counts came from."""
    bad = {c: int(n) for c, n in counts.items() if n}
    if not bad:
        return
    where = functools.reduce(operator.or_, [nonfinite(c) for c in bad])
    example = rows.where(where).select(*keys, *bad).first()
    at = ", ".join(f"{k}={example[k]}" for k in keys) if example else "?"
    values = ", ".join(f"{c}={example[c]}" for c in bad) if example else ""
    raise InputError(
        f"table {table}: NaN or infinite values in column(s) {bad} (column: rows), e.g. at "
        f"{at} ({values}); expected finite numbers (null where a value is missing)"
    )


def require_finite(
    rows: DataFrame,
    table: str,
    keys: Sequence[str],
    columns: Sequence[str] | None = None,
    nulls: Sequence[str] = (),
) -> tuple[int, dict[str, int]]:
    """One aggregation over ``rows``: refuse NaN or infinity in its float ``columns``; in
    the same aggregation, the row count and the nulls of each of ``nulls``."""
    floats = float_columns(rows, columns)
    counted = [F.count(F.lit(1)).alias("_rows"), *[F.count_if(F.col(c).isNull()) for c in nulls]]
    counts = rows.agg(*nonfinite_counts(floats), *counted).first()
    assert counts is not None
    refuse(table, {c: counts[f"{PREFIX}{c}"] for c in floats}, rows, keys)
    n = len(floats) + 1
    return int(counts["_rows"]), {c: int(counts[n + i]) for i, c in enumerate(nulls)}
