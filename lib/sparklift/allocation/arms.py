"""A campaign's arms: policy, holdout and explore.

Each customer's arm is a uniform draw hashed from (seed, campaign, customer): below
``holdout_share`` it is held out, then ``explore_share`` explores, the rest is the policy.
So the arms are random within every budget group, reproducible per seed, and a customer
keeps its arm on every run of the campaign.

- **Explore**: each explore customer is drawn one of the campaign's vouchers uniformly.
  Within a group, they are sent in the order of a second hash while their expected cost
  fits the group's explore slice (``explore_budget_share`` of its budget); the rest get
  nothing and are not written. The sent ones are a random sample, as the order is random.
- **Policy**: the solver allocates the policy customers alone, under each group's budget
  minus what its explore arm spends, so the targeted customers use the whole budget.
- **Holdout**: held-out customers get the policy's own decision rule, with the multipliers
  the solve found: the voucher j maximising u_j - lambda_g c_j - mu_j (mu_j: the cap
  multiplier of a capped voucher; ties to the greatest voucher id), if that is positive (a
  voucher whose margin is null, NaN or infinite is none). That is the voucher the policy
  would have sent them (up to the solver's tie-break at its margin); it is recorded as
  ``policy_voucher_id`` (null if none) and nothing is sent (``voucher_id`` is null). Every
  held-out customer is written: those the policy targets are the measurement's control,
  and all of them the control of the explore arm's randomized campaign
  (:mod:`sparklift.measure.feedback`).

A campaign solved in the driver's memory gets the same arms there, by the same rules
(:mod:`.arms_in_memory`): the hash draws come from Spark, in the pass that collects it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from sparklift.synthetic.rand import uniform, uniform_of_ids, uniform_state

POLICY, HOLDOUT, EXPLORE = "policy", "holdout", "explore"
ARMS = (POLICY, HOLDOUT, EXPLORE)


def arm(campaign_id: str, seed: int, holdout_share: float, explore_share: float) -> Column:
    """Each row's arm from its ``customer_id``."""
    if holdout_share == 0 and explore_share == 0:
        return F.lit(POLICY)
    u = uniform(seed, f"arm.{campaign_id}", F.col("customer_id"))
    return (
        F.when(u < holdout_share, F.lit(HOLDOUT))
        .when(u < holdout_share + explore_share, F.lit(EXPLORE))
        .otherwise(F.lit(POLICY))
    )


@dataclass(frozen=True)
class PolicyArm:
    """Which customer ids :func:`arm` puts in the policy arm, drawn in NumPy bit for bit as
    Spark draws it: for readers that see the ids outside Spark (the allocation's Python
    reader of the scores' files)."""

    state: int | None  # the draw's hash state (:func:`uniform_state`); None: every customer
    below: float  # the holdout and explore shares: a draw below them is not the policy's

    def mask(self, ids: np.ndarray) -> np.ndarray:
        if self.state is None:
            return np.ones(len(ids), dtype=bool)
        return uniform_of_ids(self.state, ids) >= self.below


def policy_arm(
    spark: SparkSession, campaign_id: str, seed: int, holdout_share: float, explore_share: float
) -> PolicyArm:
    """The policy arm of :func:`arm` with these shares, as a :class:`PolicyArm`."""
    if holdout_share == 0 and explore_share == 0:
        return PolicyArm(None, 0.0)
    state = uniform_state(spark, seed, f"arm.{campaign_id}")
    return PolicyArm(state, holdout_share + explore_share)


def explore_pick(campaign_id: str, seed: int, n_vouchers: int) -> Column:
    """The position of the voucher drawn for an explore customer (``customer_id``)."""
    u = uniform(seed, f"explore.voucher.{campaign_id}", F.col("customer_id"))
    return F.floor(u * n_vouchers).cast("int")


def explore_order(campaign_id: str, seed: int) -> Column:
    """The explore customer's place in its group's queue for the slice (``customer_id``)."""
    return uniform(seed, f"explore.order.{campaign_id}", F.col("customer_id"))


