"""Settle one budget group from its breakpoints near the crossing: the exact multiplier,
the rounded LP solution and the greedy fill (see :mod:`sparklift.allocation.lagrange`).

Input: the spend and objective of every step above the candidate range (all taken), and
the steps in the range (lambda, d_value, d_cost, customer, step index, and how many of
that customer's steps lie above the range). The same rule settles the whole problem when
the range holds every breakpoint, and the crossing histogram bucket in the distributed
solver.

The fill works through the block of steps tied at the multiplier in customer order, so
when scores tie (a tree model's leaves) it takes that block's steps (from nothing to a
voucher, or up to a costlier one) of the customers up to some id: :meth:`Settled.fill_cut`,
which the held-out customers' rule follows (:class:`.arms.Rule`), so that their held-out
twins of those ids get the costlier option too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ID_MIN, ID_MAX = -(2**63), 2**63 - 1  # the range of customer ids (longs)


@dataclass
class Settled:
    lam: float
    taken: np.ndarray  # (m,) bool over the given steps
    spent: float
    objective: float
    dual_bound: float
    tied: np.ndarray  # positions of the steps at lambda, in order
    tied_taken: int  # how many of them the fill took before it first left one

    def fill_cut(self, ids: np.ndarray) -> int | None:
        """The greatest customer id (``ids``: of the given steps) up to which the fill
        took the steps tied at lambda: all of them (the largest long), those up to the one
        before the first it left, or None (it took none)."""
        if self.tied_taken == 0:
            return None
        if self.tied_taken == len(self.tied):
            return ID_MAX
        return int(ids[self.tied[self.tied_taken - 1]])


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
    tied = np.flatnonzero(lam == lam_star) if len(over) else np.empty(0, int)
    left_out = np.flatnonzero(~taken[tied])
    return Settled(
        lam_star,
        taken,
        spent_above + float(d_cost[taken].sum()),
        value_above + float(d_value[taken].sum()),
        dual,
        tied,
        int(left_out[0]) if len(left_out) else len(tied),
    )
