"""The Delta table layer's guarantees, on BOTH backends (native Delta Spark and delta-rs).

Concurrent writers really run at once: the slow writer's task waits at a gate (a file)
until the fast writer has committed, so both read the same version and the order of
their commits is fixed, whatever the machine's load.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DateType,
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from sparklift.config import TablesConfig
from sparklift.contracts import contract
from sparklift.errors import InputError, InputNotReadyError, SchemaMismatchError, TableConflictError
from sparklift.tables import Catalog
from sparklift.tables.backends import DeltaRsBackend
from sparklift.tables.changes import (
    ANY_VALUE,
    data_changes,
    last_change,
    partition_key,
    table_id,
    user_metadata,
)
from sparklift.tables.commit import read_commit
from sparklift.tables.local import read_pandas
from sparklift.tables.native import NativeBackend

from .conftest import parquet_files

D1, D2, D3 = dt.date(2026, 1, 1), dt.date(2026, 1, 2), dt.date(2026, 1, 3)
SCHEMA = StructType(
    [
        StructField("date", DateType()),
        StructField("user_id", LongType()),
        StructField("gmv", DoubleType()),
    ]
)
BACKENDS = ["native", "deltars"]
GATE_TIMEOUT_S = 120


def make_catalog(spark, tables: TablesConfig, kind: str) -> Catalog:
    backend = (
        NativeBackend(spark) if kind == "native" else DeltaRsBackend(spark, tables.target_file_rows)
    )
    return Catalog(spark, tables, backend=backend)


@pytest.fixture(params=BACKENDS)
def catalog(request, spark, config) -> Catalog:
    return make_catalog(spark, config.tables, request.param)


def frame(spark, dates, n=30, offset=0):
    rows = [(d, offset + i, float(offset + i) / 2) for d in dates for i in range(n)]
    return spark.createDataFrame(rows, SCHEMA)


def content(catalog: Catalog, name="user_activity", **kw):
    return sorted(tuple(r) for r in catalog.read(name, **kw).collect())


def referenced(catalog: Catalog, name="user_activity") -> set[str]:
    """The data files the latest snapshot references, as absolute paths."""
    return set(DeltaTable(catalog.path(name)).file_uris())


def state(catalog: Catalog, name="user_activity"):
    """What a failed write must leave untouched: version, log files, referenced files."""
    root = catalog.path(name)
    logs = sorted(f for f in os.listdir(f"{root}/_delta_log") if f.endswith(".json"))
    return catalog.version(name), logs, referenced(catalog, name)


def test_create_append_overwrite_and_time_travel(spark, catalog):
    assert catalog.create("user_activity", SCHEMA, partition_by=["date"]) == 0
    assert catalog.read("user_activity").count() == 0
    assert catalog.partition_columns("user_activity") == ["date"]
    assert catalog.write_uncontracted("user_activity", frame(spark, [D1, D2])) == 1
    assert catalog.write_uncontracted("user_activity", frame(spark, [D3], offset=100)) == 2
    assert catalog.read("user_activity").count() == 90
    assert (
        catalog.write_uncontracted("user_activity", frame(spark, [D1], n=5), mode="overwrite") == 3
    )
    assert catalog.read("user_activity").count() == 5
    assert catalog.read("user_activity", version=2).count() == 90
    assert catalog.read("user_activity", version=0).count() == 0
    ops = [(h["version"], h["operation"]) for h in catalog.history("user_activity")]
    assert [v for v, _ in ops] == [3, 2, 1, 0]
    assert catalog.rows_added("user_activity", 2) == 30
    assert catalog.count("user_activity", version=2, where=[("date", "=", D3)]) == 30


def test_replace_partitions_is_one_commit_and_reads_prune(spark, catalog):
    catalog.write_uncontracted("user_activity", frame(spark, [D1, D2, D3]), partition_by=["date"])
    before = content(catalog)
    new = frame(spark, [D2, D3], n=4, offset=1000)
    version = catalog.write_uncontracted(
        "user_activity", new, mode="replace", replace_where={"date": [D2, D3]}
    )
    assert version == 1
    after = content(catalog)
    assert [r for r in after if r[0] == D1] == [r for r in before if r[0] == D1]
    assert sorted(r for r in after if r[0] != D1) == sorted(tuple(r) for r in new.collect())
    log = read_commit(catalog.path("user_activity"), 1)
    removed = {a["remove"]["partitionValues"]["date"] for a in log if "remove" in a}
    assert removed == {"2026-01-02", "2026-01-03"}
    pruned = catalog.read("user_activity", where=[("date", ">=", D2)])
    assert pruned.count() == 8 and pruned.schema == catalog.read("user_activity").schema
    assert catalog.partition_values("user_activity", "date") == {D1, D2, D3}
    assert catalog.partition_values("user_activity", "date", [("date", ">=", D2)]) == {D2, D3}
    assert catalog.read("user_activity", where=[("date", "in", [D1])]).count() == 30
    with pytest.raises(InputError, match="'user_id' is not a partition column"):
        catalog.read("user_activity", where=[("user_id", "=", 1)])


def test_a_write_keeps_its_user_metadata_and_a_partition_s_last_change_is_found(spark, catalog):
    """``user_metadata`` lands in the commit (both backends), and ``last_change`` finds the
    newest commit that changed a partition's rows, past a compaction (no data change), or
    None once the log no longer holds it."""
    root = catalog.path("user_activity")
    note = {"user_activity_version": 7, "day": D1}
    write = catalog.write_uncontracted
    write("user_activity", frame(spark, [D1, D2]), partition_by=["date"], user_metadata=note)
    write("user_activity", frame(spark, [D2], n=4), mode="replace", replace_where={"date": [D2]})
    write("user_activity", frame(spark, [D2], n=3, offset=50))
    DeltaTable(root).optimize.compact()  # version 3: D2's two files in one, dataChange false
    assert catalog.history("user_activity")[0]["operation"] == "OPTIMIZE"
    assert catalog.version("user_activity") == 3
    found = last_change(root, 3, "date", "2026-01-01")
    assert found is not None and found[0] == 0
    assert user_metadata(found[1]) == {"user_activity_version": 7, "day": str(D1)}
    found = last_change(root, 3, "date", "2026-01-02")
    assert found is not None and found[0] == 2 and user_metadata(found[1]) == {}
    assert last_change(root, 3, "date", "2026-01-09") is None
    DeltaTable(root).create_checkpoint()
    os.remove(f"{root}/_delta_log/{0:020d}.json")  # cleaned up: the checkpoint holds it
    assert last_change(root, 3, "date", "2026-01-01") is None
    assert last_change(root, 3, "date", "2026-01-02")[0] == 2  # type: ignore[index]


def test_the_log_s_changes_are_found_by_physical_names_under_column_mapping(spark, tmp_path):
    """A table created with column mapping keys its log's partition values by physical
    names (``col-<uuid>``): the changes are still found by the column's name; the table's
    id is that of its metadata, and a table created again at the path has another."""
    root = str(tmp_path / "mapped")
    create = (
        f"CREATE TABLE delta.`{root}` (date DATE, user_id BIGINT) USING delta "
        "PARTITIONED BY (date) TBLPROPERTIES ('delta.columnMapping.mode' = 'name')"
    )
    spark.sql(create)
    spark.sql(f"INSERT INTO delta.`{root}` VALUES (DATE'2026-01-01', 1), (DATE'2026-01-02', 2)")
    spark.sql(f"DELETE FROM delta.`{root}` WHERE user_id = 2")
    spark.sql(f"ALTER TABLE delta.`{root}` SET TBLPROPERTIES ('sparklift.test' = 'x')")
    assert partition_key(root, "date").startswith("col-")
    assert data_changes(root, 0, 3, "date") == {
        "2026-01-01": [(1, "WRITE")],
        "2026-01-02": [(1, "WRITE"), (2, "DELETE")],
    }
    assert last_change(root, 3, "date", "2026-01-02")[0] == 2  # type: ignore[index]
    first = table_id(root)
    assert first == DeltaTable(root).metadata().id == table_id(root, 0)
    shutil.rmtree(root)
    spark._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()
    spark.sql(create)
    assert table_id(root) != first
    with pytest.raises(InputError, match="has no column 'day'"):
        partition_key(root, "day")


def test_the_log_s_changes_tell_a_null_date_from_a_table_not_partitioned_by_it(spark, tmp_path):
    """Rows of a null date are the null partition's (None); a table not partitioned by the
    column gives no value of it (``ANY_VALUE``: rows of any date may have changed)."""
    dated, flat = str(tmp_path / "dated"), str(tmp_path / "flat")
    columns = "(date DATE, user_id BIGINT) USING delta"
    spark.sql(f"CREATE TABLE delta.`{dated}` {columns} PARTITIONED BY (date)")
    spark.sql(f"CREATE TABLE delta.`{flat}` {columns}")
    for root in (dated, flat):
        spark.sql(f"INSERT INTO delta.`{root}` VALUES (DATE'2026-01-01', 1), (NULL, 2)")
    assert data_changes(dated, 0, 1, "date") == {"2026-01-01": [(1, "WRITE")], None: [(1, "WRITE")]}
    assert data_changes(flat, 0, 1, "date") == {ANY_VALUE: [(1, "WRITE")]}


def test_plain_parquet_files_hold_the_partitions_rows_or_are_refused(spark, catalog):
    """``parquet_files``: the files of the partitions asked for, holding exactly their rows;
    None once a reader feature (column mapping: physical names differ) makes the files
    alone not the table."""
    catalog.write_uncontracted("user_activity", frame(spark, [D1, D2]), partition_by=["date"])
    catalog.write_uncontracted("user_activity", frame(spark, [D2], n=3, offset=500))
    files = catalog.parquet_files("user_activity", where=[("date", "=", D2)])
    assert files and all("date=2026-01-02" in f for f in files)
    got = pq.read_table(files, partitioning=None).to_pydict()
    expected = [(r[1], r[2]) for r in content(catalog) if r[0] == D2]
    assert sorted(zip(got["user_id"], got["gmv"], strict=True)) == sorted(expected)
    assert len(expected) == 33
    if catalog.backend.name == "native":
        spark.sql(
            f"ALTER TABLE delta.`{catalog.path('user_activity')}` SET TBLPROPERTIES ("
            "'delta.minReaderVersion' = '2', 'delta.minWriterVersion' = '5', "
            "'delta.columnMapping.mode' = 'name')"
        )
        assert catalog.parquet_files("user_activity", where=[("date", "=", D2)]) is None
        # Partition values then come from a query, not from delta-rs's read of the log.
        assert catalog.partition_values("user_activity", "date", [("date", "<", D2)]) == {D1}


KEYED = StructType(
    [
        StructField("day", DateType()),
        StructField("zone", StringType()),
        StructField("n", LongType()),
    ]
)


def test_replace_by_typed_literals_null_date_and_quoted_string(spark, catalog):
    """The predicate is built from typed literals: a null partition is ``IS NULL`` (not
    ``IN (None)``), a quote in a string value is escaped, and each backend reads back
    the exact values from the other's directory names."""
    zones = [None, "it's", 'a "b" c', "x:y/z", "plain"]
    rows = [(D1, z, i) for i, z in enumerate(zones)] + [
        (D2, z, 10 + i) for i, z in enumerate(zones)
    ]
    catalog.write_uncontracted(
        "geo_results", spark.createDataFrame(rows, KEYED), partition_by=["day", "zone"]
    )
    new = spark.createDataFrame([(D1, None, 100), (D1, "it's", 101)], KEYED)
    catalog.write_uncontracted(
        "geo_results", new, mode="replace", replace_where={"day": D1, "zone": [None, "it's"]}
    )
    got = sorted((r.day, r.zone or "", r.n) for r in catalog.read("geo_results").collect())
    want = sorted(
        [(D1, "", 100), (D1, "it's", 101)]
        + [(D1, z, i) for i, z in enumerate(zones) if z not in (None, "it's")]
        + [(D2, z or "", 10 + i) for i, z in enumerate(zones)]
    )
    assert got == want
    quoted = catalog.read("geo_results", where=[("zone", "=", "it's")])
    assert sorted(r.n for r in quoted.collect()) == [11, 101]
    other = "deltars" if catalog.backend.name == "native" else "native"
    across = make_catalog(spark, catalog.conf, other)
    assert sorted((r.day, r.zone or "", r.n) for r in across.read("geo_results").collect()) == want
    pdf = read_pandas(catalog.path("geo_results"))
    assert sorted((r.day, r.zone or "", r.n) for r in pdf.itertuples()) == want


