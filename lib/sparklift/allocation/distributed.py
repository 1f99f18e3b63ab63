"""The budget-constrained allocation over Spark: every budget group in the same passes.

1. One scan of the scores: one row per customer with its options as columns, its envelope
   computed once per Arrow batch (:mod:`.layout`, :mod:`.envelope`) and cached; the same
   Python workers sum, per (group, bucket of lambda), the cost and value change of the
   breakpoints in it, plus per-group totals and input checks (:mod:`.sums`,
   :mod:`.budgets`). Buckets are 1/512 octave wide (0.14% in lambda), so the histogram is
   small whatever the data. A customer's rows come together by a shuffle by customer; or,
   given the scores' plain Parquet files (:class:`ScoreFiles`), Python reads each file
   whole, with no shuffle and no conversion of Spark rows to Arrow. That is right when each
   customer's rows lie together in one file, as ``sparklift score`` writes them: the
   workers note each file's id range and the ids it holds in two places. When no file holds
   one twice and the files' ranges are apart, that is proven; else one more pass counts
   the customer ids cached twice (the ids alone move in its shuffle), and if there is one,
   the shuffle runs after all.
2. On the driver, per group, the bucket where spend crosses the budget; then from the
   cache the breakpoints of that bucket (and of the buckets below it that the greedy fill
   may need) to the driver, where :func:`.settle.settle` finds the exact lambda, rounds
   down and fills. A bucket of more than ``driver_steps`` breakpoints (tied scores) is
   first split in Spark, by lambda and then by customer id (:mod:`.crossing`), so the
   driver gets at most that many whatever the scores. Groups at most
   ``exact_max_customers`` large may instead be solved exactly (:mod:`.exact`).
3. From the cache, in Spark SQL, each customer's choice: its breakpoints above its
   group's crossing bucket, or what the driver decided for it (:mod:`.choices`).

With voucher caps, rounds of (1, 2) run at cap multipliers mu, each followed by one pass
(:mod:`.caps`) that counts, per capped voucher, its choosers in the relaxed solution that
spends each budget (the customers at a budget's crossing shared by the budget's split),
and histograms the margins by which customers prefer it. Each round's bound and counts
(a subgradient) add a cutting plane, and the next mu minimizes the planes inside a box
(:mod:`.cut_planes`), until the bound is within ``cap_tolerance`` of the planes' minimum
or ``max_cap_rounds`` is reached. Then deferred acceptance at the best round's lambda and
its mu lowered by 0.1% (the primal's; :mod:`.acceptance`) leaves each capped voucher to at
most ``cap`` customers: each customer asks for its best option not yet refused, and an
over-full cap keeps the askers of largest lead over their next best (equal leads by net
value, then by the campaign's tie draws, :class:`.ties.TieOrder`); when that leaves a
binding cap short, mu is lowered 0.4% (then 1.6%, 6.4%) and it runs again. That problem
is solved for the budgets alone (1, 2 and 3 once more), so caps hold by construction,
and the budget the refused customers free goes to their next best options and to other
customers (the greedy fill). The cuts (the lead, net value and tie draw of each cap's
last customer kept) and the primal's multipliers go to the held-out customers' rule
(:class:`.arms.Rule`).

The dual bound is L(lambda, mu) = sum_i max(0, max_j (u_ij - mu_j - lambda_b c_ij))
+ sum_b lambda_b B_b + sum_j mu_j Q_j, valid for any multipliers >= 0: with caps, at the
round's (lambda, mu) of smallest bound, which the summaries report (not the final solve's
lambda, which bounds only the restricted problem).

A campaign of at most ``driver_max_rows`` score rows skips the passes: one brings it to
the driver, where the same steps run in NumPy (:mod:`.in_memory`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from sparklift.allocation import cache, in_memory
from sparklift.allocation.acceptance import accepted
from sparklift.allocation.arms import PolicyArm, Rule
from sparklift.allocation.budgets import (
    check_input,
    plan_groups,
    settle_groups,
    solve_exact_groups,
)
from sparklift.allocation.caps import cap_round
from sparklift.allocation.choices import choices
from sparklift.allocation.cut_planes import CutSearch
from sparklift.allocation.layout import customers, envelopes, typed
from sparklift.allocation.ties import TieOrder
from sparklift.errors import InputError, reraise_marked

log = logging.getLogger("sparklift")
ALLOCATION_COLUMNS = (
    "customer_id long, budget_group string, voucher_id string, expected_uplift double, "
    "expected_cost double"
)


@dataclass(frozen=True)
class Problem:
    """What to solve: the vouchers (option order), a budget per group, optional caps."""

    vouchers: Sequence[str]
    budgets: Mapping[str, float]
    caps: Mapping[str, int] = field(default_factory=dict)
    exact_max_customers: int = 0  # groups this small are solved exactly (no caps allowed)
    exact_time_limit_s: float = 60.0
    max_cap_rounds: int = 30
    cap_tolerance: float = 0.0001  # the rounds stop when the bound is this near its best
    driver_steps: int = 1_000_000  # more breakpoints in a crossing bucket: split in Spark
    driver_max_rows: int = 0  # at most this many score rows: solved in the driver's memory
    tie_order: TieOrder = field(default_factory=TieOrder.default)  # ties at a cap's cut


@dataclass(frozen=True)
class ScoreFiles:
    """The scores' plain Parquet files (``paths``, all customers) and the arm that selects
    the customers to allocate from them (the same customers as the ``scores`` frame given
    to :func:`solve`)."""

    spark: SparkSession
    paths: list[str]
    keep: PolicyArm


@dataclass
class GroupSummary:
    budget_group: str
    budget: float
    lam: float
    dual_bound: float  # with caps: this group's share of the campaign's bound (see summarize)
    n_customers: int
    solver: str
    spent: float = 0.0
    objective: float = 0.0
    n_allocated: int = 0
    voucher_counts: dict[str, int] = field(default_factory=dict)

    @property
    def gap(self) -> float:
        return self.dual_bound - self.objective

    @property
    def gap_rel(self) -> float:
        return self.gap / abs(self.dual_bound) if self.dual_bound else 0.0


@dataclass
class Solution:
    """Allocations (a lazy frame over the cache: write it, then :func:`summarize`)."""

    allocations: DataFrame | None  # None from solve_collected: the rows are in ``frame``
    groups: dict[str, GroupSummary]
    mu: dict[str, float]  # per capped voucher
    caps: dict[str, int]
    passes: int
    cap_rounds: int
    driver_rows: int  # the most breakpoints one pass brought to the driver (in memory: customers)
    cached: tuple[DataFrame, ...]  # the allocations read these
    reader: str  # how the customers' rows came together: "files", "shuffle" or "driver"
    rule: Rule  # the policy's decision for a customer it was not solved for (the holdout)
    frame: pd.DataFrame | None = None  # solved in the driver's memory: the allocations there

    def release(self) -> None:
        for cached in self.cached:
            cached.unpersist()


def solve(
    scores: DataFrame,
    problem: Problem,
    files: ScoreFiles | None = None,
    rows: int | None = None,
) -> Solution:
    """Allocate ``scores`` (customer_id, budget_group, voucher_id, uplift_objective,
    uplift_cost) under ``problem``'s budgets and caps, read from ``files`` when they
    hold each customer's rows together. See the module docstring. Given that ``scores``
    has at most ``rows`` rows, and those are at most ``problem.driver_max_rows``, the
    same steps run in the driver's memory instead (:mod:`.in_memory`)."""
    _check_problem(problem)
    try:
        if rows is not None and rows <= problem.driver_max_rows:  # one pass to the driver
            solved = _solve_in_memory(typed(scores).toArrow(), scores, problem)
            frame = scores.sparkSession.createDataFrame(solved.frame, ALLOCATION_COLUMNS)
            return replace(solved, allocations=frame)
        with cache.uncompressed(scores.sparkSession):
            return _solve(scores, problem, files)
    except Exception as e:  # an input error found in a Python worker: its own type again
        reraise_marked(e)
        raise


