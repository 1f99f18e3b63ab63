"""The Lagrangian group solver against the exact MIP optimum (OR-Tools SCIP, stored in
tests/fixtures/exact_optima.json by scripts/exact_optima.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from ortools.linear_solver import pywraplp

from sparklift.allocation.distributed import Problem
from sparklift.allocation.envelope import NONE, envelope
from sparklift.allocation.exact import solve_exact
from sparklift.allocation.in_memory import Customers, solve_in_memory
from sparklift.allocation.lagrange import solve_group
from tests.exact_optima import Instance, stored_optimum

KINDS = ["random", "ties", "adversarial"]
SEEDS = [0, 1, 2]
BUDGET_SHARES = [0.05, 0.3, 2.0]


def instance(n: int, n_opt: int, seed: int, kind: str):
    rng = np.random.default_rng(seed)
    if kind == "random":
        c = rng.uniform(0.5, 5.0, (n, n_opt))
        u = c * rng.uniform(0.0, 0.3, (n, n_opt)) + rng.normal(0, 0.05, (n, n_opt))
    elif kind == "ties":  # equal ratios everywhere: every breakpoint at the same lambda
        c = rng.integers(1, 4, (n, n_opt)).astype(float)
        u = 0.2 * c
    else:  # "adversarial": a few huge options, free and negative options, missing ones
        c = rng.lognormal(0, 1.5, (n, n_opt))
        u = rng.lognormal(-2, 1.5, (n, n_opt)) * np.where(rng.random((n, n_opt)) < 0.2, -1, 1)
        c[rng.random((n, n_opt)) < 0.05] = 0.0
        c[rng.random((n, n_opt)) < 0.03] = -1.0
        u[rng.random((n, n_opt)) < 0.1] = np.nan
    return u, c


def exact_instance(kind: str, seed: int, budget_share: float) -> Instance:
    """300 customers x 4 options; the budget a share of what every best option costs."""
    u, c = instance(300, 4, seed, kind)
    total = np.nansum(np.where(np.nan_to_num(u) > 0, np.maximum(c, 0), 0).max(axis=1))
    return Instance(f"solver/{kind}/seed={seed}/share={budget_share}", u, c, budget_share * total)


def exact_instances() -> list[Instance]:
    """Every instance whose optimum this module reads from the fixture."""
    return [exact_instance(k, s, b) for k in KINDS for s in SEEDS for b in BUDGET_SHARES]


def spend(u, c, choice):
    rows = np.flatnonzero(choice != NONE)
    cost = np.maximum(c[rows, choice[rows]], 0.0).sum()
    return float(cost), float(u[rows, choice[rows]].sum())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("budget_share", BUDGET_SHARES)
def test_against_exact_optimum(kind, seed, budget_share):
    exact = exact_instance(kind, seed, budget_share)
    u, c, budget = exact.u, exact.c, exact.budget
    env = envelope(u, c)
    res = solve_group(env, budget, np.arange(len(u)))
    cost, value = spend(u, c, res.choice)
    assert cost <= budget + 1e-9
    assert value == pytest.approx(res.objective) and cost == pytest.approx(res.spent)
    best = stored_optimum(exact)
    biggest = np.nanmax(np.where(np.nan_to_num(u) > 0, u, 0))
    assert res.objective <= best + 1e-6
    assert best - res.objective <= biggest + 1e-9  # within the largest single u_ij
    assert res.dual_bound >= best - 1e-6  # the reported gap covers the true one
    assert res.objective >= best - res.gap - 1e-9
    never = np.nan_to_num(u, nan=-1) <= 0
    rows = np.flatnonzero(res.choice != NONE)
    assert not never[rows, res.choice[rows]].any()


def test_deterministic_and_free_options_taken():
    u = np.array([[1.0, 2.0], [0.5, -1.0], [3.0, np.nan]])
    c = np.array([[0.0, 5.0], [-2.0, 1.0], [10.0, 1.0]])
    a = solve_group(envelope(u, c), 0.0, np.arange(3))
    assert a.choice.tolist() == [0, 0, NONE] and a.spent == 0.0
    b = solve_group(envelope(u, c), 0.0, np.arange(3))
    assert b.choice.tolist() == a.choice.tolist()


def gap_instance():
    """A group SCIP solves only to its relative MIP gap of 1e-7, at once: a free customer
    worth 1e8 dwarfs 10 customers competing for a budget a third of their cheapest costs,
    so the gap closes before the search proves their optimum."""
    rng = np.random.default_rng(0)
    c = rng.uniform(0.5, 2.0, (10, 2))
    u = c * rng.uniform(0.5, 1.0, (10, 2))
    u, c = np.vstack([[1e8, np.nan], u]), np.vstack([[0.0, np.nan], c])
    return u, c, float(c[1:].min(axis=1).sum() / 3)


def ortools_best_bound(u: np.ndarray, c: np.ndarray, budget: float) -> float:
    """OR-Tools' (SCIP) best bound of the multiple-choice knapsack, modelled here."""
    solver = pywraplp.Solver.CreateSolver("SCIP")
    x = {
        (i, j): solver.BoolVar(f"x{i}_{j}")
        for i, j in zip(*np.nonzero(np.nan_to_num(u) > 0), strict=True)
    }
    for i in range(len(u)):
        row = [v for (k, _), v in x.items() if k == i]
        if row:
            solver.Add(sum(row) <= 1)
    solver.Add(sum(c[i, j] * v for (i, j), v in x.items() if c[i, j] > 0) <= budget)
    solver.Maximize(sum(u[i, j] * v for (i, j), v in x.items()))
    params = pywraplp.MPSolverParameters()
    params.SetDoubleParam(pywraplp.MPSolverParameters.RELATIVE_MIP_GAP, 1e-7)
    assert solver.Solve(params) == pywraplp.Solver.OPTIMAL
    return solver.Objective().BestBound()