def test_readable_by_deltalake_with_same_content(spark, catalog):
    catalog.write_uncontracted("user_activity", frame(spark, [D1, D2]), partition_by=["date"])
    catalog.write_uncontracted(
        "user_activity", frame(spark, [D2], n=3), mode="replace", replace_where={"date": D2}
    )
    table = DeltaTable(catalog.path("user_activity"))
    assert table.version() == 1
    protocol = table.protocol()
    assert (protocol.min_reader_version, protocol.min_writer_version) == (1, 2)
    pdf = read_pandas(catalog.path("user_activity")).sort_values(["date", "user_id"])
    rows = sorted((r.date, r.user_id, r.gmv) for r in pdf.itertuples())
    assert rows == content(catalog)
    assert pa.schema(table.schema().to_arrow()).field("date").type == pa.date32()
    adds = pa.table(table.get_add_actions(flatten=True)).to_pydict()
    assert sum(adds["num_records"]) == 33
    assert min(adds["min.user_id"]) == 0 and max(adds["max.user_id"]) == 29


def test_schema_enforcement_fails_before_writing(spark, catalog):
    catalog.write_uncontracted("user_activity", frame(spark, [D1]), partition_by=["date"])
    before = state(catalog)
    files = parquet_files(catalog.path("user_activity"))
    bad = (
        frame(spark, [D1])
        .drop("gmv")
        .withColumn("extra", F.lit(1))
        .withColumn("user_id", F.col("user_id").cast("int"))
    )
    with pytest.raises(SchemaMismatchError) as err:
        catalog.write_uncontracted("user_activity", bad)
    msg = str(err.value)
    assert "missing columns ['gmv']" in msg and "extra columns ['extra']" in msg
    assert "user_id is int, expected bigint" in msg
    with pytest.raises(SchemaMismatchError, match="partitioned by \\['date'\\]"):
        catalog.write_uncontracted("user_activity", frame(spark, [D1]), partition_by=["user_id"])
    assert state(catalog) == before
    assert parquet_files(catalog.path("user_activity")) == files  # nothing written at all
    # Same columns in another order are fine.
    catalog.write_uncontracted("user_activity", frame(spark, [D2]).select("gmv", "user_id", "date"))
    assert catalog.read("user_activity").count() == 60


