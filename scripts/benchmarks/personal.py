"""personal: does the allocation pick the right voucher for each customer? On the
generator's history (286k rows, 30% held out: 200k to train, 3 vouchers) and 100k
customers, in the ``distinct`` world (each voucher appeals to customers of its own) and,
for comparison, the ``scaled`` one (one shape for every voucher), each learner is trained
and scores every customer; then at a fixed budget the allocation computed from its scores
is valued by the planted effects, against the allocation computed from the planted u and
c themselves (the oracle) and against the best single-voucher policy.

The allocation here is the Lagrangian rule the solver certifies (each customer takes the
voucher with the largest u - lambda c when it is positive), computed in NumPy for every
policy alike, with lambda set by bisection so that the policy's TRUE expected cost is
the budget: policies are compared at the same real spend, whatever their predicted costs.
The budget is a third of what the oracle spends with lambda = 0 (every customer helped
gets its best voucher).

Checked: every customer x voucher scored and compared with its planted effect.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from benchmarks.measure import same_work, timed
from benchmarks.uplift import CUSTOMERS, RUN_DATE, VOUCHERS, generated_world, uplift_conf
from sparklift.jobs import JobContext, train_uplift
from sparklift.jobs import score as score_job
from sparklift.synthetic import vouchers
from sparklift.tables import Catalog

HELP = "allocations from each learner's scores against the planted-truth allocation"
LEARNERS = {
    "dr_gbm (default, pooled)": ["uplift.learner=dr_gbm"],
    "dr_gbm, one model per voucher": ["uplift.learner=dr_gbm", "uplift.pool_vouchers=false"],
    "t_gbm": ["uplift.learner=t_gbm"],
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget-share", type=float, default=1 / 3)
    parser.add_argument("--seed", type=int, default=7, help="the generator's seed")


def choose(u: np.ndarray, c: np.ndarray, lam: float) -> np.ndarray:
    """Each customer's voucher index under the rule u - lambda c (-1: none)."""
    margin = u - lam * c
    best = margin.argmax(axis=1)
    return np.where(margin.max(axis=1) > 0, best, -1)


def true_totals(choice: np.ndarray, tau: np.ndarray, cost: np.ndarray) -> tuple[float, float]:
    """The planted objective and expected cost of the chosen (customer, voucher) pairs."""
    rows = np.flatnonzero(choice >= 0)
    return float(tau[rows, choice[rows]].sum()), float(cost[rows, choice[rows]].sum())


def allocate(u, c, tau, cost, budget: float) -> tuple[float, float, float]:
    """(planted value, planted cost, lambda) of the rule on (u, c) whose planted cost is the
    budget (the rule's cost falls as lambda rises)."""
    lo, hi = 0.0, 1.0
    for _ in range(40):  # pairs predicted to cost nothing stay chosen at any lambda
        if true_totals(choose(u, c, hi), tau, cost)[1] <= budget:
            break
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        if true_totals(choose(u, c, mid), tau, cost)[1] > budget:
            lo = mid
        else:
            hi = mid
    value, spent = true_totals(choose(u, c, hi), tau, cost)
    return value, spent, hi


def run(args: argparse.Namespace, workdir: str) -> None:
    results = []
    for world in ("distinct", "scaled"):
        results += bench_world(Path(workdir) / world, world, args.budget_share, args.seed)
    print("\nRESULT personal voucher choice: planted value at the same planted spend")
    print("  world     policy                              value   share of oracle")
    for world, policy, value, oracle in results:
        print(f"  {world:9s} {policy:35s} {value:9.1f}   {value / oracle:6.3f}")


def bench_world(workdir: Path, world: str, budget_share: float, seed: int) -> list[tuple]:
    world_sets = [f"generate.voucher_effects={world}", f"generate.seed={seed}"]
    ctx = generated_world(str(workdir), *world_sets)
    spark = ctx.spark
    ids = vouchers.voucher_ids(VOUCHERS)
    faces = {v: vouchers.FACE_VALUES[j] for j, v in enumerate(ids)}
    truth = vouchers.true_uplift(ctx.catalog.read("customers"), faces, world)
    truth = truth.select("customer_id", "voucher_id", "tau_objective", "tau_cost").toPandas()
    tau = truth.pivot(index="customer_id", columns="voucher_id", values="tau_objective")[ids]
    cost = truth.pivot(index="customer_id", columns="voucher_id", values="tau_cost")[ids]
    tau_m, cost_m = tau.to_numpy(), cost.to_numpy()
    budget = budget_share * true_totals(choose(tau_m, cost_m, 0.0), tau_m, cost_m)[1]
    oracle, _, lam = allocate(tau_m, cost_m, tau_m, cost_m, budget)
    print(f"{world}: budget {budget:.1f}, oracle value {oracle:.1f} (lambda {lam:.4f})")
    out = [(world, "oracle (planted u and c)", oracle, oracle)]
    for j, v in enumerate(ids):  # the best single voucher, chosen with the planted effects
        only = np.full_like(tau_m, -np.inf)
        only[:, j] = tau_m[:, j]
        value = allocate(only, cost_m, tau_m, cost_m, budget)[0]
        out.append((world, f"oracle, {v} only", value, oracle))
    for name, sets in LEARNERS.items():
        lconf = uplift_conf(str(workdir), *world_sets, *sets)
        lctx = JobContext(spark, lconf, Catalog(spark, lconf.tables), RUN_DATE)
        model, t_train = timed(
            lambda c=lctx: train_uplift.run(c, SimpleNamespace(learner=None, override_checks=False))
        )
        scored = score_job.run(lctx, SimpleNamespace(model_id=model["model_id"]))
        same_work(f"{world} {name}: rows scored", scored["rows"], CUSTOMERS * VOUCHERS)
        scores = ctx.catalog.read("uplift_scores").toPandas()
        same_work(f"{world} {name}: rows compared", len(scores), CUSTOMERS * VOUCHERS)
        u = scores.pivot(index="customer_id", columns="voucher_id", values="uplift_objective")
        c = scores.pivot(index="customer_id", columns="voucher_id", values="uplift_cost")
        u, c = u.loc[tau.index, ids].to_numpy(), c.loc[tau.index, ids].to_numpy()
        value = allocate(u, c, tau_m, cost_m, budget)[0]
        out.append((world, name, value, oracle))
        singles = []
        for j in range(len(ids)):
            only = np.full_like(u, -np.inf)
            only[:, j] = u[:, j]
            singles.append(allocate(only, c, tau_m, cost_m, budget)[0])
        best = int(np.argmax(singles))
        out.append((world, f"{name}: best single ({ids[best]})", singles[best], oracle))
        print(
            f"  {name}: trained in {t_train:.0f} s, value {value:.1f} = {value / oracle:.3f} "
            f"of the oracle; best single voucher {ids[best]} {singles[best]:.1f}",
            flush=True,
        )
    spark.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    return out
