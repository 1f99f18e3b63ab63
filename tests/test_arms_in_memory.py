"""A campaign's arms drawn in the driver's memory are the rows Spark draws (arms.py), on
odd input too: tied margins, null, NaN, infinite and negative scores, a capped voucher,
rows without a budget group, a group without an explore slice."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from sparklift.allocation import arms, ties
from sparklift.allocation import arms_in_memory as in_driver
from sparklift.allocation.distributed import tally

VOUCHERS = ["V01", "V02", "V03"]
CAMPAIGN, SEED = "c", 7


@pytest.fixture(scope="module")
def scores(spark):
    """3 vouchers for 1,500 customers in groups A, B, C and none; integer scores, so that
    margins tie; a few null, NaN, infinite and negative ones."""
    rng = np.random.default_rng(5)
    n = 1500
    ids = np.repeat(np.arange(n) * 7 + 3, 3)
    group = np.repeat(rng.choice(np.array(["A", "B", "C", None], dtype=object), n,
                                 p=[0.45, 0.3, 0.2, 0.05]), 3)  # fmt: skip
    uplift = rng.integers(-1, 4, 3 * n).astype(float)
    cost = rng.integers(-1, 3, 3 * n).astype(float)
    odd = rng.choice(3 * n, 300, replace=False)
    uplift[odd[:60]] = np.nan
    uplift[odd[60:80]] = np.inf
    cost[odd[80:140]] = np.nan
    frame = pd.DataFrame(
        {
            "customer_id": ids,
            "budget_group": group,
            "voucher_id": np.tile(VOUCHERS, n),
            "uplift_objective": uplift,
            "uplift_cost": cost,
            "arm": np.repeat(rng.choice(["policy", "holdout", "explore"], n), 3),
        }
    )
    table = pa.Table.from_pandas(frame, preserve_index=False)
    null_uplift = mask_at(3 * n, odd[140:180])
    null_cost = mask_at(3 * n, odd[180:220])
    table = table.set_column(3, "uplift_objective", pa.array(uplift, mask=null_uplift))
    table = table.set_column(4, "uplift_cost", pa.array(cost, mask=null_cost))
    return spark.createDataFrame(table)


def mask_at(n: int, at: np.ndarray) -> np.ndarray:
    """A mask of ``n`` rows, true at ``at``."""
    mask = np.zeros(n, dtype=bool)
    mask[at] = True
    return mask


def rows_of(table: pa.Table) -> list[tuple]:
    """Rows sorted by (customer, group), NaN and null told apart."""

    def cell(v):
        return "NaN" if isinstance(v, float) and math.isnan(v) else v

    cols = table.select(in_driver.ROWS.names).to_pylist()
    rows = [tuple(cell(r[c]) for c in in_driver.ROWS.names) for r in cols]
    return sorted(rows, key=lambda r: (r[0], str(r[1])))


@pytest.mark.parametrize("caps", [{}, {"V01": 5, "V03": 0, "V99": 1}], ids=["no caps", "caps"])
def test_explore_draws_and_queues_as_spark_does(scores, caps):
    """With caps too: V01 to the first 5 of its queue over all groups, V03 to none (V99
    is not a campaign voucher: no cap of the arm)."""
    slices = {"A": 40.0, "B": 25.5}  # C: none (only cost-0 draws are sent), None: none
    collected = in_driver.collect(scores, VOUCHERS, CAMPAIGN, SEED)
    mine = in_driver.explore(collected, VOUCHERS, slices, caps)
    spark_rows = arms.explore_rows(
        scores.where(F.col("arm") == arms.EXPLORE), VOUCHERS, slices, caps, CAMPAIGN, SEED
    )
    theirs = arms.union(spark_rows.limit(0), None, spark_rows).toArrow()
    assert mine.num_rows > 20 and rows_of(mine) == rows_of(theirs)
    sent = in_driver.sends(mine)
    assert all(sent.get(v, 0) <= q for v, q in caps.items())
    paid = dict(spark_rows.groupBy("budget_group").agg(F.sum("expected_cost")).collect())
    assert in_driver.spend(mine) == pytest.approx({g: v for g, v in paid.items() if g})
    # The queue stopped inside each slice: something was left unsent in A and B.
    drawn = in_driver.of_arm(collected, arms.EXPLORE).num_rows / 3
    assert mine.num_rows < drawn


LAM = {"A": 0.5, "B": 1.0, "C": 0.0}  # 1.0 and 0.0: integer margins, many ties


@pytest.mark.parametrize(
    "rule",
    [
        arms.Rule(LAM, LAM),
        # margins of 0 (ties at B's and C's multipliers) targeted up to the fill's cuts
        arms.Rule(LAM, LAM, fill={"B": 5_000, "C": 2**63 - 1}),
        # ... after a cap's walk that cut through tied askers
        arms.Rule(
            LAM,
            {"A": 0.25, "B": 1.0},
            {"V02": 0.5},
            {"V02": 1.0},
            {"V02": 0.5},
            VOUCHERS,
            fill={"A": 4_000, "B": 9_000},
        ),
        arms.Rule(LAM, {"A": 0.25, "B": 1.0}, {"V02": 0.5}, order=VOUCHERS),  # capped, not cut
        arms.Rule(LAM, {"A": 0.25, "B": 1.0}, {"V02": 0.5}, {"V02": 1.0}, order=VOUCHERS),
        arms.Rule(LAM, {"A": 0.25}, {"V02": 0.5}, {"V02": 1.0}, {"V02": 0.5}, VOUCHERS),  # ties
        # tied leads ranked by net value first: above 0.5 kept, below refused, at it drawn
        arms.Rule(
            LAM, {"A": 0.25}, {"V02": 0.5}, {"V02": 1.0}, {"V02": 0.5}, VOUCHERS, {"V02": 0.5}
        ),
        arms.Rule(LAM, LAM, {"V01": 0.0, "V03": 1.0}, {"V01": math.inf, "V03": 0.5}, {}, VOUCHERS),
        # Two caps that refuse: a customer refused by one asks for its next best, which may
        # be the other capped voucher; the order breaks ties between equal nets.
        arms.Rule(
            LAM,
            LAM,
            {"V01": 0.0, "V02": 0.5},
            {"V01": 1.0, "V02": 0.5},
            {"V01": 0.5},
            tuple(reversed(VOUCHERS)),
        ),
    ],
)
def test_holdout_takes_the_policy_rule_as_spark_does(scores, rule):
    collected = in_driver.collect(scores, VOUCHERS, CAMPAIGN, SEED)
    mine = in_driver.holdout(collected, rule)
    held = scores.where(F.col("arm") == arms.HOLDOUT).drop("arm")
    spark_rows = arms.holdout_rows(held, rule, ties.tie_draw(CAMPAIGN, SEED))
    theirs = arms.union(spark_rows.limit(0).select(*_policy_columns()), spark_rows, None)
    theirs = theirs.toArrow()
    assert rows_of(mine) == rows_of(theirs)
    targeted = targeted_count(mine)
    assert 0 < targeted < mine.num_rows  # some targeted, some not


def test_union_and_tally_match_spark(spark, scores):
    collected = in_driver.collect(scores, VOUCHERS, CAMPAIGN, SEED)
    policy = pd.DataFrame(
        {
            "customer_id": [3, 17],
            "budget_group": ["A", "B"],
            "voucher_id": ["V01", "V03"],
            "expected_uplift": [2.0, 1.0],
            "expected_cost": [1.0, 0.0],
        }
    )
    holdout = in_driver.holdout(collected, arms.Rule({"A": 0.5}, {"A": 0.5}))
    explore = in_driver.explore(collected, VOUCHERS, {"A": 10.0}, {})
    table = in_driver.union(policy, holdout, explore)
    assert table.num_rows == 2 + holdout.num_rows + explore.num_rows
    mine = in_driver.tally(table)
    theirs = tally(spark.createDataFrame(table), "arm", "policy_voucher_id")
    key = ["budget_group", "voucher_id", "arm", "policy_voucher_id"]
    merged = mine.merge(theirs, on=key, how="outer", suffixes=("", "_spark"), indicator=True)
    assert (merged["_merge"] == "both").all() and (merged["n"] == merged["n_spark"]).all()
    sent = merged[merged["arm"] != arms.HOLDOUT]
    assert np.allclose(sent["cost"], sent["cost_spark"], equal_nan=True)


def _policy_columns() -> list[str]:
    return ["customer_id", "budget_group", "expected_uplift", "expected_cost",
            F.col("policy_voucher_id").alias("voucher_id")]  # fmt: skip


def targeted_count(table: pa.Table) -> int:
    return table.num_rows - table["policy_voucher_id"].null_count


def explore_collected(n: int = 1000, explore_share: float = 0.1, seed: int = 3) -> pa.Table:
    """Rows as :func:`.arms_in_memory.collect` brings them to the driver, drawn here in
    NumPy: 3 vouchers for ``n`` customers in groups A and B, ``explore_share`` of them in
    the explore arm, each with its voucher pick and queue draw."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(n).astype(np.int64) * 5 + 1  # the queue is not the id order
    explore = rng.random(n) < explore_share
    frame = pd.DataFrame(
        {
            "customer_id": np.repeat(ids, 3),
            "budget_group": np.repeat(rng.choice(["A", "B"], n), 3),
            "voucher_id": np.tile(VOUCHERS, n),
            "uplift_objective": rng.uniform(0.0, 1.0, 3 * n),
            "uplift_cost": rng.uniform(0.5, 2.0, 3 * n),
            "arm": np.repeat(np.where(explore, arms.EXPLORE, arms.POLICY), 3),
            in_driver.PICK: np.repeat(rng.integers(0, 3, n), 3).astype(np.int32),
            in_driver.ORDER: np.repeat(rng.random(n), 3),
            in_driver.TIE: np.repeat(rng.random(n), 3),
        }
    )
    return pa.Table.from_pandas(frame, preserve_index=False)


