"""The per-user history state (:mod:`sparklift.predict.user_history`) against pandas: built
from a window's rows, updated day by day from the day before (users entering, leaving and
coming back, missing values), and its features equal to the training snapshots'."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from sparklift.config import load_config
from sparklift.errors import ConfigError
from sparklift.predict.learners import classifier
from sparklift.predict.propensity import check_weighting, model_features, snapshot_frame
from sparklift.predict.user_history import build, features, state_columns, update

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
    """80 users over 30 days, each active on a day with its own probability (some once,
    some almost always); gmv missing on a tenth of the rows."""
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


def test_state_built_and_updated_day_by_day_equals_pandas(spark, activity):
    frame, df = activity
    day = START + dt.timedelta(days=8)
    state = build(df, CONF, day).localCheckpoint()
    for _ in range(14):
        expected = reference(frame, day)
        got = as_pandas(features(state, CONF, day))[model_features(CONF)]
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
    trained = as_pandas(snapshot_frame(df.fillna({"gmv": 0.0}), day, CONF))[names]
    scored = as_pandas(features(build(df, CONF, day), CONF, day))[names]
    pd.testing.assert_frame_equal(scored, trained, check_exact=False, rtol=1e-12)


def test_balanced_weights_need_a_learner_that_takes_them():
    balanced = CONF.model_copy(update={"class_weight": "balanced"})
    linear = classifier("linear", {}, 0, "propensity.learner")
    assert check_weighting(balanced, linear) == "logisticregression__sample_weight"
    knn = classifier("sklearn.neighbors:KNeighborsClassifier", {}, 0, "propensity.learner")
    with pytest.raises(ConfigError, match="takes no sample_weight"):
        check_weighting(balanced.model_copy(update={"learner": "knn"}), knn)
