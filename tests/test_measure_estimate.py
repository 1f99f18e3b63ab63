"""The policy-against-holdout estimate of one cell against statsmodels' OLS with HC2
standard errors (the same regression: y ~ t, and Lin's y ~ t + Xc + t Xc)."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm

from sparklift.measure.estimate import lin_estimate


def cell(seed: int, n: int = 3000, k: int = 3):
    rng = np.random.default_rng(seed)
    X = rng.lognormal(0.0, 1.0, size=(n, k))
    t = (rng.uniform(size=n) < 0.3).astype(float)  # unbalanced arms
    tau = 0.2 + 0.1 * X[:, 0]  # heterogeneous effect
    y = rng.poisson(0.5 + 0.3 * X[:, 0] + 0.1 * X[:, 1] + t * tau).astype(float)
    return y, t, X


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_difference_in_means_is_ols_with_hc2(seed):
    y, t, _ = cell(seed)
    ref = sm.OLS(y, sm.add_constant(t)).fit(cov_type="HC2")
    got = lin_estimate(y, t)
    assert got.estimate == pytest.approx(ref.params[1], abs=1e-10)
    assert got.se == pytest.approx(ref.bse[1], rel=1e-8)
    # ... which is the Neyman standard error of the difference in means
    neyman = np.sqrt(
        y[t == 1].var(ddof=1) / (t == 1).sum() + y[t == 0].var(ddof=1) / (t == 0).sum()
    )
    assert got.se == pytest.approx(neyman, rel=1e-8)
    assert (got.n_policy, got.n_holdout) == ((t == 1).sum(), (t == 0).sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lin_adjustment_is_the_interacted_ols_with_hc2(seed):
    y, t, X = cell(seed)
    Xc = X - X.mean(axis=0)
    design = np.column_stack([np.ones_like(y), t, Xc, t[:, None] * Xc])
    ref = sm.OLS(y, design).fit(cov_type="HC2")
    got = lin_estimate(y, t, X)
    assert got.estimate == pytest.approx(ref.params[1], rel=1e-8)
    assert got.se == pytest.approx(ref.bse[1], rel=1e-8)
    assert got.se < lin_estimate(y, t).se  # the covariates explain variance


def test_constant_covariates_are_dropped_and_tiny_arms_have_no_se():
    y, t, X = cell(3, n=500)
    with_constant = np.column_stack([X, np.full(len(y), 7.0)])
    a, b = lin_estimate(y, t, with_constant), lin_estimate(y, t, X)
    assert a.estimate == pytest.approx(b.estimate, rel=1e-10) and a.se == pytest.approx(b.se)
    one = lin_estimate(np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 0.0]))
    assert one.estimate == pytest.approx(-1.5) and np.isnan(one.se)
