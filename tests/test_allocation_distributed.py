"""The distributed solver against the one-machine solver and the exact optimum (SCIP, stored
in tests/fixtures/exact_optima.json by scripts/exact_optima.py)."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from sparklift.allocation import in_memory
from sparklift.allocation.acceptance import accepted
from sparklift.allocation.arms import POLICY, arm, holdout_rows, policy_arm
from sparklift.allocation.caps import cap_round
from sparklift.allocation.cut_planes import CutSearch, crossing_counts
from sparklift.allocation.distributed import Problem, ScoreFiles, solve, summarize
from sparklift.allocation.envelope import envelope
from sparklift.allocation.lagrange import solve_group
from sparklift.allocation.layout import customers
from sparklift.allocation.sums import Sums
from sparklift.allocation.ties import TieOrder, tie_draw, tie_order
from sparklift.errors import InputError
from sparklift.synthetic.rand import uniform
from tests.exact_optima import Instance, by_group, lp_optimum, stored_optimum

Case = tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Instance]]
VOUCHERS = ["V01", "V02", "V03"]
GROUPS = ["NL", "DE", "BE"]
MATCH_SEEDS, MATCH_KINDS = [0, 1], ["random", "adversarial"]
MATCH_BUDGETS = {"NL": 300.0, "DE": 50.0, "BE": 1e6}  # BE: the budget never binds
CAPS_CASES = [(0, "random"), (1, "random"), (1, "adversarial")]
CAPS_BUDGETS = {"NL": 75.0, "DE": 36.0, "BE": 30.0}
CAPS = {"V01": 18, "V03": 9}
SMALL_BUDGETS = {"NL": 40.0, "DE": 20.0, "BE": 1e6}


def instance(n: int, seed: int, kind: str = "random"):
    rng = np.random.default_rng(seed)
    c = rng.lognormal(0, 0.8, (n, 3)) * np.array([1.0, 2.0, 4.0])
    u = c * rng.uniform(0, 0.3, (n, 3)) + rng.normal(0, 0.03, (n, 3))
    if kind == "adversarial":  # ties, free and negative options, missing options
        c[: n // 4] = 2.0
        u[: n // 4] = 0.3
        c[rng.random((n, 3)) < 0.05] = 0.0
        c[rng.random((n, 3)) < 0.03] = -1.0
        u[rng.random((n, 3)) < 0.1] = np.nan
    group = rng.choice(GROUPS, n, p=[0.5, 0.3, 0.2])
    return u, c, group


def match_case(seed: int, kind: str) -> Case:
    """3,000 customers without caps, and their exact instances by budget group."""
    u, c, group = instance(3000, seed, kind)
    exact = by_group(f"distributed/n=3000/{kind}/seed={seed}", u, c, group, MATCH_BUDGETS)
    return u, c, group, exact


def caps_case(seed: int, kind: str) -> Instance:
    """600 customers, 3 groups and 2 caps: one joint instance."""
    u, c, group = instance(600, seed, kind)
    caps = (CAPS["V01"], np.nan, CAPS["V03"])
    return Instance(f"distributed/caps/n=600/{kind}/seed={seed}", u, c, CAPS_BUDGETS, group, caps)


def small_case() -> Case:
    """600 customers, two groups small enough for the exact solver, and their instances."""
    u, c, group = instance(600, 3)
    return u, c, group, by_group("distributed/n=600/random/seed=3", u, c, group, SMALL_BUDGETS)


def exact_instances() -> list[Instance]:
    """Every instance whose optimum this module reads from the fixture."""
    out = [e for s in MATCH_SEEDS for k in MATCH_KINDS for e in match_case(s, k)[3].values()]
    out += [caps_case(s, k) for s, k in CAPS_CASES]
    return out + list(small_case()[3].values())


def frame(u, c, group) -> pd.DataFrame:
    n = len(group)
    rows = pd.DataFrame(
        {
            "customer_id": np.repeat(np.arange(n, dtype=np.int64), 3),
            "budget_group": np.repeat(group, 3),
            "voucher_id": np.tile(VOUCHERS, n),
            "uplift_objective": u.ravel(),
            "uplift_cost": c.ravel(),
        }
    )
    return rows[np.isfinite(rows["uplift_objective"])]  # absent options: no row


def run(spark, rows: pd.DataFrame, problem: Problem, in_memory: bool = False):
    """Solve ``rows`` in Spark passes, or (``in_memory``) in the driver's memory."""
    if in_memory:
        problem = replace(problem, driver_max_rows=len(rows))
    solution = solve(spark.createDataFrame(rows), problem, rows=len(rows))
    try:
        got = solution.allocations.toPandas()
        return got, summarize(solution.allocations, solution), solution
    finally:
        solution.release()


def check_feasible(got, summary, u, c, caps=None):
    assert got["customer_id"].is_unique
    j = got["voucher_id"].map(VOUCHERS.index).to_numpy()
    i = got["customer_id"].to_numpy()
    # Each allocated row carries its own scores; budgets hold per group.
    np.testing.assert_allclose(got["expected_uplift"], u[i, j])
    np.testing.assert_allclose(got["expected_cost"], np.maximum(c[i, j], 0))
    assert (got["expected_uplift"] > 0).all()  # u <= 0 is never chosen
    for s in summary:
        mine = got[got["budget_group"] == s.budget_group]
        assert mine["expected_cost"].sum() == pytest.approx(s.spent, abs=1e-9)
        assert s.spent <= s.budget + 1e-9
        assert s.n_allocated == len(mine)
        assert sum(s.voucher_counts.values()) == len(mine)
    for v, q in (caps or {}).items():
        assert (got["voucher_id"] == v).sum() <= q


