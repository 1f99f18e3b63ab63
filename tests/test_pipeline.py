"""`sparklift pipeline`: every step for a date, recorded in pipeline_runs with counts that
match the tables; re-runs skip what succeeded; a failure stops only what depends on it;
exit codes rank failures; logs as JSON."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from sparklift.cli import main
from sparklift.config import LoggingConfig, load_config
from sparklift.jobs import check as check_job
from sparklift.jobs import score as score_job
from sparklift.logs import JsonFormatter
from sparklift.pipeline.plan import Step, blocked_by, exit_code, plan_steps
from sparklift.pipeline.runs import StepOutcome, render
from sparklift.reports.page import fmt
from sparklift.tables import Catalog
from sparklift.tables.local import read_pandas
from tests.browser import chromium, open_pages

DAY = dt.date(2026, 6, 30)
GOOD = {"campaign_id": "winback", "budgets": {"NL": 300, "DE": 200, "BE": 150, "FR": 80}}


def test_plan_orders_steps_and_wires_data_dependencies():
    experiments = {e: ("--experiment", e) for e in ("e1", "e2")}
    targets = {"analyze": experiments, "allocate": {"c": ("--campaign", "c.yaml")}}
    steps = plan_steps(["allocate", "features", "analyze", "score"], targets)
    assert [s.name for s in steps] == [
        "features", "analyze:e1", "analyze:e2", "score", "allocate:c",
    ]  # fmt: skip
    deps = {s.name: s.depends_on for s in steps}
    assert deps["analyze:e1"] == ("features",) and deps["allocate:c"] == ("score",)
    assert deps["score"] == () and deps["features"] == ()
    assert steps[1].args == ("--experiment", "e1") and steps[-1].args == ("--campaign", "c.yaml")
    # Without the features step in the run, analyses depend on nothing in it.
    assert plan_steps(["analyze"], {"analyze": experiments})[0].depends_on == ()
    with pytest.raises(ValueError, match="unknown pipeline steps"):
        plan_steps(["featurs"], {})
    step = Step("allocate", "c", depends_on=("score",))
    assert blocked_by(step, {"score": "failed"}) == ["score"]
    assert blocked_by(step, {"score": "skipped", "analyze:e1": "failed"}) == []


def test_checks_gate_their_consumers_and_a_fallback_only_orders():
    """check:<table> before the first reader and after this run's writers; a consumer that
    falls back is ordered after its check and producer, never blocked by them."""
    targets = {"analyze": {"e": ("--experiment", "e")}, "allocate": {"c": ("--campaign", "c")}}
    kinds = ["features", "analyze", "score", "allocate"]
    steps = {s.name: s for s in plan_steps(kinds, targets, checks=True)}
    assert list(steps) == [
        "check:user_activity", "check:zones", "features", "check:zone_day_features",
        "analyze:e", "check:customers", "score", "check:uplift_scores", "allocate:c",
    ]  # fmt: skip
    assert steps["features"].depends_on == ("check:user_activity", "check:zones")
    assert steps["check:zone_day_features"].depends_on == ("features",)
    assert steps["check:uplift_scores"].args == ("--table", "uplift_scores")
    assert steps["allocate:c"].depends_on == ("score", "check:uplift_scores")
    assert blocked_by(steps["allocate:c"], {"check:uplift_scores": "failed"}) == [
        "check:uplift_scores"
    ]
    # A campaign that falls back (its own file says so), beside one that does not.
    two = targets | {"allocate": {"c": ("--campaign", "c"), "d": ("--campaign", "d")}}
    rule = lambda kind, args: kind == "allocate" and args[1] == "c"  # noqa: E731
    soft = {s.name: s for s in plan_steps(kinds, two, checks=True, falls_back=rule)}
    assert soft["allocate:c"].depends_on == ()
    assert soft["allocate:c"].soft_depends_on == ("score", "check:uplift_scores")
    failed = {"score": "failed", "check:uplift_scores": "blocked"}
    assert blocked_by(soft["allocate:c"], failed) == []
    assert soft["allocate:d"].depends_on == ("score", "check:uplift_scores")
    # Without checks, a failed score does not block a campaign that falls back either.
    unchecked = {s.name: s for s in plan_steps(kinds, two, falls_back=rule)}
    assert unchecked["allocate:c"].soft_depends_on == ("score",)
    assert unchecked["allocate:d"].depends_on == ("score",)
    # A run of one kind (an Airflow task) still checks its input first.
    assert [s.name for s in plan_steps(["allocate"], targets, checks=True)] == [
        "check:uplift_scores",
        "allocate:c",
    ]
    assert [s.name for s in plan_steps(kinds, targets)][:2] == ["features", "analyze:e"]
    # No campaign active: no allocation, and no gate for it.
    assert [s.name for s in plan_steps(["score", "allocate"], {}, checks=True)] == [
        "check:customers",
        "score",
    ]


def test_exit_code_ranks_internal_then_bad_input_then_conflict_then_not_ready():
    assert exit_code([]) == 0
    assert exit_code([3, 3]) == 3
    assert exit_code([3, 4]) == 4
    assert exit_code([3, 2, 4]) == 2
    assert exit_code([2, 1, 3]) == 1


def test_summary_table_and_json_logs():
    ok = StepOutcome(DAY, "score", "score", None, "succeeded", duration_s=2.04)
    ok.input_rows, ok.output_rows = {"customers": 1000, "vouchers": 3}, {"uplift_scores": 3000}
    ok.output_versions = {"uplift_scores": 7}
    bad = StepOutcome(DAY, "allocate:c", "allocate", "c", "blocked", error="not run: score")
    lines = render([ok, bad]).splitlines()
    assert lines[0].split()[:3] == ["run_date", "step", "status"]
    assert lines[2].split() == ["2026-06-30", "score", "succeeded", "2.0", "1,003", "3,000",
                                "uplift_scores@7"]  # fmt: skip
    assert lines[3].split()[:4] == ["2026-06-30", "allocate:c", "blocked", "-"]
    record = logging.LogRecord("sparklift", logging.INFO, "f", 1, "%s done", ("x",), None)
    record.duration_s, record.step = 1.5, "score"
    out = json.loads(JsonFormatter().format(record))
    assert out["message"] == "x done" and out["duration_s"] == 1.5 and out["step"] == "score"
    assert out["level"] == "INFO" and out["ts"].endswith("+00:00")
    assert LoggingConfig(format="json", level="INFO", progress_interval_s=0).format == "json"


@pytest.fixture(scope="module")
def warehouse(spark, tmp_path_factory) -> Path:
    """A generated data set (with the planted experiment running on DAY) and a model."""
    wh = tmp_path_factory.mktemp("pipeline")
    common = ["--run-date", str(DAY), *sets(wh)]
    scale = ["--users", "3000", "--zones", "24", "--days", "56", "--customers", "2000"]
    assert main(["generate", *common, *scale, "--campaign-rows", "12000"]) == 0
    assert main(["train-uplift", *common, "--set", "uplift.min_arm_rows=300"]) == 0
    (wh / "winback.yaml").write_text(json.dumps(GOOD))
    return wh


def sets(wh: Path) -> list[str]:
    return [
        "--set", f"tables.base_path={wh}",
        "--set", f"tables.model_path={wh / 'models'}",
        "--set", f"pipeline.campaigns=[{wh}/*.yaml]",
        "--set", "spark.master=local[2]",
        "--set", "spark.shuffle_partitions=4",
    ]  # fmt: skip


def pipeline(capsys, wh: Path, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["pipeline", "--run-date", str(DAY), *sets(wh), *args])
    return code, capsys.readouterr().out


def latest(wh: Path, day: dt.date = DAY) -> pd.DataFrame:
    runs = read_pandas(str(wh / "pipeline_runs"))
    runs = runs[pd.to_datetime(runs["run_date"]).dt.date == day]
    return runs.sort_values("ended_at").groupby("step").tail(1).set_index("step")


@pytest.mark.e2e
def test_pipeline_runs_every_step_and_records_counts(spark, warehouse, capsys):
    wh = warehouse
    code, out = pipeline(capsys, wh)
    assert code == 0, out
    runs = latest(wh)
    steps = ["check:user_activity", "check:zones", "features", "check:zone_day_features",
             "analyze:synthetic_geo", "check:customers", "score", "check:uplift_scores",
             "allocate:winback"]  # fmt: skip
    assert sorted(runs.index) == sorted(steps) and (runs["status"] == "succeeded").all()
    assert [ln.split()[1] for ln in out.splitlines()[2:]] == steps  # the summary table
    # Each gate checked its table's partition of the day (quality_results).
    checked = read_pandas(str(wh / "quality_results"))
    assert set(checked["table_name"]) == {s.split(":")[1] for s in steps if s.startswith("check")}
    assert dict(runs.loc["check:uplift_scores", "output_rows"])["quality_results"] == len(
        checked[checked["table_name"] == "uplift_scores"]
    )

    # Counts and versions against the tables themselves, read without Spark.
    activity = read_pandas(str(wh / "user_activity"))
    on_day = int((pd.to_datetime(activity["date"]).dt.date == DAY).sum())
    feats = dict(runs.loc["features", "input_rows"])
    assert feats["user_activity"] == on_day and feats["zones"] == 24
    assert dict(runs.loc["check:user_activity", "input_rows"])["user_activity"] == on_day
    assert dict(runs.loc["features", "output_rows"]) == {"zone_day_features": 24}
    scores = read_pandas(str(wh / "uplift_scores"))
    assert len(scores) == 6000 and dict(runs.loc["score", "output_rows"]) == {"uplift_scores": 6000}
    assert dict(runs.loc["score", "input_rows"])["customers"] == 2000
    alloc_in = dict(runs.loc["allocate:winback", "input_rows"])
    assert alloc_in["uplift_scores"] == 6000
    summary = read_pandas(str(wh / "allocation_summary"))
    allocations = read_pandas(str(wh / "allocations"))
    assert dict(runs.loc["allocate:winback", "output_rows"])["allocations"] == len(allocations)
    assert len(allocations) == summary["n_allocated"].sum() > 0
    for name in ("allocations", "allocation_summary"):
        version = dict(runs.loc["allocate:winback", "output_versions"])[name]
        assert version == DeltaTable(str(wh / name)).version()
    results = read_pandas(str(wh / "geo_results"))
    analysis = dict(runs.loc["analyze:synthetic_geo", "output_rows"])
    # DAY is the planted experiment's end: its final look concludes it (geo_experiments).
    looks = read_pandas(str(wh / "geo_sequential"))
    assert analysis == {
        "geo_results": len(results), "geo_sequential": len(looks), "geo_experiments": 1,
    }  # fmt: skip
    assert len(results) > 0 and len(looks) == 3  # orders, gmv, visits x 1 treatment
    assert (runs["app_id"].str.startswith("local-")).all()
    assert runs["pipeline_run_id"].nunique() == 1

    # A re-run skips every step: no new run rows, no new table versions; even after the
    # next day's customers landed (a new version of the checked table, not of DAY's
    # partition: DAY is not re-scored and re-allocated).
    catalog = Catalog(spark, load_config(None, sets(wh)[1::2]).tables)
    nxt = DAY + dt.timedelta(days=1)
    day = catalog.read("customers", where=[("snapshot_date", "=", DAY)])
    catalog.write("customers", day.withColumn("snapshot_date", F.lit(nxt)), mode="replace",
                  replace_where={"snapshot_date": nxt})  # fmt: skip
    before = {n: DeltaTable(str(wh / n)).version() for n in ("pipeline_runs", "allocations")}
    code, out = pipeline(capsys, wh)
    assert code == 0 and out.count("skipped") == len(steps), out
    assert before == {n: DeltaTable(str(wh / n)).version() for n in before}
    catalog.write("customers", day.limit(0), mode="replace", replace_where={"snapshot_date": nxt})


@pytest.mark.e2e
def test_reports_of_the_pipelines_experiment_and_campaign(spark, warehouse, capsys):
    """sparklift report --all after the nightly run: a page per experiment and campaign and
    the index, showing the tables' numbers, each under 2 MB; opened offline in Chromium
    (when present): no console error, no request, every chart drawn."""
    wh = warehouse
    code, out = pipeline(capsys, wh)  # what already ran is skipped
    assert code == 0, out
    assert (wh / "forecasts").is_dir()  # the run that concluded the experiment forecast it,
    reports = wh / "reports"  # and refreshed the pages of what it analysed and allocated
    assert {p.name for p in reports.rglob("*.html")} == {"index.html", "synthetic_geo.html",
                                                          "winback.html"}  # fmt: skip
    # DAY concluded the planted experiment: its forecast, by hand from its final lifts.
    money = ["--set", "forecast.platform_revenue={gmv: 1000000, orders: 400000}",
             "--set", "forecast.haircut=0.2"]  # fmt: skip
    capsys.readouterr()
    assert main(["forecast", "--run-date", str(DAY), *sets(wh), *money]) == 0
    assert json.loads(capsys.readouterr().out)["experiments"] == 1
    forecast = read_pandas(str(wh / "forecasts")).set_index("metric")
    final = read_pandas(str(wh / "geo_results"))
    final = final[(final["term"] == "lift") & (final["cov_type"] == "zone")
                  & (final["run_date"] == final["run_date"].max())].set_index("metric")  # fmt: skip
    assert forecast.loc["gmv", "forecast_raw"] == pytest.approx(
        final.loc["gmv", "estimate"] * 1_000_000 * 0.8
    )
    assert forecast.loc["orders", "lift"] == final.loc["orders", "estimate"]
    assert forecast["prior_mean"].isna().all()  # one concluded experiment: nothing to shrink to
    assert main(["report", "--all", "--run-date", str(DAY), *sets(wh)]) == 0
    summary = json.loads(capsys.readouterr().out)
    pages = [reports / "index.html", reports / "experiments" / "synthetic_geo.html",
             reports / "campaigns" / "winback.html"]  # fmt: skip
    assert sorted(summary["pages"]) == ["campaigns/winback", "experiments/synthetic_geo"]
    assert all(p.is_file() and p.stat().st_size < 2_000_000 for p in pages)
    index, experiment, campaign = (p.read_text() for p in pages)
    assert 'href="experiments/synthetic_geo.html"' in index
    assert 'href="campaigns/winback.html"' in index
    results = read_pandas(str(wh / "geo_results"))
    last = results[results["run_date"] == results["run_date"].max()]
    for term in ("att", "lift"):
        row = last[(last["term"] == term) & (last["metric"] == "orders")].iloc[0]
        assert f"<td>{fmt(row['estimate'])}</td>" in experiment
        assert f"<td>{fmt(row['ci_high'])}</td>" in experiment
    looks = read_pandas(str(wh / "geo_sequential"))
    assert all(f"<td>{fmt(z)}</td>" in experiment for z in looks["z"])
    groups = read_pandas(str(wh / "allocation_summary"))
    assert all(f"<td>{fmt(v)}</td>" in campaign for v in groups["spent"])
    assert all(f"<td>{fmt(v)}</td>" in campaign for v in groups["lambda"])
    assert "Not measured yet" in campaign
    assert f"<td>{fmt(forecast.loc['gmv', 'forecast_raw'])}</td>" in experiment
    assert main(["report", "--experiment", "nope", "--run-date", str(DAY), *sets(wh)]) == 2
    assert "unknown experiment 'nope': not in geo_experiments" in capsys.readouterr().err
    assert main(["report", "--campaign", "nope", "--run-date", str(DAY), *sets(wh)]) == 2
    assert "unknown campaign 'nope': not in allocation_summary" in capsys.readouterr().err
    remote = ["--set", "tables.report_path=s3://bucket/reports"]
    assert main(["report", "--all", "--run-date", str(DAY), *sets(wh), *remote]) == 2
    assert "tables.report_path 's3://bucket/reports': reports are written to a local" in (
        capsys.readouterr().err
    )
    if chromium() is None:
        return
    seen = open_pages(pages, "pipeline")
    for page in pages:
        assert seen[page].errors == [] and seen[page].requests == [], seen[page]
        assert all(w > 100 and h > 50 and n > 10 for w, h, n in seen[page].charts)
        assert seen[page].width <= 1100  # wide tables scroll in their box
    assert len(seen[pages[1]].charts) >= 5 and len(seen[pages[2]].charts) >= 4


@pytest.mark.e2e
def test_failures_stop_only_their_dependents(spark, warehouse, capsys, monkeypatch):
    wh = warehouse
    # A second running experiment without assignments, and a campaign whose budget group
    # does not exist in the scores: both bad input for their own step only (the steps
    # before them, which succeeded, are not re-run).
    catalog = Catalog(spark, load_config(overrides=[f"tables.base_path={wh}"]).tables)
    experiments = catalog.read("geo_experiments")
    broken = experiments.limit(1).toPandas()
    broken = broken.assign(experiment_id="broken", status="accepted", concluded_on=None)
    broken["end"] = DAY + dt.timedelta(days=1)
    catalog.write("geo_experiments", spark.createDataFrame(broken, experiments.schema))
    (wh / "typo.yaml").write_text(json.dumps({"campaign_id": "typo", "budgets": {"NLL": 10}}))
    unchecked = ["--set", "pipeline.checks=false"]  # the gates: the next day's subject
    unchecked += ["--set", "pipeline.reports=false"]  # the reports: the test before
    code, out = pipeline(capsys, wh, "--steps", "analyze,allocate", *unchecked)
    assert code == 2, out
    assert out.count("skipped") == 2  # analyze:synthetic_geo and allocate:winback
    runs = latest(wh)
    status = {k: v for k, v in runs["status"].items() if k.startswith(("analyze", "allocate"))}
    assert status == {
        "analyze:broken": "failed",
        "analyze:synthetic_geo": "succeeded",
        "allocate:typo": "failed",
        "allocate:winback": "succeeded",
    }
    assert runs.loc["analyze:broken", "exit_code"] == 2
    assert "no zones in geo_assignments" in runs.loc["analyze:broken", "error"]
    assert "NL" in runs.loc["allocate:typo", "error"]

    # The next day has no activity and no customer snapshot yet: their checks find them
    # late, not ready (3), the steps after them are blocked, naming the failed check, and
    # the run says "retry later".
    next_day = DAY + dt.timedelta(days=1)
    capsys.readouterr()
    code = main(["pipeline", "--run-date", str(next_day), *sets(wh), *unchecked[2:]])
    assert code == 3
    runs = latest(wh, next_day)
    for gate in ("check:user_activity", "check:customers"):
        assert runs.loc[gate, ["status", "exit_code"]].tolist() == ["failed", 3]
    assert runs.loc["check:zones", "status"] == "succeeded"  # not dated: checked as of the day
    assert runs.loc["features", "error"].startswith(
        "not run: check:user_activity failed (table user_activity of date = 2026-07-01: 1 "
        "error check(s) failed: freshness: no rows with date = the run date"
    )
    assert runs.loc["score", "status"] == runs.loc["analyze:broken", "status"] == "blocked"
    assert "check:zone_day_features was blocked" in runs.loc["analyze:broken", "error"]
    assert set(runs.loc[["allocate:winback", "allocate:typo"], "status"]) == {"blocked"}

    # An internal error in scoring (exit 1, the most serious) blocks the allocations and
    # leaves the published allocation as it was; a plain re-run then retries just it.
    published = DeltaTable(str(wh / "allocation_summary")).version()

    def crash(ctx, args):
        raise RuntimeError("executor lost")

    monkeypatch.setattr(score_job, "run", crash)
    code, out = pipeline(capsys, wh, "--force", "--steps", "score,allocate", *unchecked)
    assert code == 1
    runs = latest(wh)
    assert runs.loc["score", "status"] == "failed" and "executor lost" in runs.loc["score", "error"]
    assert runs.loc["allocate:winback", "status"] == "blocked"
    assert DeltaTable(str(wh / "allocation_summary")).version() == published
    monkeypatch.undo()
    (wh / "typo.yaml").unlink()
    code, out = pipeline(capsys, wh, "--steps", "score,allocate", *unchecked)
    assert code == 0, out
    runs = latest(wh)
    assert runs.loc["score", "status"] == runs.loc["allocate:winback", "status"] == "succeeded"
    assert DeltaTable(str(wh / "allocation_summary")).version() > published
    # Scores re-ran, so the allocation (already succeeded before) re-ran on them too.
    assert runs.loc["allocate:winback", "pipeline_run_id"] == runs.loc["score", "pipeline_run_id"]


@pytest.mark.e2e
def test_bad_scores_block_the_allocation_unless_it_falls_back(
    spark, warehouse, capsys, monkeypatch
):
    """The day's scores delivered with 50 rows twice: check:uplift_scores fails its unique
    key, the allocation is blocked, naming the check, and the published allocation stays;
    allocate run alone refuses them too. With allocate.fallback the allocation runs on
    yesterday's good scores and says so: its summary, pipeline_runs and the run's table.
    When the check dies before writing a verdict, the allocation falls back all the same. A
    fall-back must have passed its checks: yesterday's, never checked, is passed over."""
    wh = warehouse
    catalog = Catalog(spark, load_config(overrides=[f"tables.base_path={wh}"]).tables)
    today = catalog.read("uplift_scores").where(F.col("run_date") == DAY).cache()
    yesterday = DAY - dt.timedelta(days=1)
    catalog.write("uplift_scores", today.withColumn("run_date", F.lit(yesterday)))
    catalog.write("uplift_scores", today.limit(50))
    today.unpersist()
    published = DeltaTable(str(wh / "allocation_summary")).version()
    # check:uplift_scores succeeded on this date before, on an earlier version of the
    # scores: it runs again (allocate:winback, which succeeded too, is then blocked).
    code, out = pipeline(capsys, wh, "--steps", "allocate")
    assert code == 2, out
    runs = latest(wh)
    assert runs.loc["check:uplift_scores", ["status", "exit_code"]].tolist() == ["failed", 2]
    assert runs.loc["allocate:winback", "status"] == "blocked"
    assert runs.loc["allocate:winback", "error"].startswith(
        "not run: check:uplift_scores failed (table uplift_scores of run_date = 2026-06-30: "
        "1 error check(s) failed: unique_key: 50 rows repeat a key (run_date, customer_id, "
        "voucher_id)"
    )
    assert DeltaTable(str(wh / "allocation_summary")).version() == published
    campaign = ["--campaign", str(wh / "winback.yaml"), "--run-date", str(DAY)]
    capsys.readouterr()
    assert main(["allocate", *campaign, *sets(wh)]) == 2
    assert "uplift_scores of 2026-06-30 failed its checks (unique_key: 50 rows" in (
        capsys.readouterr().err
    )
    assert DeltaTable(str(wh / "allocation_summary")).version() == published

    # A fall-back must have passed its checks: yesterday's scores, written but never
    # checked, are passed over; checked, they are used.
    back = ["--set", "allocate.fallback={max_age_days: 1}"]
    code, out = pipeline(capsys, wh, "--steps", "allocate", *back)
    assert code == 2 and latest(wh).loc["allocate:winback", "status"] == "failed", out
    assert f"passed over, never checked: {yesterday}" in latest(wh).loc["allocate:winback", "error"]
    assert main(["check", "--table", "uplift_scores", "--run-date", str(yesterday), *sets(wh)]) == 0
    code, out = pipeline(capsys, wh, "--steps", "allocate", *back)
    assert code == 2, out  # the bad partition still needs a person; the allocation ran
    runs = latest(wh)
    assert runs.loc["allocate:winback", "status"] == "succeeded"
    summary = json.loads(runs.loc["allocate:winback", "summary"])
    assert summary["scores_date"] == str(yesterday)
    assert summary["fallback"]["instead_of"] == str(DAY)
    assert "unique_key: 50 rows repeat a key" in summary["fallback"]["why"]
    assert f"fell back to uplift_scores of {yesterday}" in out
    assert dict(runs.loc["allocate:winback", "input_rows"])["uplift_scores"] == 6000
    rows = read_pandas(str(wh / "allocations"))
    assert set(rows["run_id"]) == {summary["run_id"]} and len(rows) > 0

    # Today's verdict gone (never checked), and the check crashes before writing one: the
    # partition is unverified in this run, so the allocation still falls back, saying why.
    spark.sql(f"DELETE FROM delta.`{wh}/quality_results` WHERE table_name = 'uplift_scores' "
              f"AND run_date = '{DAY}'")  # fmt: skip

    def crash(ctx, args):
        raise RuntimeError("executor lost")

    monkeypatch.setattr(check_job, "run", crash)
    code, out = pipeline(capsys, wh, "--force", "--steps", "allocate",
                         "--set", "allocate.fallback={max_age_days: 1}")  # fmt: skip
    assert code == 1, out
    runs = latest(wh)
    assert runs.loc["check:uplift_scores", ["status", "exit_code"]].tolist() == ["failed", 1]
    assert runs.loc["allocate:winback", "status"] == "succeeded"
    summary = json.loads(runs.loc["allocate:winback", "summary"])
    assert summary["scores_date"] == str(yesterday)
    assert (
        "check:uplift_scores failed (RuntimeError: executor lost) in this run"
        in (summary["fallback"]["why"])
    )
