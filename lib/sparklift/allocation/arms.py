"""A campaign's arms: policy, holdout and explore.

Each customer's arm is a uniform draw hashed from (seed, campaign, customer): below
``holdout_share`` it is held out, then ``explore_share`` explores, the rest is the policy.
So the arms are random within every budget group, reproducible per seed, and a customer
keeps its arm on every run of the campaign.

- **Explore**: each explore customer is drawn one of the campaign's vouchers uniformly.
  They queue in the order of a second hash. A capped voucher goes only to the first
  ``cap`` in the queue of those drawn it (over all groups; a cap of 0: none); then, within
  a group, they are sent in queue order while their expected cost fits the group's
  explore slice (``explore_budget_share`` of its budget). The rest get nothing and are
  not written, like customers never drawn: an explore row is a voucher sent. The sent ones
  of each voucher are a random sample of those drawn it, as the order is random, so the
  fed-back campaign (:mod:`sparklift.measure.feedback`) stays randomized: it subsamples
  each group's arms to the configured shares, so a cap shrinks its sample, not its shares
  (a voucher capped at 0 is not offered at all: :func:`.limits.offered`).
- **Policy**: the solver allocates the policy customers alone, under each group's budget
  minus what its explore arm spends, so the targeted customers use the whole budget.
- **Holdout**: held-out customers get the policy's own decision rule (:class:`Rule`), with
  the multipliers and cuts the solve found: the voucher j maximising u_j - lambda_g c_j,
  if that is positive (a voucher whose margin is null, NaN or infinite is none; ties:
  below). With caps it is the solve's two steps: first at the cap
  rounds' multipliers (u_j - mu_j - lambda_g c_j), where a capped voucher stays only to
  the customer who chooses it there by more than the margin of the cap's last customer
  the policy kept, or by as much (to :data:`.ties.TIE_GRID`'s step) with a larger net
  value, or as large a one and a tie draw no greater than that customer's (the policy's
  caps rank their askers by the same keys and draws); then at the final budget
  multipliers among the vouchers left. A customer with two options tied there (to a
  rounding; none counts as an option of margin 0) is one of those whose step between
  them set the budget's multiplier: the solver's greedy fill gives the tied customers
  the costlier option in id order up to an id (the rule's ``fill``), the rest keep the
  cheaper, and so does the rule (then the greatest voucher id). That is the voucher the
  policy would have sent them (but for a fill that skips a tied customer and takes a
  cheaper one below the margin);
  it is recorded as ``policy_voucher_id`` (null if none) and nothing is sent
  (``voucher_id`` is null). Every held-out customer is written: those the policy targets
  are the measurement's control, and all of them the control of the explore arm's
  randomized campaign (:mod:`sparklift.measure.feedback`).

A campaign solved in the driver's memory gets the same arms there, by the same rules
(:mod:`.arms_in_memory`): the hash draws come from Spark, in the pass that collects it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from sparklift.allocation.ties import rank_column, rounding
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
    caps: Mapping[str, int],
    campaign_id: str,
    seed: int,
) -> DataFrame:
    """The explore customers sent a voucher: customer_id, budget_group, voucher_id,
    expected_uplift, expected_cost, from ``scores`` (long: one row per customer and
    voucher) of the explore customers, each capped voucher to the first of its ``caps``
    in the queue, then within each group's ``slices`` of the budget."""
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
    rows = _within_caps(rows, {v: q for v, q in caps.items() if v in vouchers})
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


def _within_caps(rows: DataFrame, caps: Mapping[str, int]) -> DataFrame:
    """``rows`` (one per explore customer: its drawn voucher, ``_order``) but each capped
    voucher's past its cap in queue order (``_order``, customer_id) over every group."""
    if not caps:
        return rows
    limits = F.create_map(*[x for v, q in caps.items() for x in (F.lit(v), F.lit(int(q)))])
    place = F.row_number().over(Window.partitionBy("voucher_id").orderBy("_order", "customer_id"))
    limit = F.element_at(limits, F.col("voucher_id"))
    return (
        rows.withColumn("_place", place)
        .where(limit.isNull() | (F.col("_place") <= limit))
        .drop("_place")
    )


