"""The Lagrangian group solver against the exact MIP optimum (OR-Tools SCIP, stored in
tests/fixtures/exact_optima.json by scripts/exact_optima.py)."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from ortools.linear_solver import pywraplp

from sparklift.allocation.distributed import Problem
from sparklift.allocation.envelope import NONE, envelope
from sparklift.allocation.exact import solve_exact
from sparklift.allocation.in_memory import Customers, solve_in_memory
from sparklift.allocation.lagrange import solve_group
from tests.exact_optima import Instance, lp_optimum, stored_optimum

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


def exact_spend(c: np.ndarray, choice: np.ndarray) -> Fraction:
    """The spend of ``choice`` in exact arithmetic (no float rounding can hide 1e-7)."""
    rows = np.flatnonzero(choice != NONE)
    return sum((Fraction(float(x)) for x in c[rows, choice[rows]]), Fraction(0))


def test_the_exact_solver_never_overspends_within_scips_tolerance():
    """SCIP accepts a row within its feasibility tolerance: three customers worth 1 at
    10/3 + 1e-7 each under a budget of 10 were all taken (spend 10.0000003), and a cap of
    2 - 1e-7 let 2 through. Repaired, the budget and the cap hold exactly; the objectives
    are the optima enumerated by hand (2 of the 3; the best 1 of 3), and SCIP's bound
    still bounds them (the reported gap covers the truth)."""
    u, c = np.ones((3, 1)), np.full((3, 1), 10 / 3 + 1e-7)
    done = solve_exact(u, c, 10.0)
    assert exact_spend(c, done.choice) <= 10
    assert done.objective == enumerated_optimum(u, c, 10.0) == 2.0
    assert done.bound >= 2.0
    assert (done.choice != NONE).sum() == 2
    # The same group solved through the driver's exact path: what it sends fits too.
    cust = Customers(np.arange(3), np.full(3, "G", dtype=object), u, c)
    solved = solve_in_memory(cust, Problem(["V01"], {"G": 10.0}, exact_max_customers=50))
    assert solved.exact == ["G"] and exact_spend(c, solved.choice) <= 10
    assert solved.dual["G"] >= 2.0
    # A cap: of u = 3, 2, 1 (cost 1, budget 10), at most 2 - 1e-7 customers, i.e. 1: 3.
    u = np.array([[3.0, np.nan], [2.0, np.nan], [1.0, np.nan]])
    done = solve_exact(u, np.ones((3, 2)), 10.0, caps=[2 - 1e-7, np.nan])
    assert done.choice.tolist() == [0, NONE, NONE] and done.objective == 3.0
    assert done.bound >= 3.0


def test_a_cap_that_never_binds_ends_the_search_in_one_round():
    """A cap above every voucher's choosers at mu = 0: no cap binds, so mu = 0 is optimal
    and the search stops after its first round (it doubled a box 2e-12 wide for 13 more
    rounds, each a budget solve and, in Spark, 3 passes), with the bound at the budgets'
    LP optimum (HiGHS) and mu 0."""
    rng = np.random.default_rng(0)
    c = rng.uniform(1.0, 3.0, (500, 3))
    u = c * rng.uniform(0.0, 0.3, (500, 3))
    group = np.full(500, "NL", dtype=object)
    cust = Customers(np.arange(500), group, u, c)
    vouchers = ["V01", "V02", "V03"]
    for caps in ({"V01": 10_000}, {"V01": 10_000, "V02": 0}):
        solved = solve_in_memory(cust, Problem(vouchers, {"NL": 100.0}, caps))
        assert solved.rounds == 1, caps
        assert solved.bound_mu[0] == solved.bound_mu[2] == 0.0
        q = tuple(float(caps.get(v, np.nan)) for v in vouchers)
        lp = lp_optimum(Instance("slack", u, c, 100.0, None, q))
        assert sum(solved.dual.values()) == pytest.approx(lp, rel=1e-9)


@pytest.mark.parametrize(
    "budget, cut",
    [
        (0.5, None),  # customer 20's step does not fit: it sets lambda, the fill took none
        (1.5, None),  # 20 fits, then the block's first (10) does not: the fill took none
        (2.5, 10),  # 20, then 10; 30 does not fit
        (3.5, 30),  # 20, 10, 30; 40 does not
    ],
)
def test_the_fill_cut_is_the_last_id_taken_of_the_tied_block(budget, cut):
    """Customers 10, 30, 40 and 50 tie: one voucher each, u = 1 at cost 1 (ratio 1);
    customer 20 has u = 3 at cost 1 (ratio 3) and comes first. The fill takes the tied
    block in id order while the budget lasts (cuts by hand)."""
    ids = np.array([10, 20, 30, 40, 50])
    u = np.array([[1.0], [3.0], [1.0], [1.0], [1.0]])
    c = np.ones((5, 1))
    done = solve_group(envelope(u, c), budget, ids)
    assert done.fill_cut == cut
    taken = {int(i) for i in ids[done.choice != NONE]}
    assert taken == ({20} if budget > 1 else set()) | {
        i for i in (10, 30, 40, 50) if i <= (cut or 0)
    }
