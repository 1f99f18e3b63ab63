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

from sparklift.allocation.envelope import Envelope, after_steps
from sparklift.allocation.settle import settle


@dataclass
class GroupResult:
    lam: float
    choice: np.ndarray  # (n,) option index or NONE
    objective: float
    spent: float
    dual_bound: float
    fill_cut: int | None  # the fill took the steps tied at lam up to this id

    @property
    def gap(self) -> float:
        return self.dual_bound - self.objective


def solve_group(env: Envelope, budget: float, customer_ids: np.ndarray) -> GroupResult:
    """Allocate one group's customers under ``budget`` (>= 0), on one machine."""
    cust, step = np.nonzero(np.isfinite(env.lam))
    lam = env.lam[cust, step]
    order = np.lexsort((step, customer_ids[cust], -lam))
    cust, step, lam = cust[order], step[order], lam[order]
    done = settle(
        budget,
        0.0,  # the base choices are free
        float(env.base_value.sum()),
        lam,
        env.d_value[cust, step],
        env.d_cost[cust, step],
        cust,
        step,
        np.zeros(len(lam), dtype=np.int64),
    )
    choice = after_steps(env, np.bincount(cust[done.taken], minlength=len(customer_ids)))
    return GroupResult(
        done.lam,
        choice,
        done.objective,
        done.spent,
        done.dual_bound,
        done.fill_cut(customer_ids[cust]),
    )