def explore_reference(rows: pa.Table, caps: dict, slices: dict) -> pd.DataFrame:
    """The explore arm computed directly in pandas: each explore customer's drawn voucher,
    the first ``cap`` of a capped voucher's customers in (order, customer) order, then in
    that order per group while the running cost fits the group's slice."""
    frame = rows.to_pandas()
    picked = np.asarray(VOUCHERS)[frame[in_driver.PICK]]
    drawn = frame[(frame["arm"] == arms.EXPLORE) & (frame["voucher_id"] == picked)]
    drawn = drawn.sort_values([in_driver.ORDER, "customer_id"])
    place = drawn.groupby("voucher_id").cumcount()  # 0 = first in the voucher's queue
    cap = drawn["voucher_id"].map(caps)
    drawn = drawn[cap.isna() | (place < cap)]
    spent = drawn.groupby("budget_group")["uplift_cost"].cumsum()
    return drawn[spent <= drawn["budget_group"].map(slices)]


@pytest.mark.parametrize("cap", [5, 0])
def test_explore_sends_a_capped_voucher_at_most_its_cap(cap):
    """1,000 customers, 10% exploring, slices that never bind: about 33 are drawn V01, but
    with a cap of 5 only the first 5 of V01's queue get it (a cap of 0: none), while V02
    and V03 go to every customer drawn them."""
    rows = explore_collected()
    unbounded = {"A": 1e9, "B": 1e9}
    frame = rows.to_pandas()
    explorers = frame[frame["arm"] == arms.EXPLORE].drop_duplicates("customer_id")
    drawn = pd.Series(np.asarray(VOUCHERS)[explorers[in_driver.PICK]]).value_counts()
    assert drawn["V01"] > 20
    sent = in_driver.explore(rows, VOUCHERS, unbounded, {"V01": cap})
    got = in_driver.sends(sent)
    assert got.get("V01", 0) == cap
    assert (got["V02"], got["V03"]) == (drawn["V02"], drawn["V03"])
    v01 = explorers[np.asarray(VOUCHERS)[explorers[in_driver.PICK]] == "V01"]
    first = v01.sort_values([in_driver.ORDER, "customer_id"])["customer_id"].head(cap)
    mine = np.asarray(sent["customer_id"])[np.asarray(sent["voucher_id"]) == "V01"]
    assert sorted(mine) == sorted(first)


def test_explore_caps_before_the_slices_as_a_direct_computation():
    """Caps and binding slices together: the rows sent, their costs and each group's
    spend are those of a direct pandas computation (cap first, then the slice, so a
    customer cut by a cap leaves its slice to the next in the queue)."""
    rows = explore_collected(n=3000, explore_share=0.2, seed=4)
    caps, slices = {"V01": 7, "V02": 0}, {"A": 40.0, "B": 25.0}
    mine = in_driver.explore(rows, VOUCHERS, slices, caps).to_pandas()
    ref = explore_reference(rows, caps, slices)
    got = mine.sort_values("customer_id", ignore_index=True)
    want = ref.sort_values("customer_id", ignore_index=True)
    assert got["customer_id"].tolist() == want["customer_id"].tolist()
    assert got["voucher_id"].tolist() == want["voucher_id"].tolist()
    np.testing.assert_allclose(got["expected_cost"], want["uplift_cost"], rtol=0)
    assert (got["voucher_id"] == "V01").sum() == 7 and "V02" not in set(got["voucher_id"])
    spend = want.groupby("budget_group")["uplift_cost"].sum()
    assert in_driver.spend(pa.Table.from_pandas(mine)) == pytest.approx(spend.to_dict())