@pytest.mark.parametrize("in_memory", [False, True], ids=["spark", "in_memory"])
@pytest.mark.parametrize("seed", MATCH_SEEDS)
@pytest.mark.parametrize("kind", MATCH_KINDS)
def test_matches_local_solver_and_exact_optimum(spark, seed, kind, in_memory):
    u, c, group, exact = match_case(seed, kind)
    problem = Problem(VOUCHERS, MATCH_BUDGETS)
    got, summary, solution = run(spark, frame(u, c, group), problem, in_memory)
    assert (solution.passes, solution.reader) == ((1, "driver") if in_memory else (3, "shuffle"))
    check_feasible(got, summary, u, c)
    for s in summary:
        in_g = group == s.budget_group
        local = solve_group(envelope(u[in_g], c[in_g]), s.budget, np.flatnonzero(in_g))
        assert s.lam == pytest.approx(local.lam)
        assert s.dual_bound == pytest.approx(local.dual_bound)
        best = stored_optimum(exact[s.budget_group])
        assert s.objective <= best + 1e-6 <= s.dual_bound + 2e-6  # within the reported gap
        assert best - s.objective <= np.nanmax(u[in_g])  # within the largest single u_ij


@pytest.mark.parametrize(
    "seed, kind, in_memory",
    # Spark passes on two of the three (each round is 3 Spark jobs: ~20 s a case)
    [(s, k, m) for s, k in CAPS_CASES for m in (False, True) if m or (s, k) != (1, "random")],
)
def test_caps_hold_and_objective_near_optimum(spark, seed, kind, in_memory):
    # The joint optimum of 3 groups and 2 caps is stored: SCIP takes 10-50 s to prove it at
    # 600 customers; without caps the groups are independent and tested at 3,000 above.
    exact = caps_case(seed, kind)
    u, c, group = exact.u, exact.c, exact.groups
    problem = Problem(VOUCHERS, CAPS_BUDGETS, caps=CAPS, max_cap_rounds=40)
    got, summary, solution = run(spark, frame(u, c, group), problem, in_memory)
    assert solution.cap_rounds < problem.max_cap_rounds  # converged
    check_feasible(got, summary, u, c, CAPS)
    best = stored_optimum(exact)
    objective = sum(s.objective for s in summary)
    bound = sum(s.dual_bound for s in summary)
    assert objective <= best + 1e-6 <= bound + 2e-6  # within the reported gap
    # The cutting planes bring the bound within their tolerance (0.01%) of the LP optimum
    # (HiGHS), the best a Lagrangian bound can be. When their slopes left out the
    # customers tied between options (a quarter in the adversarial case) or at a budget's
    # crossing, a plane could end the search early: in Spark passes 72.90 against an LP
    # of 72.82; now 72.83. (The bracket search before: within 0.2% here, but 36% above
    # the LP on the demo.)
    lp = lp_optimum(exact)
    assert lp - 1e-6 <= bound <= lp * 1.0001, (bound, lp)
    print(f"caps {seed} {kind} {in_memory}: objective {objective:.3f}, optimum {best:.3f}, "
          f"bound {bound:.3f}, LP {lp:.3f}, rounds {solution.cap_rounds}")  # fmt: skip
    # Within the largest single u_ij of the optimum, also when ties make every multiplier
    # miss the caps (adversarial: a quarter of the customers value every voucher alike, so
    # whole blocks switch at one mu): the budget solve within the caps spends what the
    # refused customers free.
    assert best - objective <= np.nanmax(u)
    for s in summary:
        assert s.spent >= 0.95 * s.budget, s


def tree_scored(n: int, seed: int, leaves: int = 40):
    """Scores as a tree model gives them: every customer has one of ``leaves`` score
    vectors (blocks of identical customers); three vouchers of unequal face value."""
    rng = np.random.default_rng(seed)
    u = rng.lognormal(-2.5, 0.6, (leaves, 3)) * np.array([1.0, 0.8, 1.4])
    c = np.array([5.0, 2.0, 10.0]) * rng.uniform(0.3, 0.6, (leaves, 3))
    leaf = rng.integers(0, leaves, n)
    return u[leaf], c[leaf], rng.choice(["NL", "DE"], n)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_three_caps_on_tree_scores_reach_the_lp_with_budgets_just_slack(seed):
    """Three caps bind; each budget is 5% above what the capped optimum spends, so it binds
    without the caps and not with them (as on the demo). Every cap is filled and the
    allocation is within 0.1% of the LP optimum (HiGHS). The bracket search with its trim
    reached 0.937-0.987 here; deferred acceptance at mu's own lambda re-solved, which
    overstates what the caps leave of the budgets, 0.885-0.949; the cut planes with slopes
    that left out tied customers, 0.987-1.000 (0.987 and 0.992 for seeds 1 and 2); the
    planes' tolerance at 0.1% and the primal's mu 1% under the best, 0.9996-1.0000."""
    u, c, group = tree_scored(6000, seed)
    caps = {"V01": 300, "V02": 600, "V03": 400}
    cust = in_memory.Customers(np.arange(len(u)), np.asarray(group, dtype=object), u, c)
    free = in_memory.solve_in_memory(cust, Problem(VOUCHERS, {"NL": 1e5, "DE": 1e5}, caps))
    spent = {g: float(np.nansum(np.where(free.choice[group == g] >= 0,
                                         c[group == g, free.choice[group == g]], 0.0)))
             for g in ("NL", "DE")}  # fmt: skip
    budgets = {g: 1.05 * x for g, x in spent.items()}
    solved = in_memory.solve_in_memory(cust, Problem(VOUCHERS, budgets, caps))
    sent = np.flatnonzero(solved.choice >= 0)
    objective = u[sent, solved.choice[sent]].sum()
    lp = lp_optimum(Instance("tree", u, c, budgets, group, (300, 600, 400)))
    assert all((solved.choice == j).sum() >= 0.98 * q for j, q in enumerate(caps.values()))
    assert objective >= 0.999 * lp, (objective / lp, solved.rounds)
    # The best bound within the planes' tolerance (0.01%) of the LP optimum, which is the
    # Lagrangian dual's minimum. With planes whose slopes left out the customers tied at a
    # budget's crossing or between options: 0.13%, 0.53%, 4.5% and 0.02% above.
    bound = sum(solved.dual.values()) + float(np.dot(solved.bound_mu, list(caps.values())))
    assert lp - 1e-9 <= bound <= lp * 1.0001, (bound / lp, solved.rounds)
    for g, b in budgets.items():
        rows = sent[group[sent] == g]
        assert c[rows, solved.choice[rows]].sum() <= b + 1e-9