def test_rows_outside_the_replaced_partitions_fail_the_write(spark, catalog):
    catalog.write_uncontracted("user_activity", frame(spark, [D1, D2]), partition_by=["date"])
    before = state(catalog)
    with pytest.raises(InputError, match="outside the partitions being replaced"):
        catalog.write_uncontracted(
            "user_activity", frame(spark, [D1, D2]), mode="replace", replace_where={"date": D2}
        )
    assert state(catalog) == before


def test_task_failing_mid_write_leaves_table_unchanged(spark, catalog):
    catalog.write_uncontracted("user_activity", frame(spark, [D1, D2]), partition_by=["date"])
    before = state(catalog)
    files = parquet_files(catalog.path("user_activity"))
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

    # The small task succeeds first; the big one fails.
    failing = frame(spark, [D1], n=5).coalesce(1).union(big.mapInArrow(fail_late, big.schema))
    with pytest.raises(Exception, match="boom"):
        catalog.write_uncontracted("user_activity", failing)
    assert state(catalog) == before  # no version, no new referenced file
    if catalog.backend.name == "deltars":  # it also removes the files of the failed write
        assert parquet_files(catalog.path("user_activity")) == files


def test_retried_write_with_the_same_marker_is_not_applied_twice(spark, catalog):
    catalog.write_uncontracted("user_activity", frame(spark, [D1]), partition_by=["date"])
    key = ("nightly-features-2026-01-02", 7)
    first = catalog.write_uncontracted("user_activity", frame(spark, [D2], n=3), txn=key)
    catalog.write_uncontracted("user_activity", frame(spark, [D3], n=2))
    again = catalog.write_uncontracted("user_activity", frame(spark, [D2], n=3), txn=key)
    assert (first, again) == (1, 1)  # the retry reports the version that applied it
    assert catalog.version("user_activity") == 2 and catalog.read("user_activity").count() == 35
    newer = catalog.write_uncontracted(
        "user_activity", frame(spark, [D2], n=1, offset=50), txn=(key[0], 8)
    )
    assert newer == 3 and catalog.read("user_activity").count() == 36


