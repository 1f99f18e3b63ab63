"""The histogram the Python workers sum while they build the solver's cache (sums.py)
against the same histogram summed again in pandas from the rows they cached; and the
policy arm and the tie draws drawn in NumPy against Spark's own draws."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from sparklift.allocation import layout as L
from sparklift.allocation.arms import POLICY, arm, policy_arm
from sparklift.allocation.layout import customers
from sparklift.allocation.sums import FLAGS, TOTALS, FileIds, Sums, overlapping
from sparklift.synthetic.rand import uniform, uniform_of_ids, uniform_state, uniform_state_of

VOUCHERS = ["V01", "V02", "V03"]


def scores_with_defects(n: int = 3000) -> pd.DataFrame:
    """Long-tailed scores of n customers in 4 groups; customer 5 has V01 twice, 7 a NaN
    score, 9 a row for a voucher not in the campaign, 11 a row in a second group, and
    13 and 14 no group."""
    rng = np.random.default_rng(11)
    size = rng.lognormal(0, 1.0, n)
    group = rng.choice(["NL", "DE", "BE", "FR"], n, p=[0.55, 0.25, 0.15, 0.05])
    rows = pd.DataFrame(
        {
            "customer_id": np.repeat(np.arange(n, dtype=np.int64), 3),
            "budget_group": np.repeat(group, 3).astype(object),
            "voucher_id": np.tile(VOUCHERS, n),
            "uplift_objective": np.repeat(size, 3) * rng.uniform(-0.05, 0.3, 3 * n),
            "uplift_cost": np.repeat(size, 3) * np.tile([1.0, 2.0, 4.0], n),
        }
    )
    rows.loc[rows["customer_id"].isin([13, 14]), "budget_group"] = None
    rows.loc[(rows["customer_id"] == 7) & (rows["voucher_id"] == "V02"), "uplift_objective"] = (
        np.nan
    )
    rows.loc[(rows["customer_id"] == 11) & (rows["voucher_id"] == "V03"), "budget_group"] = "ZZ"
    extra = rows[(rows["customer_id"] == 5) & (rows["voucher_id"] == "V01")]
    other = rows[(rows["customer_id"] == 9) & (rows["voucher_id"] == "V01")]
    return pd.concat([rows, extra, other.assign(voucher_id="V99")], ignore_index=True)


def summed_again(cached: pd.DataFrame) -> pd.DataFrame:
    """The histogram of cached customer rows, in pandas: per (group, bucket) the steps'
    summed cost and value and their count; per group customers and base value."""
    steps = pd.concat(
        [
            cached[["budget_group", L.step_bucket(k), L.step_cost(k), L.step_value(k)]].set_axis(
                ["budget_group", "bucket", "d_cost", "d_value"], axis=1
            )
            for k in range(len(VOUCHERS))
        ]
    ).dropna(subset=["bucket"])
    hist = steps.groupby(["budget_group", "bucket"], dropna=False).agg(
        d_cost=("d_cost", "sum"), d_value=("d_value", "sum"), n=("d_cost", "size")
    )
    totals = cached.groupby("budget_group", dropna=False).agg(
        d_value=(L.BASE_VALUE, "sum"), n=(L.BASE_VALUE, "size")
    )
    totals = totals.assign(bucket=TOTALS, d_cost=0.0).set_index("bucket", append=True)
    return pd.concat([hist, totals]).reset_index()


def test_the_workers_histogram_is_the_cached_rows_histogram(spark):
    """Every (group, bucket) row, its count and sums, and the per-group totals with the
    defect counts, as summed again from the cached rows; a partition computed twice (a
    second action on the uncached frame) counts once."""
    rows = scores_with_defects()
    sums = Sums(spark)
    env = customers(spark.createDataFrame(rows).repartition(3), VOUCHERS, None, sums.acc)
    cached = env.toPandas()
    assert env.count() == len(cached) == 3000  # every partition computed a second time
    got, _ = sums.take()
    want = summed_again(cached)
    key = ["budget_group", "bucket"]
    both = want.merge(got, on=key, how="outer", suffixes=("", "_got"), indicator=True)
    assert (both["_merge"] == "both").all(), both[both["_merge"] != "both"].head()
    assert (both["n"] == both["n_got"]).all()
    np.testing.assert_allclose(both["d_cost_got"], both["d_cost"], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(both["d_value_got"], both["d_value"], rtol=1e-12, atol=1e-9)
    totals = got[got["bucket"] == TOTALS]
    assert totals[list(FLAGS)].sum().to_dict() == {
        "dup": 1,
        "bad": 1,
        "other": 1,
        "multi": 1,
        "nogroup": 6,
    }
    nogroup = totals[totals["budget_group"].isna()]
    assert (nogroup["nogroup"].item(), nogroup["n"].item()) == (6, 2)
    assert len(got[got["bucket"] != TOTALS]) > 1000  # 1/512-octave buckets: many rows


def test_overlapping_files():
    """Files apart in their id ranges, each without a repeat, are the only safe case."""
    apart = {0: FileIds(0, 99, 0), 1: FileIds(100, 150, 0), 2: FileIds(-50, -1, 0)}
    assert not overlapping(apart)
    assert overlapping({**apart, 3: FileIds(150, 160, 0)})
    assert overlapping({**apart, 1: FileIds(100, 150, 1)})
    assert not overlapping({})


def test_the_policy_arm_drawn_in_numpy_is_sparks(spark):
    """Spark's xxhash64 draw, bit for bit, on extreme and random ids; and the arm."""
    rng = np.random.default_rng(3)
    ids = np.r_[rng.integers(-(2**63), 2**63 - 1, 20_000), 0, -1, 2**63 - 1, -(2**63)]
    frame = spark.createDataFrame(pd.DataFrame({"customer_id": ids.astype(np.int64)}))
    draws = frame.select(
        uniform(7, "arm.c1", F.col("customer_id")).alias("u"),
        (arm("c1", 7, 0.1, 0.05) == POLICY).alias("policy"),
    ).toPandas()
    got = uniform_of_ids(uniform_state(spark, 7, "arm.c1"), ids)
    assert np.array_equal(got, draws["u"].to_numpy())
    keep = policy_arm(spark, "c1", 7, 0.1, 0.05).mask(ids)
    assert np.array_equal(keep, draws["policy"].to_numpy())
    assert 0.83 < keep.mean() < 0.87
    assert policy_arm(spark, "c1", 7, 0.0, 0.0).mask(ids).all()


