"""Settle one budget group from its breakpoints near the crossing: the exact multiplier,
the rounded LP solution and the greedy fill (see :mod:`sparklift.allocation.lagrange`).

Input: the spend and objective of every step above the candidate range (all taken), and
the steps in the range (lambda, d_value, d_cost, customer, step index, and how many of
that customer's steps lie above the range). The same rule settles the whole problem when
the range holds every breakpoint, and the crossing histogram bucket in the distributed
solver.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Settled:
    lam: float
    taken: np.ndarray  # (m,) bool over the given steps
    spent: float
    objective: float
    dual_bound: float


def settle(
    budget: float,
    spent_above: float,
    value_above: float,
    lam: np.ndarray,
    d_value: np.ndarray,
    d_cost: np.ndarray,
    customer: np.ndarray,
    step: np.ndarray,
    steps_above: np.ndarray,
) -> Settled:
    """Steps must be given sorted by (lambda desc, customer, step)."""
    cum = spent_above + np.cumsum(d_cost)
    over = np.flatnonzero(cum > budget)
    if len(over) == 0:
        lam_star, taken = 0.0, np.ones(len(lam), dtype=bool)
    else:
        lam_star = float(lam[over[0]])
        taken = lam > lam_star
    relaxed_spent = spent_above + float(d_cost[taken].sum())
    relaxed_value = value_above + float(d_value[taken].sum())
    dual = relaxed_value + lam_star * (budget - relaxed_spent)
    # Greedy fill in ratio order: a customer's step only right after its earlier ones.
    count: dict[int, int] = {}
    for k in np.flatnonzero(taken):
        count[customer[k]] = count.get(customer[k], steps_above[k]) + 1
    blocked: set[int] = set()
    left = budget - relaxed_spent
    for k in np.flatnonzero(~taken):
        i = customer[k]
        if i in blocked or step[k] != count.get(i, steps_above[k]):
            continue
        if d_cost[k] <= left:
            taken[k] = True
            left -= d_cost[k]
            count[i] = step[k] + 1
        else:
            blocked.add(i)
    return Settled(
        lam_star,
        taken,
        spent_above + float(d_cost[taken].sum()),
        value_above + float(d_value[taken].sum()),
        dual,
    )
