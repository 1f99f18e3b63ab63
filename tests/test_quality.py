"""Data quality checks: the anomaly rules against direct computations, and ``sparklift
check`` on small tables with planted faults, counted independently with pandas."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sparklift.cli import main
from sparklift.config import FAULT_KINDS, load_config
from sparklift.contracts import contract
from sparklift.errors import TableConflictError
from sparklift.jobs import check as check_job
from sparklift.quality import rules
from sparklift.quality.metrics import (
    BITMAP_BITS,
    bitmaps_fit,
    distinct_by_bitmaps,
    duplicate_keys,
    duplicate_keys_by,
    expressions,
    with_orphan_flags,
)
from sparklift.quality.spec import table_spec
from sparklift.tables import Catalog
from sparklift.tables.local import read_pandas

DAY = dt.date(2026, 9, 14)


def conf(*sets: str):
    return load_config(None, list(sets)).quality


def test_z_rule_leaves_the_value_under_test_out_of_its_window():
    """Today's row count against the 14 days before: numpy's mean and sample SD of those
    days only (with today in its own window the z of a drop would shrink)."""
    q = conf("quality.season_days=0")
    spec = table_spec("user_activity", q)
    rng = np.random.default_rng(0)
    counts = 1000 + rng.normal(0, 20, 30)
    history = {DAY - dt.timedelta(days=k): {"row_count": float(counts[k])} for k in range(1, 30)}
    today = {"row_count": 900.0}
    got = {r.check_name: r for r in rules.anomaly_checks(spec, today, history, DAY, q)}
    r = got["anomaly:row_count"]
    window = counts[1:15]
    z = abs(900 - window.mean()) / window.std(ddof=1)
    assert r.statistic == pytest.approx(z, rel=1e-12) and r.status == rules.FAIL
    assert r.severity == "warn"
    # A day without rows (its freshness failed, its anomaly checks skipped) is not trained on.
    empty = history | {DAY - dt.timedelta(days=2): {"row_count": 0.0}}
    late = {DAY - dt.timedelta(days=2): {"freshness": "error"}}
    r = rules.anomaly_checks(spec, today, empty, DAY, q, late)[0]
    kept = counts[[1, *range(3, 15)]]
    assert r.statistic == pytest.approx(abs(900 - kept.mean()) / kept.std(ddof=1), rel=1e-12)
    # Too little history: skipped, never passed.
    short = {d: v for d, v in history.items() if d >= DAY - dt.timedelta(days=3)}
    r = rules.anomaly_checks(spec, today, short, DAY, q)[0]
    assert r.status == rules.SKIPPED and "3 past values, 7 needed" in r.message


def test_the_z_bound_keeps_the_false_alarm_rate_of_its_sigmas():
    """Simulated: a normal value after n normal values (their mean and SD estimated) is
    beyond the bound for n in 0.27% of draws, the two-sided tail of 3 sigmas, for every n;
    |z| > 3 itself false-alarms 1.2% of the time with 14 values."""
    rng = np.random.default_rng(7)
    for n in (3, 7, 14, 28):
        past = rng.normal(size=(400_000, n))
        z = np.abs(rng.normal(size=400_000) - past.mean(1)) / past.std(1, ddof=1)
        rate = np.mean(z > rules.z_bound(3.0, n))
        assert rate == pytest.approx(0.0027, abs=4 * np.sqrt(0.0027 / 400_000)), n
        if n == 14:
            assert np.mean(z > 3.0) == pytest.approx(0.012, abs=0.001)


def test_same_weekday_and_relative_change():
    q = conf("quality.same_weekday=true", "quality.relative_change=0.2", "quality.window_days=4",
             "quality.min_history=3", "quality.season_days=0")  # fmt: skip
    assert rules.training_days(DAY, q) == [DAY - dt.timedelta(days=7 * k) for k in range(1, 5)]
    spec = table_spec("user_activity", q)
    # Weekly values 100, 102, 98, 101 on the same weekday; other days far off are ignored.
    history = {DAY - dt.timedelta(days=7 * k): {"row_count": v}
               for k, v in zip(range(1, 5), (100.0, 102.0, 98.0, 101.0), strict=True)}  # fmt: skip
    history |= {DAY - dt.timedelta(days=k): {"row_count": 5000.0} for k in (1, 2, 3)}
    r = rules.anomaly_checks(spec, {"row_count": 99.0}, history, DAY, q)[0]
    assert r.status == rules.PASS and "n 4" in r.threshold
    # A slow series with a large SD: |z| is small, but the relative change catches it.
    noisy = {DAY - dt.timedelta(days=7 * k): {"row_count": v}
             for k, v in zip(range(1, 5), (100.0, 160.0, 40.0, 100.0), strict=True)}  # fmt: skip
    r = rules.anomaly_checks(spec, {"row_count": 130.0}, noisy, DAY, q)[0]
    assert r.statistic < 3 and r.status == rules.FAIL


def test_a_growing_series_without_last_week_s_value_is_no_anomaly():
    """Rows growing 1% a day with noise: today's value on the trend, the same weekday of last
    week missing (its check did not run). Against the value 14 days before, today's change
    is two weeks' growth, and so is what it is compared with: no alarm (compared with one
    week's mean change it would be z of about 7)."""
    rng = np.random.default_rng(3)
    days = [DAY - dt.timedelta(days=k) for k in range(1, 36)]
    trend = {d: 50_000 * 1.01 ** -(DAY - d).days for d in [DAY, *days]}
    history = {d: {"row_count": trend[d] + rng.normal(0, 300)} for d in days}
    del history[DAY - dt.timedelta(days=7)]
    spec = table_spec("user_activity", conf())
    r = rules.anomaly_checks(spec, {"row_count": trend[DAY]}, history, DAY, conf())[0]
    assert r.status == rules.PASS and r.statistic < 2, (r.statistic, r.threshold)
    assert "from 14 days before" in r.threshold