@pytest.mark.parametrize("noise", [0.0, 2e-9], ids=["exact_offsets", "rounded_offsets"])
def test_three_caps_on_a_pooled_learner_s_scores_reach_the_lp(noise):
    """The default learner's shape (the demo's): a tree's leaves move every voucher by the
    same constants, so nearly every asker of a cap leads its next best by the same amount,
    and three caps bind with every budget slack. With the search's tolerance at 0.1% and
    the primal's mu 1% under its best, acceptance mispriced the vouchers against each
    other: 0.9900 of the LP optimum for seed 5 (0.9987-1.0000 for the others; on the
    demo's policy arm 0.9951). With 0.01% and 0.1%, but equal leads ranked by the tie
    draw alone, 0.9987-1.0000 (seed 2 the lowest). Now equal leads go by net value first,
    and every seed reaches 0.9995 of it. The learner's offsets come out rounded per leaf
    (on the demo, leads that should agree differ by 1.1e-8): with noise of 2e-9 on every
    score, leads ranked as equal only to 1e-9 reached 0.99634 (seed 4); ranked to 1e-7,
    1.0000 for every seed."""
    reached = []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        leaves, n = 40, 6000
        shift = np.array([0.0, -0.025, 0.05])
        u = rng.lognormal(-2.5, 0.6, leaves)[:, None] + shift * rng.uniform(0.5, 1.5)
        if noise:  # each leaf's scores rounded apart
            u = u + rng.normal(0, noise, u.shape)
        c = np.array([5.0, 2.0, 10.0]) * rng.uniform(0.3, 0.6, (leaves, 3))
        leaf = rng.integers(0, leaves, n)
        u, c, group = u[leaf], c[leaf], rng.choice(["NL", "DE"], n)
        caps, budgets = {"V01": 300, "V02": 900, "V03": 500}, {"NL": 1e6, "DE": 1e6}
        cust = in_memory.Customers(np.arange(n), np.asarray(group, dtype=object), u, c)
        solved = in_memory.solve_in_memory(cust, Problem(VOUCHERS, budgets, caps))
        sent = np.flatnonzero(solved.choice >= 0)
        lp = lp_optimum(Instance("pooled", u, c, budgets, group, (300, 900, 500)))
        reached.append(u[sent, solved.choice[sent]].sum() / lp)
    assert min(reached) >= 0.9995, np.round(reached, 5)


def lp_dual(u, c, group, budgets, caps, mu) -> float:
    """D(mu) by HiGHS, independently of the solver: the LP optimum of the budgets alone with
    objectives u - mu, plus mu . Q (LP duality: the budgets' Lagrangian at its best lambda)."""
    net = np.where(u - mu > 0, u - mu, np.nan)
    return lp_optimum(Instance("dual", net, c, budgets, group)) + float(np.dot(mu, caps))


def test_a_round_s_plane_lies_under_the_dual_in_the_driver_and_in_spark(spark):
    """A plane D(mu0) + g (mu - mu0), g = Q - x, must lie under D everywhere, or the search
    can cut its minimum off. On tree-model scores whole leaves tie at each budget's lambda:
    x must count them as the relaxed optimum that spends the budget does (a share of the
    leaf). Counted as the customers that strictly prefer each voucher (before: here none,
    as the one leaf at the budgets' crossing was left out), the plane passed above D at 5
    of the 9 points below, by up to 62% of D's change from mu0, and on tree scores the
    search ended with its bound 4.5% above the LP (seed 2 of the test above)."""
    u, c, group = tree_scored(3000, 2)
    caps = np.array([150.0, 300.0, 200.0])
    budgets = {"NL": 40.0, "DE": 25.0}
    mu0 = np.array([0.02, 0.01, 0.03])
    cust = in_memory.Customers(np.arange(len(u)), np.asarray(group, dtype=object), u, c)
    members = {g: np.flatnonzero(group == g) for g in budgets}
    problem = Problem(VOUCHERS, budgets)
    _, lam, dual, _, sides, _ = in_memory._budgets(cust, u, c, mu0, members, problem, False)
    assert all(v > 0 for v in lam.values())  # both budgets bind
    d0 = sum(dual.values()) + float(np.dot(mu0, caps))
    assert d0 == pytest.approx(lp_dual(u, c, group, budgets, caps, mu0), rel=1e-9)
    x = crossing_counts(sides, budgets, range(3))
    scores = spark.createDataFrame(frame(u, c, group))
    env = customers(scores, VOUCHERS, mu0, Sums(spark).acc)
    x_spark, _ = cap_round(env, lam, mu0, dict(enumerate(caps)), 3, budgets)
    assert x_spark == pytest.approx(x, abs=1e-6)
    g = caps - np.array([x[j] for j in range(3)])
    rng = np.random.default_rng(0)
    for mu in [*(mu0 * f for f in (0.0, 0.5, 1.5)), *(mu0 * rng.uniform(0, 2, (6, 3)))]:
        d = lp_dual(u, c, group, budgets, caps, mu)
        assert d0 + g @ (mu - mu0) <= d + 1e-9 * abs(d), (mu, d0 + g @ (mu - mu0), d)


def test_a_cap_round_aims_at_the_multiplier_that_meets_the_cap(spark):
    """One voucher worth u_i = 0.001 i to customer i (cost 1, lambda 0), cap 100, mu 0.2:
    its 800 choosers are those with u_i > 0.2. The multiplier that leaves it to 100 is the
    101st largest u (0.9), measured on margins net of mu: the target lies within one
    histogram bucket (2^(1/512)) above 0.9, not at 0.9 - 0.2."""
    n = 1000
    u = np.column_stack([np.arange(1, n + 1) * 0.001, np.full((n, 2), np.nan)])
    c = np.column_stack([np.ones(n), np.full((n, 2), np.nan)])
    scores = spark.createDataFrame(frame(u, c, np.full(n, "NL")))
    mu = np.array([0.2, 0.0, 0.0])
    env = customers(scores, VOUCHERS, mu, Sums(spark).acc)  # a round's envelopes are at its mu
    counts, target = cap_round(env, {"NL": 0.0}, mu, {0: 100}, 3, {"NL": 1e9})
    assert counts == {0: int((u[:, 0] > 0.2 + 1e-12).sum())} == {0: 800}
    kth = np.sort(u[:, 0])[::-1][100]  # the 101st largest: above it, exactly 100
    assert kth <= target[0] <= kth * 2 ** (1 / 512) + 1e-12, target


