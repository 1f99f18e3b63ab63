"""Exact multiple-choice knapsack by mixed-integer programming (OR-Tools, SCIP): the
reference the Lagrangian solver is tested against, and ``solver: exact`` for small groups."""

from __future__ import annotations

import numpy as np
from ortools.linear_solver import pywraplp

from sparklift.allocation.envelope import NONE


def solve_exact(
    u: np.ndarray, c: np.ndarray, budget: float, time_limit_s: float = 60.0
) -> tuple[np.ndarray, float]:
    """Optimal choice per row of (n, J) options (NaN = absent; u <= 0 never chosen; cost
    counted as max(c, 0)) with sum of costs <= budget; returns (choice, objective)."""
    u = np.asarray(u, dtype=float)
    c = np.maximum(np.asarray(c, dtype=float), 0.0)
    solver = pywraplp.Solver.CreateSolver("SCIP")
    solver.SetTimeLimit(int(time_limit_s * 1000))
    n, n_opt = u.shape
    x = {}
    for i in range(n):
        row = []
        for j in range(n_opt):
            if np.isfinite(u[i, j]) and np.isfinite(c[i, j]) and u[i, j] > 0:
                x[i, j] = solver.BoolVar(f"x{i}_{j}")
                row.append(x[i, j])
        if row:
            solver.Add(sum(row) <= 1)
    solver.Add(sum(c[i, j] * v for (i, j), v in x.items()) <= budget)
    solver.Maximize(sum(u[i, j] * v for (i, j), v in x.items()))
    params = pywraplp.MPSolverParameters()
    params.SetDoubleParam(pywraplp.MPSolverParameters.RELATIVE_MIP_GAP, 0.0)
    status = solver.Solve(params)
    if status != pywraplp.Solver.OPTIMAL:
        raise RuntimeError(f"exact solver did not prove optimality (status {status})")
    choice = np.full(n, NONE)
    for (i, j), v in x.items():
        if v.solution_value() > 0.5:
            choice[i] = j
    return choice, float(solver.Objective().Value())