def test_weekly_changes_expose_a_drop_the_weekly_swing_hides():
    """A weekend peak 30% above weekdays: a weekend day at 70% of its usual level is within
    3 sd of the last 14 days' values, but far outside their changes from 7 days before
    (numpy's z of x_t - x_t-7 against the window's). A past day that failed its check is
    left out of the window while the failures are a minority."""
    rng = np.random.default_rng(1)
    today = DAY + dt.timedelta(days=(5 - DAY.weekday()) % 7)  # a Saturday
    assert today.weekday() == 5
    days = [today - dt.timedelta(days=k) for k in range(1, 36)]
    level = {d: 1000 * (1.3 if d.weekday() >= 5 else 1.0) + rng.normal(0, 20) for d in days}
    x = 0.7 * level[today - dt.timedelta(days=7)]
    history = {d: {"row_count": v} for d, v in level.items()}
    failed = {today - dt.timedelta(days=3): {"anomaly:row_count": "warn"}}
    history[today - dt.timedelta(days=3)] = {"row_count": 400.0}  # yesterday's lost feed...
    spec = table_spec("user_activity", conf())
    r = rules.anomaly_checks(spec, {"row_count": x}, history, today, conf(), failed)[0]
    window = [today - dt.timedelta(days=k) for k in range(1, 15) if k != 3]
    changes = np.array([level[d] - level[d - dt.timedelta(days=7)] for d in window])
    z = abs(x - level[today - dt.timedelta(days=7)] - changes.mean()) / changes.std(ddof=1)
    assert r.statistic == pytest.approx(z, rel=1e-12) and z > 10 and r.status == rules.FAIL
    assert "from 7 days before" in r.threshold and "n 13" in r.threshold
    # The same weekday's value 7 days before failed too: the one 14 days before stands in,
    # its change the sum of two weekly changes (twice their mean, sqrt(2) times their sd).
    both = failed | {today - dt.timedelta(days=7): {"anomaly:row_count": "warn"}}
    r = rules.anomaly_checks(spec, {"row_count": x}, history, today, conf(), both)[0]
    window2 = [d for d in window if d != today - dt.timedelta(days=7)]
    changes = np.array([level[d] - level[d - dt.timedelta(days=7)] for d in window2])
    two = x - level[today - dt.timedelta(days=14)]
    z = abs(two - 2 * changes.mean()) / (np.sqrt(2) * changes.std(ddof=1))
    assert r.statistic == pytest.approx(z, rel=1e-12) and r.status == rules.FAIL
    assert "from 14 days before" in r.threshold and "from 14 days before" in r.message
    flat = conf("quality.season_days=0")
    plain = rules.anomaly_checks(spec, {"row_count": x}, history, today, flat, failed)[0]
    values = np.array([level[d] for d in window])
    assert plain.statistic == pytest.approx(abs(x - values.mean()) / values.std(ddof=1))
    assert plain.status == rules.PASS  # the swing's sd hides the drop
    # ...not left out once the failures are half of the window: the change has lasted.
    lasting = {today - dt.timedelta(days=k): {"anomaly:row_count": "warn"} for k in range(1, 8)}
    kept = rules.anomaly_checks(spec, {"row_count": x}, history, today, flat, lasting)[0]
    assert "n 14" in kept.threshold
    with pytest.raises(Exception, match="season_days and same_weekday"):
        conf("quality.same_weekday=true")


def test_population_stability_index_is_the_textbook_sum():
    p, q = [0.5, 0.3, 0.2, 0.0], [0.25, 0.25, 0.25, 0.25]
    direct = sum((a - b) * math.log(a / b) for a, b in zip([0.5, 0.3, 0.2, 1e-4], q, strict=True))
    assert rules.population_stability(p, q) == pytest.approx(direct, rel=1e-12)
    assert rules.population_stability(q, q) == 0.0


def test_the_psi_of_a_small_partition_alarms_at_the_z_rules_rate():
    """Days of 60 rows (a real log's: CDNOW's) binned at a reference day's deciles: a fixed
    PSI bound of 0.25 fails a fifth of the clean days (the textbook PSI, numpy, on the same
    draws), the check about 0.27% of them (the 3-sigma rule's tail; at most 1% asserted),
    while gmv doubled still fails nearly always. 300 rows: the configured 0.25 applies."""
    q = conf()
    spec = table_spec("user_activity", q)
    rng = np.random.default_rng(11)
    edges = np.quantile(rng.lognormal(3.5, 0.8, 60), np.arange(1, 10) / 10)
    fixed = {f"psi_edge:gmv:{i}": float(e) for i, e in enumerate(edges, 1)}

    def binned(n: int, scale: float = 1.0) -> np.ndarray:
        values = scale * rng.lognormal(3.5, 0.8, n)
        return np.bincount(np.searchsorted(edges, values, side="right"), minlength=10)

    def check(today: np.ndarray, past: list[np.ndarray]) -> rules.Result:
        def metrics(b: np.ndarray) -> dict[str, float]:
            bins = {f"psi_bin:gmv:{i}": float(v) for i, v in enumerate(b)}
            return {"row_count": float(b.sum()), **bins, **fixed}

        history = {DAY - dt.timedelta(days=k + 1): metrics(b) for k, b in enumerate(past)}
        out = rules.anomaly_checks(spec, metrics(today), history, DAY, q)
        return next(r for r in out if r.check_name == "anomaly:psi:gmv")

    def textbook(today: np.ndarray, past: list[np.ndarray]) -> float:
        p, w = np.maximum(today / today.sum(), 1e-4), sum(past) / sum(past).sum()
        w = np.maximum(w, 1e-4)
        return float(np.sum((p - w) * np.log(p / w)))

    clean = [(binned(60), [binned(60) for _ in range(14)]) for _ in range(1500)]
    alarms = [check(t, p).status == rules.FAIL for t, p in clean]
    assert np.mean([textbook(t, p) > 0.25 for t, p in clean]) > 0.15
    assert np.mean(alarms) <= 0.01
    shifted = [check(binned(60, 2.0), [binned(60) for _ in range(14)]) for _ in range(300)]
    assert np.mean([r.status == rules.FAIL for r in shifted]) >= 0.85
    assert (
        shifted[0].threshold.startswith("<= 0.45") and "60 rows against 840" in shifted[0].threshold
    )
    large = check(binned(300), [binned(300) for _ in range(14)])
    assert large.threshold == "<= 0.25"


