"""A partition's verdicts hold for the table version its checks read: a later commit that
adds rows to it makes them stale (read on its run date as unchecked, never a fall-back,
naming the commit), a compaction does not, and a new check makes them current again. A
fall-back must have passed its checks; a run date missing when checked is not ready."""

from __future__ import annotations

import datetime as dt
import shutil

import pandas as pd
import pytest

from sparklift.config import load_config
from sparklift.config.models import FallbackConfig
from sparklift.contracts import contract
from sparklift.errors import InputError, InputNotReadyError
from sparklift.jobs import JobContext
from sparklift.jobs import fallback as fallback_job
from sparklift.jobs import pipeline as pipeline_job
from sparklift.jobs.fallback import Partition, changed, choose, verdicts
from sparklift.pipeline.plan import CHECK, Step
from sparklift.tables import Catalog
from sparklift.tables.changes import ANY_VALUE, table_id, touching
from sparklift.tables.maintenance import optimize
from sparklift.tables.schema import encode_partition_value
from tests.test_quality import activity, check, warehouse

DAY = dt.date(2026, 9, 14)
BEFORE = DAY - dt.timedelta(days=1)
BACK = FallbackConfig(max_age_days=1)


def late_rows(day: dt.date) -> pd.DataFrame:
    """Ten users of ``day`` not in its partition yet."""
    return activity(day, 10, seed=9).assign(user_id=lambda d: d["user_id"] + 1000)


def pick(ctx: JobContext, fallback: FallbackConfig | None, version: int | None = None) -> Partition:
    """The partition of user_activity to read, at ``version`` (default: the latest)."""
    v = ctx.catalog.version("user_activity") if version is None else version
    return choose(ctx, "user_activity", "date", fallback, "k", v)  # type: ignore[arg-type]