def _check_problem(problem: Problem) -> None:
    vouchers = list(problem.vouchers)
    for g, b in problem.budgets.items():
        if not (math.isfinite(b) and b >= 0):  # an infinite budget makes the bound NaN
            raise InputError(f"budget of group {g!r} must be a finite number >= 0, got {b}")
    unknown = sorted(set(problem.caps) - set(vouchers))
    if unknown:
        raise InputError(f"caps name vouchers {unknown} that are not in the campaign {vouchers}")
    if any(int(q) < 0 for q in problem.caps.values()):
        raise InputError(f"caps must be >= 0, got {dict(problem.caps)}")


def solve_collected(rows: pa.Table, scores: DataFrame, problem: Problem) -> Solution:
    """As :func:`solve` in the driver's memory (:mod:`.in_memory`), on ``rows``: the rows
    of ``scores`` already there (typed as :func:`.layout.typed` types them). ``scores``
    is read again only to name an offending row of bad input. The allocations are left in
    the driver (``frame``; ``allocations`` is None)."""
    _check_problem(problem)
    return _solve_in_memory(rows, scores, problem)


def _solve_in_memory(rows: pa.Table, scores: DataFrame, problem: Problem) -> Solution:
    vouchers = list(problem.vouchers)
    cust, flags = in_memory.customers(rows, vouchers)
    check_input(in_memory.totals(cust, flags), problem.budgets, scores, vouchers)
    solved = in_memory.solve_in_memory(cust, problem)
    frame = in_memory.allocations(cust, solved, vouchers)
    summaries = {
        g: GroupSummary(
            g,
            float(b),
            solved.bound_lam.get(g, 0.0),
            solved.dual.get(g, 0.0),
            solved.n_customers[g],
            "exact" if g in solved.exact else "lagrangian",
        )
        for g, b in problem.budgets.items()
    }
    mu = {v: float(solved.bound_mu[vouchers.index(v)]) for v in problem.caps}
    log.info("allocation: %d customers solved in the driver's memory (%d cap rounds)",
             len(cust.ids), solved.rounds)  # fmt: skip
    return Solution(
        None,
        summaries,
        mu,
        dict(problem.caps),
        1,
        solved.rounds,
        len(cust.ids),
        (),
        "driver",
        solved.rule(vouchers),
        frame,
    )


