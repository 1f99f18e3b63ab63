"""A campaign's explore arm fed back as a randomized campaign of ``voucher_campaigns``.

The explore customers sent a voucher are a random sample of the campaign's customers, each
sent a voucher drawn at random; the held-out customers are another random sample, sent
nothing: together, a randomized experiment of the campaign's vouchers against control. The
history's checks expect every campaign to follow the configured arm shares
(``uplift.control_share`` or ``uplift.arm_shares``), and the DR learners take one set of
propensities per campaign (not per budget group), while here the shares differ between
budget groups (each group's explore arm is cut by its own budget slice). So per group
each arm is subsampled: with ``n_a`` customers of arm a and target shares ``s_a``, each
customer is kept, by a hash of the customer, with probability ``t s_a / n_a``,
``t = min_a n_a / s_a``, so the group keeps ``t s_a`` of each arm in expectation (a
binomial count around it, not exactly). Within a group every kept
customer's arm was random, and the kept shares are the configured ones in expectation in
every group, so the appended campaign is randomized with the history's propensities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from sparklift.allocation.arms import EXPLORE, HOLDOUT
from sparklift.synthetic.rand import uniform
from sparklift.uplift.arms import CONTROL


def arm_rows(allocations: DataFrame) -> DataFrame:
    """customer_id, budget_group, treatment ('control' or the voucher sent) of the explore
    customers sent a voucher and of the held-out customers."""
    return allocations.where(
        ((F.col("arm") == EXPLORE) & F.col("voucher_id").isNotNull()) | (F.col("arm") == HOLDOUT)
    ).select(
        "customer_id",
        "budget_group",
        F.coalesce(F.when(F.col("arm") == HOLDOUT, F.lit(CONTROL)), F.col("voucher_id")).alias(
            "treatment"
        ),
    )


def keep_shares(
    counts: Mapping[tuple[str, str], int], shares: Mapping[str, float]
) -> dict[tuple[str, str], float]:
    """Per (budget group, arm) the probability of keeping a customer, so that each group
    keeps ``t s_a`` of arm a in expectation (``t = min_a n_a / s_a``; a group without every
    arm keeps nothing)."""
    keep = {}
    for g in sorted({g for g, _ in counts}):
        n = {a: counts.get((g, a), 0) for a in shares}
        t = min(n[a] / s for a, s in shares.items())
        for a, s in shares.items():
            keep[(g, a)] = t * s / n[a] if n[a] else 0.0
    return keep


def kept(
    rows: DataFrame, keep: Mapping[tuple[str, str], float], seed: int, label: str
) -> DataFrame:
    """``rows`` (from :func:`arm_rows`) kept with their (group, arm)'s probability."""
    key = F.concat_ws("\u0001", F.col("budget_group"), F.col("treatment"))
    prob: Column = F.element_at(
        F.create_map(
            *[x for (g, a), p in keep.items() for x in (F.lit(f"{g}\u0001{a}"), F.lit(p))]
        ),
        key,
    )
    return rows.where(uniform(seed, f"feedback.{label}", F.col("customer_id")) < prob)


def history_rows(
    rows: DataFrame,
    outcomes: DataFrame,
    snapshot: DataFrame,
    features: Sequence[str],
    label: str,
    sent: object,
) -> DataFrame:
    """``voucher_campaigns``' rows: the kept customers with their outcomes (0 without a
    row, as in ``measure``) and their features of the send date's snapshot."""
    got = outcomes.select("customer_id", "objective", "cost")
    feats = snapshot.select("customer_id", *features)
    return (
        rows.join(got, "customer_id", "left")
        .join(feats, "customer_id", "left")
        .select(
            F.lit(label).alias("campaign_id"),
            F.lit(sent).cast("date").alias("sent_date"),
            "customer_id",
            "treatment",
            F.coalesce(F.col("objective"), F.lit(0.0)).cast("double").alias("objective"),
            F.coalesce(F.col("cost"), F.lit(0.0)).cast("double").alias("cost"),
            *features,
        )
    )
