"""The allocation's cached customer rows: one row per customer, built in Arrow batches.

A row holds the customer's id and budget group, per option j its objective and cost
uplift (:func:`objective`, :func:`cost`; null when absent or not finite), and its
envelope (:mod:`.envelope`): the option it takes at lambda = infinity and that option's
value (``base_option``, ``base_value``), then per breakpoint k in decreasing lambda: the
multiplier, its histogram bucket, the value and cost change of the step and the option it
moves to (:func:`step_lambda` ... :func:`step_option`; null where the customer has fewer
breakpoints). The Python workers that build the rows also sum their histogram and the
input's defect counts (:mod:`.sums`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.accumulators import Accumulator
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from sparklift.allocation.arms import PolicyArm
from sparklift.allocation.envelope import envelope
from sparklift.allocation.sums import Partition
from sparklift.errors import marked
from sparklift.tables.commit import filesystem
from sparklift.tables.schema import spark_to_arrow

PER_OCTAVE = 512
READ_ROWS = 262_144  # score rows per batch read from a file by the unshuffled path
BASE_OPTION = "base_option"
BASE_VALUE = "base_value"


def objective(j: int) -> str:
    """Option j's objective uplift."""
    return f"objective_{j}"


def cost(j: int) -> str:
    """Option j's cost uplift."""
    return f"cost_{j}"


def step_lambda(k: int) -> str:
    """The multiplier at which the customer takes its breakpoint k."""
    return f"step{k}_lambda"


def step_bucket(k: int) -> str:
    """The histogram bucket of :func:`step_lambda` (:func:`bucket`)."""
    return f"step{k}_bucket"


def step_value(k: int) -> str:
    """The objective gained by breakpoint k."""
    return f"step{k}_value"


def step_cost(k: int) -> str:
    """The cost added by breakpoint k."""
    return f"step{k}_cost"


def step_option(k: int) -> str:
    """The option the customer holds after breakpoint k."""
    return f"step{k}_option"


def bucket(x: np.ndarray) -> np.ndarray:
    """Histogram bucket of positive multipliers: 1/512 octave (0.14%) wide."""
    return np.floor(np.log2(x) * PER_OCTAVE).astype(np.int64)


def _input_fields(n_opt: int) -> list[StructField]:
    return (
        [StructField("customer_id", LongType()), StructField("budget_group", StringType())]
        + [StructField(objective(j), DoubleType()) for j in range(n_opt)]
        + [StructField(cost(j), DoubleType()) for j in range(n_opt)]
    )


def _schema(n_opt: int) -> StructType:
    return StructType(_input_fields(n_opt) + _envelope_fields(n_opt))


@lru_cache
def _arrow(n_opt: int) -> pa.Schema:
    return spark_to_arrow(_schema(n_opt))


def _envelope_fields(n_opt: int) -> list[StructField]:
    out = [StructField(BASE_OPTION, IntegerType()), StructField(BASE_VALUE, DoubleType())]
    for k in range(n_opt):
        out += [
            StructField(step_lambda(k), DoubleType()),
            StructField(step_bucket(k), LongType()),
            StructField(step_value(k), DoubleType()),
            StructField(step_cost(k), DoubleType()),
            StructField(step_option(k), IntegerType()),
        ]
    return out


Pivoted = tuple[list[pa.Array], dict[str, np.ndarray] | None, np.ndarray, np.ndarray]


def pivot(rows: pa.Table, vouchers: pa.Array, vid: np.ndarray | None = None) -> Pivoted:
    """Rows sorted by (customer, voucher) -> one row per customer: id, group, objectives
    and costs (null when absent or not finite); its defect counts (:data:`.sums.FLAGS`); and
    the objectives and costs as (customers, options) matrices (NaN when null). ``vid``:
    the rows' voucher positions (:func:`voucher_index`) when already known."""
    rows = rows.combine_chunks()
    nulls = rows["customer_id"].null_count
    if nulls:
        raise RuntimeError(marked("InputError", f"uplift_scores has rows with a null customer_id "
                                  f"({nulls} in one batch of {rows.num_rows}): every score needs "
                                  "its customer"))  # fmt: skip
    ids = rows["customer_id"].to_numpy()
    first = np.r_[True, ids[1:] != ids[:-1]]
    cust = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    n, n_opt = len(starts), len(vouchers)
    vid = voucher_index(rows, vouchers) if vid is None else vid
    uo = rows["uplift_objective"].to_numpy(zero_copy_only=False).astype(float)
    uc = rows["uplift_cost"].to_numpy(zero_copy_only=False).astype(float)
    known = vid >= 0
    ok = known & np.isfinite(uo) & np.isfinite(uc)
    again = np.r_[False, ~first[1:] & (vid[1:] == vid[:-1])] & known
    group = rows["budget_group"].combine_chunks()
    own_group = group.take(pa.array(starts[cust]))
    moved = pc.fill_null(pc.not_equal(group, own_group), True).to_numpy(zero_copy_only=False)
    count = lambda mask: np.bincount(cust[mask], minlength=n)  # noqa: E731
    u = np.full((n_opt, n), np.nan)  # one contiguous row per option
    c = np.full((n_opt, n), np.nan)
    u[vid[ok], cust[ok]] = uo[ok]
    c[vid[ok], cust[ok]] = uc[ok]
    arrays = [
        pa.array(ids[starts], pa.int64()),
        group.take(pa.array(starts)),
        *[pa.array(u[j], pa.float64(), mask=np.isnan(u[j])) for j in range(n_opt)],
        *[pa.array(c[j], pa.float64(), mask=np.isnan(c[j])) for j in range(n_opt)],
    ]
    valid = group.is_valid().to_numpy(zero_copy_only=False)
    flags = {
        "dup": count(again),
        "bad": count(known & ~ok),
        "other": count(~known),
        "multi": count(moved & valid),
        "nogroup": count(~valid),
    }
    return arrays, flags, u.T, c.T


