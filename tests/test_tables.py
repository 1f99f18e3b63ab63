"""The Delta table layer's guarantees, on the delta-rs backend."""

from __future__ import annotations

import datetime as dt
import os

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, DoubleType, LongType, StructField, StructType

from sparklift.errors import InputError, InputNotReadyError, SchemaMismatchError, TableConflictError
from sparklift.tables import Catalog
from sparklift.tables.commit import read_commit
from sparklift.tables.local import read_pandas

from .conftest import parquet_files

D1, D2, D3 = dt.date(2026, 1, 1), dt.date(2026, 1, 2), dt.date(2026, 1, 3)
SCHEMA = StructType(
    [
        StructField("date", DateType()),
        StructField("user_id", LongType()),
        StructField("gmv", DoubleType()),
    ]
)


def frame(spark, dates, n=30, offset=0):
    rows = [(d, offset + i, float(offset + i) / 2) for d in dates for i in range(n)]
    return spark.createDataFrame(rows, SCHEMA)


def content(catalog: Catalog, name="user_activity", **kw):
    return sorted(tuple(r) for r in catalog.read(name, **kw).collect())


def state(catalog: Catalog, name="user_activity"):
    """Everything a failed write must leave untouched: version, log files, data files."""
    root = catalog.path(name)
    return catalog.version(name), sorted(os.listdir(f"{root}/_delta_log")), parquet_files(root)


def test_create_append_overwrite_and_time_travel(spark, catalog):
    assert catalog.create("user_activity", SCHEMA, partition_by=["date"]) == 0
    assert catalog.read("user_activity").count() == 0
    assert catalog.partition_columns("user_activity") == ["date"]
    assert catalog.write("user_activity", frame(spark, [D1, D2])) == 1
    assert catalog.write("user_activity", frame(spark, [D3], offset=100)) == 2
    assert catalog.read("user_activity").count() == 90
    assert catalog.write("user_activity", frame(spark, [D1], n=5), mode="overwrite") == 3
    assert catalog.read("user_activity").count() == 5
    assert catalog.read("user_activity", version=2).count() == 90
    assert catalog.read("user_activity", version=0).count() == 0
    ops = [(h["version"], h["operation"]) for h in catalog.history("user_activity")]
    assert [v for v, _ in ops] == [3, 2, 1, 0]
    assert catalog.rows_added("user_activity", 2) == 30


def test_replace_partitions_is_one_commit_and_reads_prune(spark, catalog):
    catalog.write("user_activity", frame(spark, [D1, D2, D3]), partition_by=["date"])
    before = content(catalog)
    new = frame(spark, [D2, D3], n=4, offset=1000)
    version = catalog.write("user_activity", new, mode="replace", replace_where={"date": [D2, D3]})
    assert version == 1
    after = content(catalog)
    assert [r for r in after if r[0] == D1] == [r for r in before if r[0] == D1]
    assert sorted(r for r in after if r[0] != D1) == sorted(tuple(r) for r in new.collect())
    log = read_commit(catalog.path("user_activity"), 1)
    removed = {a["remove"]["partitionValues"]["date"] for a in log if "remove" in a}
    assert removed == {"2026-01-02", "2026-01-03"}
    pruned = catalog.read("user_activity", where=[("date", ">=", D2)])
    assert pruned.count() == 8 and pruned.schema == catalog.read("user_activity").schema
    assert catalog.read("user_activity", where=[("date", "in", [D1])]).count() == 30
    with pytest.raises(InputError, match="'user_id' is not a partition column"):
        catalog.read("user_activity", where=[("user_id", "=", 1)])


def test_readable_by_deltalake_with_same_content(spark, catalog):
    catalog.write("user_activity", frame(spark, [D1, D2]), partition_by=["date"])
    catalog.write(
        "user_activity", frame(spark, [D2], n=3), mode="replace", replace_where={"date": D2}
    )
    table = DeltaTable(catalog.path("user_activity"))
    assert table.version() == 1
    pdf = read_pandas(catalog.path("user_activity")).sort_values(["date", "user_id"])
    rows = sorted((r.date, r.user_id, r.gmv) for r in pdf.itertuples())
    assert rows == content(catalog)
    assert pa.schema(table.schema().to_arrow()).field("date").type == pa.date32()
    adds = pa.table(table.get_add_actions(flatten=True)).to_pydict()
    assert sum(adds["num_records"]) == 33
    assert min(adds["min.user_id"]) == 0 and max(adds["max.user_id"]) == 29


def test_schema_enforcement_fails_before_writing(spark, catalog):
    catalog.write("user_activity", frame(spark, [D1]), partition_by=["date"])
    before = state(catalog)
    bad = (
        frame(spark, [D1])
        .drop("gmv")
        .withColumn("extra", F.lit(1))
        .withColumn("user_id", F.col("user_id").cast("int"))
    )
    with pytest.raises(SchemaMismatchError) as err:
        catalog.write("user_activity", bad)
    msg = str(err.value)
    assert "missing columns ['gmv']" in msg and "extra columns ['extra']" in msg
    assert "user_id is int, expected bigint" in msg
    with pytest.raises(SchemaMismatchError, match="partitioned by \\['date'\\]"):
        catalog.write("user_activity", frame(spark, [D1]), partition_by=["user_id"])
    assert state(catalog) == before
    # Same columns in another order are fine.
    catalog.write("user_activity", frame(spark, [D2]).select("gmv", "user_id", "date"))
    assert catalog.read("user_activity").count() == 60


