"""The budget-constrained allocation over Spark, every budget group in the same passes.

1. Scan the scores once: one row per customer with its options as columns (a shuffle by
   customer), cached; per Arrow batch, each customer's envelope; per (group, bucket of
   lambda) the summed cost and objective change of the breakpoints in it. Buckets are
   1/512 octave wide (0.14% in lambda), so the histogram is small whatever the data.
2. On the driver, per group, the bucket where spend crosses the budget; then over the
   cache, the breakpoints of those buckets only, to the driver, where
   :func:`sparklift.allocation.settle.settle` finds the exact lambda and rounds and fills.
3. Over the cache, each customer's choice: its steps above its group's crossing bucket,
   plus the steps the driver took inside it.

The greedy fill uses the leftover budget on steps of the crossing bucket only (the
leftover is less than one step there). Summaries come from the histogram and the settled
steps, without another pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.storagelevel import StorageLevel

from sparklift.allocation.envelope import NONE, envelope
from sparklift.allocation.settle import settle
from sparklift.errors import InputError

PER_OCTAVE = 512
FILL_STEPS = 1_000_000  # at most this many steps below the crossing bucket for the fill


def bucket(lam: np.ndarray) -> np.ndarray:
    return np.floor(np.log2(lam) * PER_OCTAVE).astype(np.int64)


@dataclass
class GroupSummary:
    budget_group: str
    budget: float
    spent: float
    objective: float
    dual_bound: float
    lam: float
    n_customers: int
    n_allocated: int
    voucher_counts: dict[str, int]

    @property
    def gap(self) -> float:
        return self.dual_bound - self.objective


def pivot(scores: DataFrame, vouchers: Sequence[str]) -> DataFrame:
    """One row per (customer, group): u_j, c_j and the row count n_j of every voucher."""
    aggs = []
    for j, v in enumerate(vouchers):
        hit = F.col("voucher_id") == v
        aggs += [
            F.max(F.when(hit, F.col("uplift_objective").cast("double"))).alias(f"u{j}"),
            F.max(F.when(hit, F.col("uplift_cost").cast("double"))).alias(f"c{j}"),
            F.count(F.when(hit, 1)).alias(f"n{j}"),
        ]
    aggs.append(F.count(F.when(~F.col("voucher_id").isin(list(vouchers)), 1)).alias("n_other"))
    return scores.groupBy("customer_id", "budget_group").agg(*aggs)


def _matrices(batch: pa.RecordBatch, n_opt: int) -> tuple[np.ndarray, np.ndarray]:
    col = lambda name: batch.column(name).to_numpy(zero_copy_only=False).astype(float)  # noqa: E731
    u = np.column_stack([col(f"u{j}") for j in range(n_opt)])
    c = np.column_stack([col(f"c{j}") for j in range(n_opt)])
    return u, c


HIST = "budget_group string, bucket long, d_cost double, d_value double, n long, " \
       "customers long, base_value double, dup long, bad long, other long"  # fmt: skip
STEPS = "budget_group string, customer_id long, step long, lam double, d_value double, " \
        "d_cost double"  # fmt: skip


def solve(
    scores: DataFrame,
    vouchers: Sequence[str],
    budgets: Mapping[str, float],
) -> tuple[DataFrame, list[GroupSummary], int]:
    """(allocations: customer_id, budget_group, voucher_id, expected_uplift, expected_cost;
    per-group summaries; passes over the scores)."""
    n_opt = len(vouchers)
    wide = pivot(scores, vouchers).persist(StorageLevel.MEMORY_AND_DISK)

    def histogram(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for b in batches:
            u, c = _matrices(b, n_opt)
            env = envelope(u, c)
            groups = b.column("budget_group").to_numpy(zero_copy_only=False).astype(object)
            counts = np.column_stack(
                [b.column(f"n{j}").to_numpy(zero_copy_only=False) for j in range(n_opt)]
            )
            present = counts > 0
            bad = present & ~(np.isfinite(u) & np.isfinite(c))
            rows, steps = np.nonzero(np.isfinite(env.lam))
            keys = {}
            for g in np.unique(groups):
                keys[g] = groups == g
            out = {k: [] for k in HIST_NAMES}
            for g, in_g in keys.items():
                sel = in_g[rows]
                bk = bucket(env.lam[rows[sel], steps[sel]])
                uniq, inv = np.unique(bk, return_inverse=True)
                out["budget_group"] += [g] * (len(uniq) + 1)
                out["bucket"] += [*uniq.tolist(), None]
                out["d_cost"] += [*np.bincount(inv, env.d_cost[rows[sel], steps[sel]]), 0.0]
                out["d_value"] += [*np.bincount(inv, env.d_value[rows[sel], steps[sel]]), 0.0]
                out["n"] += [*np.bincount(inv).tolist(), 0]
                out["customers"] += [0] * len(uniq) + [int(in_g.sum())]
                out["base_value"] += [0.0] * len(uniq) + [float(env.base_value[in_g].sum())]
                out["dup"] += [0] * len(uniq) + [int((counts[in_g] > 1).sum())]
                out["bad"] += [0] * len(uniq) + [int(bad[in_g].sum())]
                other = b.column("n_other").to_numpy(zero_copy_only=False)[in_g]
                out["other"] += [0] * len(uniq) + [int(other.sum())]
            yield pa.RecordBatch.from_pydict(out, schema=HIST_ARROW)

    hist = (
        wide.mapInArrow(histogram, HIST)
        .groupBy("budget_group", "bucket")
        .agg(*[F.sum(c).alias(c) for c in HIST_NAMES[2:]])
        .toPandas()
    )
    totals = hist[hist["bucket"].isna()].set_index("budget_group")
    _check(totals, budgets)
    buckets = hist[hist["bucket"].notna()]
    crossing: dict[str, tuple[int, int]] = {}
    above: dict[str, tuple[float, float]] = {}
    for g, budget in budgets.items():
        h = buckets[buckets["budget_group"] == g].sort_values("bucket", ascending=False)
        cum = h["d_cost"].cumsum().to_numpy()
        over = np.flatnonzero(cum > budget)
        if len(over):
            q = over[0]
            spent_above = float(cum[q - 1]) if q else 0.0
            above[g] = (spent_above, float(h["d_value"].iloc[:q].sum()))
            # The fill may use steps below the crossing bucket too: take buckets down until
            # their cost is twice the budget left after the steps above (or FILL_STEPS).
            below = h.iloc[q + 1 :]
            need = np.cumsum(below["d_cost"].to_numpy()) < 2 * (budget - spent_above)
            need &= np.cumsum(below["n"].to_numpy()) < FILL_STEPS
            lo = (
                int(below["bucket"].iloc[min(int(need.sum()), len(below) - 1)])
                if len(below)
                else int(h["bucket"].iloc[q])
            )
            crossing[g] = (lo, int(h["bucket"].iloc[q]))
    passes = 1
    settled_steps: dict[int, int] = {}
    settled: dict[str, tuple[float, float, float, float]] = {}
    if crossing:
        passes += 1
        steps = _crossing_steps(wide, crossing, n_opt).toPandas()
        for g in crossing:
            s = steps[steps["budget_group"] == g].sort_values(
                ["lam", "customer_id", "step"], ascending=[False, True, True]
            )
            first = s.groupby("customer_id")["step"].transform("min").to_numpy()
            done = settle(
                budgets[g],
                above[g][0],
                above[g][1],
                s["lam"].to_numpy(),
                s["d_value"].to_numpy(),
                s["d_cost"].to_numpy(),
                s["customer_id"].to_numpy(),
                s["step"].to_numpy(),
                first,
            )
            taken = s[done.taken]
            for cid, k in zip(taken["customer_id"], taken["step"], strict=True):
                settled_steps[int(cid)] = max(settled_steps.get(int(cid), 0), int(k) + 1)
            for cid, k in zip(s["customer_id"], first, strict=True):
                settled_steps.setdefault(int(cid), int(k))
            settled[g] = (done.lam, done.spent, done.objective, done.dual_bound)
    passes += 1
    allocations = _choices(wide, vouchers, crossing, settled_steps)
    summaries = []
    for g, budget in budgets.items():
        base = float(totals.loc[g, "base_value"]) if g in totals.index else 0.0
        n_customers = int(totals.loc[g, "customers"]) if g in totals.index else 0
        h = buckets[buckets["budget_group"] == g]
        if g in settled:
            lam, spent, objective, dual = settled[g]
            objective, dual = objective + base, dual + base
        else:
            lam, spent = 0.0, float(h["d_cost"].sum())
            objective = dual = base + float(h["d_value"].sum())
        summaries.append(GroupSummary(g, budget, spent, objective, dual, lam, n_customers, 0, {}))
    return allocations, summaries, passes


HIST_NAMES = [f.split()[0] for f in HIST.split(", ")]
HIST_ARROW = pa.schema(
    [
        ("budget_group", pa.string()),
        ("bucket", pa.int64()),
        ("d_cost", pa.float64()),
        ("d_value", pa.float64()),
        ("n", pa.int64()),
        ("customers", pa.int64()),
        ("base_value", pa.float64()),
        ("dup", pa.int64()),
        ("bad", pa.int64()),
        ("other", pa.int64()),
    ]
)


def _check(totals, budgets: Mapping[str, float]) -> None:
    unknown = sorted(set(totals.index) - set(budgets))
    if unknown:
        raise InputError(f"uplift_scores has budget groups {unknown} with no budget")
    for col, what in (
        ("dup", "duplicate (customer, voucher) rows"),
        ("bad", "NaN or infinite scores"),
        ("other", "rows for vouchers that are not active"),
    ):
        n = int(totals[col].sum())
        if n:
            raise InputError(f"uplift_scores has {n} {what}")


def _crossing_steps(
    wide: DataFrame, crossing: Mapping[str, tuple[int, int]], n_opt: int
) -> DataFrame:
    def emit(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for b in batches:
            u, c = _matrices(b, n_opt)
            env = envelope(u, c)
            groups = b.column("budget_group").to_numpy(zero_copy_only=False).astype(object)
            none = (np.iinfo(np.int64).max, np.iinfo(np.int64).min)
            lo = np.array([crossing.get(g, none)[0] for g in groups])
            hi = np.array([crossing.get(g, none)[1] for g in groups])
            rows, steps = np.nonzero(np.isfinite(env.lam))
            bk = bucket(env.lam[rows, steps])
            hit = (bk >= lo[rows]) & (bk <= hi[rows])
            r, k = rows[hit], steps[hit]
            yield pa.RecordBatch.from_pydict(
                {
                    "budget_group": groups[r].tolist(),
                    "customer_id": b.column("customer_id").to_numpy(zero_copy_only=False)[r],
                    "step": k,
                    "lam": env.lam[r, k],
                    "d_value": env.d_value[r, k],
                    "d_cost": env.d_cost[r, k],
                }
            )

    return wide.mapInArrow(emit, STEPS)


def _choices(
    wide: DataFrame,
    vouchers: Sequence[str],
    crossing: Mapping[str, tuple[int, int]],
    settled_steps: Mapping[int, int],
) -> DataFrame:
    n_opt = len(vouchers)
    names = np.array(list(vouchers), dtype=object)
    top = np.iinfo(np.int64).max

    def choose(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for b in batches:
            u, c = _matrices(b, n_opt)
            env = envelope(u, c)
            groups = b.column("budget_group").to_numpy(zero_copy_only=False).astype(object)
            ids = b.column("customer_id").to_numpy(zero_copy_only=False)
            q = np.array([crossing.get(g, (-top, -top))[1] for g in groups])
            bk = np.where(np.isfinite(env.lam), bucket(np.nan_to_num(env.lam, nan=1.0)), -top)
            count = (bk > q[:, None]).sum(axis=1)
            for i in np.flatnonzero(np.isin(ids, list(settled_steps))):
                count[i] = settled_steps[int(ids[i])]
            choice = env.base.copy()
            moved = count > 0
            choice[moved] = env.to[moved, count[moved] - 1]
            keep = np.flatnonzero(choice != NONE)
            j = choice[keep]
            yield pa.RecordBatch.from_pydict(
                {
                    "customer_id": ids[keep],
                    "budget_group": groups[keep].tolist(),
                    "voucher_id": names[j].tolist(),
                    "expected_uplift": u[keep, j],
                    "expected_cost": np.maximum(c[keep, j], 0.0),
                }
            )

    schema = (
        "customer_id long, budget_group string, voucher_id string, expected_uplift double, "
        "expected_cost double"
    )
    return wide.mapInArrow(choose, schema)
