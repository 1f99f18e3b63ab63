"""The budget-constrained allocation over Spark: every budget group in the same passes.

1. One scan of the scores: one row per customer with its options as columns (a shuffle by
   customer), its envelope computed once per Arrow batch (:mod:`.envelope`) and cached,
   and per (group, bucket of lambda) the summed cost and value change of the breakpoints
   in it, plus per-group totals and input checks. Buckets are 1/512 octave wide (0.14%
   in lambda), so the histogram is small whatever the data.
2. On the driver, per group, the bucket where spend crosses the budget; then from the
   cache the breakpoints of that bucket (and of the buckets below it that the greedy fill
   may need) to the driver, where :func:`.settle.settle` finds the exact lambda, rounds
   down and fills. Groups at most ``exact_max_customers`` large may instead be solved
   exactly (:mod:`.exact`).
3. From the cache, in Spark SQL, each customer's choice: its breakpoints above its
   group's crossing bucket, or what the driver decided for it.

With voucher caps, rounds of (1, 2) run at cap multipliers mu, each followed by one pass
that histograms, per capped voucher, the margin by which each customer prefers it; all mu
are then moved at once (synchronous coordinate descent) towards where the counts meet the
caps, each step halved whenever that voucher's direction reverses (grown back while it keeps
it), until the relaxed solution respects the caps or ``max_cap_rounds`` is reached. The final
choices then keep, per capped voucher, the ``cap`` customers with the largest margin (ties
by customer id), so caps hold by construction whatever the rounds reached.

The dual bound is L(lambda, mu) = sum_i max(0, max_j (u_ij - mu_j - lambda_b c_ij))
+ sum_b lambda_b B_b + sum_j mu_j Q_j, valid for any multipliers >= 0.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)
from pyspark.storagelevel import StorageLevel

from sparklift.allocation.envelope import NONE, envelope
from sparklift.allocation.exact import solve_exact
from sparklift.allocation.settle import settle
from sparklift.errors import InputError
from sparklift.tables.schema import spark_to_arrow

log = logging.getLogger("sparklift")

PER_OCTAVE = 512
FILL_STEPS = 200_000  # at most this many breakpoints below the crossing bucket go to the fill
TOTALS = -(2**62)  # the histogram's bucket key of the per-group totals row
FLAGS = ("dup", "bad", "other", "multi", "nogroup")


def bucket(x: np.ndarray) -> np.ndarray:
    """Histogram bucket of positive multipliers: 1/512 octave (0.14%) wide."""
    return np.floor(np.log2(x) * PER_OCTAVE).astype(np.int64)


@dataclass(frozen=True)
class Problem:
    """What to solve: the vouchers (option order), a budget per group, optional caps."""

    vouchers: Sequence[str]
    budgets: Mapping[str, float]
    caps: Mapping[str, int] = field(default_factory=dict)
    exact_max_customers: int = 0  # groups this small are solved exactly (no caps allowed)
    exact_time_limit_s: float = 60.0
    max_cap_rounds: int = 10
    cap_tolerance: float = 0.01  # a round may stop when bound caps are met within this share


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

    allocations: DataFrame
    groups: dict[str, GroupSummary]
    mu: dict[str, float]  # per capped voucher
    caps: dict[str, int]
    passes: int
    cap_rounds: int
    cached: tuple[DataFrame, ...]  # the allocations read these

    def release(self) -> None:
        for frame in self.cached:
            frame.unpersist()


def _wide_fields(n_opt: int) -> list[StructField]:
    return (
        [StructField("customer_id", LongType()), StructField("budget_group", StringType())]
        + [StructField(f"u{j}", DoubleType()) for j in range(n_opt)]
        + [StructField(f"c{j}", DoubleType()) for j in range(n_opt)]
        + [StructField(f, LongType()) for f in FLAGS]
    )


def _envelope_fields(n_opt: int) -> list[StructField]:
    out = [StructField("base", IntegerType()), StructField("base_value", DoubleType())]
    for k in range(n_opt):
        out += [
            StructField(f"l{k}", DoubleType()),
            StructField(f"b{k}", LongType()),
            StructField(f"v{k}", DoubleType()),
            StructField(f"w{k}", DoubleType()),
            StructField(f"t{k}", IntegerType()),
        ]
    return out


def _pivot(rows: pa.Table, vouchers: pa.Array) -> list[pa.Array]:
    """Rows sorted by (customer, voucher) -> one row per customer: id, group, u{j}, c{j}
    (null when absent or not finite) and the defect counts FLAGS."""
    rows = rows.combine_chunks()
    ids = rows["customer_id"].to_numpy()
    first = np.r_[True, ids[1:] != ids[:-1]]
    cust = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    n, n_opt = len(starts), len(vouchers)
    vid = pc.fill_null(pc.index_in(rows["voucher_id"], value_set=vouchers), -1).to_numpy()
    uo = rows["uplift_objective"].to_numpy(zero_copy_only=False).astype(float)
    uc = rows["uplift_cost"].to_numpy(zero_copy_only=False).astype(float)
    known = vid >= 0
    ok = known & np.isfinite(uo) & np.isfinite(uc)
    again = np.r_[False, ~first[1:] & (vid[1:] == vid[:-1])] & known
    group = rows["budget_group"].combine_chunks()
    own_group = group.take(pa.array(starts[cust]))
    moved = pc.fill_null(pc.not_equal(group, own_group), True).to_numpy(zero_copy_only=False)
    count = lambda mask: pa.array(np.bincount(cust[mask], minlength=n), pa.int64())  # noqa: E731
    u = np.full((n, n_opt), np.nan)
    c = np.full((n, n_opt), np.nan)
    u[cust[ok], vid[ok]] = uo[ok]
    c[cust[ok], vid[ok]] = uc[ok]
    return [
        pa.array(ids[starts], pa.int64()),
        group.take(pa.array(starts)),
        *[pa.array(u[:, j], pa.float64(), mask=np.isnan(u[:, j])) for j in range(n_opt)],
        *[pa.array(c[:, j], pa.float64(), mask=np.isnan(c[:, j])) for j in range(n_opt)],
        count(again),  # dup
        count(known & ~ok),  # bad
        count(~known),  # other
        count(moved & group.is_valid().to_numpy(zero_copy_only=False)),  # multi
        count(~group.is_valid().to_numpy(zero_copy_only=False)),  # nogroup
    ]


def _envelope_arrays(u: np.ndarray, c: np.ndarray, mu: np.ndarray | None) -> list[pa.Array]:
    env = envelope(u, c, mu)
    steps = np.isfinite(env.lam)
    bk = bucket(np.where(steps, env.lam, 1.0))
    out = [pa.array(env.base, pa.int32()), pa.array(env.base_value, pa.float64())]
    for k in range(u.shape[1]):
        absent = ~steps[:, k]
        out += [
            pa.array(env.lam[:, k], pa.float64(), mask=absent),
            pa.array(bk[:, k], pa.int64(), mask=absent),
            pa.array(env.d_value[:, k], pa.float64(), mask=absent),
            pa.array(env.d_cost[:, k], pa.float64(), mask=absent),
            pa.array(env.to[:, k], pa.int32(), mask=absent),
        ]
    return out


def customers(scores: DataFrame, vouchers: Sequence[str], mu: np.ndarray | None) -> DataFrame:
    """One row per customer: its options as columns (u{j}, c{j}), the input's defect
    counts (FLAGS) and its envelope: base choice and value, and per breakpoint k lambda
    l{k}, its bucket b{k}, value and cost change v{k}, w{k}, new option t{k} (null where
    the customer has fewer breakpoints).

    The scores move once, hash-partitioned by customer and sorted within partitions;
    each Python worker then pivots consecutive rows (a customer cut by a batch boundary
    waits for the next batch): far cheaper than a Spark pivot aggregation.
    """
    n_opt = len(vouchers)
    schema = StructType(_wide_fields(n_opt) + _envelope_fields(n_opt))
    arrow = spark_to_arrow(schema)
    names = pa.array(list(vouchers), pa.string())

    def build(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        carry: pa.Table | None = None
        for b in batches:
            t = pa.Table.from_batches([b])
            t = t if carry is None else pa.concat_tables([carry, t])
            if t.num_rows == 0:
                continue
            ids = t["customer_id"].to_numpy()
            cut = int(np.searchsorted(ids, ids[-1]))  # the last customer may go on
            carry = t.slice(cut)
            if cut:
                yield _finish(_pivot(t.slice(0, cut), names), n_opt, mu, arrow)
        if carry is not None and carry.num_rows:
            yield _finish(_pivot(carry, names), n_opt, mu, arrow)

    rows = _typed(scores)
    by_customer = rows.repartition("customer_id").sortWithinPartitions("customer_id", "voucher_id")
    return by_customer.mapInArrow(build, schema)


def _finish(
    wide: list[pa.Array], n_opt: int, mu: np.ndarray | None, schema: pa.Schema
) -> pa.RecordBatch:
    u = np.column_stack([a.to_numpy(zero_copy_only=False) for a in wide[2 : 2 + n_opt]])
    c = np.column_stack([a.to_numpy(zero_copy_only=False) for a in wide[2 + n_opt : 2 + 2 * n_opt]])
    return pa.RecordBatch.from_arrays(wide + _envelope_arrays(u, c, mu), schema=schema)


def envelopes(env: DataFrame, n_opt: int, mu: np.ndarray | None) -> DataFrame:
    """The same customers' envelopes at other cap multipliers ``mu``."""
    wide = [f.name for f in _wide_fields(n_opt)]
    schema = StructType(_wide_fields(n_opt) + _envelope_fields(n_opt))
    arrow = spark_to_arrow(schema)

    def again(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for b in batches:
            yield _finish([b.column(name) for name in wide], n_opt, mu, arrow)

    return env.select(*wide).mapInArrow(again, schema)


def _histogram(env: DataFrame, n_opt: int) -> pd.DataFrame:
    """Per (group, bucket): summed cost and value change and count of breakpoints; per
    group a totals row (bucket TOTALS): customers, base value, and the defect counts."""
    totals = F.struct(
        F.lit(TOTALS).cast("long").alias("bucket"),
        F.lit(0.0).alias("d_cost"),
        F.col("base_value").alias("d_value"),
        F.lit(1).cast("long").alias("n"),
        *[F.col(f).alias(f) for f in FLAGS],
    )
    steps = [
        F.struct(
            F.col(f"b{k}").alias("bucket"),
            F.col(f"w{k}").alias("d_cost"),
            F.col(f"v{k}").alias("d_value"),
            F.lit(1).cast("long").alias("n"),
            *[F.lit(0).cast("long").alias(f) for f in FLAGS],
        )
        for k in range(n_opt)
    ]
    rows = env.select("budget_group", F.inline(F.array(totals, *steps)))
    return (
        rows.where(F.col("bucket").isNotNull())
        .groupBy("budget_group", "bucket")
        .agg(*[F.sum(c).alias(c) for c in ("d_cost", "d_value", "n", *FLAGS)])
        .toPandas()
    )


def check_input(
    hist: pd.DataFrame,
    budgets: Mapping[str, float],
    scores: DataFrame | None = None,
    vouchers: Sequence[str] = (),
) -> None:
    """Fail on scores the allocation cannot use, naming what is wrong, how often and (given
    the ``scores`` and campaign ``vouchers``) one offending key."""
    totals = hist[hist["bucket"] == TOTALS]
    if totals.empty:
        raise InputError("uplift_scores has no rows for this run date: nothing to allocate")
    unknown = sorted(str(g) for g in set(totals["budget_group"]) - set(budgets))
    if unknown:
        raise InputError(
            f"uplift_scores has budget groups {unknown} with no budget in the campaign "
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
            raise InputError(f"uplift_scores has {n} {what}{example}")


def _typed(scores: DataFrame) -> DataFrame:
    """The columns of ``uplift_scores`` the allocation reads, with the types it needs."""
    return scores.select(
        F.col("customer_id").cast("long").alias("customer_id"),
        F.col("budget_group").cast("string").alias("budget_group"),
        F.col("voucher_id").cast("string").alias("voucher_id"),
        F.col("uplift_objective").cast("double").alias("uplift_objective"),
        F.col("uplift_cost").cast("double").alias("uplift_cost"),
    )


def _example(scores: DataFrame, vouchers: Sequence[str], defect: str) -> str:
    """``, e.g. <key of one offending row>`` for an input defect (FLAGS), found by one
    Spark aggregation (the smallest key, so the same input names the same row); empty
    if there is none or it cannot be found."""
    rows = _typed(scores)
    known = F.coalesce(F.col("voucher_id").isin(list(vouchers)), F.lit(False))

    def finite(c: str) -> Column:
        return F.col(c).isNotNull() & ~F.isnan(c) & (F.abs(F.col(c)) != float("inf"))

    key = ["customer_id", "voucher_id"]
    if defect == "dup":
        found = rows.where(known).groupBy(*key).agg(F.count(F.lit(1)).alias("rows"))
        found, show = found.where(F.col("rows") > 1), [*key, "rows"]
    elif defect == "bad":
        found = rows.where(known & ~(finite("uplift_objective") & finite("uplift_cost")))
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
class _Plan:
    """Per group from the histogram: customers, base value, and either 'all steps'
    (the budget never binds), a crossing range [lo, hi], or 'exact'."""

    n_customers: dict[str, int]
    base_value: dict[str, float]
    all_steps: dict[str, float]  # group -> value of every step (the budget never binds)
    ranges: dict[str, tuple[int, int, float, float]]  # group -> lo, hi, spent/value above
    exact: list[str]


def _plan(hist: pd.DataFrame, problem: Problem, exact_ok: bool) -> _Plan:
    totals = hist[hist["bucket"] == TOTALS].set_index("budget_group")
    steps = hist[hist["bucket"] != TOTALS]
    plan = _Plan({}, {}, {}, {}, [])
    for g, budget in problem.budgets.items():
        n = int(totals.loc[g, "n"]) if g in totals.index else 0
        plan.n_customers[g] = n
        plan.base_value[g] = float(totals.loc[g, "d_value"]) if g in totals.index else 0.0
        if exact_ok and 0 < n <= problem.exact_max_customers:
            plan.exact.append(g)
            continue
        h = steps[steps["budget_group"] == g].sort_values("bucket", ascending=False)
        cum = h["d_cost"].cumsum().to_numpy()
        over = np.flatnonzero(cum > budget)
        if not len(over):
            plan.all_steps[g] = float(h["d_value"].sum())
            continue
        q = int(over[0])
        spent_above = float(cum[q - 1]) if q else 0.0
        value_above = float(h["d_value"].iloc[:q].sum())
        # The fill may use breakpoints below the crossing bucket: take buckets down until
        # their cost is twice the budget left after the ones above (or FILL_STEPS).
        below = h.iloc[q + 1 :]
        need = np.cumsum(below["d_cost"].to_numpy()) < 2 * (budget - spent_above)
        need &= np.cumsum(below["n"].to_numpy()) < FILL_STEPS
        hi = int(h["bucket"].iloc[q])
        lo = int(below["bucket"].iloc[min(int(need.sum()), len(below) - 1)]) if len(below) else hi
        plan.ranges[g] = (lo, hi, spent_above, value_above)
    return plan


def _settle(
    env: DataFrame, plan: _Plan, problem: Problem, n_opt: int
) -> tuple[dict[str, float], dict[str, float], dict[int, int]]:
    """Per group lambda and dual bound (value part, net of mu); the driver's choices for
    the customers it settled (customer_id -> option or NONE). One pass over ``env``."""
    spark = env.sparkSession
    lam: dict[str, float] = {}
    dual: dict[str, float] = {}
    forced: dict[int, int] = {}
    for g, value in plan.all_steps.items():
        lam[g] = 0.0
        dual[g] = plan.base_value[g] + value
    if not plan.ranges:
        return lam, dual, forced
    ranges = spark.createDataFrame(
        [(g, lo, hi) for g, (lo, hi, _, _) in plan.ranges.items()],
        "budget_group string, lo long, hi long",
    )
    structs = [
        F.struct(
            F.lit(k).alias("step"),
            F.col(f"l{k}").alias("lam"),
            F.col(f"b{k}").alias("bucket"),
            F.col(f"v{k}").alias("d_value"),
            F.col(f"w{k}").alias("d_cost"),
            F.col(f"t{k}").alias("to"),
        )
        for k in range(n_opt)
    ]
    steps = (
        env.join(F.broadcast(ranges), "budget_group")
        .select("budget_group", "customer_id", "lo", "hi", F.inline(F.array(*structs)))
        .where(F.col("bucket").between(F.col("lo"), F.col("hi")))
        .drop("lo", "hi", "bucket")
        .toPandas()
    )
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
        lam[g] = done.lam
        dual[g] = plan.base_value[g] + done.dual_bound
        taken = s[done.taken].sort_values("step")
        forced.update(zip(taken["customer_id"].tolist(), taken["to"].tolist(), strict=True))
    return lam, dual, forced


def _solve_exact_groups(
    env: DataFrame, plan: _Plan, problem: Problem, n_opt: int
) -> tuple[dict[str, float], dict[int, int]]:
    """Optimal choices of the small groups (one pass); their dual bound is the optimum."""
    spark = env.sparkSession
    groups = spark.createDataFrame([(g,) for g in plan.exact], "budget_group string")
    cols = [f"u{j}" for j in range(n_opt)] + [f"c{j}" for j in range(n_opt)]
    rows = (
        env.join(F.broadcast(groups), "budget_group")
        .select("budget_group", "customer_id", *cols)
        .toPandas()
    )
    dual: dict[str, float] = {}
    forced: dict[int, int] = {}
    for g in plan.exact:
        r = rows[rows["budget_group"] == g].sort_values("customer_id")
        u = r[cols[:n_opt]].to_numpy(dtype=float)
        c = r[cols[n_opt:]].to_numpy(dtype=float)
        choice, best = solve_exact(
            u, c, problem.budgets[g], time_limit_s=problem.exact_time_limit_s
        )
        dual[g] = best
        forced.update(zip(r["customer_id"].tolist(), choice.tolist(), strict=True))
    return dual, forced


def _net(n_opt: int, mu: np.ndarray, lam: Column) -> list[Column]:
    """Per option u - mu - lambda max(c, 0) where the option can be chosen (u > 0)."""
    return [
        F.when(
            F.col(f"u{j}") > 0,
            F.col(f"u{j}") - float(mu[j]) - lam * F.greatest(F.col(f"c{j}"), F.lit(0.0)),
        )
        for j in range(n_opt)
    ]


def _margin(net: list[Column], j: int) -> Column:
    """How far option j beats the customer's best alternative (nothing = 0)."""
    others = [F.lit(0.0), *[a for k, a in enumerate(net) if k != j]]
    best_other = F.greatest(*others) if len(others) > 1 else others[0]
    return net[j] - best_other


def _lambda_frame(env: DataFrame, lam: Mapping[str, float]) -> DataFrame:
    return env.sparkSession.createDataFrame(
        [(g, float(v)) for g, v in lam.items()], "budget_group string, lam double"
    )


def _cap_round(
    env: DataFrame,
    lam: Mapping[str, float],
    mu: np.ndarray,
    caps: Mapping[int, int],
    n_opt: int,
) -> tuple[dict[int, int], np.ndarray]:
    """Per capped option: how many customers take it at (lambda, mu), and the mu that
    brings that count to its cap given the others' mu. One pass over ``env``."""
    with_lam = env.join(F.broadcast(_lambda_frame(env, lam)), "budget_group")
    net = _net(n_opt, mu, F.col("lam"))
    rows = [
        F.struct(
            F.lit(j).alias("option"),
            F.floor(F.log2(_margin(net, j)) * PER_OCTAVE).cast("long").alias("bucket"),
        )
        for j in caps
    ]
    hist = (
        with_lam.select(F.inline(F.array(*rows)))
        .where(F.col("bucket").isNotNull())
        .groupBy("option", "bucket")
        .count()
        .toPandas()
    )
    counts: dict[int, int] = {}
    new_mu = mu.copy()
    for j, cap in caps.items():
        h = hist[hist["option"] == j].sort_values("bucket", ascending=False)
        cum = h["count"].cumsum().to_numpy()
        counts[j] = int(cum[-1]) if len(cum) else 0
        over = np.flatnonzero(cum > cap)
        # Everyone whose margin is above the crossing bucket keeps the option: <= cap.
        new_mu[j] = 2.0 ** ((h["bucket"].iloc[over[0]] + 1) / PER_OCTAVE) if len(over) else 0.0
    return counts, new_mu


def solve(scores: DataFrame, problem: Problem) -> Solution:
    """Allocate ``scores`` (customer_id, budget_group, voucher_id, uplift_objective,
    uplift_cost) under ``problem``'s budgets and caps. See the module docstring."""
    vouchers = list(problem.vouchers)
    n_opt = len(vouchers)
    for g, b in problem.budgets.items():
        if not b >= 0:
            raise InputError(f"budget of group {g!r} must be a number >= 0, got {b}")
    unknown = sorted(set(problem.caps) - set(vouchers))
    if unknown:
        raise InputError(f"caps name vouchers {unknown} that are not in the campaign {vouchers}")
    caps = {vouchers.index(v): int(q) for v, q in problem.caps.items()}
    if any(q < 0 for q in caps.values()):
        raise InputError(f"caps must be >= 0, got {dict(problem.caps)}")
    mu = np.zeros(n_opt)
    step_size, last_direction = np.ones(n_opt), np.zeros(n_opt)
    passes = rounds = 0
    # With caps, each round's envelopes derive from the first ones, which stay cached: a
    # chain of rounds would grow the plan, and its planning time, with every round.
    base = env = customers(scores, vouchers, None).persist(StorageLevel.MEMORY_AND_DISK)
    previous: DataFrame | None = None
    while True:
        hist = _histogram(env, n_opt)
        passes += 1
        if previous is not None and previous is not base:  # the new ones are cached now
            previous.unpersist()
        check_input(hist, problem.budgets, scores, vouchers)
        plan = _plan(hist, problem, exact_ok=not caps)
        lam, dual, forced = _settle(env, plan, problem, n_opt)
        passes += bool(plan.ranges)
        log.info(
            "allocation: pass %d, multipliers of %d groups settled (%d breakpoints by the driver)",
            passes,
            len(lam),
            len(forced),
        )
        if plan.exact:
            exact_dual, exact_forced = _solve_exact_groups(env, plan, problem, n_opt)
            passes += 1
            dual.update(exact_dual)
            forced.update(exact_forced)
        if not caps:
            break
        counts, new_mu = _cap_round(env, lam, mu, caps, n_opt)
        passes += 1
        rounds += 1
        tight = all(
            counts[j] <= q and (mu[j] == 0 or counts[j] >= (1 - problem.cap_tolerance) * q)
            for j, q in caps.items()
        )
        log.info(
            "allocation: cap round %d, counts %s, mu %s",
            rounds,
            {vouchers[j]: n for j, n in counts.items()},
            {vouchers[j]: round(float(mu[j]), 6) for j in caps},
        )
        if tight or rounds >= problem.max_cap_rounds:
            break
        # Damped: a voucher's step halves each time its direction reverses (the
        # synchronous best responses of substitute vouchers overshoot each other) and
        # grows back while it keeps its direction.
        direction = np.sign(new_mu - mu)
        step_size = np.where(
            direction * last_direction < 0, step_size / 2, np.minimum(step_size * 1.5, 1.0)
        )
        last_direction = np.where(direction != 0, direction, last_direction)
        mu = np.maximum(mu + step_size * (new_mu - mu), 0.0)
        previous = env
        env = envelopes(base, n_opt, mu).persist(StorageLevel.MEMORY_AND_DISK)
    allocations = _choices(env, vouchers, plan, lam, forced, mu, caps)
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
    mu_out = {vouchers[j]: float(mu[j]) for j in caps}
    cached = (env,) if env is base else (env, base)
    return Solution(allocations, summaries, mu_out, dict(problem.caps), passes + 1, rounds, cached)


def _choices(
    env: DataFrame,
    vouchers: Sequence[str],
    plan: _Plan,
    lam: Mapping[str, float],
    forced: Mapping[int, int],
    mu: np.ndarray,
    caps: Mapping[int, int],
) -> DataFrame:
    """Each customer's voucher, in Spark SQL over the cached envelopes."""
    spark = env.sparkSession
    n_opt = len(vouchers)
    below_all = TOTALS + 1  # every breakpoint is above this
    q = {g: plan.ranges[g][1] if g in plan.ranges else below_all for g in plan.n_customers}
    groups = spark.createDataFrame(
        [(g, int(q[g]), float(lam.get(g, 0.0))) for g in q],
        "budget_group string, q long, lam double",
    )
    df = env.join(F.broadcast(groups), "budget_group")
    taken = sum(F.when(F.col(f"b{k}") > F.col("q"), 1).otherwise(0) for k in range(n_opt))
    choice = F.when(taken == 0, F.col("base"))
    for k in range(n_opt):
        choice = choice.when(taken == k + 1, F.col(f"t{k}"))
    if forced:
        override = spark.createDataFrame(
            [(int(i), int(j)) for i, j in forced.items()], "customer_id long, forced int"
        )
        df = df.join(F.broadcast(override), "customer_id", "left")
        choice = F.coalesce(F.col("forced"), choice)
    df = df.withColumn("_choice", choice).where(F.col("_choice") != NONE)
    pick = lambda prefix: F.coalesce(  # noqa: E731
        *[F.when(F.col("_choice") == j, F.col(f"{prefix}{j}")) for j in range(n_opt)]
    )
    names = F.array(*[F.lit(v) for v in vouchers])
    out = df.select(
        "customer_id",
        "budget_group",
        F.element_at(names, F.col("_choice") + 1).alias("voucher_id"),
        pick("u").alias("expected_uplift"),
        F.greatest(pick("c"), F.lit(0.0)).alias("expected_cost"),
        *([_chosen_margin(n_opt, mu).alias("_margin")] if caps else []),
    )
    if caps:
        cap = F.element_at(
            F.array(*[F.lit(caps.get(j, -1)) for j in range(n_opt)]),
            F.array_position(names, F.col("voucher_id")).cast("int"),
        )
        rank = F.row_number().over(
            Window.partitionBy("voucher_id").orderBy(F.desc("_margin"), "customer_id")
        )
        out = (
            out.withColumn("_rank", rank)
            .where((cap < 0) | (F.col("_rank") <= cap))
            .drop("_margin", "_rank")
        )
    return out


def _chosen_margin(n_opt: int, mu: np.ndarray) -> Column:
    net = _net(n_opt, mu, F.col("lam"))
    return F.coalesce(*[F.when(F.col("_choice") == j, _margin(net, j)) for j in range(n_opt)])


def summarize(allocations: DataFrame, solution: Solution) -> list[GroupSummary]:
    """Complete the group summaries from the allocations as written: spent, objective,
    customers allocated and per-voucher counts. With caps, the campaign's cap term
    sum_j mu_j Q_j is shared out to the groups by their share of each capped voucher's
    allocations, so the group bounds add up to the campaign's (certified) bound."""
    rows = (
        allocations.groupBy("budget_group", "voucher_id")
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum("expected_uplift").alias("value"),
            F.sum("expected_cost").alias("cost"),
        )
        .toPandas()
    )
    out = []
    per_voucher = rows.groupby("voucher_id")["n"].sum()
    for g, solved in solution.groups.items():
        s = replace(solved)
        r = rows[rows["budget_group"] == g]
        s.spent = float(r["cost"].sum())
        s.objective = float(r["value"].sum())
        s.n_allocated = int(r["n"].sum())
        s.voucher_counts = {str(v): int(n) for v, n in zip(r["voucher_id"], r["n"], strict=True)}
        for v, m in solution.mu.items():
            total = int(per_voucher.get(v, 0))
            share = s.voucher_counts.get(v, 0) / total if total else 1 / len(solution.groups)
            s.dual_bound += share * m * solution.caps[v]
        out.append(s)
    return out