def _solve(scores: DataFrame, problem: Problem, files: ScoreFiles | None) -> Solution:
    spark = scores.sparkSession
    vouchers = list(problem.vouchers)
    n_opt = len(vouchers)
    caps = {vouchers.index(v): int(q) for v, q in problem.caps.items()}
    search = CutSearch(caps, problem.cap_tolerance)
    mu = search.start(n_opt)
    passes = rounds = driver_rows = 0
    best: tuple[float, np.ndarray, dict[str, float], dict[str, float]] | None = None
    # With caps, each round's envelopes derive from the first ones, which stay cached: a
    # chain of rounds would grow the plan, and its planning time, with every round.
    base, hist, passes = (None, None, 0)
    if files is not None:
        base, hist, passes = cache.unshuffled(files.spark, files.paths, files.keep, vouchers)
    reader = "files" if base is not None else "shuffle"
    if base is None:
        base, hist, _ = cache.build(spark, partial(customers, scores, vouchers, None))
    env = base
    while True:
        passes += 1  # the pass that built env and its histogram
        check_input(hist, problem.budgets, scores, vouchers)
        plan = plan_groups(hist, problem, exact_ok=not caps)
        settled = settle_groups(env, plan, problem, n_opt)
        lam, dual, forced = settled.lam, settled.dual, settled.forced
        passes += bool(plan.ranges) + plan.split_passes
        driver_rows = max(driver_rows, plan.driver_rows)
        log.info(
            "allocation: pass %d, multipliers of %d groups settled (%d breakpoints by the driver)",
            passes,
            len(lam),
            plan.driver_rows,
        )
        if plan.exact:
            exact_dual, exact_forced = solve_exact_groups(env, plan, problem, n_opt)
            passes += 1
            dual.update(exact_dual)
            forced.update(exact_forced)
        if not caps:
            break
        bound = sum(dual.values()) + search.cap_term(mu)
        if best is None or bound < best[0]:
            best = (bound, mu, lam, dual)
        counts, target = cap_round(env, lam, mu, caps, n_opt, problem.budgets)
        passes += 1
        rounds += 1
        next_mu = search.advance(mu, bound, counts, target, rounds >= problem.max_cap_rounds)
        log.info(
            "allocation: cap round %d, bound %.6g (within %.3g of the planes' minimum), "
            "counts %s, mu %s",
            rounds,
            bound,
            search.gap,
            {vouchers[j]: round(n, 1) for j, n in counts.items()},
            {vouchers[j]: round(float(mu[j]), 6) for j in caps},
        )
        if next_mu is None:
            break
        mu = next_mu
        previous = env
        env, hist, _ = cache.build(spark, partial(envelopes, base, n_opt, mu))
        if previous is not base:
            previous.unpersist()
    cached: tuple[DataFrame, ...] = (env,) if env is base else (env, base)
    if not caps:
        allocations = choices(env, vouchers, plan, lam, forced)
        rule = Rule(dict(lam), dict(lam), fill=settled.fill)
        mu_out: dict[str, float] = {}
    else:  # deferred acceptance at the best lambda, then the budgets within it
        _, bound_mu, bound_lam, dual = best
        mu_out = {vouchers[j]: float(bound_mu[j]) for j in caps}
        mu, lam = search.primal_mu(), bound_lam
        while True:  # again, lower, while it leaves a binding cap short
            done = accepted(env, n_opt, lam, mu, caps, problem.tie_order, vouchers)
            passes += done.passes
            lowered = search.lower(done.held)
            if lowered is None:
                break
            log.info("allocation: a binding cap left short (%s held), mu lowered", done.held)
            done.release()
            mu = lowered
        final, final_hist, _ = cache.build(spark, partial(envelopes, done.frame, n_opt, None))
        for frame in cached:  # final is cached
            frame.unpersist()
        done.release()
        fill = plan_groups(final_hist, problem, exact_ok=False)
        within = settle_groups(final, fill, problem, n_opt)
        passes += 1 + bool(fill.ranges) + fill.split_passes  # (1: the fill's cache)
        driver_rows = max(driver_rows, fill.driver_rows)
        allocations = choices(final, vouchers, fill, within.lam, within.forced)
        cached = (final,)
        primal_mu = {vouchers[j]: float(mu[j]) for j in caps}
        rule = Rule.of_caps(lam, within.lam, primal_mu, done.cuts, vouchers, within.fill)
    summaries = {
        g: GroupSummary(
            g,
            float(problem.budgets[g]),
            lam.get(g, 0.0),
            dual.get(g, 0.0),
            plan.n_customers[g],
            "exact" if g in plan.exact else "lagrangian",
        )
        for g in problem.budgets
    }
    return Solution(
        allocations,
        summaries,
        mu_out,
        dict(problem.caps),
        passes + 1,
        rounds,
        driver_rows,
        cached,
        reader,
        rule,
    )