def activity(day: dt.date, n: int, seed: int, gmv_scale: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "date": day, "user_id": np.arange(n, dtype="int64"),
        "zone_id": rng.integers(1, 6, n).astype("int32"),
        "visits": rng.poisson(2, n).astype("int64"), "orders": rng.poisson(0.3, n).astype("int64"),
        "items": rng.poisson(0.6, n).astype("int64"),
        "gmv": rng.lognormal(3, 1, n) * gmv_scale,
        "tenure_days": rng.integers(0, 900, n).astype("int32"),
        "prior_orders_28d": rng.poisson(1, n).astype("int32"),
        "prior_gmv_28d": rng.lognormal(3, 1, n),
    })  # fmt: skip


def warehouse(spark, wh: Path) -> Catalog:
    """A warehouse with five zones."""
    catalog = Catalog(spark, load_config(None, [f"tables.base_path={wh}"]).tables)
    zones = pd.DataFrame({"zone_id": np.arange(1, 6, dtype="int32"), "region": "north",
                          "eligible": True})  # fmt: skip
    catalog.write("zones", spark.createDataFrame(zones))
    return catalog


def check(wh: Path, day: dt.date, table: str = "user_activity") -> int:
    sets = ["--set", f"tables.base_path={wh}", "--set", "quality.min_history=2",
            "--set", "quality.window_days=3"]  # fmt: skip
    return main(["check", "--run-date", str(day), "--table", table, *sets])


def results(wh: Path, day: dt.date) -> pd.DataFrame:
    r = read_pandas(str(wh / "quality_results"))
    return r[pd.to_datetime(r["run_date"]).dt.date == day].set_index("check_name")


def test_planted_faults_fail_their_checks_with_pandas_counts(spark, tmp_path, capsys):
    wh = tmp_path / "wh"
    catalog = warehouse(spark, wh)
    day = DAY
    bad = activity(day, 400, seed=1).astype({"zone_id": "Int32"})
    bad.loc[[3, 7, 11], "zone_id"] = pd.NA
    bad.loc[[20, 21], "zone_id"] = 99  # not a zone
    bad.loc[30, "orders"] = -1
    bad.loc[31, "gmv"] = np.nan
    bad = pd.concat([bad, bad.iloc[[40, 41]]], ignore_index=True)  # two keys twice
    records = bad.astype(object).where(bad.notna() | bad.columns.isin(["gmv"]), None)
    frame = spark.createDataFrame(records.to_dict("records"), contract("user_activity").schema)
    catalog.write("user_activity", frame)
    capsys.readouterr()
    assert check(wh, day) == 2
    err = capsys.readouterr().err
    assert "table user_activity of date = " in err and "not_null:zone_id: 3 nulls" in err
    r = results(wh, day)
    expected = {
        "not_null:zone_id": bad["zone_id"].isna().sum(),
        "unique_key": bad.duplicated(["date", "user_id"]).sum(),
        "reference:zone_id": (bad["zone_id"].notna() & ~bad["zone_id"].isin(range(1, 6))).sum(),
        "range:orders": (bad["orders"] < 0).sum(),
        "range:gmv": (~np.isfinite(bad["gmv"]) | (bad["gmv"] < 0)).sum(),
        "range:visits": 0,
    }
    for name, n in expected.items():
        assert r.loc[name, "statistic"] == n, name
        assert r.loc[name, "status"] == ("fail" if n else "pass"), name
    assert r.loc["freshness", "statistic"] == len(bad) and r.loc["schema", "status"] == "pass"
    m = read_pandas(str(wh / "quality_metrics")).set_index("metric")["value"]
    assert m["mean:gmv"] == pytest.approx(bad["gmv"].mean(), rel=1e-12)  # pandas skips NaN
    assert m["null_count:zone_id"] == 3 and m["row_count"] == len(bad)
    assert r.loc["anomaly:row_count", "status"] == "skipped"  # no history yet
    # One pass for the sums: their plan scans the partition once (and the zones once) and
    # is compiled (whole-stage code generation, `*(n) HashAggregate`); the sketch (zone_id's
    # distinct count), which Spark cannot compile, is a second aggregation of its own.
    spec = table_spec("user_activity", conf())
    df = catalog.read("user_activity")
    joined, flags = with_orphan_flags(df, {"zone_id": catalog.read("zones").select("zone_id")})
    metrics = expressions(spec, df, {"gmv": [1.0, 2.0]}, 10, flags)
    sums = joined.agg(*metrics.sums)
    text = sums._jdf.queryExecution().executedPlan().toString()
    assert len(re.findall(r"[+:]- (?:\*\(\d+\) )?\w*Scan ", text)) == 2, text
    sums.collect()  # the adaptive plan is final (with its code generation stages) once run
    final = sums._jdf.queryExecution().executedPlan().toString().split("Initial Plan")[0]
    assert re.search(r"\*\(\d+\) HashAggregate\(keys=\[\], functions=\[count", final), final
    assert df.agg(*metrics.sketches).columns == ["distinct:zone_id"]

    # The next day has no partition: freshness fails, not ready (3: it may land later); an
    # unknown table is refused.
    assert check(wh, day + dt.timedelta(days=1)) == 3
    assert "freshness: no rows with date = the run date" in capsys.readouterr().err
    # A table from an older release without a contract column (a table without a date
    # partition: checked whole): the schema check names it, and the checks of that column
    # are skipped, not passed.
    old = pd.DataFrame({"voucher_id": ["V01", "V02"], "face_value": [5.0, -2.0],
                        "max_quantity": [None, 10]})  # fmt: skip
    catalog.write_uncontracted("vouchers", spark.createDataFrame(old))
    assert check(wh, day, "vouchers") == 2
    r = results(wh, day)
    r = r[r["table_name"] == "vouchers"]
    assert (
        r.loc["schema", "status"] == "fail"
        and "missing columns ['active']" in r.loc["schema", "message"]
    )
    assert r.loc["not_null:active", "status"] == "skipped"
    assert r.loc["range:face_value", "statistic"] == 1  # -2.0
    assert main(["check", "--table", "nope", "--set", f"tables.base_path={wh}"]) == 2
    assert "no contract and no entry in quality.tables" in capsys.readouterr().err