def test_a_verdict_is_stale_once_its_partition_s_rows_change(
    spark, tmp_path, capsys, monkeypatch, caplog
):
    wh = tmp_path / "wh"
    catalog = warehouse(spark, wh)
    rows = activity(DAY, 200, seed=2)
    for part in (activity(BEFORE, 200, seed=1), rows[:100], rows[100:]):  # DAY to compact
        catalog.write("user_activity", spark.createDataFrame(part))
    assert check(wh, BEFORE) == 0 and check(wh, DAY) == 0, capsys.readouterr().err
    checked = catalog.version("user_activity")
    first_id = table_id(catalog.path("user_activity"))
    ctx = JobContext(spark, load_config(None, [f"tables.base_path={wh}"]), catalog, DAY)

    def stale() -> dict[dt.date, str]:
        failed, versions = verdicts(ctx, "user_activity", BEFORE)
        assert failed == {} and versions == dict.fromkeys((BEFORE, DAY), (checked, first_id))
        return changed(ctx, "user_activity", "date", versions, catalog.version("user_activity"))

    optimize(catalog, "user_activity")  # a new version, no row changed: both still hold
    assert catalog.version("user_activity") == checked + 1 and stale() == {}

    # A re-run upstream appends rows to the earlier day after it was checked.
    catalog.write("user_activity", spark.createDataFrame(late_rows(BEFORE)))
    late = catalog.version("user_activity")
    why = f"rows changed after its check of table version {checked}: version {late} (WRITE)"
    assert stale() == {BEFORE: why}
    assert pick(ctx, BACK) == Partition(DAY)

    # Then the run date's: read as unchecked, with a warning (checks gate where they run).
    catalog.write("user_activity", spark.createDataFrame(late_rows(DAY)))
    assert pick(ctx, None) == Partition(DAY)
    assert f"user_activity of {DAY}: rows changed after its check" in caplog.text
    assert "reading it as unchecked" in caplog.text

    # The run date's checked again, and failing: the changed earlier day is no fall-back.
    catalog.write("user_activity", spark.createDataFrame(late_rows(DAY)))  # keys twice
    failing = catalog.version("user_activity")
    assert check(wh, DAY) == 2
    # A job that pinned the version before these rows, checked after it read them: the
    # verdict is on other rows than the job's.
    _, versions = verdicts(ctx, "user_activity", BEFORE)
    assert changed(ctx, "user_activity", "date", {DAY: versions[DAY]}, failing - 1) == {
        DAY: f"its check read table version {failing}, and rows changed after version "
        f"{failing - 1} read here: version {failing} (WRITE)"
    }
    with pytest.raises(InputError) as e:
        pick(ctx, BACK)
    assert str(e.value).startswith(f"user_activity of {DAY} failed its checks (unique_key")
    assert str(e.value).endswith(
        f"no earlier partition since {BEFORE} passed its checks (k.max_age_days 1); passed "
        f"over, as changed since checked: {BEFORE}: {why}"
    )

    assert check(wh, BEFORE) == 0  # checked again: a good fall-back again
    part = pick(ctx, BACK)
    assert part.day == BEFORE and part.fallback["why"].startswith(
        f"user_activity of {DAY} failed its checks (unique_key"
    )

    # The failed run date written again but not checked again: still refused (its rows may
    # be as bad as before), and the message says its verdict is older than its rows.
    more = late_rows(DAY).assign(user_id=lambda d: d["user_id"] + 1000)
    catalog.write("user_activity", spark.createDataFrame(more))
    again = catalog.version("user_activity")
    with pytest.raises(InputError) as e:
        pick(ctx, None)
    assert (
        f"that verdict is older than its rows (rows changed after its check of table version "
        f"{failing}: version {again} (WRITE)): check it again with sparklift check --table "
        f"user_activity --run-date {DAY}"
    ) in str(e.value)

    # The table deleted and created again at its path with the same rows, its version
    # brought past the checked one (property commits): its versions are another table's.
    copy = str(tmp_path / "copy")
    catalog.read("user_activity").write.parquet(copy)
    shutil.rmtree(catalog.path("user_activity"))
    spark._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()  # as another process would
    catalog.write("user_activity", spark.read.parquet(copy))
    path = catalog.path("user_activity")
    while catalog.version("user_activity") <= late + 1:  # type: ignore[operator]
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('sparklift.test' = 'pad')")
    now = table_id(path)
    _, versions = verdicts(ctx, "user_activity", BEFORE)
    recreated = f"its check read table id {first_id}; the table was created again since (id {now})"
    latest = catalog.version("user_activity")
    assert changed(ctx, "user_activity", "date", versions, latest) == dict.fromkeys(
        (BEFORE, DAY), recreated
    )
    with pytest.raises(InputError, match="passed over, as changed since checked"):
        pick(ctx, BACK)
    versions = {BEFORE: (checked, None)}  # checked before ids were recorded: as it was

    def cleaned(*args):  # the log's old commits cleaned up: nothing can be told
        raise FileNotFoundError(args[1])

    monkeypatch.setattr(fallback_job, "data_changes", cleaned)
    assert changed(ctx, "user_activity", "date", versions, latest) == {
        BEFORE: f"its check read table version {checked}; the log no longer holds the commits "
        f"between it and version {latest}"
    }


def test_a_fall_back_has_passed_its_checks_and_a_day_missing_when_checked_may_land(
    spark, tmp_path, capsys
):
    """Once the table's checks run, an earlier partition without a verdict (its check
    crashed, or never ran) is no fall-back, and the refusal names it. A run date without
    rows when checked (freshness failed) is not ready (3: it may land), not bad (2); without
    a fall-back it is left to the job's own not-ready message. Which days are there is read
    at the version the job reads."""
    wh = tmp_path / "wh"
    catalog: Catalog = warehouse(spark, wh)
    ctx = JobContext(spark, load_config(None, [f"tables.base_path={wh}"]), catalog, DAY)
    catalog.write("user_activity", spark.createDataFrame(activity(BEFORE, 200, seed=1)))
    before_day = catalog.version("user_activity")
    assert check(wh, DAY) == 3, capsys.readouterr().err  # nothing of DAY yet
    assert pick(ctx, None) == Partition(DAY)
    with pytest.raises(InputNotReadyError) as missing:
        pick(ctx, BACK)
    assert str(missing.value).startswith(f"user_activity has no rows for date {DAY}")
    assert str(missing.value).endswith(f"passed over, never checked: {BEFORE}")

    rows = activity(DAY, 200, seed=2)
    catalog.write("user_activity", spark.createDataFrame(pd.concat([rows, rows[:5]])))
    assert check(wh, DAY) == 2  # five keys twice
    with pytest.raises(InputError, match=f"passed over, never checked: {BEFORE}$"):
        pick(ctx, BACK)
    assert check(wh, BEFORE) == 0
    part = pick(ctx, BACK)
    assert part.day == BEFORE and part.fallback["why"].startswith(
        f"user_activity of {DAY} failed its checks (unique_key"
    )
    # At the version before DAY's rows landed, DAY is missing there (not failed).
    part = pick(ctx, BACK, before_day)
    assert (
        part.day == BEFORE and part.fallback["why"] == f"user_activity has no rows for date {DAY}"
    )