# --- concurrent writers ---------------------------------------------------------------


def gated(df: DataFrame, gate: Path) -> DataFrame:
    """``df`` in one task that signals ``gate/started`` and waits for ``gate/go``."""
    started, go = str(gate / "started"), str(gate / "go")

    def wait(batches):
        open(started, "w").close()
        deadline = time.monotonic() + GATE_TIMEOUT_S
        while not os.path.exists(go):
            if time.monotonic() > deadline:
                raise RuntimeError("test gate never opened")
            time.sleep(0.05)
        yield from batches

    return df.coalesce(1).mapInArrow(wait, df.schema)


def race(slow: Callable[[DataFrame], int], slow_df: DataFrame, fast: Callable[[], int], gate):
    """Start ``slow(gated slow_df)``; once its task runs (it has read the table), run
    ``fast`` to completion, then let the slow writer finish. Returns fast's version and
    the slow writer's future."""
    gate.mkdir()
    pool = ThreadPoolExecutor(1)
    future: Future = pool.submit(slow, gated(slow_df, gate))
    deadline = time.monotonic() + GATE_TIMEOUT_S
    try:
        while not (gate / "started").exists():
            if future.done():
                future.result()
                raise AssertionError("the slow writer finished before its gate")
            assert time.monotonic() < deadline, "the slow writer's task never started"
            time.sleep(0.05)
        fast_version = fast()
    finally:
        (gate / "go").touch()
        pool.shutdown(wait=True)
    return fast_version, future