def test_a_job_refusing_its_input_records_the_failed_check(spark, tmp_path, capsys):
    """features refuses a negative count with the check's name and an example row, and
    records that check as failed in quality_results, beside the other checks of the day
    (sparklift check's, which passed before the bad row arrived)."""
    wh = tmp_path / "wh"
    catalog = warehouse(spark, wh)
    good = activity(DAY, 300, seed=3)
    catalog.write("user_activity", spark.createDataFrame(good))
    assert check(wh, DAY) == 0
    before = results(wh, DAY)
    bad = good.iloc[[5]].assign(user_id=10_000, visits=-2)
    catalog.write("user_activity", spark.createDataFrame(bad))
    capsys.readouterr()
    code = main(["features", "--run-date", str(DAY), "--set", f"tables.base_path={wh}"])
    assert code == 2
    err = capsys.readouterr().err
    assert (
        f"table user_activity of {DAY}: check range:visits failed: 1 values not >= 0 or not "
        f"finite, e.g. at date={DAY}, zone_id={bad['zone_id'].iloc[0]}, user_id=10000 "
        "(visits=-2) (recorded in quality_results version " in err
    )
    after = results(wh, DAY)
    assert sorted(after.index) == sorted(before.index)  # the day's other checks kept
    assert (
        after.loc["range:visits", "status"] == "fail"
        and after.loc["range:visits", "statistic"] == 1
    )
    assert after.loc["range:visits", "message"].endswith("(found by sparklift features)")
    same = [c for c in before.index if c != "range:visits"]
    assert (after.loc[same, "status"] == before.loc[same, "status"]).all()
    assert not (wh / "zone_day_features").exists()  # nothing written


def test_a_check_that_loses_a_commit_race_writes_again(spark, tmp_path, capsys, monkeypatch):
    """Two jobs checking the same partition at once (features and user-history, side by
    side under Airflow): the one whose commit conflicts writes again on the winner's
    version; after three lost races it exits 4 (a conflict, which the DAG retries)."""
    wh = tmp_path / "wh"
    catalog = warehouse(spark, wh)
    catalog.write("user_activity", spark.createDataFrame(activity(DAY, 200, seed=5)))
    real, calls = check_job.write_records, []

    def racing(catalog, table, records, where):
        calls.append(table)
        if calls.count(table) == 1:  # the other job's check commits the same rows first ...
            real(catalog, table, records, where)
            raise TableConflictError(f"table {table}: a concurrent write conflicts")  # ... so
        return real(catalog, table, records, where)  # this job's commit conflicted

    monkeypatch.setattr(check_job, "write_records", racing)
    assert check(wh, DAY) == 0, capsys.readouterr().err
    assert calls == ["quality_metrics"] * 2 + ["quality_results"] * 2
    r = results(wh, DAY)
    assert r.index.is_unique and (r["status"] == "pass").sum() > 5
    assert catalog.version("quality_results") == 1  # the other job's write, then this one's

    def losing(catalog, table, records, where):
        calls.append(table)
        raise TableConflictError(f"table {table}: a concurrent write conflicts")

    calls.clear()
    capsys.readouterr()
    monkeypatch.setattr(check_job, "write_records", losing)
    assert check(wh, DAY) == 4
    assert calls == ["quality_metrics"] * 3
    err = capsys.readouterr().err
    assert err.count("changed while this job wrote to it") == 2  # two retries, then the error
    assert "error: table quality_metrics: a concurrent write conflicts" in err


