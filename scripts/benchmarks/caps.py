"""caps: the capped allocation against its LP optimum, on a campaign's own scores.

Reads one run date's ``uplift_scores`` of a warehouse (by default the demo's, so run
``bash scripts/demo.sh`` first) and the campaign's budgets and caps as ``sparklift
allocate`` reads them (the campaign file, table vouchers' max_quantity). Every customer of
the date is solved, in the driver's memory, with ``max_cap_rounds`` of each ``--rounds``;
then HiGHS (scipy's ``linprog``) solves the LP relaxation of the same problem (each
customer at most one voucher, a fraction allowed; budgets; caps). Its optimum is at least
the integer optimum, so objective / LP is a lower bound on how near the allocation is to
the best one, and bound / LP says how loose the reported (dual) bound is.

``--arm policy`` solves what ``sparklift allocate`` solved for the campaign's policy arm
instead: its customers only, under each group's budget less what the published run's
explore arm spent and each cap less the explore arm's sends of it (run ``sparklift
allocate`` first), and applies the solve's held-out rule to the policy's own customers:
per voucher, the customers the policy sent it, those the rule gives it, and how many of
them are the same.

Checked: every customer of the date was solved, and HiGHS reports an optimal LP.
"""

from __future__ import annotations

import argparse
import datetime as dt

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from pyspark.sql import functions as F
from scipy.optimize import linprog

from benchmarks.measure import PeakRss, same_work, timed
from sparklift.allocation import arms, in_memory, ties
from sparklift.allocation import arms_in_memory as in_driver
from sparklift.allocation.campaign import CampaignConfig, load_campaign
from sparklift.allocation.distributed import Problem
from sparklift.allocation.envelope import NONE
from sparklift.allocation.layout import typed
from sparklift.allocation.limits import offered
from sparklift.config import load_config
from sparklift.jobs import JobContext
from sparklift.jobs import campaign_limits as limits
from sparklift.session import build_session
from sparklift.tables import Catalog

HELP = "the capped allocation against its LP optimum (HiGHS) on a campaign's scores"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--warehouse", default="data/demo", help="tables.base_path")
    parser.add_argument("--run-date", default="2026-12-01")
    parser.add_argument("--campaign", default="conf/campaigns/demo_winback.yaml")
    parser.add_argument("--rounds", default="5,10,20,40", help="max_cap_rounds to try")
    parser.add_argument(
        "--arm", choices=("all", "policy"), default="all",
        help="every customer, or the policy arm's problem of the published run",
    )  # fmt: skip


def run(args: argparse.Namespace, workdir: str) -> None:
    day = dt.date.fromisoformat(args.run_date)
    conf = load_config(overrides=[f"tables.base_path={args.warehouse}", "spark.log_level=ERROR"])
    spark = build_session(conf.spark, conf.tables.backend)
    catalog = Catalog(spark, conf.tables)
    ctx = JobContext(spark, conf, catalog, day)
    campaign = load_campaign(args.campaign, conf.allocate)
    vouchers = campaign.vouchers or limits.active_vouchers(ctx)
    vouchers, caps = offered(vouchers, limits.caps(ctx, campaign, vouchers), "bench")
    budgets = limits.budgets(ctx, campaign)
    scores = catalog.read("uplift_scores", where=[("run_date", "=", day)])
    scores = scores.where(scores["voucher_id"].isin(vouchers))
    rows = typed(scores).toArrow()
    keep = held = None
    if args.arm == "policy":
        budgets, caps, keep = _policy_problem(ctx, campaign, budgets, caps)
        arm = arms.arm(campaign.campaign_id, campaign.seed, campaign.holdout_share,
                       campaign.explore_share)  # fmt: skip
        policy = scores.withColumn("arm", F.when(arm == arms.POLICY, F.lit(arms.HOLDOUT)))
        held = in_driver.collect(policy, vouchers, campaign.campaign_id, campaign.seed)
    order = ties.tie_order(spark, campaign.campaign_id, campaign.seed)
    spark.stop()
    cust, _ = in_memory.customers(rows, vouchers)
    if keep is not None:
        cust = _subset(cust, keep.mask(cust.ids))
    n = len(cust.ids)
    print(f"{n:,} customers x {len(vouchers)} vouchers of {day}; budgets {budgets}; caps {caps}")
    results = []
    for r in [int(x) for x in args.rounds.split(",")]:
        problem = Problem(vouchers, budgets, caps, max_cap_rounds=r,
                          cap_tolerance=campaign.cap_tolerance, tie_order=order)  # fmt: skip
        with PeakRss() as rss:
            solved, t = timed(lambda: in_memory.solve_in_memory(cust, problem))  # noqa: B023
        same_work(f"{r} rounds, customers solved", sum(solved.n_customers.values()), n)
        sent = np.flatnonzero(solved.choice != NONE)
        objective = float(cust.u[sent, solved.choice[sent]].sum())
        bound = sum(solved.dual.values()) + sum(solved.bound_mu[vouchers.index(v)] * q
                                                for v, q in caps.items())  # fmt: skip
        counts = {v: int((solved.choice == j).sum()) for j, v in enumerate(vouchers)}
        results.append((r, solved.rounds, objective, bound, t, rss.peak, counts, solved.lam))
        if held is not None:
            _rule_agreement(cust, solved, held, vouchers)
    lp, t_lp, duals = _lp_optimum(cust, vouchers, budgets, caps)
    print(f"\nLP optimum (HiGHS, {t_lp:.0f}s): {lp:,.1f}; budget multipliers {duals[0]}; "
          f"cap multipliers {duals[1]}")  # fmt: skip
    print("max rounds | rounds run | objective | / LP | bound | / LP | time | peak RSS | sent")
    for r, ran, objective, bound, t, peak, counts, lam in results:
        print(f"{r} | {ran} | {objective:,.1f} | {objective / lp:.4f} | {bound:,.1f} | "
              f"{bound / lp:.4f} | {t:.1f}s | {peak / 2**30:.2f} GiB | {counts} "
              f"(lambda max {max(lam.values()):.4f})")  # fmt: skip


