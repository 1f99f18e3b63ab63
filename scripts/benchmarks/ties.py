"""ties: the holdout's match when scores tie at the budget's margin. No Spark.

One budget group of ``--customers`` customers and 3 vouchers, 20% held out at random. Each
customer's predicted uplift and cost per voucher come from ``--leaves`` distinct pairs (a
tree model's leaves: whole blocks of customers with one score; 0: every customer its own).
The policy's customers are solved by the in-memory Lagrangian solver
(:func:`sparklift.allocation.lagrange.solve_group`, the settle step the distributed solver
shares) at each of ``--budgets`` (shares of what the first voucher for all would cost);
the held-out customers get the uncapped rule of
:func:`sparklift.allocation.arms_in_memory.holdout`: the voucher of greatest
u - lambda c; among options tied with it (none one of margin 0), the costliest up to the
fill's cut in customer id, the cheapest above it. The limit it compares against is the
same rule without the cut: a tied customer always gets the cheaper option (before
2026-12-07 the rule gave none to those tied with nothing, and to those tied between two
vouchers whichever the float noise favoured). Per budget and number of leaves, over
``--seeds`` worlds, for both rules: the share each arm targets, the share of the policy's
customers whom the rule, applied to them, gives another voucher than the solve sent them
or none (they have no held-out twins), and in how many worlds allocate's check
(:mod:`sparklift.allocation.match`: none and each voucher, both arms) flags the group at
p < 0.001.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import pyarrow as pa

from sparklift.allocation.arms import Rule
from sparklift.allocation.arms_in_memory import holdout
from sparklift.allocation.distributed import GroupSummary
from sparklift.allocation.envelope import envelope
from sparklift.allocation.lagrange import solve_group
from sparklift.allocation.match import MISMATCH_P, targeting

HELP = "the holdout's targeted share against the policy's when scores tie at the margin"
VOUCHERS = 3
NAMES = [f"V{j}" for j in range(VOUCHERS)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--leaves", default="12,50,200,0")
    # budgets as shares of what the first voucher for every policy customer would cost:
    # a tight one's multiplier is set by a step from nothing to a voucher, a loose one's
    # often by a step up to a costlier voucher
    parser.add_argument("--budgets", default="0.15,1.2")


def scores(rng: np.random.Generator, n: int, leaves: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, J) predicted uplift and cost: from ``leaves`` distinct rows, or each its own."""
    rows = leaves or n
    u = rng.gamma(2.0, 0.05, (rows, VOUCHERS))
    c = rng.gamma(2.0, 0.5, (rows, VOUCHERS)) * (1 + np.arange(VOUCHERS))
    if not leaves:
        return u, c
    leaf = rng.integers(0, leaves, n)
    return u[leaf], c[leaf]


def by_rule(ids: np.ndarray, u: np.ndarray, c: np.ndarray, rule: Rule) -> pd.Series:
    """Per customer (``ids``, in order): the voucher ``rule`` gives it (None: none), by
    the driver's holdout rows (:func:`sparklift.allocation.arms_in_memory.holdout`)."""
    n = len(ids)
    rows = pa.table(
        {
            "customer_id": np.repeat(ids, VOUCHERS),
            "budget_group": ["g"] * (n * VOUCHERS),
            "voucher_id": np.tile(NAMES, n),
            "uplift_objective": u.ravel(),
            "uplift_cost": c.ravel(),
            "arm": ["holdout"] * (n * VOUCHERS),
        }
    )
    held = holdout(rows, rule).select(["customer_id", "policy_voucher_id"]).to_pandas()
    return held.set_index("customer_id")["policy_voucher_id"].reindex(ids)


def one_world(seed: int, n: int, leaves: int, share: float) -> dict[str, dict[str, float]]:
    """Per rule (with and without the fill's cut): the match check's shares and p, and the
    share of the policy's targeted customers the rule gives another voucher or none."""
    rng = np.random.default_rng(seed)
    u, c = scores(rng, n, leaves)
    held = rng.uniform(size=n) < 0.2
    ids = np.arange(n, dtype=np.int64)
    up, cp = u[~held], c[~held]
    budget = share * cp[:, 0].sum()
    result = solve_group(envelope(up, cp), budget, ids[~held])
    if result.spent > budget * (1 + 1e-12):
        raise AssertionError(f"the solve spent {result.spent} of a budget of {budget}")
    sent = pd.Series(np.asarray(NAMES, dtype=object)[np.maximum(result.choice, 0)])
    sent[result.choice < 0] = None
    group = GroupSummary("g", 0.0, result.lam, 0.0, len(up), "lagrangian",
                         n_allocated=int(sent.notna().sum()),
                         voucher_counts=sent.value_counts().to_dict())  # fmt: skip
    fill = {} if result.fill_cut is None else {"g": result.fill_cut}
    out = {}
    for name, rule in (("fill", Rule({"g": result.lam}, {"g": result.lam}, fill=fill)),
                       ("none", Rule({"g": result.lam}, {"g": result.lam}))):  # fmt: skip
        given = by_rule(ids[held], u[held], c[held], rule)
        own = by_rule(ids[~held], up, cp, rule).to_numpy()
        missed = int((pd.Series(own).fillna("-") != sent.fillna("-")).sum())
        counts = given.value_counts(dropna=False).rename_axis("policy_voucher_id")
        counts = counts.rename("n").reset_index().assign(budget_group="g", arm="holdout")
        check = targeting([group], counts)["g"]
        out[name] = check | {"missed": missed / len(up)}
    return out


def run(args: argparse.Namespace, workdir: str) -> None:
    del workdir  # nothing written
    print(f"{args.customers:,} customers, {args.seeds} worlds per row, 20% held out")
    print("| budget | distinct scores | rule | policy targets | holdout targets | "
          "policy customers the rule gives another voucher or none (median, max) | "
          "flagged at p < 0.001 | seconds per world |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for share in (float(x) for x in args.budgets.split(",")):
        for leaves in (int(x) for x in args.leaves.split(",")):
            start = time.perf_counter()
            worlds = [one_world(s, args.customers, leaves, share) for s in range(args.seeds)]
            seconds = (time.perf_counter() - start) / args.seeds
            for name, label in (("fill", "with the fill's cut"), ("none", "without the cut")):
                of = [w[name] for w in worlds]
                missed = np.array([w["missed"] for w in of])
                flagged = sum(w["p_value"] < MISMATCH_P for w in of)
                print(f"| {share:g} | {leaves or 'every customer'} | {label} | "
                      f"{np.mean([w['policy_targeted_share'] for w in of]):.2%} | "
                      f"{np.mean([w['holdout_targeted_share'] for w in of]):.2%} | "
                      f"{np.median(missed):.2%}, {missed.max():.2%} | "
                      f"{flagged}/{args.seeds} | {seconds:.2f} |")  # fmt: skip