def test_history_flags_a_half_feed_and_a_shifted_distribution(spark, tmp_path, capsys, monkeypatch):
    """Three normal days (the first one fixes the PSI bins), then a day with half the rows
    and its gmv doubled: row count and PSI anomalies, logged as warnings (exit 0)."""
    wh = tmp_path / "wh"
    catalog = warehouse(spark, wh)
    days = [DAY - dt.timedelta(days=k) for k in range(3, -1, -1)]
    for i, day in enumerate(days):
        last = day == DAY
        frame = activity(day, 250 if last else 500 + 7 * i, seed=10 + i,
                         gmv_scale=2.0 if last else 1.0)  # fmt: skip
        catalog.write("user_activity", spark.createDataFrame(frame))
        capsys.readouterr()
        assert check(wh, day) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 250
    # (gmv's mean doubled is a z of about 14: within the 3-sigma bound of 22 that 3 past
    # values allow; the PSI sees the shift.)
    assert set(summary["warnings"]) == {"anomaly:row_count", "anomaly:psi:gmv"}
    r = results(wh, DAY)
    counts = np.array([500 + 7 * i for i in range(3)], float)
    z = abs(250 - counts.mean()) / counts.std(ddof=1)
    assert r.loc["anomaly:row_count", "statistic"] == pytest.approx(z)
    # Edges fixed on the first day: numpy's deciles of that day's gmv (inverted CDF, as
    # percentile_approx at this accuracy), kept by every later day.
    frames = [activity(d, 250 if d == DAY else 500 + 7 * i, seed=10 + i,
                       gmv_scale=2.0 if d == DAY else 1.0) for i, d in enumerate(days)]  # fmt: skip
    edges = np.quantile(frames[0]["gmv"], np.arange(1, 10) / 10, method="inverted_cdf")
    m = read_pandas(str(wh / "quality_metrics")).assign(day=lambda f: pd.to_datetime(
        f["run_date"]).dt.date)  # fmt: skip
    stored = m[(m["day"] == DAY) & m["metric"].str.startswith("psi_edge:gmv:")]
    stored = stored.assign(i=stored["metric"].str.rsplit(":", n=1).str[1].astype(int))
    np.testing.assert_allclose(stored.sort_values("i")["value"], edges, rtol=1e-12)
    binned = m[m["metric"].str.startswith("psi_bin:gmv:")]
    assert sorted(set(binned["day"])) == days[1:]  # the first day set the edges, no bins
    # The PSI from numpy's bins of the generated values: today against the two days before.
    bins = [np.bincount(np.searchsorted(edges, f["gmv"], side="right"), minlength=10)
            for f in frames]  # fmt: skip
    today, pooled = bins[-1] + 0.5, bins[1] + bins[2] + 0.5  # every bin's count plus a half
    p, q = today / today.sum(), pooled / pooled.sum()
    assert r.loc["anomaly:psi:gmv", "statistic"] == pytest.approx(np.sum((p - q) * np.log(p / q)))

    # The day before re-delivered with ten times the rows, and its check killed between its
    # two commits (metrics written, verdicts not): today's check does not train on those
    # metrics (they have no verdicts of their run), so its z is that of the two days left.
    catalog.write("user_activity", spark.createDataFrame(activity(days[2], 5000, seed=99)),
                  mode="replace", replace_where={"date": [days[2]]})  # fmt: skip
    original = check_job.write_records

    def killed(catalog, table, *rest):
        if table == "quality_results":
            raise SystemExit("killed between the two commits")
        return original(catalog, table, *rest)

    monkeypatch.setattr(check_job, "write_records", killed)
    with pytest.raises(SystemExit):
        check(wh, days[2])
    monkeypatch.undo()
    stored = read_pandas(str(wh / "quality_metrics"))
    assert (stored.query("metric == 'row_count'")["value"] == 5000).any()  # written
    assert check(wh, DAY) == 0
    two = counts[:2]  # their sd is under the floor of 1% of their mean
    z = abs(250 - two.mean()) / max(two.std(ddof=1), 0.01 * two.mean())
    assert results(wh, DAY).loc["anomaly:row_count", "statistic"] == pytest.approx(z)
    # Delivered again with 510 rows and checked by two jobs at once that read one table
    # version, whose commits interleaved: the other job's metrics landed after this one's
    # verdicts. They measured the same rows, so today's check trains on them: its z is
    # that of three days again.
    catalog.write("user_activity", spark.createDataFrame(activity(days[2], 510, seed=98)),
                  mode="replace", replace_where={"date": [days[2]]})  # fmt: skip
    assert check(wh, days[2]) == 0
    part = {"table_name": "user_activity", "run_date": [days[2]]}
    mine = catalog.read("quality_metrics", where=[(k, "in" if k == "run_date" else "=", v)
                                                  for k, v in part.items()])  # fmt: skip
    other = mine.withColumn("computed_at", mine["computed_at"] + dt.timedelta(seconds=1))
    other = spark.createDataFrame(other.collect(), mine.schema)
    catalog.write("quality_metrics", other, mode="replace", replace_where=part)
    assert check(wh, DAY) == 0
    three = np.array([*counts[:2], 510])
    z = abs(250 - three.mean()) / max(three.std(ddof=1), 0.01 * three.mean())
    assert results(wh, DAY).loc["anomaly:row_count", "statistic"] == pytest.approx(z)

    # The next day has not landed: freshness fails and the anomaly checks are skipped (no
    # rows is lateness, not an anomaly), so it is not ready (3) even with anomalies errors.
    late = DAY + dt.timedelta(days=1)
    sets = ["--set", f"tables.base_path={wh}", "--set", "quality.min_history=2", "--set",
            "quality.window_days=3", "--set", "quality.severity.anomaly=error"]  # fmt: skip
    assert main(["check", "--run-date", str(late), "--table", "user_activity", *sets]) == 3
    r = results(wh, late)
    assert r.loc["freshness", "status"] == rules.FAIL
    anomalies = r[r.index.str.startswith("anomaly:")]
    assert len(anomalies) > 0 and set(anomalies["status"]) == {rules.SKIPPED}
    assert set(anomalies["message"]) == {"no rows for the run date (see freshness)"}


