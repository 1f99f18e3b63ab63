"""The Lagrangian group solver against the exact MIP optimum (OR-Tools SCIP, stored in
tests/fixtures/exact_optima.json by scripts/exact_optima.py)."""

from __future__ import annotations

import numpy as np
import pytest

from sparklift.allocation.envelope import NONE, envelope
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