def tally(allocations: DataFrame, *by: str | Column) -> pd.DataFrame:
    """Per budget_group, voucher_id and ``by``: the allocations' count ``n``, summed
    ``value`` (expected_uplift) and ``cost`` (expected_cost); one aggregation."""
    return (
        allocations.groupBy("budget_group", "voucher_id", *by)
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum("expected_uplift").alias("value"),
            F.sum("expected_cost").alias("cost"),
        )
        .toPandas()
    )


def summarize(
    allocations: DataFrame | pd.DataFrame, solution: Solution, vouchers: Sequence[str] = ()
) -> list[GroupSummary]:
    """Complete the group summaries from the allocations as written (or their
    :func:`tally`): spent, objective, customers allocated and per-voucher counts (every one
    of ``vouchers``, the run's choice, counted: 0 records that it was offered). With
    caps, the campaign's cap term sum_j mu_j Q_j is shared out to the groups by their
    share of each capped voucher's allocations, so the group bounds add up to the
    campaign's (certified) bound."""
    rows = tally(allocations) if isinstance(allocations, DataFrame) else allocations
    out = []
    per_voucher = rows.groupby("voucher_id")["n"].sum()
    for g, solved in solution.groups.items():
        s = replace(solved)
        r = rows[rows["budget_group"] == g]
        s.spent = float(r["cost"].sum())
        s.objective = float(r["value"].sum())
        s.n_allocated = int(r["n"].sum())
        s.voucher_counts = {str(v): 0 for v in vouchers}
        s.voucher_counts |= {str(v): int(n) for v, n in zip(r["voucher_id"], r["n"], strict=True)}
        for v, m in solution.mu.items():
            if not solution.caps[v]:  # a zero cap: mu is infinite, its term mu Q is 0
                continue
            total = int(per_voucher.get(v, 0))
            share = s.voucher_counts.get(v, 0) / total if total else 1 / len(solution.groups)
            s.dual_bound += share * m * solution.caps[v]
        out.append(s)
    return out