def test_a_partition_delivered_twice_in_a_tables_first_days_is_not_trained_on(
    spark, tmp_path, capsys
):
    """Day 2 of a new table delivered twice: its unique_key check (error) fails while its
    anomaly checks still lack history. Day 5, with half the rows, is compared with days 1, 3
    and 4 only (numpy's z), whether checked alone (the verdicts read back with their
    severities) or in one pass from day 1 (``--start``); with day 2 it would pass (z 1.5)."""
    wh = tmp_path / "wh"
    catalog = warehouse(spark, wh)
    first = DAY - dt.timedelta(days=4)
    days = [first + dt.timedelta(days=k) for k in range(5)]
    counts = {days[0]: 500, days[2]: 507, days[3]: 514, days[4]: 250}
    for i, day in enumerate(days):
        once = activity(day, counts.get(day, 500), seed=20 + i)
        frame = pd.concat([once, once]) if day == days[1] else once
        catalog.write("user_activity", spark.createDataFrame(frame))
    sets = ["--table", "user_activity", "--set", f"tables.base_path={wh}",
            "--set", "quality.window_days=4", "--set", "quality.min_history=3",
            "--set", "quality.season_days=0"]  # fmt: skip
    clean = np.array([500.0, 507.0, 514.0])
    z = abs(250 - clean.mean()) / max(clean.std(ddof=1), 0.01 * clean.mean())
    assert main(["check", "--start", str(first), "--run-date", str(days[3]), *sets]) == 2
    assert f"{days[1]} unique_key: 500 rows repeat a key" in capsys.readouterr().err
    assert results(wh, days[1]).loc["anomaly:row_count", "status"] == rules.SKIPPED
    assert main(["check", "--run-date", str(days[4]), *sets]) == 0  # a warning
    alone = results(wh, days[4]).loc["anomaly:row_count"]
    assert alone["statistic"] == pytest.approx(z, rel=1e-12) and alone["status"] == rules.FAIL
    assert main(["check", "--start", str(first), "--run-date", str(days[4]), *sets]) == 2
    in_one_pass = results(wh, days[4]).loc["anomaly:row_count"]
    assert in_one_pass["statistic"] == pytest.approx(z, rel=1e-12)
    assert "n 3" in in_one_pass["threshold"]


def test_a_null_share_from_zero_and_a_seasonal_relative_change():
    """A column never null before: its null share's sd is 0, so the sd is floored at the
    binomial sd of one row's share (1 / rows): one stray null in 50,000 rows is z 1, 500
    are z 500. With a weekly swing, the relative change compares today with the same
    weekday's value (plus the mean change), not with the mean of the week."""
    q = conf()  # season_days 7
    spec = table_spec("user_activity", q)
    rows = 50_000.0
    history = {DAY - dt.timedelta(days=k): {"row_count": rows, "null_count:gmv": 0.0}
               for k in range(1, 22)}  # fmt: skip

    def share(nulls: float):
        got = rules.anomaly_checks(spec, {"row_count": rows, "null_count:gmv": nulls},
                                   history, DAY, q)  # fmt: skip
        return next(r for r in got if r.check_name == "anomaly:null_share:gmv")

    p = 1 / rows
    one, many = share(1.0), share(500.0)
    assert one.status == rules.PASS
    assert one.statistic == pytest.approx((1 / rows) / math.sqrt(p * (1 - p) / rows))
    assert many.status == rules.FAIL
    assert many.statistic == pytest.approx((500 / rows) / math.sqrt(p * (1 - p) / rows))

    # Weekdays about 60,000 rows, weekends 30,000, noisy enough that the z rule lets a
    # weekend day 33% below the last one pass: the relative change catches it.
    weekly = conf("quality.relative_change=0.3")
    saturday = DAY + dt.timedelta(days=(5 - DAY.weekday()) % 7)
    days = [saturday - dt.timedelta(days=k) for k in range(1, 22)]
    noise = np.random.default_rng(3).normal(0, 4000, len(days))
    history = {d: {"row_count": (30_000.0 if d.weekday() >= 5 else 60_000.0) + e}
               for d, e in zip(days, noise, strict=True)}  # fmt: skip
    last = history[saturday - dt.timedelta(days=7)]["row_count"]

    def row_count(x: float):
        got = rules.anomaly_checks(spec, {"row_count": x}, history, saturday, weekly)
        return next(r for r in got if r.check_name == "anomaly:row_count")

    usual = row_count(last)  # half the mean of the days before, as last Saturday
    assert usual.status == rules.PASS and "7 days before + the mean change" in usual.threshold
    low = row_count(0.6 * last)
    assert low.statistic < rules.z_bound(3.0, 14) and low.status == rules.FAIL


def test_a_constant_history_and_a_value_that_is_not_finite():
    q = conf("quality.min_history=3")
    spec = table_spec("zones", q)
    history = {DAY - dt.timedelta(days=k): {"row_count": 200.0} for k in range(1, 8)}
    # sd 0 is floored at 1% of the mean: one zone more passes, twenty more do not (the
    # bound with 7 values is 5.24 sigmas, see below).
    one, twenty = (rules.anomaly_checks(spec, {"row_count": x}, history, DAY, q)[0]
                   for x in (201.0, 220.0))  # fmt: skip
    assert one.status == rules.PASS and one.statistic == pytest.approx(0.5)
    assert twenty.status == rules.FAIL and twenty.statistic == pytest.approx(10.0)
    bad = rules.anomaly_checks(spec, {"row_count": math.nan}, history, DAY, q)[0]
    assert bad.status == rules.FAIL and "not finite" in bad.message


def test_a_day_refused_by_an_error_check_is_never_trained_on():
    """A table's first ten days, about 1,000 rows each; the third delivered twice (1,992
    rows): its unique_key check (error) failed while anomaly:row_count was skipped (too
    little history), so no anomaly failure marks it. On day 10, 600 rows (40% lost) must be
    compared with the eight clean days: z of about 40 (numpy, the sd at its floor of 1% of
    the mean), not 1.55 against a window
    inflated by the duplicate. A warn check's failure (accepted data) is trained on."""
    q = conf()
    spec = table_spec("user_activity", q)
    first = dt.date(2026, 1, 1)
    rows = [1000.0, 1010.0, 1992.0, 990.0, 1005.0, 995.0, 1003.0, 1002.0, 1001.0]
    history = {first + dt.timedelta(days=i): {"row_count": v} for i, v in enumerate(rows)}
    day = first + dt.timedelta(days=9)
    twice = {first + dt.timedelta(days=2): {"unique_key": "error", "range:gmv": "warn"}}
    r = rules.anomaly_checks(spec, {"row_count": 600.0}, history, day, q, twice)[0]
    clean = np.array(rows[:2] + rows[3:])
    sd = max(clean.std(ddof=1), 0.01 * clean.mean())  # the floor: 1% of the mean level
    assert r.statistic == pytest.approx(abs(600 - clean.mean()) / sd, rel=1e-12)
    assert r.statistic > 39 and r.status == rules.FAIL and "n 8" in r.threshold
    warned = {first + dt.timedelta(days=2): {"unique_key": "warn"}}
    kept = rules.anomaly_checks(spec, {"row_count": 600.0}, history, day, q, warned)[0]
    every = np.array(rows)
    assert kept.statistic == pytest.approx(abs(600 - every.mean()) / every.std(ddof=1))
    assert kept.status == rules.PASS and "n 9" in kept.threshold


