"""Each customer's voucher, in Spark SQL over the cached customers.

A customer takes its breakpoints above its group's crossing bucket, and in a crowded one
those before the region the driver settled (:mod:`.crossing`) (its option after the last
of them, or its base option), unless the driver decided for it (``forced``: the
customers it settled or solved exactly). Caps are met before: the problem solved last
leaves each capped voucher to at most ``cap`` customers (:mod:`.acceptance`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from sparklift.allocation import layout as L
from sparklift.allocation.budgets import TOTALS, Plan
from sparklift.allocation.envelope import NONE


def with_choice(
    env: DataFrame,
    n_opt: int,
    plan: Plan,
    lam: Mapping[str, float],
    forced: Mapping[int, int],
) -> DataFrame:
    """``env`` with each customer's group multiplier ``lam`` and option ``_choice`` (NONE:
    nothing), every customer kept."""
    spark = env.sparkSession
    below_all = TOTALS + 1  # every breakpoint is above this
    rows = []
    for g in plan.n_customers:
        r = plan.region(g)  # in the crossing bucket: lambda above it, or tied and id below
        q = plan.ranges[g][1] if g in plan.ranges else below_all
        rows.append((g, int(q), float(lam.get(g, 0.0)), r.lam_hi, r.taken_id_below()))
    groups = spark.createDataFrame(
        rows, "budget_group string, q long, lam double, lam_b double, id_b long"
    )
    df = env.join(F.broadcast(groups), "budget_group")

    def above(k: int) -> Column:
        bucket, lam_k = F.col(L.step_bucket(k)), F.col(L.step_lambda(k))
        in_bucket = (lam_k > F.col("lam_b")) | (
            (lam_k == F.col("lam_b")) & (F.col("customer_id") < F.col("id_b"))
        )
        return (bucket > F.col("q")) | ((bucket == F.col("q")) & in_bucket)

    # A customer's multipliers strictly decrease with k, so the steps taken are a prefix:
    # its option is the one after the last of them. One test per step, from the last: an
    # expression Spark may copy into a filter and a projection stays cheap.
    choice = F.col(L.BASE_OPTION)
    for k in range(n_opt):
        choice = F.when(above(k), F.col(L.step_option(k))).otherwise(choice)
    if forced:
        override = spark.createDataFrame(
            [(int(i), int(j)) for i, j in forced.items()], "customer_id long, forced int"
        )
        df = df.join(F.broadcast(override), "customer_id", "left")
        choice = F.coalesce(F.col("forced"), choice)
    return df.withColumn("_choice", choice)


def choices(
    env: DataFrame,
    vouchers: Sequence[str],
    plan: Plan,
    lam: Mapping[str, float],
    forced: Mapping[int, int],
) -> DataFrame:
    """Allocations: customer_id, budget_group, voucher_id, expected_uplift, expected_cost."""
    n_opt = len(vouchers)
    df = with_choice(env, n_opt, plan, lam, forced).where(F.col("_choice") != NONE)

    def chosen(column: Callable[[int], str]) -> Column:  # the chosen option's ``column(j)``
        return F.coalesce(*[F.when(F.col("_choice") == j, F.col(column(j))) for j in range(n_opt)])

    names = F.array(*[F.lit(v) for v in vouchers])
    return df.select(
        "customer_id",
        "budget_group",
        F.element_at(names, F.col("_choice") + 1).alias("voucher_id"),
        chosen(L.objective).alias("expected_uplift"),
        F.greatest(chosen(L.cost), F.lit(0.0)).alias("expected_cost"),
    )
