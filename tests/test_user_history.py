"""The per-user history state (:mod:`sparklift.predict.user_history`) against pandas: built
from a window's rows, updated day by day from the day before (users entering, leaving and
coming back, missing values), and its features equal to the training snapshots'."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from sparklift.config import load_config
from sparklift.errors import ConfigError
from sparklift.predict.history import history_features
from sparklift.predict.learners import classifier
from sparklift.predict.propensity import check_weighting, model_features, snapshot_frame
from sparklift.predict.scoring import _row_groups
from sparklift.predict.user_history import (
    MISMATCH,
    build,
    feature_inputs,
    feature_matrix,
    state_columns,
    update,
    windows_of,
)

START = dt.date(2026, 3, 1)
CONF = load_config(
    None,
    [
        "propensity.history_days=7",
        "propensity.recent_days=3",
        "propensity.columns=[visits,gmv]",
        "propensity.label_column=visits",
    ],
).propensity


@pytest.fixture(scope="module")
def activity(spark):
    """80 users over 30 days, each active on a day with its own probability (some rarely,
    some almost always), and one active once; gmv missing on a tenth of the rows and on
    every row of one user."""
    rng = np.random.default_rng(5)
    p = rng.uniform(0.02, 0.9, 80)
    rows = [
        (START + dt.timedelta(days=d), u, int(rng.integers(1, 6)), None)
        for d in range(30)
        for u in range(80)
        if rng.random() < p[u]
    ]
    frame = pd.DataFrame(rows, columns=["date", "user_id", "visits", "gmv"])
    frame["gmv"] = np.where(rng.random(len(frame)) < 0.1, np.nan, rng.gamma(2.0, 30.0, len(frame)))
    frame.loc[frame["user_id"] == 3, "gmv"] = np.nan  # a user without any gmv
    once = pd.DataFrame([(START + dt.timedelta(days=5), 81, 2, 10.0)], columns=frame.columns)
    frame = pd.concat([frame, once], ignore_index=True)  # a user active on one day only
    df = spark.createDataFrame(frame, "date date, user_id int, visits int, gmv double")
    return frame, df.cache()


def reference(frame: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    """The model's features as of ``day``, computed with pandas."""
    out = None
    for prefix, days in (("", CONF.history_days), ("r_", CONF.recent_days)):
        first = day - dt.timedelta(days=days - 1)
        w = frame[(frame["date"] >= first) & (frame["date"] <= day)]
        g = w.groupby("user_id").agg(
            active_days=("date", "size"),
            last=("date", "max"),
            sum__visits=("visits", "sum"),
            sum__gmv=("gmv", "sum"),
        )
        g["recency_days"] = [(day - d).days for d in g.pop("last")]
        for m in CONF.columns:
            g[f"mean__{m}"] = g[f"sum__{m}"] / g["active_days"]
        g = g.add_prefix(prefix).astype(float)
        out = g if out is None else out.join(g, how="left")
    out = out.fillna({"r_active_days": 0.0, "r_recency_days": CONF.recent_days + 1.0}).fillna(0.0)
    return out[model_features(CONF)].sort_index()


def as_pandas(df) -> pd.DataFrame:
    return df.toPandas().set_index("user_id").sort_index()


def features(state, day: dt.date) -> pd.DataFrame:
    """The features scoring computes from ``state`` (in NumPy), by user."""
    table = state.select("user_id", *feature_inputs(CONF)).toArrow()
    names = model_features(CONF)
    X = feature_matrix(table, CONF, day, names)
    index = pd.Index(table["user_id"].to_numpy(), name="user_id")
    return pd.DataFrame(X, columns=names, index=index).sort_index()


def test_state_built_and_updated_day_by_day_equals_pandas(spark, activity):
    frame, df = activity
    day = START + dt.timedelta(days=8)
    state = build(df, CONF, day).localCheckpoint()
    for _ in range(9):  # past a whole window: every day has entered and left
        expected = reference(frame, day)
        got = features(state, day)
        assert list(got.index) == list(expected.index), day  # who is a customer
        pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12, atol=1e-9)
        # The incremental state equals the one rebuilt from the window's rows.
        rebuilt = as_pandas(build(df, CONF, day))
        kept = as_pandas(state)
        exact = [c for c in state_columns(CONF.columns) if "sum__" not in c]
        pd.testing.assert_frame_equal(kept[exact], rebuilt[exact])
        assert set(kept["as_of"]) == {day} and set(kept["history_days"]) == {7}
        day += dt.timedelta(days=1)
        state = update(state, df, CONF, day).localCheckpoint()
    # Users came and went: the customer set changed along the way.
    assert frame.groupby("user_id")["date"].nunique().min() <= 3


