"""Propensity to purchase end to end: ``train-propensity`` on generated activity against the
generator's planted purchase probabilities (the oracle), its evaluation recomputed
independently, ``score-propensity`` over every customer, and the refused inputs."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F
from sklearn.metrics import roc_auc_score

from sparklift.cli import main
from sparklift.config import load_config
from sparklift.jobs import score_propensity
from sparklift.predict.propensity import PropensityModel, shift_to
from sparklift.synthetic.geo import draw_world
from sparklift.synthetic.purchase import purchase_probability
from sparklift.tables import Catalog
from sparklift.tables.changes import table_id
from sparklift.tables.local import read_pandas

RUN_DATE = dt.date(2026, 6, 30)
DAY = dt.timedelta(days=1)
SCALE = ["generate.users=30000", "generate.zones=40", "generate.days=84"]
PROPENSITY: list[str] = []  # the defaults: 56 days of history, 7 ahead, 3 + 1 snapshots


def sets(wh: Path) -> list[str]:
    out = ["--run-date", str(RUN_DATE), "--set", f"tables.base_path={wh}"]
    for s in [*SCALE, *PROPENSITY]:
        out += ["--set", s]
    return out


@pytest.fixture(scope="module")
def warehouse(spark, tmp_path_factory) -> Path:
    wh = tmp_path_factory.mktemp("propensity") / "wh"
    small = ["--customers", "100", "--campaign-rows", "100"]
    assert main(["generate", *sets(wh), *small]) == 0
    return wh


@pytest.mark.e2e
def test_propensity_ranks_like_the_oracle_is_calibrated_and_scores_everyone(
    warehouse, spark, capsys
):
    assert main(["train-propensity", *sets(warehouse)]) == 0
    summary = json.loads(capsys.readouterr().out)
    row = read_pandas(str(warehouse / "propensity_models")).iloc[0]
    valid_day = RUN_DATE - dt.timedelta(days=7)
    assert str(row["validation_snapshot"])[:10] == str(valid_day) == summary["validation_snapshot"]
    train_days = [str(d)[:10] for d in row["train_snapshots"]]
    assert train_days == ["2026-06-02", "2026-06-09", "2026-06-16"]

    # The validation customers and labels, recomputed with pandas from user_activity.
    act = read_pandas(str(warehouse / "user_activity"))
    act["date"] = pd.to_datetime(act["date"]).dt.date
    history = act[(act["date"] > valid_day - dt.timedelta(days=56)) & (act["date"] <= valid_day)]
    future = act[(act["date"] > valid_day) & (act["orders"] > 0)]
    users = pd.DataFrame({"user_id": history["user_id"].unique()})
    users["label"] = users["user_id"].isin(future["user_id"]).astype(int)
    assert summary["validation_rows"] == len(users)  # every customer of the snapshot

    # The oracle: the generator's planted probability of an order in those 7 days.
    conf = load_config(None, SCALE).generate
    world = draw_world(conf, RUN_DATE)
    oracle = purchase_probability(spark, world, conf, valid_day, 7).toPandas()
    users = users.merge(oracle, on="user_id")
    assert len(users) == summary["validation_rows"]
    auc_oracle = roc_auc_score(users["label"], users["p_purchase"])
    metrics = json.loads(row["metrics"])
    assert metrics["base_rate"] == pytest.approx(users["label"].mean())
    assert metrics["roc_auc"] >= auc_oracle - 0.03, (metrics["roc_auc"], auc_oracle)
    # The oracle is calibrated (its mean matches the realized rate within 3 se): a check
    # that it is the generator's own probability.
    se = np.sqrt((users["p_purchase"] * (1 - users["p_purchase"])).sum()) / len(users)
    assert abs(users["p_purchase"].mean() - users["label"].mean()) < 3 * se

    # Reliability, recomputed: each decile's mean predicted against its observed rate,
    # with the standard error clustered by zone (customers of a zone share its week's
    # shocks). The issue asks for 2 se in every decile. Ten 2-se checks at once fail often
    # even for the truth: over 40 worlds (scripts/bench.py calibration) the oracle has all
    # ten within 2 se in 27, the default model in 18 (92% of its deciles). So the test
    # holds every decile to 3 se, at least 7 to 2 se, and the joint calibration p above
    # 0.001 (README: Propensity).
    table = pd.DataFrame(json.loads(row["reliability"]))
    assert len(table) == 10 and table["rows"].sum() == len(users)
    gap = (table["observed_rate"] - table["mean_predicted"]).abs()
    assert (gap <= 3 * table["se"]).all(), table
    assert table["within_2se"].sum() >= 7 and metrics["calibration_p"] > 0.001, table
    assert (table["se"] != table["se_binomial"]).all()  # clustered by the users' zones
    assert 0 < metrics["recall_at_precision"] <= 1 and 0 < metrics["brier"] < 0.25
    assert metrics["pr_auc"] > metrics["base_rate"]  # better than no ranking

    # Scoring: every user active in the 56 days to the run date, once, as a probability.
    assert main(["score-propensity", *sets(warehouse)]) == 0
    scored = json.loads(capsys.readouterr().out)
    scores = read_pandas(str(warehouse / "propensity_scores"))
    window = act[act["date"] > RUN_DATE - dt.timedelta(days=56)]
    assert scored["customers_scored"] == len(scores) == window["user_id"].nunique()
    assert scores["customer_id"].is_unique and scores["propensity"].between(0, 1).all()
    assert set(scores["model_id"]) == {summary["model_id"]} and (scores["horizon_days"] == 7).all()
    assert scored["features_from"].startswith("user_activity")  # no user_history yet

    # The nightly steps: user_history rebuilt, then updated day by day (two partitions
    # kept), and the pipeline's scoring from it equals the scoring from the raw rows.
    keep = ["--set", "propensity.state_days=2"]
    for back, mode in ((2, "rebuild"), (1, "update")):
        day = ["--run-date", str(RUN_DATE - dt.timedelta(days=back))]
        assert main(["user-history", *sets(warehouse), *keep, *day]) == 2  # no model that day
        assert "no model trained for" in capsys.readouterr().err
        day += ["--model-id", summary["model_id"]]  # the model of the run date: its windows
        assert main(["user-history", *sets(warehouse), *keep, *day]) == 0
        assert json.loads(capsys.readouterr().out)["mode"] == mode
    steps = ["--steps", "user-history,score-propensity"]
    unchecked = ["--set", "pipeline.checks=false", "--set", "pipeline.reports=false"]
    assert main(["pipeline", *sets(warehouse), *keep, *steps, *unchecked]) == 0
    capsys.readouterr()
    runs = read_pandas(str(warehouse / "pipeline_runs"))
    assert sorted(runs["step"]) == sorted(f"{k}:{summary['model_id']}" for k in steps[1].split(","))
    history = read_pandas(str(warehouse / "user_history"))
    assert sorted(str(d)[:10] for d in history["as_of"].unique()) == [
        str(RUN_DATE - dt.timedelta(days=1)),
        str(RUN_DATE),
    ]
    again = read_pandas(str(warehouse / "propensity_scores"))
    both = scores.merge(again, on="customer_id", suffixes=("", "_state"), validate="1:1")
    assert len(both) == len(scores) == len(again)
    # The state's sums (days added and dropped) and the window's differ in their last bits
    # (tests/test_user_history checks them to 1e-12); a customer whose sum lies exactly on a
    # split (a price) may take the other branch, so a handful of scores may differ.
    same = np.isclose(both["propensity_state"], both["propensity"], rtol=1e-9, atol=0)
    assert same.mean() >= 0.999, both[~same]
    assert "w_sum__items" in history.columns  # every numeric column, for the next model too
    # The state's files are plain Parquet, read by Python itself; Spark's reader of the
    # same state gives the same scores to the bit.
    assert scored["reader"] == "spark"  # the first scoring: from the activity rows
    by_reader = {}
    for reader in ("auto", "spark"):
        chosen = ["--set", f"propensity.state_reader={reader}"]
        assert main(["score-propensity", *sets(warehouse), *chosen]) == 0
        by_reader[json.loads(capsys.readouterr().out)["reader"].split(" ")[0]] = read_pandas(
            str(warehouse / "propensity_scores")
        ).sort_values("customer_id", ignore_index=True)
    assert sorted(by_reader) == ["arrow", "spark"]
    pd.testing.assert_frame_equal(by_reader["arrow"], by_reader["spark"])

    # The state records the user_activity version it counted. A late row on the day that
    # leaves the window, and a row of another day deleted: the log says which days changed
    # since, and the job rebuilds instead of updating.
    catalog = Catalog(spark, load_config(None, [f"tables.base_path={warehouse}"]).tables)

    def late_row(day: dt.date, user_id: int) -> None:
        rows = catalog.read("user_activity", where=[("date", "=", day)])
        late = rows.limit(1).withColumn("user_id", F.lit(user_id).cast("long")).toPandas()
        catalog.write("user_activity", spark.createDataFrame(late, rows.schema), mode="append")

    def user_history(*more: str) -> dict:
        named = ["--model-id", summary["model_id"]]  # also on the day before the model's
        assert main(["user-history", *sets(warehouse), *keep, *named, *more]) == 0
        return json.loads(capsys.readouterr().out)

    def state_sums_the_window(user: int) -> pd.DataFrame:
        """The user's gmv sum in the state as of the run date equals pandas' over the
        window's rows of user_activity as it is now; returns user_activity's rows (with
        their ``day``)."""
        act = read_pandas(str(path)).assign(day=lambda d: pd.to_datetime(d["date"]).dt.date)
        window = act[(act["day"] > RUN_DATE - 56 * DAY) & (act["day"] <= RUN_DATE)]
        state = read_pandas(str(warehouse / "user_history"))
        state = state[pd.to_datetime(state["as_of"]).dt.date == RUN_DATE].set_index("user_id")
        assert state.loc[user, "w_sum__gmv"] == pytest.approx(
            window.loc[window["user_id"] == user, "gmv"].sum(), rel=1e-12
        )
        return act

    middle = RUN_DATE - 20 * DAY
    counted = catalog.version("user_activity")
    gone = catalog.read("user_activity", where=[("date", "=", middle)]).first()["user_id"]
    path = warehouse / "user_activity"
    spark.sql(f"DELETE FROM delta.`{path}` WHERE date = '{middle}' AND user_id = {gone}")
    late_row(RUN_DATE - 56 * DAY, 10**9)
    assert counted is not None and catalog.version("user_activity") == counted + 2
    rerun = user_history()
    assert rerun["mode"] == "rebuild" and rerun["reason"] == (
        f"user_activity's rows of {RUN_DATE - 56 * DAY}, {middle} changed after user_history "
        f"as of {RUN_DATE - DAY} counted its version {counted}: by version {counted + 1} "
        f"(DELETE), {counted + 2} ({catalog.history('user_activity')[0]['operation']})"
    )

    # A corrected value (the same rows, one gmv changed): no count can see it, the log
    # does, and the rebuilt state holds the corrected sum (recomputed with pandas).
    assert user_history("--run-date", str(RUN_DATE - DAY), "--rebuild")["mode"] == "rebuild"
    user = int(catalog.read("user_activity", where=[("date", "=", middle)]).first()["user_id"])
    spark.sql(
        f"UPDATE delta.`{path}` SET gmv = gmv + 100 WHERE date = '{middle}' AND user_id = {user}"
    )
    rerun = user_history()
    assert rerun["mode"] == "rebuild" and f"rows of {middle} changed" in rerun["reason"]
    assert "(UPDATE)" in rerun["reason"]
    act = state_sums_the_window(user)

    # A compaction (OPTIMIZE: no data change, here of the late row's day) leaves the state
    # valid: the job updates it.
    day_before = ["--run-date", str(RUN_DATE - DAY)]
    assert user_history(*day_before, "--rebuild")["mode"] == "rebuild"
    spark.sql(f"OPTIMIZE delta.`{path}`")
    assert catalog.history("user_activity")[0]["operation"] == "OPTIMIZE"
    assert user_history()["mode"] == "update"

    # A state that lies (a customer active on the day leaving the window dropped, written
    # with the version it claims to count): the update's own check finds it as it runs,
    # nothing wrong is written, and the job rebuilds.
    leaving = act.loc[act["day"] == RUN_DATE - 56 * DAY, "user_id"].min()
    before = catalog.read("user_history", where=[("as_of", "=", RUN_DATE - DAY)])
    catalog.write(
        "user_history",
        before.where(F.col("user_id") != int(leaving)),
        mode="replace",
        replace_where={"as_of": RUN_DATE - DAY},
        user_metadata={
            "user_activity_version": catalog.version("user_activity"),
            "user_activity_id": table_id(str(path)),
        },
    )
    rerun = user_history()
    assert rerun["mode"] == "rebuild" and "disagreed with user_activity" in rerun["reason"]

    # user_activity deleted and created again at its path, one gmv of the window corrected,
    # and its version brought past the one the state counted (table property commits: no
    # data change). Its versions are another table's: the recorded table id says so.
    assert user_history(*day_before, "--rebuild")["mode"] == "rebuild"
    counted, old_id = catalog.version("user_activity"), table_id(str(path))
    copy = str(path.parent / "user_activity_copy")
    catalog.read("user_activity").write.parquet(copy)
    shutil.rmtree(path)
    spark._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()  # as another process would
    fixed = F.when((F.col("date") == middle) & (F.col("user_id") == user), F.col("gmv") + 1)
    catalog.write(
        "user_activity", spark.read.parquet(copy).withColumn("gmv", fixed.otherwise(F.col("gmv")))
    )
    while catalog.version("user_activity") <= counted:  # type: ignore[operator]
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('sparklift.test' = 'pad')")
    rerun = user_history()
    assert rerun["mode"] == "rebuild" and rerun["reason"] == (
        f"user_history as of {RUN_DATE - DAY} counted user_activity's version {counted} of "
        f"table id {old_id}, but user_activity is now table id {table_id(str(path))} "
        "(created again at its path)"
    )
    state_sums_the_window(user)
    # user_activity gone (moved away): not ready, exit 3, before any lookup in its log.
    shutil.move(path, path.parent / "user_activity_away")
    spark._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()
    assert main(["user-history", *sets(warehouse), *keep]) == 3
    assert "user_activity" in capsys.readouterr().err
    shutil.move(path.parent / "user_activity_away", path)
    assert main(["score-propensity", *sets(warehouse), "--model-id", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


@pytest.mark.e2e
def test_bad_input_is_refused_clearly(warehouse, capsys):
    bad = [
        (["--set", "propensity.history_days=60"], 3, "no rows on 2026-04-04"),
        (["--set", "propensity.columns=[visits,basket]"], 2, "no columns ['basket']"),
        (["--set", "propensity.recent_days=60"], 2, "recent_days 60 exceeds history_days 56"),
        (["--set", "propensity.learner=nope"], 2, "propensity.learner: unknown learner 'nope'"),
        (  # each learner's parameters in its own section
            ["--set", "propensity.learner=linear", "--set", "propensity.linear={depth: 3}"],
            2,
            "propensity.linear {'depth': 3} do not fit learner linear",
        ),
        (
            [
                *("--set", "propensity.learner=sklearn.neighbors:KNeighborsClassifier"),
                *("--set", "propensity.learner_params={}"),
                *("--set", "propensity.class_weight=balanced"),
            ],
            2,
            "takes no sample_weight",
        ),
    ]
    for extra, code, message in bad:
        assert main(["train-propensity", *sets(warehouse), *extra]) == code, extra
        assert message in capsys.readouterr().err, extra
    # A day before every model's: no model of its past (exit 2).
    early = ["--run-date", "2026-05-20"]
    for job in ("score-propensity", "user-history"):
        assert main([job, *sets(warehouse), *early]) == 2, job
        err = capsys.readouterr().err
        assert "propensity_models has no model trained for 2026-05-20 or before" in err, job
    # Named, the model is used, but that day's 56-day window starts before the table's first
    # day (2026-04-07): refused, as the features would sum a shorter history than the model
    # was trained on.
    early += ["--model-id", read_pandas(str(warehouse / "propensity_models"))["model_id"][0]]
    for job in ("score-propensity", "user-history"):
        assert main([job, *sets(warehouse), *early]) == 3, job
        assert "no rows on 2026-03-26, the first day of model" in capsys.readouterr().err, job


@pytest.mark.parametrize("rate", [0.0, 0.01, 0.2, 0.22, 0.3, 0.95, 1.0])
def test_the_drift_shift_brings_the_mean_prediction_to_the_observed_rate(rate):
    """Spread predictions (mean 0.2): logit(rate) - logit(mean p) leaves about half of the
    gap; the shift is the root of mean(sigmoid(logit(p) + s)) = rate, checked here by
    applying it."""
    p = np.random.default_rng(3).beta(0.5, 2.0, 20_000)
    s = shift_to(p, rate)
    shifted = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + s)))
    assert shifted.mean() == pytest.approx(min(max(rate, 1e-9), 1 - 1e-9), abs=1e-7)
    if 0 < rate < 1:  # the naive shift falls short of the rate whenever it moves
        naive = np.log(rate / (1 - rate)) - np.log(p.mean() / (1 - p.mean()))
        moved = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + naive)))
        assert abs(moved.mean() - rate) > 1e-3 or abs(rate - p.mean()) < 0.01


class _Even:
    """A classifier that says 1/2 to everyone: the log-odds are the drift term alone."""

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.full((len(X), 2), 0.5)


def test_a_linear_drift_is_held_past_drift_max_days(caplog):
    """``drift: linear`` moves the log-odds by its slope per day from the last training
    snapshot up to ``drift_max_days`` either way, then holds them there, and scoring says
    the model is due; a model saved before the setting (None) follows its line without
    end."""
    origin = dt.date(2026, 6, 16)
    conf = load_config(None, ["propensity.drift=linear"]).propensity
    assert conf.drift_max_days == 28
    model = PropensityModel("x", ["f"], _Even(), 1.0, conf, origin, (0.1, 0.02), origin, 28)
    X = np.zeros((1, 1))
    held = ((28, 0.1 + 0.56), (400, 0.1 + 0.56), (-400, 0.1 - 0.56))  # before it, too
    for days, log_odds in ((10, 0.1 + 0.2), (-10, 0.1 - 0.2), *held):
        p = model.predict(X, origin + days * DAY)[0]
        assert p == pytest.approx(1 / (1 + np.exp(-log_odds)), rel=1e-12), days
    unbounded = replace(model, drift_max_days=None)
    assert unbounded.predict(X, origin + 400 * DAY)[0] == pytest.approx(1 / (1 + np.exp(-8.1)))

    assert not score_propensity._held_drift(model, origin + 28 * DAY)
    assert score_propensity._held_drift(model, origin + 40 * DAY)
    assert "40 days past its last training snapshot (2026-06-16)" in caplog.text
    assert "is held at 28 days (propensity.drift_max_days): retrain it" in caplog.text
    assert not score_propensity._held_drift(replace(model, drift=(0.1, 0.0)), origin + 40 * DAY)
    assert not score_propensity._held_drift(model, origin - 28 * DAY)
    assert score_propensity._held_drift(model, origin - 40 * DAY)
    assert "40 days before its last training snapshot (2026-06-16)" in caplog.text