def test_cut_planes_find_the_cap_multiplier_of_a_known_dual():
    """One voucher, cap q, no budget: D(mu) = sum_i max(0, u_i - mu) + mu q, whose minimum
    is the sum of the q largest u (the optimum: the q best customers), at mu between the
    q-th and (q+1)-th largest. Fed D and the count of u_i > mu per round, the planes reach
    it within their tolerance; at the last round they stop, however far."""
    u = np.random.default_rng(3).lognormal(0, 1, 5000)
    q = 700
    optimum = np.sort(u)[::-1][:q].sum()

    def search(rounds: int) -> CutSearch:
        planes = CutSearch({0: q}, 1e-6)
        mu = np.zeros(1)
        for r in range(1, rounds + 1):
            bound = np.maximum(u - mu[0], 0).sum() + planes.cap_term(mu)
            counts = {0: int((u > mu[0]).sum())}
            target = np.array([np.sort(u)[::-1][q]]) if r == 1 else mu
            mu = planes.advance(mu, bound, counts, target, r == rounds)
            if mu is None:
                break
        return planes

    planes = search(40)
    assert planes.best_bound == pytest.approx(optimum, rel=1e-6)
    assert len(planes.planes) < 40  # it stopped on its own
    kth = np.sort(u)[::-1][[q, q - 1]]  # the optimal mu lie between these
    assert kth[0] * (1 - 1e-4) <= planes.best_mu[0] <= kth[1] * (1 + 1e-4)
    assert search(2).best_bound > optimum * 1.001  # two rounds are not enough
    # The primal's mu: 0.1% under the best; when deferred acceptance leaves the binding
    # cap short there, every mu 0.4% under it, then 1.6%, then 6.4%, then no more.
    assert planes.primal_mu()[0] == pytest.approx(0.999 * planes.best_mu[0])
    assert planes.lower({0: q}) is None  # full
    for under in (0.004, 0.016, 0.064):
        assert planes.lower({0: q - 1})[0] == pytest.approx((1 - under) * planes.best_mu[0])
    assert planes.lower({0: q - 1}) is None  # tried three times
    unbound = CutSearch({0: q, 1: 10}, 1e-3)  # a cap whose mu stayed 0 is not binding
    unbound.advance(np.zeros(2), 1.0, {0: q, 1: 0}, np.zeros(2), True)
    assert unbound.lower({0: q, 1: 0}) is None


def test_deferred_acceptance_lets_a_customer_refused_by_one_cap_fill_another():
    """V01 cap 1, V02 cap 1, V03 uncapped; lambda = mu = 0. Customers 0 and 1 both want
    V01 most; 0 by the larger lead keeps it, 1 is refused and asks for its next best, V02,
    which it gets over customer 2 (lead 0.05 against 0.01); 2 is refused and takes V03,
    its next best. A cut of V02's first choosers alone would have kept 2 there and left 1
    only V03 or nothing. The cut of each cap that refused someone is its last kept lead
    and net value."""
    u = np.array([[1.0, 0.2, 0.1], [0.9, 0.8, np.nan], [np.nan, 0.31, 0.3]])
    c = np.ones_like(u)
    cust = in_memory.Customers(np.arange(3), np.array(["NL"] * 3, dtype=object), u, c)
    caps, default = {0: 1, 1: 1}, TieOrder.default()
    left, _, cuts = in_memory._accepted(cust, np.zeros(3), {"NL": 0.0}, caps, default, VOUCHERS)
    held = np.isfinite(left)
    assert held[:, 0].tolist() == [True, False, False]  # V01: customer 0 only
    assert held[:, 1].tolist() == [False, True, False]  # V02: customer 1 only
    assert held[:, 2].tolist() == [True, False, True]  # V03 uncapped: left to all who have it
    assert cuts[0][:2] == pytest.approx((0.8, 1.0))  # 0's lead over V02, its net for V01
    assert cuts[1][:2] == pytest.approx((0.8, 0.8))  # 1's lead over nothing (V03 absent)


@pytest.mark.parametrize("kind", ["random", "adversarial"])
def test_deferred_acceptance_in_spark_keeps_whom_the_driver_keeps(spark, kind):
    """The Spark steps (:func:`acceptance.accepted`) and the driver's (``_accepted``) give
    the same customers each capped voucher and the same cuts (lead, net value and tie
    draw of the last one kept), with tied blocks (the adversarial case) and a zero cap."""
    u, c, group = instance(2000, 7, kind)
    lam = {"NL": 0.25, "DE": 0.3, "BE": 0.2}
    mu = np.array([0.05, 0.0, 0.1])
    caps = {0: 120, 1: 0, 2: 60}
    order = tie_order(spark, "C1", 7)
    env = customers(spark.createDataFrame(frame(u, c, group)), VOUCHERS, None, Sums(spark).acc)
    done = accepted(env, 3, lam, mu, caps, order, VOUCHERS)
    got = done.frame.toPandas().set_index("customer_id").sort_index()
    done.release()
    cuts = done.cuts
    ids = np.arange(len(group))
    cust = in_memory.Customers(ids, np.asarray(group, dtype=object), u, c)
    u_left, _, cuts_memory = in_memory._accepted(cust, mu, lam, caps, order, VOUCHERS)
    for j in caps:
        spark_holds = got[f"objective_{j}"].notna().reindex(ids, fill_value=False).to_numpy()
        assert (spark_holds == np.isfinite(u_left[:, j])).all(), j
        assert spark_holds.sum() == done.held[j] <= caps[j]
    assert set(cuts) == set(cuts_memory) and 1 in cuts and len(cuts) >= 2  # one refused
    for j in cuts:
        assert cuts[j] == pytest.approx(cuts_memory[j]), j


