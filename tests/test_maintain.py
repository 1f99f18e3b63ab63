"""Compaction and VACUUM on both backends: fewer files, same rows and readers, time travel
within the window, refusal of a retention shorter than the window."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time

import pytest
from deltalake import DeltaTable
from pyspark.sql.types import DateType, DoubleType, LongType, StructField, StructType

from sparklift.cli import main
from sparklift.config import Config
from sparklift.errors import ConfigError
from sparklift.tables import Catalog
from sparklift.tables.backends import DeltaRsBackend
from sparklift.tables.local import read_pandas
from sparklift.tables.maintenance import interval_hours, maintain_table
from sparklift.tables.native import NativeBackend

from .conftest import parquet_files

BACKENDS = ["native", "deltars"]
DATES = [dt.date(2026, 1, 1), dt.date(2026, 1, 2), dt.date(2026, 1, 3)]
APPENDS = 3
SCHEMA = StructType(
    [
        StructField("date", DateType()),
        StructField("user_id", LongType()),
        StructField("gmv", DoubleType()),
    ]
)
REFUSAL = (
    "maintain.vacuum_retention_hours (24) is shorter than maintain.time_travel_hours (168): "
    "VACUUM would delete files that time travel within the window reads; raise the retention "
    "or shorten the window"
)


def make_catalog(spark, config: Config, backend: str) -> Catalog:
    chosen = (
        NativeBackend(spark)
        if backend == "native"
        else DeltaRsBackend(spark, config.tables.target_file_rows)
    )
    return Catalog(spark, config.tables, backend=chosen)


def write_small_appends(spark, catalog: Catalog) -> str:
    """user_activity in APPENDS appends of 20 rows per date: versions 0..APPENDS-1, each
    adding at least one small file per date."""
    for i in range(APPENDS):
        rows = [(d, 100 * i + j, j / 4) for d in DATES for j in range(20)]
        catalog.write_uncontracted(
            "user_activity", spark.createDataFrame(rows, SCHEMA), partition_by=["date"]
        )
    return catalog.path("user_activity")


def rows(catalog: Catalog, version: int | None = None) -> list[tuple]:
    return sorted(tuple(r) for r in catalog.read("user_activity", version=version).collect())


def pandas_rows(path: str, version: int | None = None) -> list[tuple]:
    df = read_pandas(path, version)
    return sorted(zip(df["date"], df["user_id"], df["gmv"], strict=True))


def active_files(path: str) -> set[str]:
    return {uri.removeprefix("file://") for uri in DeltaTable(path).file_uris()}


def plant_orphan(path: str, name: str, age_hours: float) -> str:
    """A data file no commit references (as a failed write leaves), modified age_hours ago."""
    orphan = os.path.join(os.path.dirname(sorted(active_files(path))[0]), name)
    shutil.copy(sorted(active_files(path))[0], orphan)
    mtime = time.time() - age_hours * 3600
    os.utime(orphan, (mtime, mtime))
    return orphan


def log_files(path: str) -> list[str]:
    return sorted(os.listdir(f"{path}/_delta_log"))


def maintain_conf(config: Config, **over: int):
    return config.maintain.model_copy(update=over)


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


def test_compaction_keeps_rows_readers_and_time_travel(spark, config, backend):
    catalog = make_catalog(spark, config, backend)
    path = write_small_appends(spark, catalog)
    files = active_files(path)
    assert len(files) >= APPENDS * len(DATES)
    before, version = rows(catalog), catalog.version("user_activity")
    old_orphan = plant_orphan(path, "part-old-orphan.parquet", age_hours=200)
    new_orphan = plant_orphan(path, "part-new-orphan.parquet", age_hours=1)
    orphan_bytes = os.path.getsize(old_orphan)

    out = maintain_table(catalog, "user_activity", config.maintain)  # the default 168 h

    after = active_files(path)
    assert len(after) == len(DATES) and not after & files
    assert (out["files_before"], out["files_after"]) == (len(files), len(DATES))
    assert (
        out["version_before"] == version < out["version_after"] == catalog.version("user_activity")
    )
    assert out["bytes_after"] == sum(os.path.getsize(f) for f in after)
    # Only the orphan older than the retention is gone; the compacted files stay for time travel.
    assert (out["files_vacuumed"], out["bytes_vacuumed"]) == (1, orphan_bytes)
    assert not os.path.exists(old_orphan) and os.path.exists(new_orphan)
    assert parquet_files(path) == files | after | {new_orphan}
    other = make_catalog(spark, config, "deltars" if backend == "native" else "native")
    assert rows(catalog) == rows(other) == pandas_rows(path) == before
    assert rows(catalog, version) == rows(other, version) == pandas_rows(path, version) == before
    assert len(rows(catalog, 1)) == 2 * 20 * len(DATES)


def test_zero_window_vacuum_deletes_the_compacted_files(spark, config, backend):
    catalog = make_catalog(spark, config, backend)
    path = write_small_appends(spark, catalog)
    files, before = active_files(path), rows(catalog)
    conf = maintain_conf(config, time_travel_hours=0, vacuum_retention_hours=0)

    out = maintain_table(catalog, "user_activity", conf)

    after = active_files(path)
    assert out["files_vacuumed"] == len(files) and parquet_files(path) == after
    assert rows(catalog) == rows(catalog, out["version_after"]) == pandas_rows(path) == before
    again = maintain_table(catalog, "user_activity", conf)  # nothing left to do
    assert (again["files_after"], again["files_vacuumed"]) == (len(DATES), 0)


def test_retention_shorter_than_window_is_refused_before_anything(spark, config, backend):
    catalog = make_catalog(spark, config, backend)
    path = write_small_appends(spark, catalog)
    plant_orphan(path, "part-old-orphan.parquet", age_hours=200)
    state = catalog.version("user_activity"), log_files(path), parquet_files(path)
    conf = maintain_conf(config, vacuum_retention_hours=24)
    with pytest.raises(ConfigError) as refused:
        maintain_table(catalog, "user_activity", conf)
    assert str(refused.value) == REFUSAL
    assert (catalog.version("user_activity"), log_files(path), parquet_files(path)) == state


def test_a_window_longer_than_the_table_keeps_tombstones_is_refused(spark, config, backend):
    """A checkpoint drops tombstones older than delta.deletedFileRetentionDuration, and
    VACUUM then deletes their files whatever its retention: a longer window is refused."""
    catalog = make_catalog(spark, config, backend)
    path = write_small_appends(spark, catalog)
    spark.sql(
        f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES "
        "('delta.deletedFileRetentionDuration' = 'interval 2 days')"
    )
    state = catalog.version("user_activity"), parquet_files(path)
    with pytest.raises(ConfigError) as refused:
        maintain_table(catalog, "user_activity", maintain_conf(config))
    assert str(refused.value).startswith(
        "table user_activity: maintain.time_travel_hours (168) is longer than its "
        "delta.deletedFileRetentionDuration (interval 2 days = 48 h)"
    )
    assert (catalog.version("user_activity"), parquet_files(path)) == state
    fits = maintain_conf(config, time_travel_hours=48, vacuum_retention_hours=48)
    assert maintain_table(catalog, "user_activity", fits)["version_after"] > state[0]


@pytest.mark.parametrize(
    "text, hours",
    [("interval 1 weeks", 168), ("interval 36 hours", 36), ("INTERVAL 2 DAYS", 48),
     ("interval 90 minutes", 1.5), ("interval 1 week 2 days", 216), ("1 fortnight", None),
     ("soon", None), ("interval 3", None)],
)  # fmt: skip
def test_delta_interval_properties_in_hours(text, hours):
    assert interval_hours(text) == hours


@pytest.mark.e2e
def test_cli_maintains_every_existing_table_or_the_named_ones(spark, config, backend, capsys):
    catalog = make_catalog(spark, config, backend)
    write_small_appends(spark, catalog)
    zones = spark.createDataFrame(
        [(f"z{i}", "r", True) for i in range(5)], "zone_id string, region string, eligible boolean"
    )
    catalog.write_uncontracted("zones", zones)
    catalog.write_uncontracted("zones", zones)
    sets = ["--set", f"tables.base_path={config.tables.base_path}"]
    sets += ["--set", f"tables.backend={backend}"]

    assert main(["maintain", *sets]) == 0
    out = json.loads(capsys.readouterr().out)
    assert sorted(out["tables"]) == ["user_activity", "zones"]
    assert out["tables"]["user_activity"]["files_after"] == len(DATES)
    assert out["tables"]["zones"]["files_after"] == 1
    assert (out["time_travel_hours"], out["vacuum_retention_hours"]) == (168, 168)

    named = ["--table", "zones,user_activity", "--table", "zones", "--set", "maintain.vacuum=false"]
    assert main(["maintain", *sets, *named]) == 0
    out = json.loads(capsys.readouterr().out)["tables"]
    assert list(out) == ["zones", "user_activity"]  # compact already: nothing to do
    assert all(t["version_after"] == t["version_before"] for t in out.values())
    assert main(["maintain", *sets, "--table", "geo_results"]) == 3
    assert main(["maintain", *sets, "--table", "nope"]) == 2
    version = catalog.version("zones")
    assert main(["maintain", *sets, "--set", "maintain.vacuum_retention_hours=24"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {REFUSAL}"
    assert catalog.version("zones") == version
    # The last table keeps tombstones 2 days: refused before the first is touched.
    write_small_appends(spark, catalog)  # something for a compaction to do, in both
    catalog.write_uncontracted("zones", zones)
    path = catalog.path("zones")
    spark.sql(
        f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES "
        "('delta.deletedFileRetentionDuration' = 'interval 2 days')"
    )
    before = catalog.version("user_activity"), catalog.version("zones")
    assert main(["maintain", *sets, "--table", "user_activity,zones"]) == 2
    assert "table zones: maintain.time_travel_hours (168) is longer" in capsys.readouterr().err
    assert (catalog.version("user_activity"), catalog.version("zones")) == before
