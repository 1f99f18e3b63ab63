"""Every budget group's multiplier lambda from the cached customers: histogram, plan, settle.

1. The histogram, summed by the pass that builds the cache (:mod:`.sums`): per (group,
   bucket of lambda) the summed cost and value change of the breakpoints in it, plus
   per-group totals and the input's defect counts (:func:`check_input` refuses defective
   input from these).
2. :func:`plan_groups`: on the driver, per group, the bucket where spend crosses the budget and
   the buckets below it the greedy fill may need; or 'every step' when the budget never
   binds; or 'exact' for small groups.
3. :func:`settle_groups`: one pass bringing the breakpoints of those buckets to the
   driver, where :func:`.settle.settle` finds the exact lambda, rounds down and fills (a
   crossing bucket of more than ``driver_steps`` breakpoints is first split in Spark,
   :mod:`.crossing`); :func:`solve_exact_groups` solves the 'exact' groups with
   :mod:`.exact`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from sparklift.allocation import layout as L
from sparklift.allocation.crossing import Region, in_region, refine, step_rows
from sparklift.allocation.exact import solve_exact
from sparklift.allocation.settle import settle
from sparklift.allocation.sums import FLAGS, TOTALS
from sparklift.errors import InputError
from sparklift.finite import nonfinite

if TYPE_CHECKING:
    from sparklift.allocation.distributed import Problem

log = logging.getLogger("sparklift")

FILL_STEPS = 200_000  # at most this many breakpoints below the crossing bucket go to the fill


def repeated_ids(env: DataFrame) -> int:
    """How many customer ids have more than one row of ``env`` (the ids move once, in a
    shuffle of their own)."""
    return env.groupBy("customer_id").count().where(F.col("count") > 1).count()


def check_input(
    hist: pd.DataFrame,
    budgets: Mapping[str, float],
    scores: DataFrame | None = None,
    vouchers: Sequence[str] = (),
    arms: str = "",
) -> None:
    """Fail on scores the allocation cannot use, naming what is wrong, how often and (given
    the ``scores`` and campaign ``vouchers``) one offending key. ``arms``: the arms the
    rows are of, named in the message (empty: the customers solved for, which must exist)."""
    totals = hist[hist["bucket"] == TOTALS]
    if totals.empty and not arms:
        raise InputError("uplift_scores has no rows for this run date: nothing to allocate")
    where = f" in the {arms}" if arms else ""
    unknown = sorted(str(g) for g in set(totals["budget_group"].dropna()) - set(budgets))
    if unknown:
        raise InputError(
            f"uplift_scores has budget groups {unknown}{where} with no budget in the campaign "
            f"(budgets are given for {sorted(budgets)})"
        )
    problems = {
        "nogroup": "rows without a budget_group",
        "multi": "customers listed in more than one budget_group",
        "dup": "duplicate (customer_id, voucher_id) rows",
        "bad": "(customer, voucher) scores that are null, NaN or infinite",
        "other": "rows for vouchers that are not in the campaign",
    }
    for col, what in problems.items():
        n = int(totals[col].sum())
        if n:
            example = _example(scores, vouchers, col) if scores is not None else ""
            raise InputError(f"uplift_scores has {n} {what}{where}{example}")


def arm_totals(rows: DataFrame) -> pd.DataFrame:
    """The per-group totals rows of :func:`check_input` (customers and defect counts, as
    the solver's pass sums them for its own customers) of score ``rows`` that the solver
    does not read: the holdout and explore arms'. One aggregation, whose shuffle moves
    only these rows."""
    ok = _finite("uplift_objective") & _finite("uplift_cost")
    per_customer = (
        L.typed(rows)
        .groupBy("customer_id")
        .agg(  # sets, not count_distinct: two distinct counts would double the rows
            F.min("budget_group").alias("budget_group"),
            (F.count(F.lit(1)) - F.size(F.collect_set("voucher_id"))).alias("dup"),
            F.count_if(~ok).alias("bad"),
            (F.size(F.collect_set("budget_group")) > 1).cast("long").alias("multi"),
            F.count_if(F.col("budget_group").isNull()).alias("nogroup"),
        )
    )
    flags = [F.sum(f).alias(f) for f in FLAGS if f != "other"]
    totals = (
        per_customer.groupBy("budget_group").agg(F.count(F.lit(1)).alias("n"), *flags).toPandas()
    )
    return totals.assign(bucket=TOTALS, other=0, d_cost=0.0, d_value=0.0)


def _finite(c: str) -> Column:
    return F.col(c).isNotNull() & ~nonfinite(c)


def _example(scores: DataFrame, vouchers: Sequence[str], defect: str) -> str:
    """``, e.g. <key of one offending row>`` for an input defect (:data:`.sums.FLAGS`), found by one
    Spark aggregation (the smallest key, so the same input names the same row); empty
    if there is none or it cannot be found."""
    rows = L.typed(scores)
    known = F.coalesce(F.col("voucher_id").isin(list(vouchers)), F.lit(False))
    key = ["customer_id", "voucher_id"]
    if defect == "dup":
        found = rows.where(known).groupBy(*key).agg(F.count(F.lit(1)).alias("rows"))
        found, show = found.where(F.col("rows") > 1), [*key, "rows"]
    elif defect == "bad":
        found = rows.where(known & ~(_finite("uplift_objective") & _finite("uplift_cost")))
        show = [*key, "uplift_objective", "uplift_cost"]
    elif defect == "other":
        found, show = rows.where(~known), key
    elif defect == "nogroup":
        found, show = rows.where(F.col("budget_group").isNull()), key
    else:  # multi
        found = rows.groupBy("customer_id").agg(
            F.sort_array(F.collect_set("budget_group")).alias("budget_groups")
        )
        found, show = found.where(F.size("budget_groups") > 1), ["customer_id", "budget_groups"]
    try:
        first = found.agg(F.min(F.struct(*show)).alias("e")).first()
    except Exception as e:  # an example only: never in place of the error it illustrates
        log.warning("no example of the %s rows of uplift_scores: %s", defect, e)
        return ""
    if first is None or first["e"] is None:
        return ""
    return ", e.g. " + ", ".join(f"{c}={first['e'][c]!r}" for c in show)


@dataclass
class Plan:
    """Per group from the histogram: customers, base value, and either 'all steps'
    (the budget never binds), a crossing range [lo, hi] (buckets; a crowded crossing
    bucket hi narrowed to a region of it, then lo = hi), or 'exact'."""

    n_customers: dict[str, int]
    base_value: dict[str, float]
    all_steps: dict[str, float]  # group -> value of every step (the budget never binds)
    ranges: dict[str, tuple[int, int, float, float]]  # group -> lo, hi, spent/value above
    exact: list[str]
    crossing_n: dict[str, int] = field(default_factory=dict)  # breakpoints in bucket hi
    regions: dict[str, Region] = field(default_factory=dict)  # set by refine()
    split_passes: int = 0  # the passes refine() made
    driver_rows: int = 0  # the breakpoints settle_groups() brought to the driver

    def region(self, group: str) -> Region:
        return self.regions.get(group, Region())


def plan_groups(hist: pd.DataFrame, problem: Problem, exact_ok: bool) -> Plan:
    """What each group needs from the next pass, read off the histogram."""
    totals = hist[hist["bucket"] == TOTALS].set_index("budget_group")
    steps = hist[hist["bucket"] != TOTALS]
    out = Plan({}, {}, {}, {}, [])
    for g, budget in problem.budgets.items():
        n = int(totals.loc[g, "n"]) if g in totals.index else 0
        out.n_customers[g] = n
        out.base_value[g] = float(totals.loc[g, "d_value"]) if g in totals.index else 0.0
        if exact_ok and 0 < n <= problem.exact_max_customers:
            out.exact.append(g)
            continue
        h = steps[steps["budget_group"] == g].sort_values("bucket", ascending=False)
        cum = h["d_cost"].cumsum().to_numpy()
        over = np.flatnonzero(cum > budget)
        if not len(over):
            out.all_steps[g] = float(h["d_value"].sum())
            continue
        q = int(over[0])
        spent_above = float(cum[q - 1]) if q else 0.0
        value_above = float(h["d_value"].iloc[:q].sum())
        hi = int(h["bucket"].iloc[q])
        out.crossing_n[g] = int(h["n"].iloc[q])
        out.ranges[g] = (fill_floor(h.iloc[q + 1 :], budget - spent_above, hi), hi,
                         spent_above, value_above)  # fmt: skip
    return out


def fill_floor(below: pd.DataFrame, left: float, hi: int) -> int:
    """The lowest bucket the fill may use, of the buckets ``below`` the crossing bucket
    ``hi`` (highest first): down to the first whose cumulative cost reaches twice the
    budget ``left`` after the buckets above, so the fill has enough; but the breakpoints
    brought to the driver stay under FILL_STEPS, so a bucket that would pass it (a block
    of tied scores) is left out, even the first."""
    if below.empty:
        return hi
    steps = np.cumsum(below["n"].to_numpy())
    short = np.cumsum(below["d_cost"].to_numpy()) < 2 * left
    k = int((short & (steps < FILL_STEPS)).sum())  # buckets wholly needed, and fitting
    if k < len(below) and steps[k] < FILL_STEPS:
        k += 1  # the one that reaches twice the budget left
    return int(below["bucket"].iloc[k - 1]) if k else hi


@dataclass
class Settlement:
    """Per group lambda, dual bound (value part, net of mu) and :attr:`fill` (the greatest
    customer id whose step tied at lambda the greedy fill took, all below it too:
    :meth:`.settle.Settled.fill_cut`); the driver's choices for the customers it settled
    (``forced``: customer_id -> option or NONE)."""

    lam: dict[str, float] = field(default_factory=dict)
    dual: dict[str, float] = field(default_factory=dict)
    forced: dict[int, int] = field(default_factory=dict)
    fill: dict[str, int] = field(default_factory=dict)


def settle_groups(env: DataFrame, plan: Plan, problem: Problem, n_opt: int) -> Settlement:
    """Every group of ``plan`` settled (:class:`Settlement`). One pass over ``env``."""
    spark = env.sparkSession
    out = Settlement()
    for g, value in plan.all_steps.items():
        out.lam[g] = 0.0
        out.dual[g] = plan.base_value[g] + value
    if not plan.ranges:
        return out
    plan.split_passes = refine(env, plan, n_opt, dict(problem.budgets), problem.driver_steps)
    rows = []
    for g, (lo, hi, _, _) in plan.ranges.items():
        r = plan.region(g)
        rows.append((g, lo, hi, r.lam_lo, r.lam_hi, r.id_lo, r.id_hi))
    ranges = spark.createDataFrame(
        rows,
        "budget_group string, lo long, hi long, lam_lo double, lam_hi double, id_lo long, "
        "id_hi long",
    )
    steps = (
        step_rows(env, ranges, n_opt)
        .where(
            F.col("bucket").between(F.col("lo"), F.col("hi"))
            & ((F.col("bucket") < F.col("hi")) | in_region())
        )
        .select("budget_group", "customer_id", "step", "lam", "d_value", "d_cost", "to")
        .toPandas()
    )
    plan.driver_rows = len(steps)
    for g, (_, _, spent_above, value_above) in plan.ranges.items():
        s = steps[steps["budget_group"] == g].sort_values(
            ["lam", "customer_id", "step"], ascending=[False, True, True]
        )
        first = s.groupby("customer_id")["step"].transform("min").to_numpy()
        done = settle(
            problem.budgets[g],
            spent_above,
            value_above,
            s["lam"].to_numpy(),
            s["d_value"].to_numpy(),
            s["d_cost"].to_numpy(),
            s["customer_id"].to_numpy(),
            s["step"].to_numpy(),
            first,
        )
        out.lam[g] = done.lam
        out.dual[g] = plan.base_value[g] + done.dual_bound
        taken = s[done.taken].sort_values("step")
        out.forced.update(zip(taken["customer_id"].tolist(), taken["to"].tolist(), strict=True))
        cut = _fill_cut(done.fill_cut(s["customer_id"].to_numpy()), plan.region(g), done.lam)
        if cut is not None:
            out.fill[g] = cut
    return out


def _fill_cut(cut: int | None, region: Region, lam: float) -> int | None:
    """The fill's cut of :meth:`.settle.Settled.fill_cut` over the whole crossing bucket:
    a tied region (:class:`.crossing.Region`) at ``lam`` holds only ids from ``id_lo`` to
    ``id_hi``: those below were taken before it (with none of the region's: up to its
    ``before``), those above were not (with all of it: up to ``id_hi``)."""
    if not region.tied or region.lam_hi != lam:
        return cut
    return region.before if cut is None else min(cut, region.id_hi)


def solve_exact_groups(
    env: DataFrame, plan: Plan, problem: Problem, n_opt: int
) -> tuple[dict[str, float], dict[int, int]]:
    """Optimal choices of the small groups (one pass); their dual bound is SCIP's best
    bound, which the optimum (to the MIP gap) never exceeds."""
    spark = env.sparkSession
    groups = spark.createDataFrame([(g,) for g in plan.exact], "budget_group string")
    objectives = [L.objective(j) for j in range(n_opt)]
    costs = [L.cost(j) for j in range(n_opt)]
    rows = (
        env.join(F.broadcast(groups), "budget_group")
        .select("budget_group", "customer_id", *objectives, *costs)
        .toPandas()
    )
    dual: dict[str, float] = {}
    forced: dict[int, int] = {}
    for g in plan.exact:
        r = rows[rows["budget_group"] == g].sort_values("customer_id")
        u = r[objectives].to_numpy(dtype=float)
        c = r[costs].to_numpy(dtype=float)
        done = solve_exact(u, c, problem.budgets[g], time_limit_s=problem.exact_time_limit_s)
        dual[g] = done.bound
        forced.update(zip(r["customer_id"].tolist(), done.choice.tolist(), strict=True))
    return dual, forced