def _policy_problem(
    ctx: JobContext, campaign: CampaignConfig, budgets: dict, caps: dict
) -> tuple[dict, dict, arms.PolicyArm]:
    """The policy arm's budgets and caps in the published run of the campaign (what its
    explore arm left), and the arm's customers."""
    where = [("run_date", "=", ctx.run_date), ("campaign_id", "=", campaign.campaign_id)]
    summary = ctx.catalog.read("allocation_summary", where=where)
    run_ids = {r["run_id"] for r in summary.select("run_id").distinct().collect()}
    if len(run_ids) != 1:
        raise SystemExit(f"expected one published run of {campaign.campaign_id}, got {run_ids}")
    rows = ctx.catalog.read("allocations", where=[*where, ("run_id", "=", run_ids.pop())])
    paid, sent = arms.explore_totals(rows.where(F.col("arm") == arms.EXPLORE))
    keep = arms.policy_arm(ctx.spark, campaign.campaign_id, campaign.seed,
                           campaign.holdout_share, campaign.explore_share)  # fmt: skip
    budgets = {g: b - paid.get(g, 0.0) for g, b in budgets.items()}
    return budgets, arms.caps_left(caps, sent), keep


def _rule_agreement(
    cust: in_memory.Customers, solved: in_memory.Solved, held: pa.Table, vouchers: list[str]
) -> None:
    """Print, per voucher, the policy's customers sent it, those the solve's held-out rule
    gives it when applied to them (``held``: their rows as held-out ones), and both."""
    ruled = in_driver.holdout(held, solved.rule(vouchers)).to_pandas()
    by_rule = ruled.set_index("customer_id")["policy_voucher_id"].reindex(cust.ids)
    sent = np.where(solved.choice == NONE, None, np.asarray(vouchers, dtype=object)[solved.choice])
    for v in vouchers:
        mine, rule = sent == v, (by_rule == v).to_numpy()
        print(f"  {v}: policy {mine.sum():,}, rule {rule.sum():,}, both {(mine & rule).sum():,}")


def _subset(cust: in_memory.Customers, rows: np.ndarray) -> in_memory.Customers:
    return in_memory.Customers(cust.ids[rows], cust.groups[rows], cust.u[rows], cust.c[rows])


def _lp_optimum(
    cust: in_memory.Customers, vouchers: list[str], budgets: dict, caps: dict
) -> tuple[float, float, tuple[dict, dict]]:
    """The LP relaxation's optimum, its time and its multipliers (budgets, caps)."""
    n, J = cust.u.shape
    u = np.nan_to_num(cust.u, nan=0.0)
    c = np.maximum(np.nan_to_num(cust.c, nan=0.0), 0.0)
    idx = np.flatnonzero((u > 0).ravel())  # the options the solver may choose
    i, j = np.divmod(idx, J)
    cols = np.arange(len(idx))
    groups = list(budgets)
    g = np.array([groups.index(x) for x in cust.groups])[i]
    capped = [vouchers.index(v) for v in caps]
    in_cap = np.isin(j, capped)
    a = sp.vstack(
        [
            sp.csr_matrix((np.ones(len(idx)), (i, cols)), shape=(n, len(idx))),
            sp.csr_matrix((c.ravel()[idx], (g, cols)), shape=(len(groups), len(idx))),
            sp.csr_matrix(
                (np.ones(in_cap.sum()), ([capped.index(k) for k in j[in_cap]], cols[in_cap])),
                shape=(len(capped), len(idx)),
            ),
        ]
    ).tocsr()
    b = np.concatenate([np.ones(n), [budgets[x] for x in groups], [caps[v] for v in caps]])
    out, t = timed(lambda: linprog(-u.ravel()[idx], A_ub=a, b_ub=b, bounds=(0, 1), method="highs"))
    assert out.status == 0, f"HiGHS did not solve the LP: {out.message}"
    m = -out.ineqlin.marginals
    lam = {x: round(float(v), 4) for x, v in zip(groups, m[n : n + len(groups)], strict=True)}
    mu = {v: round(float(x), 4) for v, x in zip(caps, m[n + len(groups) :], strict=True)}
    return float(-out.fun), t, (lam, mu)