@dataclass(frozen=True)
class Rule:
    """The policy's decision for a customer it was not solved for (a held-out one), from the
    solve. Without caps: the voucher of greatest u - lambda c at ``final_lam``, if
    positive (ties: below). With caps, the solve's two steps. First deferred acceptance at the
    primal's ``lam`` and ``mu`` (:mod:`.acceptance`), walked for the one customer: it
    asks for its vouchers by u - lambda c - mu (positive by more than a rounding; the
    first in ``order`` among equals); an uncapped one ends the walk, a capped one keeps
    it as the policy's cap ranked its askers, on the same rank keys
    (:data:`.ties.TIE_GRID`): when its lead over the next best (nothing = 0) ranks above
    ``cut`` (the lead of the cap's last customer kept; 0 when the cap refused none), or
    with it and its net value (u - mu - lambda c) ranks above ``cut_net`` (that
    customer's), or with that too and its draw for the voucher (:func:`.ties.tie_draw`)
    is at most ``tie`` (the largest draw the policy kept among the customers tied with it
    in both); else the cap refuses it and the walk goes on. So the rule gives each of the
    policy's own customers what the policy gave it, and a held-out customer what the
    policy would have. A capped voucher stays only
    to the customer it kept. Then the voucher of greatest u - lambda c at ``final_lam``
    among those left, if positive by more than a rounding (:data:`.ties.TIE` times
    max(1, |u|)). Options tied with the best (to that rounding; none an option of margin 0
    when no voucher is positive) are a customer whose step between them set its budget's
    multiplier, taken only as the budget's remainder allows: the solver's greedy fill
    takes those tied steps in customer id order, so the rule gives the costliest tied
    option up to the last id it took there (``fill``, per budget group; none: the fill
    took none of them) and the cheapest above it."""

    lam: Mapping[str, float]  # per budget group: the deferred acceptance's multiplier
    final_lam: Mapping[str, float]  # per budget group: the final budget solve's
    mu: Mapping[str, float] = field(default_factory=dict)  # per capped voucher
    cut: Mapping[str, float] = field(default_factory=dict)  # per capped voucher that refused
    tie: Mapping[str, float] = field(default_factory=dict)  # its largest tie draw kept
    order: Sequence[str] = ()  # the campaign's vouchers, in the solver's option order
    cut_net: Mapping[str, float] = field(default_factory=dict)  # its last one's net (none: tie)
    fill: Mapping[str, int] = field(default_factory=dict)  # per budget group: the fill's cut

    def __post_init__(self) -> None:
        if self.mu and not set(self.mu) <= set(self.order):
            raise ValueError(f"a rule with caps needs its vouchers' order, got {self.order}")

    @classmethod
    def of_caps(
        cls,
        lam: Mapping[str, float],
        final_lam: Mapping[str, float],
        mu: Mapping[str, float],
        cuts: Mapping[int, tuple[float, float, float]],
        vouchers: Sequence[str],
        fill: Mapping[str, int],
    ) -> Rule:
        """The rule of a capped solve, from its cuts per option (lead, net value and tie
        draw of each cap's last customer kept: :data:`.acceptance.Cut`) and the final
        budget solve's ``fill`` cuts."""
        named = {vouchers[j]: cut for j, cut in cuts.items()}
        return cls(
            dict(lam),
            dict(final_lam),
            dict(mu),
            {v: c[0] for v, c in named.items()},
            {v: c[2] for v, c in named.items()},
            tuple(vouchers),
            {v: c[1] for v, c in named.items()},
            dict(fill),
        )


def _value_of(values: Mapping[str, float], key: str) -> Column:
    """``values[key column]`` (null for a key not in it)."""
    if not values:
        return F.lit(None).cast("double")
    pairs = [x for k, v in values.items() for x in (F.lit(k), F.lit(float(v)))]
    return F.element_at(F.create_map(*pairs), F.col(key))


def _finite(x: Column) -> Column:
    """``x`` where finite, else null (no choice)."""
    return F.when(~F.isnan(x) & (F.abs(x) != float("inf")), x)