def test_a_cap_ranks_leads_equal_but_for_float_noise_as_ties(spark):
    """0.3 - 0.1 and 0.7 - 0.5 differ in the last bit: two leaves of customers (ids
    interleaved) whose leads for V01 over V02 agree. V01's cap of half of them ranks them
    as tied in lead, so by net value: it keeps the whole second leaf (net 0.7 against
    0.3), in the driver's acceptance and in Spark's; by exact floats it kept the first
    leaf and refused the whole second."""
    n = 40
    first = np.arange(n) % 2 == 0
    u = np.where(first[:, None], [0.3, 0.1, np.nan], [0.7, 0.5, np.nan])
    assert 0.3 - 0.1 != 0.7 - 0.5  # the float noise this is about
    c, group = np.ones_like(u), np.array(["NL"] * n)
    cust = in_memory.Customers(np.arange(n), group.astype(object), u, c)
    order, lam, caps = TieOrder.default(), {"NL": 0.0}, {0: n // 2}
    left = in_memory._accepted(cust, np.zeros(3), lam, caps, order, VOUCHERS)[0]
    env = customers(spark.createDataFrame(frame(u, c, group)), VOUCHERS, None, Sums(spark).acc)
    done = accepted(env, 3, lam, np.zeros(3), caps, order, VOUCHERS)
    got = done.frame.toPandas().set_index("customer_id").sort_index()
    done.release()
    for holds in (np.isfinite(left[:, 0]), got["objective_0"].notna().to_numpy()):
        assert holds.tolist() == (~first).tolist()


def test_a_cap_keeps_a_random_sample_of_a_tied_block_by_the_campaign_s_hash(spark):
    """400 customers with the same scores (a tree model's leaf), V01 capped at 100: with the
    campaign's tie order the cap keeps the 100 of smallest hash of their id and the
    voucher (drawn here by Spark's xxhash64, independently of the solvers' code), in the
    driver and in Spark, and its cut's tie is the largest of those draws; not the 100
    lowest ids, which it kept before, so that the policy's customers of a cut leaf were
    its oldest ids while the held-out rule drew at random."""
    n, q = 400, 100
    u = np.tile([0.3, 0.1, np.nan], (n, 1))
    c, group = np.ones_like(u), np.array(["NL"] * n)
    order = tie_order(spark, "C1", 7)
    hashed = (
        spark.range(n)
        .select(F.col("id").alias("customer_id"))
        .select("customer_id", uniform(7, "tie.C1", F.col("customer_id"), F.lit("V01")).alias("h"))
        .toPandas()
        .sort_values("h")
    )
    due = np.sort(hashed["customer_id"].to_numpy()[:q])
    cust = in_memory.Customers(np.arange(n), group.astype(object), u, c)
    left, _, cuts = in_memory._accepted(cust, np.zeros(3), {"NL": 0.0}, {0: q}, order, VOUCHERS)
    env = customers(spark.createDataFrame(frame(u, c, group)), VOUCHERS, None, Sums(spark).acc)
    done = accepted(env, 3, {"NL": 0.0}, np.zeros(3), {0: q}, order, VOUCHERS)
    got = done.frame.toPandas().set_index("customer_id").sort_index()
    done.release()
    for holds in (np.isfinite(left[:, 0]), got["objective_0"].notna().to_numpy()):
        np.testing.assert_array_equal(np.flatnonzero(holds), due)
    for _, _, tie in (cuts[0], done.cuts[0]):
        assert tie == hashed["h"].iloc[q - 1]
    assert 0.15 * n < due.mean() < 0.85 * n and due.max() > 2 * q  # not the lowest ids


def test_a_zero_cap_solves_the_campaign_without_that_voucher(spark):
    """Cap 0 on V01: nobody gets it, and the budgets go where the same campaign without
    V01's scores (the uncapped solve of the other rows) sends them."""
    u, c, group = instance(600, 2)
    rows = frame(u, c, group)
    got, summary, _ = run(spark, rows, Problem(VOUCHERS, CAPS_BUDGETS, caps={"V01": 0}))
    check_feasible(got, summary, u, c, {"V01": 0})
    without = rows[rows["voucher_id"] != "V01"]
    _, reference, _ = run(spark, without, Problem(VOUCHERS, CAPS_BUDGETS))
    mine = {s.budget_group: s.objective for s in summary}
    assert mine == pytest.approx({s.budget_group: s.objective for s in reference}, rel=1e-12)


@pytest.mark.parametrize("in_memory", [False, True], ids=["spark", "in_memory"])
def test_exact_solver_for_small_groups(spark, in_memory):
    u, c, group, exact = small_case()
    problem = Problem(VOUCHERS, SMALL_BUDGETS, exact_max_customers=200)
    got, summary, _ = run(spark, frame(u, c, group), problem, in_memory)
    check_feasible(got, summary, u, c)
    for s in summary:
        in_g = group == s.budget_group
        best = stored_optimum(exact[s.budget_group])
        assert s.solver == ("exact" if in_g.sum() <= 200 else "lagrangian")
        assert s.objective <= best + 1e-6 <= s.dual_bound + 2e-6
        if s.solver == "exact":
            assert s.objective == pytest.approx(best, rel=1e-9)


def test_tied_scores_reach_the_driver_only_as_aggregates(spark):
    """Every customer of a group tied (a flat score per segment), the driver allowed 50
    breakpoints per group: the crossing bucket is split in Spark, by lambda and then by
    customer id, so no pass brings more than 2 x 50. NL: identical customers (V01: u 0.3,
    c 1; V02: u 0.5, c 2), budget 1234.5: the optimum gives V01 to 1,234 of them (ratio
    0.3 against V02's step 0.2), here the first 1,234 by id. DE: one voucher at ratios
    0.25 (1 + 1e-12 k), k = 0..9 (apart by less than a log2 split can see), costs 0.5-3,
    budget 700: within the largest u of the LP bound 0.25 x 700."""
    rng = np.random.default_rng(11)
    n = 3000
    group = np.where(np.arange(n) % 3 == 0, "DE", "NL")
    u = np.tile([0.3, 0.5, np.nan], (n, 1))
    c = np.tile([1.0, 2.0, np.nan], (n, 1))
    de = group == "DE"
    c[de] = np.column_stack([rng.uniform(0.5, 3.0, de.sum()), np.full((de.sum(), 2), np.nan)])
    u[de] = 0.25 * (1 + 1e-12 * rng.integers(0, 10, (de.sum(), 1))) * c[de]
    budgets = {"NL": 1234.5, "DE": 700.0}
    rows = frame(u, c, group)
    got, summary, solution = run(spark, rows, Problem(VOUCHERS, budgets, driver_steps=50))
    check_feasible(got, summary, u, c)
    assert solution.driver_rows <= 100
    nl = got[got["budget_group"] == "NL"]
    first = np.flatnonzero(group == "NL")[:1234]
    assert sorted(nl["customer_id"]) == first.tolist() and (nl["voucher_id"] == "V01").all()
    by = {s.budget_group: s for s in summary}
    assert by["NL"].objective == pytest.approx(0.3 * 1234, rel=1e-12)
    assert by["NL"].dual_bound == pytest.approx(0.3 * 1234.5, rel=1e-9)
    assert 0.25 * 700 - by["DE"].objective <= np.nanmax(u[de])
    assert by["DE"].dual_bound == pytest.approx(0.25 * 700, rel=1e-9)
    # The whole bucket on the driver (the default limit) decides NL's customers alike.
    full, _, unbounded = run(spark, rows, Problem(VOUCHERS, budgets))
    assert unbounded.driver_rows > 1000
    full_nl = full[full["budget_group"] == "NL"]
    assert sorted(full_nl["customer_id"]) == sorted(nl["customer_id"])
    # So does the solve in the driver's memory, which sees every breakpoint.
    in_memory, held, _ = run(spark, rows, Problem(VOUCHERS, budgets), in_memory=True)
    pd.testing.assert_frame_equal(
        in_memory[in_memory["budget_group"] == "NL"].sort_values("customer_id", ignore_index=True),
        nl.sort_values("customer_id", ignore_index=True),
    )
    de_in_memory = next(s for s in held if s.budget_group == "DE")
    assert 0.25 * 700 - de_in_memory.objective <= np.nanmax(u[de])


def test_same_input_same_allocation(spark):
    u, c, group = instance(3000, 4, "adversarial")  # a quarter of the customers tie
    rows = frame(u, c, group)
    budgets = {"NL": 200.0, "DE": 80.0, "BE": 30.0}
    a, _, _ = run(spark, rows, Problem(VOUCHERS, budgets))
    shuffled = spark.createDataFrame(rows.sample(frac=1.0, random_state=9)).repartition(7)
    solution = solve(shuffled, Problem(VOUCHERS, budgets))
    b = solution.allocations.toPandas()
    solution.release()
    key = ["customer_id"]
    pd.testing.assert_frame_equal(
        a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    )


def test_scores_read_from_their_files_without_a_shuffle(spark, tmp_path):
    """Files that hold each customer's rows together (as sparklift score writes them, in
    any order of customers and vouchers) are read by Python without a shuffle, keep the
    policy arm as Spark draws it, and give the shuffled read's allocation. Files whose id
    ranges are apart need no pass to check that; files whose ranges meet get one. A
    customer split between two files or inside one, or repeated, is found, and the shuffle
    runs instead: the split customer is then allocated once, the repeat refused as
    before."""
    u, c, group = instance(3000, 4, "adversarial")
    rows = frame(u, c, group)
    budgets = {"NL": 200.0, "DE": 80.0, "BE": 30.0}
    keep = policy_arm(spark, "files", 3, 0.15, 0.05)  # the job's policy arm
    policy = spark.createDataFrame(rows).where(arm("files", 3, 0.15, 0.05) == POLICY)
    kept = policy.toPandas()
    assert 0.75 < kept["customer_id"].nunique() / 3000 < 0.85
    expected, _, shuffled = run(spark, kept, Problem(VOUCHERS, budgets))
    assert shuffled.reader == "shuffle"

    rng = np.random.default_rng(2)
    by_id = [b.sample(frac=1.0, random_state=1) for _, b in rows.groupby("customer_id")]
    blocks = [by_id[i] for i in rng.permutation(len(by_id))]

    def write(name: str, parts: list[list[pd.DataFrame]]) -> list[str]:
        paths = []
        for k, part in enumerate(parts):
            paths.append(str(tmp_path / f"{name}-{k}.parquet"))
            table = pa.Table.from_pandas(pd.concat(part), preserve_index=False)
            pq.write_table(table, paths[-1], row_group_size=1000)  # customers cut by groups
        return paths

    def solved(paths: list[str], scores: pd.DataFrame) -> tuple[pd.DataFrame, str, int]:
        files = ScoreFiles(spark, paths, keep)
        solution = solve(spark.createDataFrame(scores), Problem(VOUCHERS, budgets), files)
        try:
            return solution.allocations.toPandas(), solution.reader, solution.passes
        finally:
            solution.release()

    def same(got: pd.DataFrame) -> None:
        key = ["customer_id"]
        pd.testing.assert_frame_equal(
            expected.sort_values(key).reset_index(drop=True),
            got.sort_values(key).reset_index(drop=True),
        )

    got, reader, ranges_meet = solved(
        write("together", [blocks[:1000], blocks[1000:1700], blocks[1700:]]), kept
    )
    assert reader == "files"
    same(got)
    apart = write("apart", [by_id[:1200], by_id[1200:]])  # ids 0-1199, then 1200-2999
    got, reader, passes = solved(apart, kept)
    assert (reader, passes) == ("files", ranges_meet - 1)
    same(got)

    first = next(
        b for b in blocks if b["customer_id"].iloc[0] in set(kept["customer_id"]) and len(b) == 3
    )
    split = write("split", [[*blocks[:1000], first.head(1)], [first.tail(2), *blocks[1000:]]])
    split_rows = pd.concat([b for b in blocks if b is not first] + [first])
    policy_ids = set(kept["customer_id"])
    got, reader, _ = solved(split, split_rows[split_rows["customer_id"].isin(policy_ids)])
    assert reader == "shuffle"
    same(got)
    i = int(first["customer_id"].iloc[0])  # split inside one file; the ranges apart
    inside = [b for b in by_id if b["customer_id"].iloc[0] != i]
    low = [b for b in inside if b["customer_id"].iloc[0] < 1200]
    high = [b for b in inside if b["customer_id"].iloc[0] >= 1200]
    parts = [low, high]
    parts[i >= 1200] = [first.head(1), *parts[i >= 1200], first.tail(2)]
    got, reader, _ = solved(
        write("inside", parts), split_rows[split_rows["customer_id"].isin(policy_ids)]
    )
    assert reader == "shuffle"
    same(got)
    repeated = write("repeated", [blocks, [first]])
    twice = pd.concat([*blocks, first])
    with pytest.raises(InputError, match=re.escape("3 duplicate (customer_id, voucher_id) rows")):
        solved(repeated, twice[twice["customer_id"].isin(policy_ids)])


@pytest.mark.parametrize(
    "mutate, budgets, message",
    [
        (lambda r: r, {"NL": 1.0, "DE": 1.0}, "budget groups ['BE'] with no budget"),
        (lambda r: pd.concat([r, r.head(2)]), None, "2 duplicate (customer_id, voucher_id)"),
        (
            lambda r: r.assign(uplift_cost=r["uplift_cost"].where(r.index != 4, np.inf)),
            None,
            "1 (customer, voucher) scores that are null, NaN or infinite",
        ),
        (
            lambda r: r.assign(voucher_id=r["voucher_id"].where(r.index != 0, "V99")),
            None,
            "1 rows for vouchers that are not in the campaign",
        ),
        (
            lambda r: r.assign(
                budget_group=r["budget_group"].where(r.index != 0, "DE").where(r.index != 1, "NL")
            ),
            None,
            "customers listed in more than one budget_group",
        ),
        (lambda r: r.head(0), None, "no rows for this run date"),
        (
            lambda r: r.assign(customer_id=r["customer_id"].astype(object).where(r.index != 3)),
            None,
            "uplift_scores has rows with a null customer_id (1 in one batch",
        ),
        (lambda r: r, {"NL": -1.0, "DE": 1.0, "BE": 1.0}, "budget of group 'NL' must be"),
    ],
)
@pytest.mark.parametrize("in_memory", [False, True], ids=["spark", "in_memory"])
def test_bad_input_is_refused(spark, mutate, budgets, message, in_memory):
    u, c, group = instance(50, 5)
    group[0] = "BE"
    rows = frame(u, c, group).reset_index(drop=True)
    budgets = budgets or {g: 10.0 for g in GROUPS}
    problem = Problem(VOUCHERS, budgets, driver_max_rows=1000 if in_memory else 0)
    with pytest.raises(InputError, match=re.escape(message)):
        df = spark.createDataFrame(mutate(rows), schema=spark.createDataFrame(rows).schema)
        solve(df, problem, rows=1000).release()


@pytest.mark.parametrize("in_memory", [False, True], ids=["spark", "in_memory"])
def test_the_holdout_rule_gives_the_policy_s_customers_what_the_policy_sent(spark, in_memory):
    """The rule a held-out customer gets (:class:`arms.Rule`), applied to the customers the
    policy was solved for, gives each the voucher the solve sent it: deferred acceptance
    at the primal's mu (1% under the best, so V01 has more askers than its cap) and the
    budget solve after it included. What it cannot give is the greedy fill: the few
    customers below the final lambda's margin that the budget left over still pays for."""
    u, c, group = instance(6000, 4)
    got, rule, ruled = holdout_of_policy(spark, u, c, group, in_memory)
    assert "V01" in rule.cut  # V01's cap refused customers
    sent = got.set_index("customer_id")["voucher_id"].reindex(ruled.index).fillna("-")
    differ = ruled != sent
    assert differ.sum() <= 10 and (ruled[differ] == "-").all(), pd.DataFrame(
        {"rule": ruled[differ], "sent": sent[differ]}
    )  # the fill only: 2 of 564 sent (Spark passes), 7 of 570 (in memory)
    # A rule at the primal's (lambda, mu) alone, without deferred acceptance and the final
    # multipliers, misses 15 and 21 customers.
    lam = pd.Series(group).map(rule.lam).to_numpy()[:, None]
    mu = np.array([rule.mu.get(v, 0.0) for v in VOUCHERS])
    net = np.where(np.isfinite(u), u - lam * np.maximum(c, 0) - mu, -np.inf)
    before = pd.Series(np.where(net.max(axis=1) > 0, np.array(VOUCHERS)[net.argmax(axis=1)], "-"))
    assert (before.reindex(sent.index) != sent).sum() > 10


@pytest.mark.parametrize("in_memory", [False, True], ids=["spark", "in_memory"])
def test_the_holdout_rule_splits_a_tied_block_at_a_cap_as_the_policy_did(spark, in_memory):
    """A block of customers prefer V01 to V02 by the same amount (identical scores, as a
    tree model's leaves give), so V01's optimal cap multiplier is where the whole block is
    indifferent; a little under it the block asks for V01 and the cap cuts through it.
    The solve keeps the block's customers of smallest tie draw, and the rule, comparing
    the same draws with the largest one kept, gives V01 to exactly those of the policy's
    own customers. (Drawn against the share kept, while the solve ranked its ties by
    id, it sent V01 as often within the draws' noise, but to other customers: on the
    demo's policy arm 2,317 of 2,513 in common.) By margin alone (the rounding noise of
    a tie) the rule sent it to the whole block or none."""
    u, c, group = instance(6000, 5)
    n = 600
    u[:n], c[:n] = [0.36, 0.33, np.nan], 1.0  # V01 by 0.03 over V02; no V03
    got, rule, ruled = holdout_of_policy(spark, u, c, group, in_memory)
    sent = got.set_index("customer_id")["voucher_id"].reindex(ruled.index).fillna("-")
    block = ruled.index < n
    share = (sent[block] == "V01").sum() / n
    # The cap cut through the block: V01 went to its cap. (The best mu of the search lies
    # 3% past the block's indifference, where the whole block chose V02: 1% under it V01
    # held too few, and deferred acceptance ran again with mu 4% under.)
    assert 0.05 < share < 0.95, (rule, share)
    assert (got["voucher_id"] == "V01").sum() == 180
    pd.testing.assert_index_equal(  # customer for customer
        ruled.index[block & (ruled == "V01")], sent.index[block & (sent == "V01")]
    )
    differ = ~block & (ruled != sent)  # elsewhere, as above: the greedy fill only
    assert differ.sum() <= 20 and (ruled[differ] == "-").all(), (ruled[differ], sent[differ])


@pytest.mark.parametrize("in_memory", [False, True], ids=["spark", "in_memory"])
def test_the_holdout_rule_follows_the_policy_through_tied_caps_in_a_row(spark, in_memory):
    """As the demo's scores: a tree model whose pooled final stage moves every voucher by
    the same amount on every leaf, so at each cap all askers tie (their leads agree but
    for float noise; each cap keeps its askers of largest net value, and splits a leaf at
    its cut by the tie draws), and three caps refuse in a row. Applied to the policy's
    customers, the rule sends each customer the voucher the policy sent it. With one tie
    draw per
    customer for all caps, and leads ranked by exact floats, it sent V01 to none of them
    (in the demo, to 18 held-out customers where 286 were due); with draws compared with
    the share kept, and the policy's ties ranked by another hash, it sent each voucher
    about as often but partly to other customers (on the demo's policy arm, V01 to 2,491
    customers, 2,317 of them among the 2,513 the policy sent it)."""
    u, c, group = tree_scored(6000, 4)
    u = u[:, :1] + np.array([0.0, -0.025, 0.05])  # the vouchers differ by constants
    rows = frame(u, c, group)
    problem = Problem(VOUCHERS, {"NL": 1e6, "DE": 1e6}, caps={"V01": 300, "V02": 900, "V03": 500},
                      tie_order=tie_order(spark, "c", 1))  # fmt: skip
    got, _, solution = run(spark, rows, problem, in_memory)
    assert set(solution.rule.tie) == set(VOUCHERS)  # every cap cut through tied askers
    ruled = holdout_rows(spark.createDataFrame(rows), solution.rule, tie_draw("c", 1))
    ruled = ruled.toPandas().set_index("customer_id")["policy_voucher_id"].fillna("-")
    sent = got.set_index("customer_id")["voucher_id"].reindex(ruled.index).fillna("-")
    assert (sent != "-").sum() == 1700  # every cap full
    differ = ruled != sent
    assert not differ.any(), pd.DataFrame({"rule": ruled[differ], "sent": sent[differ]})


def test_the_holdout_rule_follows_the_greedy_fill_through_a_tied_block(spark):
    """Scores of 12 leaves (blocks of identical customers) and no caps: each budget's
    multiplier is set by a block's step, from nothing to a voucher (DE) or up to a
    costlier voucher (NL), and the greedy fill takes that block's steps in customer id
    order while the budget lasts. Applied to the policy's customers, the rule gives each
    block customer what the policy sent it (the fill's cut, ``Rule.fill``: the costlier
    option up to it, the cheaper above), with the same cuts in the Spark passes, with
    the crossing bucket split in Spark by id (at most 50 breakpoints to the driver), and
    in memory. Without the cut the rule gives a whole block the cheaper option (before
    it: none, or the vouchers' float noise); the fill's few customers below the margin are
    what it still misses."""
    u, c, group = tree_scored(6000, 2, leaves=12)
    rows = frame(u, c, group)
    problem = Problem(VOUCHERS, {"NL": 2500.0, "DE": 2000.0})
    fills, passes = [], []
    for path, driver_steps, in_driver in [("spark", 10**6, False), ("split", 50, False),
                                          ("in_memory", 10**6, True)]:  # fmt: skip
        got, summary, solution = run(spark, rows, replace(problem, driver_steps=driver_steps),
                                     in_driver)  # fmt: skip
        assert [s.spent / s.budget for s in summary] == pytest.approx([1.0, 1.0], abs=0.01)
        fills.append(dict(solution.rule.fill))
        passes.append(solution.passes)
        sent = pd.Series("-", index=np.arange(len(u)), dtype=object)
        sent[got["customer_id"].to_numpy()] = got["voucher_id"].to_numpy()
        lam = pd.Series(group).map(solution.rule.final_lam).to_numpy()[:, None]
        margin = np.where(np.isfinite(u), u - lam * np.maximum(c, 0), -np.inf)
        # the block: customers with two options (none one of margin 0) tied at lambda
        best = np.maximum(margin.max(axis=1), 0.0)
        near = np.abs(margin - best[:, None]) <= 1e-9
        block = near.sum(axis=1) + (best <= 1e-9) >= 2
        for g, kind in (("NL", "upgrade"), ("DE", "entering")):  # the fill split each block
            mine = sent[block & (group == g)]
            assert mine.nunique() == 2 and (("-" in set(mine)) == (kind == "entering")), (g, path)

        def ruled(rule) -> pd.Series:
            out = holdout_rows(spark.createDataFrame(rows), rule, tie_draw("c", 1)).toPandas()
            return out.set_index("customer_id")["policy_voucher_id"].fillna("-").sort_index()

        by_rule = ruled(solution.rule)
        pd.testing.assert_series_equal(by_rule[block], sent[block], check_names=False)
        differ = ~block & (by_rule != sent).to_numpy()
        assert differ.sum() <= 10, (path, by_rule[differ], sent[differ])
        without = ruled(replace(solution.rule, fill={}))
        assert (without[block] != sent[block]).sum() >= 100, path
    assert fills[0] == fills[1] == fills[2] and set(fills[0]) == {"NL", "DE"}
    assert passes[1] > passes[0]  # the split ran


def holdout_of_policy(spark, u, c, group, in_memory: bool):
    """Allocate (two caps, two cap rounds; ties at a cap by the campaign's tie order), then
    apply the solve's holdout rule to the same customers: the allocation, the rule, and
    each customer's voucher by the rule."""
    rows = frame(u, c, group)
    budgets = {g: 10 * b for g, b in CAPS_BUDGETS.items()}
    order = tie_order(spark, "c", 1)
    problem = Problem(VOUCHERS, budgets, caps={"V01": 180, "V03": 90}, tie_order=order)
    got, _, solution = run(spark, rows, problem, in_memory)
    draw = tie_draw("c", 1)
    ruled = holdout_rows(spark.createDataFrame(rows), solution.rule, draw).toPandas()
    return got, solution.rule, ruled.set_index("customer_id")["policy_voucher_id"].fillna("-")