def test_concurrent_appends_both_land_and_know_their_versions(spark, catalog, tmp_path):
    catalog.write_uncontracted("user_activity", frame(spark, [D1]), partition_by=["date"])
    slow = frame(spark, [D2], n=4, offset=600)
    fast_v, future = race(
        lambda df: catalog.write_uncontracted("user_activity", df),
        slow,
        lambda: catalog.write_uncontracted("user_activity", frame(spark, [D2], n=3, offset=500)),
        tmp_path / "gate",
    )
    assert (fast_v, future.result()) == (1, 2)  # each finds its own commit by its marker
    assert catalog.rows_added("user_activity", 1) == 3
    assert catalog.rows_added("user_activity", 2) == 4
    assert catalog.read("user_activity").count() == 37


def test_conflicting_replaces_one_wins_other_fails_cleanly(spark, catalog, tmp_path):
    catalog.write_uncontracted("user_activity", frame(spark, [D1, D2]), partition_by=["date"])

    def replace(df):
        return catalog.write_uncontracted(
            "user_activity", df, mode="replace", replace_where={"date": D2}
        )

    fast_v, future = race(
        replace,
        frame(spark, [D2], n=9, offset=800),
        lambda: replace(frame(spark, [D2], n=2, offset=700)),
        tmp_path / "gate",
    )
    assert fast_v == 1
    with pytest.raises(TableConflictError, match="other writer won") as err:
        future.result()
    assert err.value.exit_code == 4
    assert catalog.version("user_activity") == 1
    d2 = catalog.read("user_activity").where(F.col("date") == D2).collect()
    assert sorted(r.user_id for r in d2) == [700, 701]  # the winner's data, intact


