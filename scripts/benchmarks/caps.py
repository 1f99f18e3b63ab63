"""caps: the capped allocation against its LP optimum, on a campaign's own scores.

Reads one run date's ``uplift_scores`` of a warehouse (by default the demo's, so run
``bash scripts/demo.sh`` first) and the campaign's budgets and caps as ``sparklift
allocate`` reads them (the campaign file, table vouchers' max_quantity). Every customer of
the date is solved, in the driver's memory, with ``max_cap_rounds`` of each ``--rounds``;
then HiGHS (scipy's ``linprog``) solves the LP relaxation of the same problem (each
customer at most one voucher, a fraction allowed; budgets; caps). Its optimum is at least
the integer optimum, so objective / LP is a lower bound on how near the allocation is to
the best one, and bound / LP says how loose the reported (dual) bound is.

Checked: every customer of the date was solved, and HiGHS reports an optimal LP.
"""

from __future__ import annotations

import argparse
import datetime as dt

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from benchmarks.measure import PeakRss, same_work, timed
from sparklift.allocation import in_memory
from sparklift.allocation.campaign import load_campaign
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
    rows = typed(scores.where(scores["voucher_id"].isin(vouchers))).toArrow()
    spark.stop()
    cust, _ = in_memory.customers(rows, vouchers)
    n = len(cust.ids)
    print(f"{n:,} customers x {len(vouchers)} vouchers of {day}; budgets {budgets}; caps {caps}")
    results = []
    for r in [int(x) for x in args.rounds.split(",")]:
        problem = Problem(vouchers, budgets, caps, max_cap_rounds=r,
                          cap_tolerance=campaign.cap_tolerance)  # fmt: skip
        with PeakRss() as rss:
            solved, t = timed(lambda: in_memory.solve_in_memory(cust, problem))  # noqa: B023
        same_work(f"{r} rounds, customers solved", sum(solved.n_customers.values()), n)
        sent = np.flatnonzero(solved.choice != NONE)
        objective = float(cust.u[sent, solved.choice[sent]].sum())
        bound = sum(solved.dual.values()) + sum(solved.bound_mu[vouchers.index(v)] * q
                                                for v, q in caps.items())  # fmt: skip
        counts = {v: int((solved.choice == j).sum()) for j, v in enumerate(vouchers)}
        results.append((r, solved.rounds, objective, bound, t, rss.peak, counts, solved.lam))
    lp, t_lp, duals = _lp_optimum(cust, vouchers, budgets, caps)
    print(f"\nLP optimum (HiGHS, {t_lp:.0f}s): {lp:,.1f}; budget multipliers {duals[0]}; "
          f"cap multipliers {duals[1]}")  # fmt: skip
    print("max rounds | rounds run | objective | / LP | bound | / LP | time | peak RSS | sent")
    for r, ran, objective, bound, t, peak, counts, lam in results:
        print(f"{r} | {ran} | {objective:,.1f} | {objective / lp:.4f} | {bound:,.1f} | "
              f"{bound / lp:.4f} | {t:.1f}s | {peak / 2**30:.2f} GiB | {counts} "
              f"(lambda max {max(lam.values()):.4f})")  # fmt: skip


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