def test_rows_outside_the_replaced_partitions_fail_the_write(spark, catalog):
    catalog.write("user_activity", frame(spark, [D1, D2]), partition_by=["date"])
    before = state(catalog)
    with pytest.raises(InputError, match="outside the partitions being replaced"):
        catalog.write(
            "user_activity", frame(spark, [D1, D2]), mode="replace", replace_where={"date": D2}
        )
    assert state(catalog) == before


def test_task_failing_mid_write_leaves_table_unchanged(spark, catalog):
    catalog.write("user_activity", frame(spark, [D1, D2]), partition_by=["date"])
    before = state(catalog)
    big = spark.range(0, 400_000, numPartitions=1).select(
        F.lit(D2).alias("date"),
        F.col("id").alias("user_id"),
        F.col("id").cast("double").alias("gmv"),
    )

    def fail_late(batches):
        seen = 0
        for batch in batches:
            seen += batch.num_rows
            if seen > 300_000:  # after a row group of this task's file hit the disk
                raise RuntimeError("boom: simulated executor failure")
            yield batch

    # The small task succeeds first; the big one fails: abort must remove both tasks' files.
    failing = frame(spark, [D1], n=5).coalesce(1).union(big.mapInArrow(fail_late, big.schema))
    with pytest.raises(Exception, match="boom"):
        catalog.write("user_activity", failing)
    assert state(catalog) == before  # no version, no referenced or stray file


def test_concurrent_appends_both_land(spark, catalog):
    catalog.write("user_activity", frame(spark, [D1]), partition_by=["date"])
    backend, path = catalog.backend, catalog.path("user_activity")
    read_version = catalog.version("user_activity")  # both writers read version 0
    a = frame(spark, [D2], n=3, offset=500)
    b = frame(spark, [D2], n=4, offset=600)
    va = backend.write(a, path, "user_activity", "append", ["date"], None, read_version)
    vb = backend.write(b, path, "user_activity", "append", ["date"], None, read_version)
    assert (va, vb) == (1, 2)
    assert catalog.read("user_activity").count() == 37


def _replace(catalog, df, date, read_version):
    return catalog.backend.write(
        df,
        catalog.path("user_activity"),
        "user_activity",
        "replace",
        ["date"],
        {"date": [date.isoformat()]},
        read_version,
    )


def test_conflicting_replaces_one_wins_other_fails_cleanly(spark, catalog):
    catalog.write("user_activity", frame(spark, [D1, D2]), partition_by=["date"])
    read_version = catalog.version("user_activity")
    winner = frame(spark, [D2], n=2, offset=700)
    assert _replace(catalog, winner, D2, read_version) == 1
    before = state(catalog)
    with pytest.raises(TableConflictError, match="other writer won"):
        _replace(catalog, frame(spark, [D2], n=9, offset=800), D2, read_version)
    assert state(catalog) == before
    assert sorted(
        r.user_id for r in catalog.read("user_activity").where(F.col("date") == D2).collect()
    ) == [700, 701]


def test_replace_conflicts_with_concurrent_append_into_its_partition(spark, catalog):
    """delta-rs alone would keep the concurrent append (a lost update); Delta's rules don't."""
    catalog.write("user_activity", frame(spark, [D1, D2]), partition_by=["date"])
    read_version = catalog.version("user_activity")
    path = catalog.path("user_activity")
    catalog.backend.write(
        frame(spark, [D2], n=1, offset=900),
        path,
        "user_activity",
        "append",
        ["date"],
        None,
        read_version,
    )
    with pytest.raises(TableConflictError, match="added data in partitions"):
        _replace(catalog, frame(spark, [D2], n=2), D2, read_version)


def test_replaces_of_disjoint_partitions_both_land(spark, catalog):
    catalog.write("user_activity", frame(spark, [D1, D2, D3]), partition_by=["date"])
    read_version = catalog.version("user_activity")
    assert _replace(catalog, frame(spark, [D1], n=1, offset=10), D1, read_version) == 1
    assert _replace(catalog, frame(spark, [D3], n=2, offset=20), D3, read_version) == 2
    counts = {
        r.date: r["count"] for r in catalog.read("user_activity").groupBy("date").count().collect()
    }
    assert counts == {D1: 1, D2: 30, D3: 2}


def test_overwrite_conflicts_with_any_concurrent_change(spark, catalog):
    catalog.write("user_activity", frame(spark, [D1]), partition_by=["date"])
    read_version = catalog.version("user_activity")
    path = catalog.path("user_activity")
    catalog.backend.write(
        frame(spark, [D2], n=1), path, "user_activity", "append", ["date"], None, read_version
    )
    with pytest.raises(TableConflictError):
        catalog.backend.write(
            frame(spark, [D3]), path, "user_activity", "overwrite", ["date"], None, read_version
        )


def test_clear_errors_for_missing_table_and_bad_arguments(spark, catalog):
    with pytest.raises(InputNotReadyError, match="table zones does not exist"):
        catalog.read("zones")
    with pytest.raises(InputError, match="unknown table 'nope'"):
        catalog.path("nope")
    with pytest.raises(InputError, match="replace_where is required"):
        catalog.write("user_activity", frame(spark, [D1]), mode="replace")
    with pytest.raises(InputError, match="not a partition column"):
        catalog.write(
            "user_activity", frame(spark, [D1]), mode="replace", replace_where={"gmv": 1.0}
        )