def test_a_pipeline_checks_again_a_table_created_again_or_not_partitioned_by_date(
    spark, tmp_path, capsys
):
    """A pipeline re-run skips a check that succeeded unless its verdict no longer holds.
    ``zones`` deleted and created again with the same rows is back at the version checked,
    but it is another table (its id). ``user_activity`` delivered by an upstream writer
    that does not partition it by date: the log names no date for a commit's rows, so late
    rows of any day, the run date's or another's, may have changed the run date's; a
    compaction has not. A later check of the date that failed makes the verdict stale too."""
    wh = tmp_path / "wh"
    catalog = warehouse(spark, wh)
    ctx = JobContext(spark, load_config(None, [f"tables.base_path={wh}"]), catalog, DAY)
    upstream = spark.createDataFrame(activity(DAY, 200, seed=2), contract("user_activity").schema)
    upstream.write.format("delta").save(catalog.path("user_activity"))  # no partitions
    assert catalog.partition_columns("user_activity") == []
    assert check(wh, DAY, "zones") == 0 and check(wh, DAY) == 0, capsys.readouterr().err
    zones, users = Step(CHECK, "zones"), Step(CHECK, "user_activity")
    assert not pipeline_job._stale(ctx, zones) and not pipeline_job._stale(ctx, users)
    checked = catalog.version("user_activity")

    version, rows = catalog.version("zones"), catalog.read("zones").toPandas()
    shutil.rmtree(catalog.path("zones"))
    spark._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()  # as another process would
    catalog.write("zones", spark.createDataFrame(rows))
    assert catalog.version("zones") == version and pipeline_job._stale(ctx, zones)

    def append(part: pd.DataFrame) -> None:
        late = spark.createDataFrame(part, contract("user_activity").schema)
        late.write.format("delta").mode("append").save(catalog.path("user_activity"))

    append(late_rows(DAY))
    assert pipeline_job._stale(ctx, users)
    _, versions = verdicts(ctx, "user_activity", DAY)
    assert changed(ctx, "user_activity", "date", versions, checked + 1) == {
        DAY: f"rows changed after its check of table version {checked}: version {checked + 1} "
        "(WRITE)"
    }
    assert check(wh, DAY) == 0 and not pipeline_job._stale(ctx, users)  # checked again
    optimize(catalog, "user_activity")  # no row changed
    assert catalog.version("user_activity") == checked + 2
    assert not pipeline_job._stale(ctx, users)
    append(late_rows(BEFORE))  # another day's rows: the log cannot tell
    assert pipeline_job._stale(ctx, users)
    append(late_rows(DAY))  # the run date's keys twice
    assert check(wh, DAY) == 2 and pipeline_job._stale(ctx, users)  # checked: it failed


def test_the_commits_that_may_have_changed_a_day():
    """A day's own partition's commits and those of no known date (a table not partitioned
    by it), once each in version order; a null date's partition is not the day's."""
    commits = {
        encode_partition_value(DAY): [(4, "WRITE"), (2, "MERGE")],
        encode_partition_value(BEFORE): [(3, "WRITE")],
        None: [(5, "WRITE")],
        ANY_VALUE: [(2, "MERGE"), (1, "DELETE")],
    }
    assert touching(commits, encode_partition_value(DAY)) == [
        (1, "DELETE"),
        (2, "MERGE"),
        (4, "WRITE"),
    ]
    assert touching({None: [(5, "WRITE")]}, encode_partition_value(DAY)) == []
