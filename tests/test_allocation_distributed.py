"""The distributed solver against the one-machine solver and the exact optimum."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sparklift.allocation.distributed import solve
from sparklift.allocation.envelope import envelope
from sparklift.allocation.exact import solve_exact
from sparklift.allocation.lagrange import solve_group

VOUCHERS = ["V01", "V02", "V03"]


def scores_frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = rng.lognormal(0, 0.8, (n, 3)) * np.array([1.0, 2.0, 4.0])
    u = c * rng.uniform(0, 0.3, (n, 3)) + rng.normal(0, 0.03, (n, 3))
    group = rng.choice(["NL", "DE", "BE"], n, p=[0.5, 0.3, 0.2])
    rows = pd.DataFrame(
        {
            "customer_id": np.repeat(np.arange(n, dtype=np.int64), 3),
            "budget_group": np.repeat(group, 3),
            "voucher_id": np.tile(VOUCHERS, n),
            "uplift_objective": u.ravel(),
            "uplift_cost": c.ravel(),
        }
    )
    return rows, u, c, group


@pytest.mark.parametrize("seed", [0, 1])
def test_distributed_matches_local_and_exact(spark, seed):
    rows, u, c, group = scores_frame(3000, seed)
    budgets = {"NL": 300.0, "DE": 50.0, "BE": 1e6}  # BE: budget never binds
    alloc, summary, passes = solve(spark.createDataFrame(rows), VOUCHERS, budgets)
    got = alloc.toPandas()
    assert passes == 3
    assert got["customer_id"].is_unique
    for s in summary:
        mine = got[got["budget_group"] == s.budget_group]
        assert mine["expected_cost"].sum() == pytest.approx(s.spent)
        assert mine["expected_uplift"].sum() == pytest.approx(s.objective)
        assert s.spent <= s.budget + 1e-9
        in_g = group == s.budget_group
        local = solve_group(envelope(u[in_g], c[in_g]), s.budget, np.flatnonzero(in_g))
        assert s.lam == pytest.approx(local.lam)
        assert s.dual_bound == pytest.approx(local.dual_bound)
        _, best = solve_exact(u[in_g], c[in_g], s.budget)
        assert s.objective <= best + 1e-6 <= s.dual_bound + 2e-6
        assert best - s.objective <= np.max(u[in_g])
        print(s.budget_group, s.objective, best, s.dual_bound, s.gap / s.objective)
