"""zone_day_features on hand-made frames whose answers are worked out by hand."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql.types import BooleanType, IntegerType, StringType, StructField, StructType

from sparklift.config import load_config
from sparklift.errors import ConfigError, InputError, InputNotReadyError
from sparklift.features.zone_day import (
    aggregate_activity,
    check_activity_schema,
    check_aggregates,
    complete_grid,
    date_range,
)
from sparklift.quality.contract import ContractError
from sparklift.quality.spec import table_spec

D1, D2 = dt.date(2026, 3, 1), dt.date(2026, 3, 2)
COLS = (
    "date date, user_id long, zone_id int, visits long, orders long, items long, gmv double, "
    "tenure_days int, prior_orders_28d int, prior_gmv_28d double"
)
ZONES = StructType(
    [
        StructField("zone_id", IntegerType()),
        StructField("region", StringType()),
        StructField("eligible", BooleanType()),
    ]
)
DEFS = load_config(None).features.definitions
SPEC = table_spec("user_activity", load_config(None).quality)


def features(spark, rows, zones=(1, 2), dates=(D1, D2)):
    activity = spark.createDataFrame(rows, COLS)
    zdf = spark.createDataFrame([(z, "R1", True) for z in zones], ZONES)
    check_activity_schema(activity, DEFS)
    agg = aggregate_activity(activity, DEFS, SPEC)
    check_aggregates(agg, activity, zdf, list(dates), SPEC)
    out = complete_grid(spark, agg, zdf, list(dates), DEFS)
    return {(r.date, r.zone_id): r.asDict() for r in out.collect()}


ROWS = [
    # date, user, zone, visits, orders, items, gmv, tenure, prior_orders, prior_gmv
    (D1, 1, 1, 3, 1, 2, 20.0, 10, 0, 0.0),
    (D1, 2, 1, 1, 0, 0, 0.0, 400, 5, 60.0),
    (D1, 3, 1, 2, 2, 5, 30.0, 40, 1, 12.0),
    (D2, 1, 1, 1, 1, 1, 8.0, 11, 1, 20.0),
    (D1, 4, 2, 1, 0, 0, 0.0, 29, 0, 0.0),
]


def test_features_match_hand_computation(spark):
    out = features(spark, ROWS)
    z1 = out[(D1, 1)]
    assert (z1["active_users"], z1["visits"], z1["orders"], z1["items"]) == (3, 6, 3, 7)
    assert z1["gmv"] == pytest.approx(50.0)
    assert z1["ordering_users"] == 2
    assert z1["visits_per_user"] == pytest.approx(2.0)
    assert z1["conversion_rate"] == pytest.approx(0.5)
    assert z1["items_per_order"] == pytest.approx(7 / 3)
    assert z1["gmv_per_order"] == pytest.approx(50 / 3)
    assert z1["ordering_user_share"] == pytest.approx(2 / 3)
    assert z1["mean_tenure_days"] == pytest.approx(150.0)
    assert z1["new_user_share"] == pytest.approx(1 / 3)  # tenure 10 only (< 30)
    assert z1["mean_prior_orders_28d"] == pytest.approx(2.0)
    assert z1["repeat_user_share"] == pytest.approx(2 / 3)
    assert z1["heavy_user_share"] == pytest.approx(1 / 3)
    assert z1["multi_visit_share"] == pytest.approx(2 / 3)
    z2 = out[(D1, 2)]
    assert z2["new_user_share"] == 1.0 and z2["conversion_rate"] == 0.0
    assert z2["items_per_order"] == 0.0  # no orders: 0, not null


def test_means_and_shares_are_over_the_rows_where_the_value_is_known(spark):
    """A null tenure (no not_null check on it) is left out of the mean and of the share's
    denominator, not counted as 0 and as "no"."""
    rows = [*ROWS, (D1, 5, 1, 1, 0, 0, 0.0, None, None, None)]
    z1 = features(spark, rows)[(D1, 1)]
    assert z1["active_users"] == 4  # the row counts
    assert z1["mean_tenure_days"] == pytest.approx(150.0)  # (10 + 400 + 40) / 3, not / 4
    assert z1["new_user_share"] == pytest.approx(1 / 3)
    assert z1["mean_prior_orders_28d"] == pytest.approx(2.0)
    assert z1["repeat_user_share"] == pytest.approx(2 / 3)


def test_every_zone_every_day_zero_activity_gives_zeros(spark):
    out = features(spark, ROWS, zones=(1, 2, 3))
    assert len(out) == 6  # 3 zones x 2 days
    empty = out[(D2, 3)]
    assert all(v == 0 for k, v in empty.items() if k not in ("date", "zone_id"))
    assert out[(D2, 2)]["active_users"] == 0


@pytest.mark.parametrize(
    ("row", "error", "match"),
    [  # user_activity's own checks (quality.tables.user_activity), named with a row
        (
            (D1, 9, None, 1, 0, 0, 0.0, 1, 0, 0.0),
            ContractError,
            r"table user_activity of 2026-03-01: check not_null:zone_id failed: 1 nulls, "
            r"e\.g\. at date=2026-03-01, user_id=9 \(zone_id=None\)",
        ),
        (
            (D1, 9, 1, -1, 0, 0, 0.0, 1, 0, 0.0),
            ContractError,
            r"check range:visits failed: 1 values not >= 0 or not finite, e\.g\. at "
            r"date=2026-03-01, zone_id=1, user_id=9 \(visits=-1\)",
        ),
        (
            (D1, 9, 7, 1, 0, 0, 0.0, 1, 0, 0.0),
            ContractError,
            r"check reference:zone_id failed: 1 values not in zones\.zone_id, e\.g\. \[7\]",
        ),
        (  # a NaN used to sum to NaN and leave the zone-day's gmv features at 0
            (D2, 9, 2, 1, 1, 1, float("nan"), 1, 0, 0.0),
            ContractError,
            r"table user_activity of 2026-03-02: check range:gmv failed: 1 values not >= 0 or "
            r"not finite, e\.g\. at date=2026-03-02, zone_id=2, user_id=9 \(gmv=nan\)",
        ),
        (
            (D1, 9, 1, 1, 0, 0, 0.0, 1, 0, float("-inf")),
            ContractError,
            r"range:prior_gmv_28d failed.*user_id=9 \(prior_gmv_28d=-inf\)",
        ),
    ],
)
def test_bad_activity_is_reported(spark, row, error, match):
    with pytest.raises(error, match=match):
        features(spark, [*ROWS, row])


def test_checks_come_from_the_quality_config(spark):
    """The ranges and references are user_activity's checks in quality.tables: without a
    range, a negative count passes, and a NaN is still refused (it would sum to NaN); without
    the reference, an unknown zone is still refused (the grid is built from zones)."""
    bare = load_config(None, ["quality.tables.user_activity.ranges={}",
                              "quality.tables.user_activity.references={}"])  # fmt: skip
    spec = table_spec("user_activity", bare.quality)
    for row, error, match in [
        ((D1, 9, 1, -1, 0, 0, 0.0, 1, 0, 0.0), None, None),
        ((D2, 9, 2, 1, 1, 1, float("nan"), 1, 0, 0.0), InputError, r"NaN or infinite.*'gmv': 1"),
        ((D1, 9, 7, 1, 0, 0, 0.0, 1, 0, 0.0), InputError, r"missing from table zones, e.g. \[7\]"),
    ]:
        activity = spark.createDataFrame([*ROWS, row], COLS)
        zdf = spark.createDataFrame([(z, "R1", True) for z in (1, 2)], ZONES)
        agg = aggregate_activity(activity, DEFS, spec)
        if error is None:
            check_aggregates(agg, activity, zdf, [D1, D2], spec)
            continue
        with pytest.raises(error, match=match) as e:
            check_aggregates(agg, activity, zdf, [D1, D2], spec)
        assert not isinstance(e.value, ContractError)


def test_a_range_that_only_warns_still_keeps_nan_out_of_the_sums(spark):
    """With user_activity's ranges at severity warn, features does not refuse a negative
    count (the check job warns of it), but a NaN is still refused: it would sum to NaN."""
    quality = load_config(None).quality
    checks = quality.tables["user_activity"].model_copy(update={"severity": {"range": "warn"}})
    warned = quality.model_copy(update={"tables": quality.tables | {"user_activity": checks}})
    spec = table_spec("user_activity", warned)
    assert spec.severity_of("range") == "warn"
    zdf = spark.createDataFrame([(z, "R1", True) for z in (1, 2)], ZONES)
    negative = spark.createDataFrame([*ROWS, (D1, 9, 1, -1, 0, 0, 0.0, 1, 0, 0.0)], COLS)
    check_aggregates(aggregate_activity(negative, DEFS, spec), negative, zdf, [D1, D2], spec)
    nan = spark.createDataFrame([*ROWS, (D2, 9, 2, 1, 1, 1, float("nan"), 1, 0, 0.0)], COLS)
    with pytest.raises(InputError, match=r"NaN or infinite values in column\(s\) \{'gmv': 1\}"):
        check_aggregates(aggregate_activity(nan, DEFS, spec), nan, zdf, [D1, D2], spec)


def test_dates_without_activity_are_not_ready(spark):
    with pytest.raises(InputNotReadyError, match="no rows for 1 of the requested dates"):
        features(spark, ROWS, dates=(D1, D2, dt.date(2026, 3, 3)))


def test_missing_column_and_bad_condition(spark):
    activity = spark.createDataFrame(ROWS, COLS).drop("gmv")
    with pytest.raises(InputError, match="lacks columns \\['gmv'\\]"):
        check_activity_schema(activity, DEFS)
    bad = load_config(None, ["features.definitions=[{name: x, agg: share, where: 'nope > 1'}]"])
    with pytest.raises(ConfigError, match="feature 'x': condition 'nope > 1'"):
        check_activity_schema(spark.createDataFrame(ROWS, COLS), bad.features.definitions)


def test_date_range():
    assert date_range(D1, D2) == [D1, D2]
    with pytest.raises(InputError, match="before"):
        date_range(D2, D1)
