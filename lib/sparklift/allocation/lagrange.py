"""One budget group's exact Lagrange multiplier, its rounded feasible allocation and the
dual bound, from the customers' envelopes (:mod:`sparklift.allocation.envelope`).

Spend S(lambda) is a non-increasing step function: it rises by d_cost_k when lambda falls
below breakpoint lambda_k. Sorting the breakpoints by lambda (descending; ties by
customer, then step) and accumulating d_cost gives S exactly; lambda* is the breakpoint
at which S first exceeds the budget B (0 if S(0) <= B). Every customer takes its steps
above lambda* (the LP optimum without the fractional ones: feasible by construction);
then the leftover budget is filled greedily in the same order (best ratio first, lambda_k
being the step's value per unit of cost) with steps that still fit and whose customer
took all its earlier steps. The Lagrangian dual bound is
L(lambda*) = sum_i max(0, max_j (u_ij - lambda* c_ij)) + lambda* B >= the optimum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparklift.allocation.envelope import NONE, Envelope


@dataclass
class GroupResult:
    lam: float
    choice: np.ndarray  # (n,) option index or NONE
    objective: float
    spent: float
    dual_bound: float

    @property
    def gap(self) -> float:
        return self.dual_bound - self.objective


def solve_group(env: Envelope, budget: float, customer_ids: np.ndarray) -> GroupResult:
    """Allocate one group's customers under ``budget`` (>= 0)."""
    n = env.lam.shape[0]
    cust, step = np.nonzero(np.isfinite(env.lam))
    lam = env.lam[cust, step]
    order = np.lexsort((step, customer_ids[cust], -lam))
    cust, step, lam = cust[order], step[order], lam[order]
    d_cost, d_value = env.d_cost[cust, step], env.d_value[cust, step]
    spent0 = float(env.base_cost.sum())
    cum = spent0 + np.cumsum(d_cost)
    over = np.flatnonzero(cum > budget)
    if len(over) == 0:
        lam_star, taken = 0.0, np.ones(len(lam), dtype=bool)
    else:
        lam_star = float(lam[over[0]])
        taken = lam > lam_star
    spent = spent0 + float(d_cost[taken].sum())
    relaxed = float(env.base_value.sum() + d_value[taken].sum())
    dual = relaxed - lam_star * (spent - spent0) + lam_star * (budget - spent0)
    # Greedy fill: steps in ratio order; a customer's step only after all its earlier ones.
    count = np.zeros(n, dtype=np.int64)  # steps taken per customer
    np.add.at(count, cust[taken], 1)
    blocked = np.zeros(n, dtype=bool)
    left = budget - spent
    for k in np.flatnonzero(~taken):
        i = cust[k]
        if blocked[i] or step[k] != count[i]:
            continue
        if d_cost[k] <= left:
            taken[k] = True
            left -= d_cost[k]
            count[i] += 1
        else:
            blocked[i] = True  # its later steps cannot follow
    choice = env.base.copy()
    moved = count > 0
    choice[moved] = env.to[moved, count[moved] - 1]
    spent = spent0 + float(d_cost[taken].sum())
    objective = float(env.base_value.sum() + d_value[taken].sum())
    return GroupResult(lam_star, np.where(choice >= 0, choice, NONE), objective, spent, dual)