def test_an_outage_never_becomes_the_norm_and_a_metric_gone_today_fails():
    """Half of the window lost (the checks saw no rows on 7 of 14 days): those days stay out
    of the window, so a day at a tenth of the usual rows is compared with the 7 days that
    had rows (numpy's z), not with a window half of zeros. A mean that is null today (every
    value null or not finite) and a distribution without a finite value fail against their
    history instead of being skipped. A configured not_null adds to the key's columns."""
    q = conf("quality.season_days=0")
    spec = table_spec("user_activity", q)
    rng = np.random.default_rng(4)
    counts = 50_000 + rng.normal(0, 500, 30)
    history = {DAY - dt.timedelta(days=k): {"row_count": float(counts[k])} for k in range(1, 30)}
    lost = {DAY - dt.timedelta(days=k) for k in range(1, 8)}
    history |= {d: {"row_count": 0.0} for d in lost}
    late = {d: {"freshness": "error"} for d in lost}
    r = rules.anomaly_checks(spec, {"row_count": 5_000.0}, history, DAY, q, late)[0]
    kept = counts[8:15]
    assert r.statistic == pytest.approx(abs(5_000 - kept.mean()) / kept.std(ddof=1), rel=1e-12)
    assert r.status == rules.FAIL and "n 7" in r.threshold

    past = {DAY - dt.timedelta(days=k): {"row_count": 1000.0, "mean:gmv": 30.0 + k % 3}
            for k in range(1, 15)}  # fmt: skip
    got = {x.check_name: x for x in rules.anomaly_checks(spec, {"row_count": 1000.0}, past,
                                                         DAY, q)}  # fmt: skip
    assert got["anomaly:mean:gmv"].status == rules.FAIL
    assert got["anomaly:mean:gmv"].message == "no value today, against 14 past values"
    assert got["anomaly:mean:visits"].status == rules.SKIPPED  # never had a value

    bins = {f"psi_bin:gmv:{i}": 100.0 for i in range(10)}
    edges = {f"psi_edge:gmv:{i}": float(i) for i in range(1, 10)}
    days = {DAY - dt.timedelta(days=k): {"row_count": 1000.0, **bins, **edges}
            for k in range(1, 15)}  # fmt: skip
    today = {"row_count": 1000.0, **dict.fromkeys(bins, 0.0), **edges}
    got = {x.check_name: x for x in rules.anomaly_checks(spec, today, days, DAY, q)}
    assert got["anomaly:psi:gmv"].status == rules.FAIL
    assert got["anomaly:psi:gmv"].message == "no finite value of gmv today, against 14 past days"

    base = conf()
    listed = base.tables["allocations"].model_copy(update={"not_null": ["arm"]})
    arm = table_spec("allocations", base.model_copy(update={"tables": {"allocations": listed}}))
    assert arm.not_null == (*contract("allocations").key, "arm")
    # ... but for a key column some rows lack by design (a week's effect has an event week).
    weeks = table_spec("geo_results", conf()).not_null
    assert "event_week" not in weeks and "term" in weeks