def _kept(pivoted: Pivoted, keep: np.ndarray) -> Pivoted:
    """The customers of ``pivoted`` where ``keep``."""
    if keep.all():
        return pivoted
    inputs, flags, u, c = pivoted
    mask = pa.array(keep)
    flags = None if flags is None else {f: a[keep] for f, a in flags.items()}
    return [a.filter(mask) for a in inputs], flags, u[keep], c[keep]


def _finish(pivoted: Pivoted, mu: np.ndarray | None, sums: Partition) -> pa.RecordBatch:
    """The customers' cached rows: inputs and envelope at ``mu``; their sums to ``sums``."""
    inputs, flags, u, c = pivoted
    env = envelope(u, c, mu)
    steps = np.isfinite(env.lam)
    bk = bucket(np.where(steps, env.lam, 1.0))
    sums.add(inputs[1], env, steps, bk, flags)
    out = [pa.array(env.base, pa.int32()), pa.array(env.base_value, pa.float64())]
    for k in range(u.shape[1]):
        absent = ~steps[:, k]
        out += [
            pa.array(env.lam[:, k], pa.float64(), mask=absent),
            pa.array(bk[:, k], pa.int64(), mask=absent),
            pa.array(env.d_value[:, k], pa.float64(), mask=absent),
            pa.array(env.d_cost[:, k], pa.float64(), mask=absent),
            pa.array(env.to[:, k], pa.int32(), mask=absent),
        ]
    return pa.RecordBatch.from_arrays(inputs + out, schema=_arrow(u.shape[1]))


def _options(inputs: list[pa.Array], n_opt: int) -> Pivoted:
    """Cached input columns (:func:`input_columns`) with their objective and cost matrices."""

    def matrix(arrays: list[pa.Array]) -> np.ndarray:
        return np.vstack([a.to_numpy(zero_copy_only=False) for a in arrays]).T

    u, c = matrix(inputs[2 : 2 + n_opt]), matrix(inputs[2 + n_opt : 2 + 2 * n_opt])
    return inputs, None, u, c


TYPED = {  # the columns of ``uplift_scores`` the allocation reads, and their types
    "customer_id": "long",
    "budget_group": "string",
    "voucher_id": "string",
    "uplift_objective": "double",
    "uplift_cost": "double",
}


def typed(scores: DataFrame, *extra: Column) -> DataFrame:
    """The :data:`TYPED` columns of ``uplift_scores`` with their types (and ``extra``
    columns after them)."""
    return scores.select(*[F.col(c).cast(t).alias(c) for c, t in TYPED.items()], *extra)