def test_state_features_are_the_training_snapshots(activity):
    _, df = activity
    day = START + dt.timedelta(days=15)
    names = model_features(CONF)
    trained = as_pandas(snapshot_frame(df, day, CONF))[names]
    assert trained.loc[3, "mean__gmv"] == 0.0  # no values: 0, as the state gives
    scored = features(build(df, CONF, day), day)
    pd.testing.assert_frame_equal(scored, trained, check_exact=False, rtol=1e-12)


def test_scoring_features_equal_spark_formulas_to_the_bit(spark):
    """:func:`feature_matrix` (NumPy, what scoring runs) against
    :func:`history_features` (Spark, what training runs) on the edge cases: no recent
    activity, null and NaN sums, infinities, a null count."""
    day = START + dt.timedelta(days=20)
    first, recent = windows_of(CONF, day)
    rows = [
        (1, 7, day, 12.0, 3.5, 3, day, 5.0, 1.25),
        (2, 1, first, 1.0, None, 0, None, 0.0, None),  # no recent activity, gmv missing
        (3, 3, day - dt.timedelta(days=2), float("nan"), float("inf"), 1, recent, 2.0, 0.1),
        (4, None, None, None, None, None, None, None, None),
        (5, 2, day - dt.timedelta(days=5), 1e300, -0.0, 2, day, 1e-300, 3.0),
    ]
    schema = (
        "user_id long, w_active_days long, w_last_active date, w_sum__visits double, "
        "w_sum__gmv double, r_active_days long, r_last_active date, r_sum__visits double, "
        "r_sum__gmv double"
    )
    state = spark.createDataFrame(rows, schema)
    spark_side = state.select(
        "user_id",
        *history_features(CONF.columns, first, day, "w_"),
        *history_features(CONF.columns, recent, day, "r_", out="r_"),
    )
    expected = as_pandas(spark_side)[model_features(CONF)]
    got = features(state, day)
    assert got.shape == (5, len(model_features(CONF)))
    np.testing.assert_array_equal(got.to_numpy(), expected.to_numpy().astype(float))


def test_state_file_reader_fills_a_column_the_file_lacks_as_spark_does(spark, tmp_path):
    """A state file written before the table gained a column: the Arrow reader's tasks
    (two per file here) read its rows with that column null, as Spark's reader does."""
    day = START + dt.timedelta(days=20)
    schema = (
        "user_id long, w_active_days long, w_last_active date, w_sum__visits double, "
        "w_sum__gmv double, r_active_days long, r_last_active date, r_sum__visits double, "
        "r_sum__gmv double"
    )
    rows = [(i, i % 7, day, i * 0.5, 1.0 / i, i % 3, day, 0.25 * i, 2.0) for i in range(1, 9)]
    old = spark.createDataFrame(rows, schema).drop("r_sum__gmv").toPandas()
    path = str(tmp_path / "part-0.parquet")
    pq.write_table(pa.Table.from_pandas(old, preserve_index=False), path, row_group_size=3)
    columns = ["user_id", *feature_inputs(CONF)]
    got = pa.Table.from_batches(
        [b for task in (0, 1) for b in _row_groups([path], 2, task, columns)]
    ).to_pandas()
    expected = spark.read.schema(schema).parquet(path).select(*columns).toPandas()
    assert got["r_sum__gmv"].isna().all() and len(got) == 8
    pd.testing.assert_frame_equal(
        got.sort_values("user_id").reset_index(drop=True),
        expected.sort_values("user_id").reset_index(drop=True),
        check_dtype=False,
    )


def test_an_update_refuses_a_state_the_activity_rows_no_longer_match(spark, activity):
    """A row that leaves the window but never entered it (late), or one that entered and is
    gone when its day leaves (removed): the update fails its check, nothing is returned."""
    _, df = activity
    day = START + dt.timedelta(days=12)
    state = build(df, CONF, day - dt.timedelta(days=1)).localCheckpoint()
    leaving = day - dt.timedelta(days=CONF.history_days)
    late = df.unionByName(
        df.where(F.col("date") == F.lit(leaving)).limit(1).withColumn("user_id", F.lit(999))
    )
    removed = df.where((F.col("user_id") != 81) | (F.col("date") != F.lit(leaving)))
    for changed, what in ((late, "late"), (removed, "removed")):
        with pytest.raises(Exception, match=f"{MISMATCH}.*disagrees with user_activity"):
            update(state, changed, CONF, day).collect()
        assert update(state, df, CONF, day).count() > 0, what  # the unchanged rows pass


def test_balanced_weights_need_a_learner_that_takes_them():
    balanced = CONF.model_copy(update={"class_weight": "balanced"})
    linear = classifier("linear", {}, 0, "propensity.learner")
    assert check_weighting(balanced, linear) == "logisticregression__sample_weight"
    knn = classifier("sklearn.neighbors:KNeighborsClassifier", {}, 0, "propensity.learner")
    with pytest.raises(ConfigError, match="takes no sample_weight"):
        check_weighting(balanced.model_copy(update={"learner": "knn"}), knn)
