"""A partition's verdicts hold for the table version its checks read: a later commit that
adds rows to it makes them stale (read on its run date as unchecked, never a fall-back,
naming the commit), a compaction does not, and a new check makes them current again."""

from __future__ import annotations

import datetime as dt
import shutil

import pandas as pd
import pytest

from sparklift.config import load_config
from sparklift.config.models import FallbackConfig
from sparklift.errors import InputError
from sparklift.jobs import JobContext
from sparklift.jobs import fallback as fallback_job
from sparklift.jobs.fallback import Partition, changed, choose, verdicts
from sparklift.tables.changes import table_id
from sparklift.tables.maintenance import optimize
from tests.test_quality import activity, check, warehouse

DAY = dt.date(2026, 9, 14)
BEFORE = DAY - dt.timedelta(days=1)
BACK = FallbackConfig(max_age_days=1)


def late_rows(day: dt.date) -> pd.DataFrame:
    """Ten users of ``day`` not in its partition yet."""
    return activity(day, 10, seed=9).assign(user_id=lambda d: d["user_id"] + 1000)


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
        return changed(ctx, "user_activity", "date", versions)

    optimize(catalog, "user_activity")  # a new version, no row changed: both still hold
    assert catalog.version("user_activity") == checked + 1 and stale() == {}

    # A re-run upstream appends rows to the earlier day after it was checked.
    catalog.write("user_activity", spark.createDataFrame(late_rows(BEFORE)))
    late = catalog.version("user_activity")
    why = f"rows changed after its check of table version {checked}: version {late} (WRITE)"
    assert stale() == {BEFORE: why}
    assert choose(ctx, "user_activity", "date", BACK, "k") == Partition(DAY)

    # Then the run date's: read as unchecked, with a warning (checks gate where they run).
    catalog.write("user_activity", spark.createDataFrame(late_rows(DAY)))
    assert choose(ctx, "user_activity", "date", None, "k") == Partition(DAY)
    assert f"user_activity of {DAY}: rows changed after its check" in caplog.text
    assert "reading it as unchecked" in caplog.text

    # The run date's checked again, and failing: the changed earlier day is no fall-back.
    catalog.write("user_activity", spark.createDataFrame(late_rows(DAY)))  # keys twice
    failing = catalog.version("user_activity")
    assert check(wh, DAY) == 2
    with pytest.raises(InputError) as e:
        choose(ctx, "user_activity", "date", BACK, "k")
    assert str(e.value).startswith(f"user_activity of {DAY} failed its checks (unique_key")
    assert str(e.value).endswith(
        f"no earlier partition since {BEFORE} passed its checks (k.max_age_days 1); passed "
        f"over, as changed since checked: {BEFORE}: {why}"
    )

    assert check(wh, BEFORE) == 0  # checked again: a good fall-back again
    part = choose(ctx, "user_activity", "date", BACK, "k")
    assert part.day == BEFORE and part.fallback["why"].startswith(
        f"user_activity of {DAY} failed its checks (unique_key"
    )

    # The failed run date written again but not checked again: still refused (its rows may
    # be as bad as before), and the message says its verdict is older than its rows.
    more = late_rows(DAY).assign(user_id=lambda d: d["user_id"] + 1000)
    catalog.write("user_activity", spark.createDataFrame(more))
    again = catalog.version("user_activity")
    with pytest.raises(InputError) as e:
        choose(ctx, "user_activity", "date", None, "k")
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
    assert changed(ctx, "user_activity", "date", versions) == dict.fromkeys(
        (BEFORE, DAY), recreated
    )
    with pytest.raises(InputError, match="passed over, as changed since checked"):
        choose(ctx, "user_activity", "date", BACK, "k")
    versions = {BEFORE: (checked, None)}  # checked before ids were recorded: as it was

    def cleaned(*args):  # the log's old commits cleaned up: nothing can be told
        raise FileNotFoundError(args[1])

    monkeypatch.setattr(fallback_job, "data_changes", cleaned)
    assert changed(ctx, "user_activity", "date", versions) == {
        BEFORE: f"its check read table version {checked}; the log no longer holds the commits since"
    }