def customers(
    scores: DataFrame, vouchers: Sequence[str], mu: np.ndarray | None, acc: Accumulator
) -> DataFrame:
    """One row per customer of ``scores`` in the layout above, its envelope at cap
    multipliers ``mu`` (none: zero); each partition's sums to ``acc`` (:mod:`.sums`).

    The scores move once, hash-partitioned by customer and sorted within partitions;
    each Python worker then pivots consecutive rows (a customer cut by a batch boundary
    waits for the next batch): far cheaper than a Spark pivot aggregation.
    """
    n_opt = len(vouchers)
    names = pa.array(list(vouchers), pa.string())

    def build(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        sums = Partition()
        carry: pa.Table | None = None
        for b in batches:
            t = pa.Table.from_batches([b])
            t = t if carry is None else pa.concat_tables([carry, t])
            if t.num_rows == 0:
                continue
            ids = t["customer_id"].to_numpy()
            cut = int(np.searchsorted(ids, ids[-1]))  # the last customer may go on
            carry = t.slice(cut)
            if cut:
                yield _finish(pivot(t.slice(0, cut), names), mu, sums)
        if carry is not None and carry.num_rows:
            yield _finish(pivot(carry, names), mu, sums)
        sums.send(acc)

    rows = typed(scores)
    by_customer = rows.repartition("customer_id").sortWithinPartitions("customer_id", "voucher_id")
    return by_customer.mapInArrow(build, _schema(n_opt))


def from_files(
    spark: SparkSession,
    files: Sequence[str],
    vouchers: Sequence[str],
    keep: PolicyArm,
    acc: Accumulator,
) -> DataFrame:
    """The same rows as :func:`customers` (at mu = 0) for the customers ``keep`` keeps,
    read from the scores' plain Parquet ``files`` by Python, one task per file: no
    shuffle, and no conversion of Spark rows to Arrow. Right only when each customer's
    rows lie one after the other in one file, as ``sparklift score`` writes them; a
    customer seen twice (in two files, or in two places of one) gives two rows, so each
    file's id range and repeats go to ``acc`` too, for the caller's check
    (:func:`sparklift.allocation.sums.overlapping`)."""
    n_opt = len(vouchers)
    names = pa.array(list(vouchers), pa.string())
    paths = list(files)

    def build(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        sums = Partition()
        for b in batches:
            for i in b.column(0).to_pylist():
                runs = []
                for rows, vid in _customer_runs(paths[i], names):
                    pivoted = pivot(rows, names, vid)
                    ids = pivoted[0][0].to_numpy()
                    kept = keep.mask(ids)
                    runs.append(ids[kept])
                    yield _finish(_kept(pivoted, kept), None, sums)
                sums.file(i, runs)
        sums.send(acc)

    return spark.range(len(paths), numPartitions=len(paths)).mapInArrow(build, _schema(n_opt))


def _customer_runs(path: str, vouchers: pa.Array) -> Iterator[tuple[pa.Table, np.ndarray]]:
    """A scores file's rows of ``vouchers`` in chunks of whole customers (the last
    customer of a batch waits for the next), each customer's rows sorted by voucher, as
    :func:`pivot` needs, typed as :func:`typed` types them; with their voucher positions."""
    fs, inner = filesystem(path)
    types = {
        "customer_id": pa.int64(),
        "budget_group": pa.string(),
        "voucher_id": pa.string(),
        "uplift_objective": pa.float64(),
        "uplift_cost": pa.float64(),
    }
    carry: pa.Table | None = None
    with fs.open_input_file(inner) as f:
        reader = pq.ParquetFile(f)
        for batch in reader.iter_batches(READ_ROWS, columns=list(types), use_threads=False):
            t = pa.Table.from_batches([batch]).cast(pa.schema(types))
            t = t.filter(pc.is_in(t["voucher_id"], value_set=vouchers))
            t = t if carry is None else pa.concat_tables([carry, t])
            if t.num_rows == 0:
                continue
            ids = t["customer_id"].to_numpy()
            cut = int(np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])[-1])
            carry = t.slice(cut)
            if cut:
                yield _by_voucher(t.slice(0, cut), vouchers)
    if carry is not None and carry.num_rows:
        yield _by_voucher(carry, vouchers)


def _by_voucher(rows: pa.Table, vouchers: pa.Array) -> tuple[pa.Table, np.ndarray]:
    """Each customer's run of rows (ids consecutive) sorted by the voucher's position (as
    ``sparklift score`` writes them already: then left as they are), and the positions."""
    ids = rows["customer_id"].to_numpy()
    new_run = ids[1:] != ids[:-1]
    vid = voucher_index(rows, vouchers)
    if np.all(new_run | (vid[1:] >= vid[:-1])):
        return rows, vid
    order = np.lexsort((vid, np.cumsum(np.r_[True, new_run])))
    return rows.take(pa.array(order)), vid[order]


def voucher_index(rows: pa.Table, vouchers: pa.Array) -> np.ndarray:
    """Each row's voucher position in ``vouchers`` (-1: not one of them)."""
    return pc.fill_null(pc.index_in(rows["voucher_id"], value_set=vouchers), -1).to_numpy()


def input_columns(n_opt: int) -> list[str]:
    """The customer row's input columns (id, group, objectives, costs, defect counts)."""
    return [f.name for f in _input_fields(n_opt)]


def envelopes(env: DataFrame, n_opt: int, mu: np.ndarray | None, acc: Accumulator) -> DataFrame:
    """The same customers' envelopes at other cap multipliers ``mu``; each partition's
    sums to ``acc``."""
    inputs = input_columns(n_opt)

    def again(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        sums = Partition()
        for b in batches:
            yield _finish(_options([b.column(name) for name in inputs], n_opt), mu, sums)
        sums.send(acc)

    return env.select(*inputs).mapInArrow(again, _schema(n_opt))