def _allowed(scores: DataFrame, rule: Rule, draw: Column) -> Column:
    """Per score row: whether its voucher is left to the customer after the cap step (the
    deferred acceptance that :mod:`.acceptance` runs, walked for one customer)."""
    if not rule.mu:
        return F.lit(True)
    cost = F.greatest(F.col("uplift_cost"), F.lit(0.0))
    net = _finite(  # in the acceptance's order of operations: the same floats, the same keys
        F.col("uplift_objective")
        - F.coalesce(_value_of(rule.mu, "voucher_id"), F.lit(0.0))
        - F.coalesce(_value_of(rule.lam, "budget_group"), F.lit(0.0)) * cost
    )
    order = _value_of({v: -float(i) for i, v in enumerate(rule.order)}, "voucher_id")
    option = F.struct(
        net.alias("net"),
        order.alias("first"),  # among equal nets, the lowest index asks first
        F.col("voucher_id").alias("v"),
        F.col("voucher_id").isin(list(rule.mu)).alias("capped"),
        # the rank keys of the cut's lead and net value (no cut: 0; no net: the customer's)
        rank_column(F.coalesce(_value_of(rule.cut, "voucher_id"), F.lit(0.0))).alias("cut"),
        rank_column(F.coalesce(_value_of(rule.cut_net, "voucher_id"), net)).alias("cut_net"),
        F.coalesce(_value_of(rule.tie, "voucher_id"), F.lit(1.0)).alias("tie"),
        draw.alias("draw"),  # the customer's draw for this voucher
    )
    customer = Window.partitionBy("customer_id", "budget_group")
    positive = net > rounding(F.col("uplift_objective"))
    asks = F.sort_array(F.collect_list(F.when(positive, option)).over(customer), asc=False)
    # Each option with the next one's net: the lead over the next best (nothing = 0).
    asks = F.transform(
        asks, lambda o, i: o.withField("next", F.coalesce(F.get(asks, i + 1)["net"], F.lit(0.0)))
    )

    def ask(state: Column, o: Column) -> Column:
        lead = rank_column(o["net"] - F.greatest(o["next"], F.lit(0.0)))
        value = rank_column(o["net"])
        tied = (value == o["cut_net"]) & (o["draw"] <= o["tie"])
        past = (lead > o["cut"]) | ((lead == o["cut"]) & ((value > o["cut_net"]) | tied))
        held = F.struct(F.lit(True).alias("done"), o["v"].alias("held"))
        free = F.struct(F.lit(True).alias("done"), F.lit(None).cast("string").alias("held"))
        return (
            F.when(state["done"], state).when(~o["capped"], free).when(past, held).otherwise(state)
        )

    start = F.struct(F.lit(False).alias("done"), F.lit(None).cast("string").alias("held"))
    held = F.aggregate(asks, start, ask)["held"]
    capped = F.col("voucher_id").isin(list(rule.mu))
    return ~capped | (F.col("voucher_id") == held).eqNullSafe(True)


def holdout_rows(scores: DataFrame, rule: Rule, draw: Column) -> DataFrame:
    """Every held-out customer: customer_id, budget_group, and the voucher the policy would
    have sent (policy_voucher_id) with its expected_uplift and expected_cost, all null when
    it would have sent none, from ``scores`` of the holdout customers, the solve's
    ``rule`` and each row's ``draw`` (:func:`.ties.tie_draw`: per customer and voucher).
    At ``final_lam`` the options tied with the best margin (to a rounding; none is an
    option of margin 0 when the best is not positive by more than its rounding) give the
    costliest for a customer whose id is up to its group's fill cut, else the cheapest,
    then the greatest voucher id (:class:`Rule`)."""
    scores = scores.withColumn("_allowed", _allowed(scores, rule, draw))
    cost = F.greatest(F.col("uplift_cost"), F.lit(0.0))
    margin = (
        F.col("uplift_objective")
        - F.coalesce(_value_of(rule.final_lam, "budget_group"), F.lit(0.0)) * cost
    )
    margin = F.when(F.col("_allowed"), _finite(margin))  # else null
    option = F.struct(  # ordered as the picks compare them: cost, then voucher id
        cost.alias("expected_cost"),
        F.col("voucher_id").alias("voucher_id"),
        F.col("uplift_objective").alias("expected_uplift"),
        margin.alias("margin"),
        rounding(F.col("uplift_objective")).alias("tolerance"),
    )
    options = F.col("_options")
    top = F.array_max(F.transform(options, lambda o: o["margin"]))
    positive = F.exists(options, lambda o: (o["margin"] == top) & (o["margin"] > o["tolerance"]))
    floor = F.greatest(top, F.lit(0.0))  # none's margin, when no voucher is positive
    tied = F.filter(
        options,
        lambda o: (o["margin"] >= floor - o["tolerance"]) & (positive | (o["expected_cost"] > 0)),
    )
    cheapest = F.array_min(F.transform(tied, lambda o: o["expected_cost"]))
    pick = F.when(positive, F.array_max(F.filter(tied, lambda o: o["expected_cost"] == cheapest)))
    if rule.fill:  # the fill took the tied customers up to its cut: their costliest option
        cuts = F.create_map(
            *[x for g, i in rule.fill.items() for x in (F.lit(g), F.lit(int(i)).cast("long"))]
        )
        filled = F.col("customer_id") <= F.element_at(cuts, F.col("budget_group"))
        pick = F.when(filled, F.array_max(tied)).otherwise(pick)
    return (
        scores.groupBy("customer_id", "budget_group")
        .agg(F.collect_list(F.when(margin.isNotNull(), option)).alias("_options"))
        .select(
            "customer_id",
            "budget_group",
            pick["voucher_id"].alias("policy_voucher_id"),
            pick["expected_uplift"].alias("expected_uplift"),
            pick["expected_cost"].alias("expected_cost"),
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