def test_replace_conflicts_with_concurrent_append_into_its_partition(spark, catalog, tmp_path):
    """delta-rs alone would keep the concurrent append (a lost update); Delta's rules don't."""
    catalog.write_uncontracted("user_activity", frame(spark, [D1, D2]), partition_by=["date"])
    _, future = race(
        lambda df: catalog.write_uncontracted(
            "user_activity", df, mode="replace", replace_where={"date": D2}
        ),
        frame(spark, [D2], n=2),
        lambda: catalog.write_uncontracted("user_activity", frame(spark, [D2], n=1, offset=900)),
        tmp_path / "gate",
    )
    with pytest.raises(TableConflictError):
        future.result()
    assert catalog.read("user_activity").where(F.col("user_id") == 900).count() == 1


def test_replaces_of_disjoint_partitions_both_land(spark, catalog, tmp_path):
    catalog.write_uncontracted("user_activity", frame(spark, [D1, D2, D3]), partition_by=["date"])
    fast_v, future = race(
        lambda df: catalog.write_uncontracted(
            "user_activity", df, mode="replace", replace_where={"date": D3}
        ),
        frame(spark, [D3], n=2, offset=20),
        lambda: catalog.write_uncontracted(
            "user_activity",
            frame(spark, [D1], n=1, offset=10),
            mode="replace",
            replace_where={"date": D1},
        ),
        tmp_path / "gate",
    )
    assert (fast_v, future.result()) == (1, 2)
    counts = {
        r.date: r["count"] for r in catalog.read("user_activity").groupBy("date").count().collect()
    }
    assert counts == {D1: 1, D2: 30, D3: 2}


def test_overwrite_conflicts_with_any_concurrent_change(spark, catalog, tmp_path):
    catalog.write_uncontracted("user_activity", frame(spark, [D1]), partition_by=["date"])
    _, future = race(
        lambda df: catalog.write_uncontracted("user_activity", df, mode="overwrite"),
        frame(spark, [D3]),
        lambda: catalog.write_uncontracted("user_activity", frame(spark, [D2], n=1)),
        tmp_path / "gate",
    )
    with pytest.raises(TableConflictError):
        future.result()
    assert catalog.read("user_activity").count() == 31


def verdicts(spark, checks: dict[str, str], table: str = "t", threshold: str = "= 0") -> DataFrame:
    """``quality_results`` rows of ``table`` on D1: check name -> status."""
    now = dt.datetime(2026, 1, 2, 3, 4, 5)
    rows = [(table, D1, c, "range", "error", 1.0, threshold, s, "", now) for c, s in checks.items()]
    return spark.createDataFrame(rows, contract("quality_results").schema)


def statuses(catalog: Catalog) -> dict[tuple[str, str], str]:
    rows = catalog.read("quality_results").collect()
    assert len(rows) == len({(r.table_name, r.check_name) for r in rows}), rows  # key unique
    return {(r.table_name, r.check_name): r.status for r in rows}


def test_merge_upserts_on_the_key_and_never_loses_a_concurrent_commit(spark, catalog, tmp_path):
    """A merge (a job recording its refusal) replaces the rows of its keys and adds the
    others; a replace of the same partition committed while the merge runs (a check run) is
    never overwritten: the merge conflicts (its snapshot predates the replace; a retry then
    lands) or merges into the replace's version."""
    first = verdicts(spark, {"a": "pass", "b": "pass"}).union(verdicts(spark, {"a": "pass"}, "u"))
    assert catalog.merge("quality_results", first) == 0  # a new table: created
    assert catalog.merge("quality_results", verdicts(spark, {"b": "fail", "c": "fail"})) == 1
    assert statuses(catalog) == {("t", "a"): "pass", ("t", "b"): "fail", ("t", "c"): "fail",
                                 ("u", "a"): "pass"}  # fmt: skip

    def check_run() -> int:
        checked = verdicts(spark, {"a": "warn", "b": "pass"})
        where = {"table_name": "t", "run_date": D1}
        return catalog.write("quality_results", checked, mode="replace", replace_where=where)

    def record(df: DataFrame) -> int:
        return catalog.merge("quality_results", df)

    fast_v, future = race(record, verdicts(spark, {"b": "fail"}), check_run, tmp_path / "gate")
    assert fast_v == 2
    try:
        version = future.result()
    except TableConflictError as err:  # its snapshot predates the replace: nothing written
        assert err.exit_code == 4 and catalog.version("quality_results") == 2
        version = record(verdicts(spark, {"b": "fail"}))  # what a retry does
    assert version == 3  # on top of the replace, never beside it (keys stay unique)
    assert statuses(catalog) == {("t", "a"): "warn", ("t", "b"): "fail", ("u", "a"): "pass"}
    # A merge reads only its rows' partitions: another table's check does not conflict.
    other = verdicts(spark, {"b": "fail"}, "u")
    assert race(record, other, check_run, tmp_path / "gate2")[1].result() == 5
    assert statuses(catalog) == {("t", "a"): "warn", ("t", "b"): "pass", ("u", "a"): "pass",
                                 ("u", "b"): "fail"}  # fmt: skip


