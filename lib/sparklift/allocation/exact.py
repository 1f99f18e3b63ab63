"""Exact multiple-choice knapsack by mixed-integer programming (OR-Tools, SCIP): the
reference the Lagrangian solver is tested against, and ``solver: exact`` for small groups.
Optimal to a relative MIP gap of 1e-7 (a gap of exactly 0 can take SCIP minutes to prove
where 1e-7 takes seconds): so the solution's objective is SCIP's incumbent and its bound
SCIP's best (dual) bound, which may exceed it by that gap, not the incumbent itself.
SCIP accepts a row within its feasibility tolerance (a budget overspent by 1e-7 passes), so
the solution is checked in exact arithmetic against every budget and cap and repaired by
dropping choices; the bound, of the tolerant model that contains the exact one, still
bounds the exact optimum, so the reported gap only grows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import NamedTuple

import numpy as np
from ortools.linear_solver import pywraplp

from sparklift.allocation.envelope import NONE
from sparklift.errors import SparkliftError


class Exact(NamedTuple):
    """An exact solve: the choice per row (option or NONE), its objective, and SCIP's best
    bound on the optimum (>= objective: the certificate of the reported gap)."""

    choice: np.ndarray
    objective: float
    bound: float


def solve_exact(
    u: np.ndarray,
    c: np.ndarray,
    budget: float | Mapping[object, float],
    groups: Sequence[object] | np.ndarray | None = None,
    caps: Sequence[float] | np.ndarray | None = None,
    time_limit_s: float = 60.0,
) -> Exact:
    """Optimal choice per row of (n, J) options, its objective and the proven bound.

    NaN = absent option; u <= 0 is never chosen; cost counts as max(c, 0). ``budget`` is
    one number, or a budget per group with ``groups`` giving each row's group; ``caps``
    (J,) limits how many rows take each option (NaN = no cap).
    """
    u = np.asarray(u, dtype=float)
    c = np.maximum(np.asarray(c, dtype=float), 0.0)
    n, n_opt = u.shape
    if groups is None:
        groups, budget = np.zeros(n, dtype=int), {0: float(budget)}  # type: ignore[arg-type]
    groups = np.asarray(groups, dtype=object)
    solver = pywraplp.Solver.CreateSolver("SCIP")
    solver.SetTimeLimit(int(time_limit_s * 1000))
    x: dict[tuple[int, int], pywraplp.Variable] = {}
    for i in range(n):
        row = []
        for j in range(n_opt):
            if np.isfinite(u[i, j]) and np.isfinite(c[i, j]) and u[i, j] > 0:
                x[i, j] = solver.BoolVar(f"x{i}_{j}")
                row.append(x[i, j])
        if row:
            solver.Add(sum(row) <= 1)
    for g, b in budget.items():  # type: ignore[union-attr]
        terms = [c[i, j] * v for (i, j), v in x.items() if groups[i] == g and c[i, j] > 0]
        if terms:
            solver.Add(sum(terms) <= b)
    if caps is not None:
        for j, q in enumerate(np.asarray(caps, dtype=float)):
            terms = [v for (_, k), v in x.items() if k == j]
            if np.isfinite(q) and terms:
                solver.Add(sum(terms) <= q)
    solver.Maximize(sum(u[i, j] * v for (i, j), v in x.items()))
    params = pywraplp.MPSolverParameters()
    params.SetDoubleParam(pywraplp.MPSolverParameters.RELATIVE_MIP_GAP, 1e-7)
    status = solver.Solve(params)
    if status != pywraplp.Solver.OPTIMAL:
        raise SparkliftError(
            f"exact solver did not prove optimality within {time_limit_s}s (status {status}); "
            "raise exact_time_limit_s or lower exact_max_customers"
        )
    choice = np.full(n, NONE)
    for (i, j), v in x.items():
        if v.solution_value() > 0.5:
            choice[i] = j
    objective = solver.Objective()
    value = float(objective.Value())
    # A maximization's best bound is >= its incumbent; max() only absorbs SCIP's rounding.
    bound = max(float(objective.BestBound()), value)
    lost = _repair(u, c, choice, groups, budget, caps)  # type: ignore[arg-type]
    return Exact(choice, value - lost, bound)


def _repair(
    u: np.ndarray,
    c: np.ndarray,
    choice: np.ndarray,
    groups: np.ndarray,
    budget: Mapping[object, float],
    caps: Sequence[float] | np.ndarray | None,
) -> float:
    """Drop choices (in place) until every cap and budget holds exactly, not within SCIP's
    tolerance: over a cap the lowest-valued of its rows, over a budget the lowest value per
    cost of its paid rows. Returns the objective dropped."""
    lost = 0.0
    if caps is not None:
        for j, q in enumerate(np.asarray(caps, dtype=float)):
            rows = np.flatnonzero(choice == j)
            if np.isfinite(q) and len(rows) > q:
                drop = rows[np.argsort(u[rows, j], kind="stable")[: len(rows) - int(np.floor(q))]]
                lost += float(u[drop, j].sum())
                choice[drop] = NONE
    for g, b in budget.items():
        rows = np.flatnonzero((groups == g) & (choice != NONE))
        cost = c[rows, choice[rows]]
        rows, cost = rows[cost > 0], cost[cost > 0]
        value = u[rows, choice[rows]]
        spend = sum(map(Fraction, cost.tolist()), Fraction(0))
        for k in np.lexsort((-rows, value / cost)):  # lowest value per cost first
            if spend <= Fraction(b):
                break
            spend -= Fraction(float(cost[k]))
            lost += float(value[k])
            choice[rows[k]] = NONE
    return lost