def test_the_generators_faults_are_caught_by_the_default_checks(spark, tmp_path, capsys):
    """A generated world of 20 days (weekly seasonality, trend, long-tailed zones) with a
    fault on each of its last six days, checked from its first day in one pass
    (``--start``) with the default checks: the 14 clean days raise no alarm and each fault
    fails its check, the counts checked against pandas. (bench.py faults: the same at 200k
    users with 60 clean days, day by day.)"""
    wh = tmp_path / "wh"
    end = dt.date(2026, 6, 20)
    first = end - dt.timedelta(days=19)
    kinds = sorted(FAULT_KINDS, key=lambda k: k == "shift")  # last: the most history
    on = {k: str(end - dt.timedelta(days=5 - i)) for i, k in enumerate(kinds)}
    sets = ["--set", f"tables.base_path={wh}", "--run-date", str(end)]
    faults = [a for k, d in on.items() for a in ("--fault", f"{k}@{d}")]
    scale = ["--users", "20000", "--zones", "20", "--days", "20", "--customers", "100",
             "--campaign-rows", "500"]  # fmt: skip
    # Bad faults are refused before anything is written, naming what was expected.
    assert main(["generate", *sets, *scale, "--fault", "drop@2026-06-15"]) == 2
    assert "expected KIND@YYYY-MM-DD with KIND one of drop_half," in capsys.readouterr().err
    assert main(["generate", *sets, *scale, "--fault", "late@2026-05-01"]) == 2
    assert "outside the generated 2026-06-01..2026-06-20" in capsys.readouterr().err
    shift_id = "generate.faults=[{kind: shift, date: 2026-06-15, column: user_id}]"
    assert main(["generate", *sets, *scale, "--set", shift_id]) == 2
    assert "a shift needs a measure column, not 'user_id'" in capsys.readouterr().err
    assert not (wh / "user_activity").exists()
    assert main(["generate", *sets, *scale, *faults]) == 0
    capsys.readouterr()
    assert main(["check", "--table", "user_activity", "--start", str(first), *sets]) == 2
    err = capsys.readouterr().err
    assert "3 error check(s) failed" in err and f"{on['late']} freshness: no rows" in err
    r = read_pandas(str(wh / "quality_results"))
    assert len(set(r["run_date"])) == 20
    r = r.assign(day=pd.to_datetime(r["run_date"]).dt.date.astype(str))
    alarms = r[r["status"] == "fail"].groupby("day")["check_name"].apply(set).to_dict()
    assert set(alarms) == set(on.values()), alarms  # no false alarm on a clean day
    assert {"anomaly:row_count"} <= alarms[on["drop_half"]]
    assert alarms[on["null_spike"]] == {"anomaly:null_share:gmv"}
    assert {"unique_key", "anomaly:row_count"} <= alarms[on["duplicate"]]
    assert {"anomaly:mean:gmv"} <= alarms[on["shift"]]  # (PSI: blunt on a column of 80% zeros)
    assert alarms[on["late"]] == {"freshness"}  # no rows: late, not an anomaly
    late = r[(r["day"] == on["late"]) & r["check_name"].str.startswith("anomaly:")]
    assert set(late["status"]) == {"skipped"}
    assert {"reference:zone_id"} <= alarms[on["remap_zones"]]
    # The statistics against the generated rows, counted by pandas.
    act = read_pandas(str(wh / "user_activity"))
    act["day"] = pd.to_datetime(act["date"]).dt.date.astype(str)
    stat = r.set_index(["day", "check_name"])["statistic"]
    day = act[act["day"] == on["duplicate"]]
    assert stat[on["duplicate"], "unique_key"] == day.duplicated(["date", "user_id"]).sum() > 0
    day = act[act["day"] == on["remap_zones"]]
    assert stat[on["remap_zones"], "reference:zone_id"] == len(day) > 0  # every id remapped
    assert stat[on["late"], "freshness"] == 0 == (act["day"] == on["late"]).sum()
    m = read_pandas(str(wh / "quality_metrics"))
    m = m.assign(day=pd.to_datetime(m["run_date"]).dt.date.astype(str)).set_index(
        ["day", "metric"]
    )["value"]
    day = act[act["day"] == on["null_spike"]]
    assert m[on["null_spike"], "null_count:gmv"] == day["gmv"].isna().sum() > 0.2 * len(day)
    for d in (on["drop_half"], str(first)):
        assert m[d, "row_count"] == (act["day"] == d).sum()


def test_duplicate_keys_by_bitmaps_and_by_grouping_equal_pandas(spark):
    """The repeated keys of an integer key, counted with bitmaps when its values are dense
    (negative, zero, both sides of bucket edges, nulls: a null is a value) and by grouping
    when they are sparse, and of a composite key, against pandas' ``duplicated``."""
    b = BITMAP_BITS
    edges = [-2 * b - 1, -2 * b, -b - 1, -b, -b + 1, -1, 0, 1, b - 1, b, b + 1, 2 * b, 2 * b + 1]
    rng = np.random.default_rng(3)
    dense = pd.DataFrame({"k": [*edges, *edges[::2], *rng.integers(-3 * b, 3 * b, 3000)]})
    dense = pd.concat([dense, pd.DataFrame({"k": [None] * 3})], ignore_index=True)
    sparse = pd.DataFrame({"k": [*(10**15 * rng.integers(-50, 50, 400)), None]})
    schema = "k long"
    for frame, bitmaps in ((dense, True), (sparse, False)):
        values = frame["k"].dropna().astype("int64")
        assert bitmaps_fit([(len(values), int(values.min()), int(values.max()))]) is bitmaps
        df = spark.createDataFrame(frame.astype(object).where(frame.notna(), None), schema)
        assert duplicate_keys(df, ["k"]) == frame.duplicated().sum() > 0
    df = spark.createDataFrame(dense.astype(object).where(dense.notna(), None), schema)
    assert distinct_by_bitmaps(df, "k") == {(): dense["k"].nunique()}  # nulls apart

    # Per day, in one aggregation (a range of days checked at once): days of dense keys, of
    # sparse keys, and one whose keys are all null; stats as the metrics' pass gives them.
    days = [
        dense.assign(d=1),
        dense.sample(frac=0.5, random_state=1).assign(d=2),
        pd.DataFrame({"k": [None] * 4, "d": 3}),
    ]
    for frames, bitmaps in ((days, True), ([*days[1:], sparse.assign(d=4)], False)):
        frame = pd.concat(frames, ignore_index=True)
        stats = {
            d: (len(g), int(g["k"].notna().sum()), g["k"].min(), g["k"].max())
            for d, g in frame.groupby("d")
        }
        stats = {d: (n, v, None if v == 0 else int(lo), None if v == 0 else int(hi))
                 for d, (n, v, lo, hi) in stats.items()}  # fmt: skip
        ranges = [(v, lo, hi) for _, v, lo, hi in stats.values() if v]
        assert bitmaps_fit(ranges) is bitmaps  # type: ignore[arg-type]
        df = spark.createDataFrame(frame.astype(object).where(frame.notna(), None), "k long, d int")
        expected = {d: float(g.duplicated().sum()) for d, g in frame.groupby("d")}
        got = duplicate_keys_by(df, "d", ["k"], stats)
        assert {d: got.get(d, 0.0) for d in expected} == expected
        assert expected[3] == 3 and min(expected.values()) >= 3
    pair = pd.DataFrame({"a": rng.integers(0, 5, 300), "c": rng.integers(0, 20, 300)})
    df = spark.createDataFrame(pair)
    assert duplicate_keys(df, ["a", "c"]) == pair.duplicated().sum() > 0
    assert duplicate_keys(df, []) == len(pair) - 1  # every key column constant
