"""ties: the holdout's match when scores tie at the budget's margin. No Spark.

One budget group of ``--customers`` customers and 3 vouchers, 20% held out at random. Each
customer's predicted uplift and cost per voucher come from ``--leaves`` distinct pairs (a
tree model's leaves: whole blocks of customers with one score; 0: every customer its own).
The policy's customers are solved by the in-memory Lagrangian solver
(:func:`sparklift.allocation.lagrange.solve_group`, the settle step the distributed solver
shares) at a budget of 15% of what the first voucher for all would cost; the held-out
customers get the uncapped rule of :func:`sparklift.allocation.arms_in_memory.holdout`
(the voucher of greatest u - lambda c, targeted when positive by more than a rounding).
Per number of leaves, over ``--seeds`` worlds: the share each arm targets, the share of the
policy's customers that the greedy fill took at the margin (the solve targets them, the
rule applied to them does not: they have no held-out twins), and in how many worlds
allocate's check (:mod:`sparklift.allocation.match`) flags the group at p < 0.001.
The limit it compares against is the continuous world, where the fill takes no one.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from sparklift.allocation.distributed import GroupSummary
from sparklift.allocation.envelope import envelope
from sparklift.allocation.lagrange import solve_group
from sparklift.allocation.match import MISMATCH_P, targeting
from sparklift.allocation.ties import TIE

HELP = "the holdout's targeted share against the policy's when scores tie at the margin"
VOUCHERS = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--leaves", default="12,50,200,0")


def scores(rng: np.random.Generator, n: int, leaves: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, J) predicted uplift and cost: from ``leaves`` distinct rows, or each its own."""
    rows = leaves or n
    u = rng.gamma(2.0, 0.05, (rows, VOUCHERS))
    c = rng.gamma(2.0, 0.5, (rows, VOUCHERS)) * (1 + np.arange(VOUCHERS))
    if not leaves:
        return u, c
    leaf = rng.integers(0, leaves, n)
    return u[leaf], c[leaf]


def targeted_by_rule(u: np.ndarray, c: np.ndarray, lam: float) -> np.ndarray:
    """The uncapped rule: the best margin, positive by more than a rounding of its u."""
    margin = u - lam * np.clip(c, 0.0, None)
    best = margin.argmax(axis=1)
    rows = np.arange(len(u))
    return margin[rows, best] > TIE * np.maximum(1.0, np.abs(u[rows, best]))


def one_world(seed: int, n: int, leaves: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    u, c = scores(rng, n, leaves)
    held = rng.uniform(size=n) < 0.2
    up, cp = u[~held], c[~held]
    budget = 0.15 * cp[:, 0].sum()
    result = solve_group(envelope(up, cp), budget, np.arange(len(up)))
    if result.spent > budget * (1 + 1e-12):
        raise AssertionError(f"the solve spent {result.spent} of a budget of {budget}")
    solved = result.choice >= 0
    w0 = int(targeted_by_rule(u[held], c[held], result.lam).sum())
    fill = int((solved & ~targeted_by_rule(up, cp, result.lam)).sum())
    group = GroupSummary("g", 0.0, result.lam, 0.0, len(up), "lagrangian",
                         n_allocated=int(solved.sum()))  # fmt: skip
    counts = {"budget_group": ["g", "g"], "arm": ["holdout"] * 2, "targeted": [True, False],
              "n": [w0, int(held.sum()) - w0]}  # fmt: skip
    check = targeting([group], pd.DataFrame(counts))["g"]
    return check | {"fill_share": fill / len(up)}


def run(args: argparse.Namespace, workdir: str) -> None:
    del workdir  # nothing written
    print(f"{args.customers:,} customers, {args.seeds} worlds per row, 20% held out")
    print("| distinct scores | policy targets | holdout targets | fill share (median, max) | "
          "flagged at p < 0.001 | seconds per world |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    for leaves in (int(x) for x in args.leaves.split(",")):
        start = time.perf_counter()
        worlds = [one_world(s, args.customers, leaves) for s in range(args.seeds)]
        seconds = (time.perf_counter() - start) / args.seeds
        fill = np.array([w["fill_share"] for w in worlds])
        flagged = sum(w["p_value"] < MISMATCH_P for w in worlds)
        print(f"| {leaves or 'every customer'} | "
              f"{np.mean([w['policy_targeted_share'] for w in worlds]):.2%} | "
              f"{np.mean([w['holdout_targeted_share'] for w in worlds]):.2%} | "
              f"{np.median(fill):.2%}, {fill.max():.2%} | {flagged}/{args.seeds} | "
              f"{seconds:.2f} |")  # fmt: skip