def test_update_writes_only_rows_unchanged_since_their_read(spark, catalog, tmp_path):
    """An update (the analysis concluding its experiment: a read-modify-write) replaces a
    row only where the table's row still holds the values it read, here the threshold, and
    adds none. A replace of the row committed while the update runs is never overwritten:
    the update conflicts (its snapshot predates the replace) or finds the row changed."""
    assert catalog.update("quality_results", verdicts(spark, {"a": "fail"}), ["threshold"]) is None
    assert not catalog.exists("quality_results")  # no table: nothing to update, none created
    catalog.write("quality_results", verdicts(spark, {"a": "pass", "b": "pass"}))
    read = verdicts(spark, {"a": "fail"}).union(verdicts(spark, {"b": "fail"}, threshold="= 1"))
    read = read.union(verdicts(spark, {"c": "fail"}))  # b changed since its read; c is new
    assert catalog.update("quality_results", read, ["threshold"]) == 1
    assert statuses(catalog) == {("t", "a"): "fail", ("t", "b"): "pass"}
    stale = verdicts(spark, {"b": "warn"}, threshold="= 1")
    assert catalog.update("quality_results", stale, ["threshold"]) is None
    assert statuses(catalog)[("t", "b")] == "pass"
    # delta-rs commits nothing; native Delta commits the update's transaction id alone
    assert catalog.version("quality_results") == (2 if catalog.backend.name == "native" else 1)
    before = catalog.version("quality_results")

    def check_run() -> int:  # a new threshold for a, committed while the update runs
        checked = verdicts(spark, {"a": "pass", "b": "pass"}, threshold="= 5")
        where = {"table_name": "t", "run_date": D1}
        return catalog.write("quality_results", checked, mode="replace", replace_where=where)

    def conclude(df: DataFrame) -> int | None:
        return catalog.update("quality_results", df, ["threshold"])

    fast_v, future = race(conclude, verdicts(spark, {"a": "warn"}), check_run, tmp_path / "gate")
    assert fast_v == before + 1
    try:
        assert future.result() is None  # on top of the replace: a's threshold changed
    except TableConflictError as err:  # its snapshot predates the replace: nothing written
        assert err.exit_code == 4
    rows = catalog.read("quality_results").collect()
    assert {(r.check_name, r.status, r.threshold) for r in rows} == {
        ("a", "pass", "= 5"),
        ("b", "pass", "= 5"),
    }
    with pytest.raises(InputError, match=r"quality_results: an update's unchanged columns"):
        catalog.update("quality_results", verdicts(spark, {"a": "fail"}), ["thresholds"])