def test_a_draw_of_a_customer_and_a_string_in_numpy_is_sparks(spark):
    """Spark's xxhash64 of (seed, salt, long, string), bit for bit, for strings of every
    length path (bytes, a 4-byte word, 8-byte words, 32-byte stripes), and UTF-8."""
    rng = np.random.default_rng(4)
    ids = np.r_[rng.integers(-(2**63), 2**63 - 1, 2_000), 0, -1].astype(np.int64)
    keys = ["", "V", "V01", "V012", "V0123", "voucher", "voucher1", "voucher_12", "é€",
            "a" * 16, "winback_voucher_20", "x" * 31, "y" * 32,
            "WINBACK_2026_Q3_FREE_DELIVERY_5EUR", "z" * 70]  # fmt: skip
    frame = spark.createDataFrame(pd.DataFrame({"customer_id": ids}))
    draws = frame.select(
        *[
            uniform(7, "tie.c1", F.col("customer_id"), F.lit(k)).alias(str(n))
            for n, k in enumerate(keys)
        ]
    ).toPandas()
    state = uniform_state(spark, 7, "tie.c1")
    for n, k in enumerate(keys):
        assert np.array_equal(uniform_of_ids(state, ids, k), draws[str(n)].to_numpy()), k
    # The state itself without Spark: seeds of 32 bits, salts of any length.
    for seed, salt in [(0, "tie"), (7, "tie.c1"), (-5, ""), (2**31 - 1, "x" * 31), (3, "é"),
                       (1, "feedback.a_long_campaign_label_2026")]:  # fmt: skip
        assert uniform_state_of(seed, salt) == uniform_state(spark, seed, salt), (seed, salt)
    with pytest.raises(ValueError, match="32 bits"):
        uniform_state_of(2**31, "tie")


def test_the_fill_below_the_crossing_bucket_stays_under_its_row_limit():
    """The buckets below the crossing one go to the driver for the fill until their cost is
    twice the budget left, but never past FILL_STEPS breakpoints: a block of 10 million
    tied steps right below is left out (before, it went whole), while a small bucket that
    reaches twice the budget is still taken, and one wholly needed is taken below it."""
    from sparklift.allocation.budgets import FILL_STEPS, plan_groups
    from sparklift.allocation.distributed import Problem

    def hist(rows: list[tuple[int, float, int]]) -> pd.DataFrame:
        body = [("g", b, c, 2.0 * c, n, *[0] * len(FLAGS)) for b, c, n in rows]
        totals = ("g", TOTALS, 0.0, 0.0, sum(n for _, _, n in rows), *[0] * len(FLAGS))
        return pd.DataFrame([*body, totals], columns=["budget_group", "bucket", "d_cost",
                                                      "d_value", "n", *FLAGS])  # fmt: skip

    problem = Problem(["V1"], {"g": 5.0})
    tied = plan_groups(hist([(100, 10.0, 10), (99, 1e7, 10_000_000)]), problem, False)
    assert tied.ranges["g"][:2] == (100, 100) and tied.crossing_n["g"] == 10
    # Bucket 99 costs 3 against twice the 5 left (10): wholly needed; 98 reaches 10: taken.
    small = plan_groups(hist([(100, 10.0, 10), (99, 3.0, 30), (98, 9.0, 90), (97, 9.0, 90)]),
                        problem, False)  # fmt: skip
    assert small.ranges["g"][:2] == (98, 100)
    crowded = hist([(100, 10.0, 10), (99, 3.0, FILL_STEPS - 100), (98, 9.0, 200)])
    assert plan_groups(crowded, problem, False).ranges["g"][:2] == (99, 100)