def enumerated_optimum(u: np.ndarray, c: np.ndarray, budget: float) -> float:
    """The optimum by trying every choice (none or an option) of every customer."""
    n, n_opt = u.shape
    value = np.column_stack([np.nan_to_num(u, nan=-np.inf), np.zeros(n)])
    cost = np.column_stack([np.nan_to_num(c), np.zeros(n)])
    choices = np.array(list(itertools.product(range(n_opt + 1), repeat=n)))
    rows = np.arange(n)
    total = value[rows, choices].sum(axis=1)
    feasible = cost[rows, choices].sum(axis=1) <= budget
    return float(total[feasible].max())


def test_the_exact_bound_is_scips_best_bound_not_its_incumbent():
    """The exact solver's bound is OR-Tools' BestBound of the same model: above the
    incumbent here, and at least the optimum (enumerated), itself at least the objective;
    the driver's solve reports it as the group's dual bound, so the gap certifies."""
    u, c, budget = gap_instance()
    done = solve_exact(u, c, budget, time_limit_s=600)
    bound = ortools_best_bound(u, c, budget)
    best = 1e8 + enumerated_optimum(u[1:], c[1:], budget)
    assert done.bound == pytest.approx(bound, rel=1e-15)
    assert done.objective <= best + 1e-6 and best <= done.bound + 1e-6
    assert done.bound > done.objective + 0.01  # SCIP's incumbent is no bound here
    cust = Customers(np.arange(len(u)), np.full(len(u), "G", dtype=object), u, c)
    problem = Problem(["V01", "V02"], {"G": budget}, exact_max_customers=50)
    solved = solve_in_memory(cust, problem)
    assert solved.exact == ["G"] and solved.dual["G"] == pytest.approx(bound, rel=1e-15)
    taken = solved.choice != NONE
    objective = u[taken, solved.choice[taken]].sum()
    assert objective == pytest.approx(done.objective, rel=1e-12)
    assert objective <= solved.dual["G"]
