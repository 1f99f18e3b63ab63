"""Every metric of a table's partition from one Spark aggregation, its sketches from a
second, and the duplicate keys from a third.

Counts of nulls, out-of-range, unaccepted and non-finite values, orphan references, and
the anomaly metrics built of sums (row count, null shares, means, the population stability
bins) are columns of one ``agg``: one pass over the partition (references are a left join
to the referenced keys inside that pass), compiled by Spark's whole-stage code
generation. The sketches (distinct values by HyperLogLog, quantiles) are imperative
aggregates, which Spark cannot compile: in the same ``agg`` they made it evaluate every
other column interpreted too, 4.8 s against 1.3 s for the rest and 0.6 s for the sketch
alone at 6.9M rows. So they are a second ``agg`` reading only their columns, run only when
the table configures one. The exact count of duplicate keys needs the rows grouped by
key, a shuffle (of bitmaps, for a dense integer key: :func:`duplicate_keys`, whose count,
min and max ride in the first ``agg`` to tell whether it is dense): inside the
first ``agg`` (a ``count(distinct)``) Spark would evaluate every other aggregate per key
group, which made the check 100 times slower than a scan at 14M rows. So it is an
aggregation of its own that reads only the key columns (as Deequ runs its grouping
analyzers apart). The names are the ``metric`` column of ``quality_metrics``.

Population stability: each column's values are counted in fixed bins, whose edges are the
deciles (``psi_bins`` quantiles) of the first partition checked, stored as ``psi_edge``
metrics and carried forward, so that every day's shares are comparable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, FloatType, IntegralType, NumericType

from sparklift.finite import nonfinite
from sparklift.quality.contract import count_columns
from sparklift.quality.spec import TableSpec

QUANTILE_ACCURACY = 10_000  # percentile_approx: relative rank error 1e-4
DISTINCT_RSD = 0.05  # approx_count_distinct's relative standard deviation


@dataclass(frozen=True)
class Expressions:
    """A partition's metric expressions: ``sums`` (aggregates Spark compiles, over the
    partition joined to its references) and ``sketches`` (HyperLogLog and quantile
    sketches, over the partition alone: in the same aggregation they would stop the
    compilation of all of them)."""

    sums: list[Column]
    sketches: list[Column]


def expressions(
    spec: TableSpec,
    df: DataFrame,
    edges: Mapping[str, list[float]],
    bins: int,
    orphan_flags: Mapping[str, str],
) -> Expressions:
    """The aggregate expressions of every metric of ``spec`` over ``df`` (its columns
    only). ``edges``: the carried PSI edges per column (a column without gets its edges
    computed instead); ``orphan_flags``: reference column -> the flag column the join
    added (null where the value was found)."""
    have = {f.name: f.dataType for f in df.schema.fields}
    c = spec.checks
    out: list[Column] = [F.count(F.lit(1)).alias("row_count")]
    out += count_columns(spec, df, nulls_also=c.anomaly.null_share)
    for x, flag in orphan_flags.items():
        out.append(F.count_if(F.col(x).isNotNull() & F.col(flag)).alias(f"orphans:{x}"))
    numeric = {x for x, t in have.items() if isinstance(t, NumericType)}
    out += [F.avg(_finite(x, have)).alias(f"mean:{x}") for x in c.anomaly.mean if x in numeric]
    sketches: list[Column] = []
    for x, probs in c.anomaly.quantiles.items():
        if x in numeric:
            q = F.percentile_approx(_finite(x, have), list(probs), QUANTILE_ACCURACY)
            sketches += [q[i].alias(f"quantile:{x}:{p:g}") for i, p in enumerate(probs)]
    sketches += [
        F.approx_count_distinct(x, DISTINCT_RSD).alias(f"distinct:{x}")
        for x in c.anomaly.distinct
        if x in have
    ]
    for x in c.anomaly.psi:
        if x not in numeric:
            continue
        value = _finite(x, have)
        if x in edges:
            out += _bin_counts(x, value, edges[x])
        else:
            probs = [i / bins for i in range(1, bins)]
            q = F.percentile_approx(value, probs, QUANTILE_ACCURACY)
            sketches += [q[i - 1].alias(f"psi_edge:{x}:{i}") for i in range(1, bins)]
    return Expressions(out, sketches)


def _finite(column: str, types: Mapping[str, object]) -> Column:
    """The column's values, NaN and infinities as null (the range checks count them), so
    that a mean, quantile or bin share stays a number."""
    if isinstance(types[column], (DoubleType, FloatType)):
        return F.when(~nonfinite(column), F.col(column))
    return F.col(column)


def _bin_counts(column: str, value: Column, edges: Sequence[float]) -> list[Column]:
    """Counts of the column's finite values per bin (bin i: edges[i-1] <= v < edges[i]), and
    the edges themselves, so that the next run finds them."""
    index = sum((value >= F.lit(e)).cast("int") for e in edges)
    counts = [
        F.count_if(value.isNotNull() & (index == i)).alias(f"psi_bin:{column}:{i}")
        for i in range(len(edges) + 1)
    ]
    return counts + [F.lit(e).alias(f"psi_edge:{column}:{i + 1}") for i, e in enumerate(edges)]


def with_orphan_flags(
    df: DataFrame, references: Mapping[str, DataFrame]
) -> tuple[DataFrame, dict[str, str]]:
    """``df`` left-joined to each referenced key set (column -> a one-column frame of the
    keys): a flag column per reference, true where the value has no match."""
    flags = {}
    for i, (column, keys) in enumerate(references.items()):
        name = f"_orphan_{i}"
        found = keys.select(F.col(keys.columns[0]).alias(f"_ref_{i}")).distinct()
        found = found.withColumn(f"_found_{i}", F.lit(True))
        df = df.join(found, df[column] == found[f"_ref_{i}"], "left")
        df = df.withColumn(name, F.col(f"_found_{i}").isNull()).drop(f"_ref_{i}", f"_found_{i}")
        flags[column] = name
    return df, flags


def compute(
    spec: TableSpec,
    df: DataFrame,
    references: Mapping[str, DataFrame],
    edges: Mapping[str, list[float]],
    bins: int,
    constant: Sequence[str] = (),
) -> dict[str, float]:
    """The partition's metrics, by name, from one aggregation and one of the sketches if
    any (a row each to the driver). ``constant``: columns with one value in ``df`` (a dated
    table's date in its partition), left out of the key when counting duplicates."""
    joined, flags = with_orphan_flags(df, references)
    metrics = expressions(spec, df, edges, bins, flags)
    key = _key(spec, df, constant)
    integer = _integer_key(df, key)
    one = joined.agg(*metrics.sums, *key_stats(integer)).first()
    assert one is not None  # a global aggregation has one row
    row = one.asDict()
    stats = (int(row["row_count"]), *(row.pop(n) for n in KEY_STATS)) if integer else None
    out = _as_metrics(row)
    if metrics.sketches:
        out |= _as_metrics(df.agg(*metrics.sketches).first().asDict())  # type: ignore[union-attr]
    if key is not None:
        out["duplicate_keys"] = duplicate_keys(df, key, stats)
    return out


def compute_days(
    spec: TableSpec,
    df: DataFrame,
    references: Mapping[str, DataFrame],
    edges: Mapping[str, list[float]],
    bins: int,
) -> dict[Any, dict[str, float | None]]:
    """Each date's metrics (``spec.date_column``'s values in ``df``) from one aggregation
    grouped by date (and one of the sketches if any), and the duplicate keys from one
    grouped by date and key: a range of days checked at once costs about one day's passes
    (days without rows are absent)."""
    date = spec.date_column
    assert date is not None
    joined, flags = with_orphan_flags(df, references)
    metrics = expressions(spec, df, edges, bins, flags)
    key = _key(spec, df, (date,))
    integer = _integer_key(df, key)
    rows = joined.groupBy(date).agg(*metrics.sums, *key_stats(integer)).collect()
    out = {r[date]: _as_metrics(r.asDict(), skip=(date, *KEY_STATS)) for r in rows}
    if metrics.sketches:  # the same days: each has rows in both
        for r in df.groupBy(date).agg(*metrics.sketches).collect():
            out[r[date]] |= _as_metrics(r.asDict(), skip=(date,))
    if key is not None:
        stats = {r[date]: (r["row_count"], *(r[n] for n in KEY_STATS)) for r in rows}
        dups = duplicate_keys_by(df, date, key, stats if integer else None)
        for day, metrics in out.items():
            metrics["duplicate_keys"] = dups.get(day, 0.0)
    return out


def _as_metrics(row: Mapping[str, Any], skip: Sequence[str] = ()) -> dict[str, float | None]:
    """An aggregation's row as metrics by name (numbers as floats), without columns ``skip``."""
    return {k: (None if v is None else float(v)) for k, v in row.items() if k not in skip}


def _key(spec: TableSpec, df: DataFrame, constant: Sequence[str]) -> list[str] | None:
    """The key columns whose duplicates are counted (``constant`` ones left out: a dated
    partition's date), or None when the table has no key or lacks one of its columns."""
    if not spec.key or not set(spec.key) <= set(df.columns):
        return None
    return [k for k in spec.key if k not in constant]


def _integer_key(df: DataFrame, key: Sequence[str] | None) -> str | None:
    """The key's column when it is one integer column (bitmaps may count it), else None."""
    if key and len(key) == 1 and isinstance(df.schema[key[0]].dataType, IntegralType):
        return key[0]
    return None


KEY_STATS = ("_key_values", "_key_low", "_key_high")
KeyStats = tuple[int, int | None, int | None, int | None]  # rows, non-null values, min, max


def key_stats(column: str | None) -> list[Column]:
    """An integer key's count of values, min and max (what :func:`bitmaps_fit` needs),
    taken in the metrics' aggregation instead of a pass of their own; none without one."""
    if column is None:
        return []
    c = F.col(column)
    return [F.count(c).alias(KEY_STATS[0]), F.min(c).alias(KEY_STATS[1]),
            F.max(c).alias(KEY_STATS[2])]  # fmt: skip


def duplicate_keys(df: DataFrame, key: Sequence[str], stats: KeyStats | None = None) -> float:
    """Rows beyond the first of each key (0: the key is unique); a null is a value. A key
    of one integer column whose values are dense enough is counted with bitmaps
    (:func:`distinct_by_bitmaps`), any other by grouping the rows by key. ``stats``: the
    integer key's :func:`key_stats` with the row count, if already computed."""
    column = _integer_key(df, key)
    if column is not None:
        if stats is None:
            row = df.agg(F.count(F.lit(1)), *key_stats(column)).first()
            assert row is not None  # a global aggregation has one row
            stats = (row[0], row[1], row[2], row[3])
        rows, values, low, high = stats
        if values and low is not None and high is not None and bitmaps_fit([(values, low, high)]):
            return _beyond_first(rows, values, distinct_by_bitmaps(df, column).get((), 0))
    if not key:  # every key column is constant: the rows beyond the first repeat it
        return float(max(df.count() - 1, 0))
    repeats = df.groupBy(*key).count().where(F.col("count") > 1)
    return float(repeats.agg(F.sum(F.col("count") - 1)).first()[0] or 0)  # type: ignore[index]


def duplicate_keys_by(
    df: DataFrame, by: str, key: Sequence[str], stats: Mapping[Any, KeyStats] | None
) -> dict[Any, float]:
    """:func:`duplicate_keys` per value of column ``by`` (a day), in one aggregation: with
    bitmaps when ``stats`` (per value of ``by``) says the integer key is dense enough over
    all of them, else by grouping the rows by ``by`` and key (values without rows absent)."""
    column = _integer_key(df, key)
    dense = [(v, lo, hi) for _, v, lo, hi in (stats or {}).values() if v and lo is not None]
    if column is not None and stats and dense and bitmaps_fit(dense):
        distinct = distinct_by_bitmaps(df, column, [by])
        return {
            day: _beyond_first(rows, v or 0, distinct.get((day,), 0))
            for day, (rows, v, _, _) in stats.items()
        }
    repeats = df.groupBy(by, *key).count().where(F.col("count") > 1)
    return dict(repeats.groupBy(by).agg(F.sum(F.col("count") - 1).cast("double")).collect())


def _beyond_first(rows: int, values: int, distinct: int) -> float:
    """Rows beyond the first of each key, from the rows, their non-null keys and the
    distinct ones: the non-null keys beyond the distinct, and the null keys (one value)
    beyond the first."""
    return float(values - distinct + max(rows - values - 1, 0))


BITMAP_BITS = 32_768  # values per bitmap bucket (Spark's bitmap functions: 4 KiB each)
MAX_BUCKETS = 16_384  # at most 64 MiB of bitmaps per task


def bitmaps_fit(ranges: Sequence[tuple[int, int, int]]) -> bool:
    """Whether bitmaps count integers for less than a shuffle of the values. ``ranges``:
    (non-null values, min, max) of each group counted at once (one, or a day each). Their
    4 KiB buckets must weigh less than the values would (16 bytes each, with their
    counts), and a task holds at most :data:`MAX_BUCKETS`."""
    buckets = sum((high - low) // BITMAP_BITS + 2 for _, low, high in ranges)  # + a straddle
    values = sum(n for n, _, _ in ranges)
    return buckets <= MAX_BUCKETS and buckets * 4096 <= values * 16


def distinct_by_bitmaps(
    df: DataFrame, column: str, by: Sequence[str] = ()
) -> dict[tuple[Any, ...], int]:
    """The exact number of distinct non-null values of an integer column per group of
    ``by`` (keyed by the tuple of its values; ``()`` without groups): each value sets one
    bit of its bucket's bitmap (Spark's ``bitmap_*`` functions), the buckets' bitmaps are
    OR-ed across the rows, and their set bits counted. Each task shuffles one bitmap per
    bucket it saw instead of its distinct values: 3.1 times faster than the grouping at
    6.9M rows (bench/RESULTS.md, "quality" of 2026-12-05, evening)."""
    value = F.col(column)
    per_bucket = (
        df.where(value.isNotNull())
        .groupBy(*by, F.bitmap_bucket_number(value).alias("bucket"))
        .agg(F.bitmap_count(F.bitmap_construct_agg(F.bitmap_bit_position(value))).alias("n"))
    )
    rows = per_bucket.groupBy(*by).agg(F.sum("n")).collect()
    return {tuple(r[: len(by)]): int(r[-1]) for r in rows}