def test_writers_racing_to_create_a_table(spark, catalog, tmp_path):
    """Two writers find no table and both create it (two checks' first results, say):
    Delta lets one commit version 0 and refuses the other (on native Delta a protocol
    change). The loser is written onto the winner's table as if it had come second: an
    append, and a replace of partitions the winner left empty, land; a replace of the
    winner's partition fails as a conflict (exit 4), the winner's rows intact."""

    def both(table: str, slow, fast) -> tuple[int, Future]:
        return race(slow, frame(spark, [D2], n=2, offset=50), fast, tmp_path / table)

    def replace(table: str, df: DataFrame, day: dt.date) -> int:
        return catalog.write_uncontracted(
            table, df, "replace", ["date"], replace_where={"date": day}
        )

    fast_v, slow = both(
        "user_activity",
        lambda df: catalog.write_uncontracted("user_activity", df, partition_by=["date"]),
        lambda: catalog.write_uncontracted(
            "user_activity", frame(spark, [D2], n=3), "append", ["date"]
        ),
    )
    assert (fast_v, slow.result()) == (0, 1)
    assert sorted(r.user_id for r in catalog.read("user_activity").collect()) == [0, 1, 2, 50, 51]

    fast_v, slow = both(
        "zones",
        lambda df: replace("zones", df, D2),
        lambda: replace("zones", frame(spark, [D1], n=3), D1),
    )
    assert (fast_v, slow.result()) == (0, 1)
    assert catalog.read("zones").count() == 5

    fast_v, slow = both(
        "customers",
        lambda df: replace("customers", df, D2),
        lambda: replace("customers", frame(spark, [D2], n=3), D2),
    )
    with pytest.raises(TableConflictError) as err:
        slow.result()
    assert err.value.exit_code == 4 and catalog.version("customers") == 0
    assert sorted(r.user_id for r in catalog.read("customers").collect()) == [0, 1, 2]
    # A replace of an empty partition may come second; of a null one never (a partition
    # filter cannot look a null up, so the winner's rows there would go unseen).
    lands = catalog._lands_after_creator
    assert lands(catalog.path("customers"), "replace", {"date": D3}, True)
    assert not lands(catalog.path("customers"), "replace", {"date": [D3, None]}, True)

    # Merges both creating quality_results: the loser merges into the winner's table.
    _, slow = race(
        lambda df: catalog.merge("quality_results", df),
        verdicts(spark, {"a": "fail", "b": "fail"}),
        lambda: catalog.merge("quality_results", verdicts(spark, {"a": "pass"})),
        tmp_path / "quality_results",
    )
    assert slow.result() == 1
    assert statuses(catalog) == {("t", "a"): "fail", ("t", "b"): "fail"}


def test_clear_errors_for_missing_table_and_bad_arguments(spark, catalog):
    with pytest.raises(InputNotReadyError, match="table zones does not exist"):
        catalog.read("zones")
    with pytest.raises(InputError, match="unknown table 'nope'"):
        catalog.path("nope")
    with pytest.raises(InputError, match="replace_where is required"):
        catalog.write_uncontracted("user_activity", frame(spark, [D1]), mode="replace")
    with pytest.raises(InputError, match="not a partition column"):
        catalog.write_uncontracted(
            "user_activity", frame(spark, [D1]), mode="replace", replace_where={"gmv": 1.0}
        )


# --- interop ----------------------------------------------------------------------------


def test_each_backend_reads_and_appends_the_others_tables(spark, config):
    native = make_catalog(spark, config.tables, "native")
    deltars = make_catalog(spark, config.tables, "deltars")
    for first, second, name in [(native, deltars, "user_activity"), (deltars, native, "zones")]:
        first.write_uncontracted(name, frame(spark, [D1, D2]), partition_by=["date"])
        assert content(second, name) == content(first, name)
        assert second.write_uncontracted(name, frame(spark, [D3], n=5, offset=100)) == 1
        second.write_uncontracted(
            name, frame(spark, [D1], n=2, offset=200), mode="replace", replace_where={"date": D1}
        )
        assert first.version(name) == second.version(name) == 2
        want = content(first, name)
        assert content(second, name) == want and len(want) == 37
        assert first.write_uncontracted(name, frame(spark, [D2], n=1, offset=300)) == 3
        pdf = read_pandas(first.path(name))
        assert len(pdf) == 38 and DeltaTable(first.path(name)).version() == 3
        assert content(second, name, version=1) == content(first, name, version=1)