def explore_rows(
    scores: DataFrame,
    vouchers: Sequence[str],
    slices: Mapping[str, float],
    campaign_id: str,
    seed: int,
) -> DataFrame:
    """The explore customers sent a voucher: customer_id, budget_group, voucher_id,
    expected_uplift, expected_cost, from ``scores`` (long: one row per customer and
    voucher) of the explore customers, within each group's ``slices`` of the budget."""
    drawn = F.element_at(
        F.array(*[F.lit(v) for v in vouchers]), explore_pick(campaign_id, seed, len(vouchers)) + 1
    )
    order = explore_order(campaign_id, seed)
    budget = F.element_at(
        F.create_map(*[x for g, b in slices.items() for x in (F.lit(g), F.lit(float(b)))]),
        F.col("budget_group"),
    )
    rows = scores.where(F.col("voucher_id") == drawn).select(
        "customer_id",
        "budget_group",
        "voucher_id",
        F.col("uplift_objective").alias("expected_uplift"),
        F.greatest(F.col("uplift_cost"), F.lit(0.0)).alias("expected_cost"),
        order.alias("_order"),
    )
    spent = F.sum("expected_cost").over(
        Window.partitionBy("budget_group")
        .orderBy("_order", "customer_id")
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    return (
        rows.withColumn("_spent", spent)
        .where(F.col("_spent") <= F.coalesce(budget, F.lit(0.0)))
        .drop("_order", "_spent")
    )


def holdout_rows(scores: DataFrame, lam: Mapping[str, float], mu: Mapping[str, float]) -> DataFrame:
    """Every held-out customer: customer_id, budget_group, and the voucher the policy would
    have sent (policy_voucher_id) with its expected_uplift and expected_cost, all null when
    it would have sent none, from ``scores`` of the holdout customers and the solve's
    ``lam`` per group and ``mu`` per capped voucher."""
    lam_of = F.element_at(
        F.create_map(*[x for g, v in lam.items() for x in (F.lit(g), F.lit(float(v)))]),
        F.col("budget_group"),
    )
    mu_of = (
        F.element_at(
            F.create_map(*[x for v, m in mu.items() for x in (F.lit(v), F.lit(float(m)))]),
            F.col("voucher_id"),
        )
        if mu
        else F.lit(None)
    )
    cost = F.greatest(F.col("uplift_cost"), F.lit(0.0))
    margin = F.col("uplift_objective") - F.coalesce(lam_of, F.lit(0.0)) * cost
    margin = margin - F.coalesce(mu_of, F.lit(0.0))
    margin = F.when(~F.isnan(margin) & (F.abs(margin) != float("inf")), margin)  # else null
    best = F.max(
        F.struct(
            margin.alias("margin"),
            F.col("voucher_id").alias("voucher_id"),
            F.col("uplift_objective").alias("expected_uplift"),
            cost.alias("expected_cost"),
        )
    )
    targeted = F.col("_best.margin") > 0
    return (
        scores.groupBy("customer_id", "budget_group")
        .agg(best.alias("_best"))
        .select(
            "customer_id",
            "budget_group",
            *(
                F.when(targeted, F.col(f"_best.{c}")).alias(name)
                for c, name in (
                    ("voucher_id", "policy_voucher_id"),
                    ("expected_uplift", "expected_uplift"),
                    ("expected_cost", "expected_cost"),
                )
            ),
        )
    )


def union(policy: DataFrame, holdout: DataFrame | None, explore: DataFrame | None) -> DataFrame:
    """The arms' rows in one frame: customer_id, budget_group, voucher_id (sent),
    expected_uplift, expected_cost, arm, policy_voucher_id."""
    out = policy.select(
        "*", F.lit(POLICY).alias("arm"), F.col("voucher_id").alias("policy_voucher_id")
    )
    if holdout is not None:
        out = out.unionByName(
            holdout.select(
                "customer_id",
                "budget_group",
                F.lit(None).cast("string").alias("voucher_id"),
                "expected_uplift",
                "expected_cost",
                F.lit(HOLDOUT).alias("arm"),
                "policy_voucher_id",
            )
        )
    if explore is not None:
        out = out.unionByName(
            explore.select(
                "*",
                F.lit(EXPLORE).alias("arm"),
                F.lit(None).cast("string").alias("policy_voucher_id"),
            )
        )
    return out


def explore_totals(explore: DataFrame) -> tuple[dict[str, float], dict[str, int]]:
    """The explore arm's spend per budget group and sends per voucher, in one pass."""
    rows = (
        explore.groupBy("budget_group", "voucher_id")
        .agg(F.sum("expected_cost").alias("cost"), F.count(F.lit(1)).alias("n"))
        .collect()
    )
    paid: dict[str, float] = {}
    sent: dict[str, int] = {}
    for r in rows:
        paid[r["budget_group"]] = paid.get(r["budget_group"], 0.0) + (r["cost"] or 0.0)
        sent[r["voucher_id"]] = sent.get(r["voucher_id"], 0) + int(r["n"])
    return paid, sent


def caps_left(caps: Mapping[str, int], sent: Mapping[str, int]) -> dict[str, int]:
    """Each voucher's cap less the explore arm's sends of it (at least 0): a cap bounds
    the campaign's sends of the voucher in every arm, so the policy gets what is left."""
    return {v: max(int(cap) - int(sent.get(v, 0)), 0) for v, cap in caps.items()}
