"""The policy-against-holdout estimate of one cell against statsmodels' OLS with HC2
standard errors (the same regression: y ~ t, and Lin's y ~ t + Xc + t Xc), and the
totals over cells."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from sparklift.measure.campaign import intervals, with_totals
from sparklift.measure.estimate import lin_estimate, lin_fit
from sparklift.measure.ratio import COV


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


def test_an_arm_too_small_for_its_covariates_is_left_unadjusted():
    """7 covariates and 9 held-out customers: Lin's fit of that arm nearly interpolates and
    its HC2 SE collapses, so the cell keeps the difference in means and its Neyman SE; at 5
    units per parameter (40) the adjustment is statsmodels' interacted OLS again."""
    y, t, X = cell(4, n=600, k=7)
    held = np.flatnonzero(t == 0)
    for n0, adjusted in ((9, False), (40, True)):
        keep = np.r_[np.flatnonzero(t == 1), held[:n0]]
        yk, tk, Xk = y[keep], t[keep], X[keep]
        got = lin_estimate(yk, tk, Xk)
        if adjusted:
            Xc = Xk - Xk.mean(axis=0)
            design = np.column_stack([np.ones_like(yk), tk, Xc, tk[:, None] * Xc])
            ref = sm.OLS(yk, design).fit(cov_type="HC2")
            assert got.se == pytest.approx(ref.bse[1], rel=1e-8)
        else:
            a, b = yk[tk == 1], yk[tk == 0]
            assert got.estimate == pytest.approx(a.mean() - b.mean(), rel=1e-12)
            neyman = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
            assert got.se == pytest.approx(neyman, rel=1e-10)


def test_totals_leave_out_the_cells_without_an_estimate():
    """Group G: a cell of 900 policy customers measured, one with no held-out customer and
    one with a single one (no SE). The group's total is the measured cell alone, not a
    mean that counts the others as no effect; a group with no measured cell is NaN."""
    rows = [("G", "A", 900, 50, 1.0, 0.2, 1.5), ("G", "B", 300, 0, np.nan, np.nan, 5.0),
            ("G", "C", 300, 1, 5.0, np.nan, 5.0), ("H", "A", 100, 1, 2.0, np.nan, 2.0)]  # fmt: skip
    cells = pd.DataFrame(rows, columns=["budget_group", "voucher_id", "n_policy", "n_holdout",
                                        "estimate", "se", "predicted"])  # fmt: skip
    cells = cells.assign(
        metric="objective", adjustment="none", mean_policy=1.0, mean_holdout=0.0, **{COV: 0.0}
    )
    totals = with_totals(cells).set_index(["budget_group", "voucher_id"])
    g = totals.loc[("G", "*")]
    assert (g["estimate"], g["se"], g["n_policy"], g["predicted"]) == (1.0, 0.2, 900, 1.5)
    assert np.isnan(totals.loc[("H", "*"), "estimate"])
    campaign = totals.loc[("*", "*")]
    assert campaign["estimate"] == 1.0 and campaign["n_policy"] == 900


def test_a_covariate_constant_within_one_arm_is_dropped_so_the_effect_is_identified():
    """A rare flag that no held-out customer has varies in the cell but is collinear with
    the holdout's intercept: kept, the effect would depend on how y and the flag are coded.
    Dropped, the estimate is statsmodels' Lin regression on the other covariates, and it
    stays the same when y is shifted or the flag rescaled. Two columns equal within the
    holdout (but not in the policy arm) leave the cell unadjusted."""
    y, t, X = cell(5, n=1200)
    rng = np.random.default_rng(5)
    flag = np.where(t == 1, rng.uniform(size=len(t)) < 0.05, 0.0)
    Xc = X - X.mean(axis=0)
    ref = sm.OLS(y, np.column_stack([np.ones_like(y), t, Xc, t[:, None] * Xc])).fit(cov_type="HC2")
    for yy, ff, shift in ((y, flag, 0.0), (y - 50.0, flag, -50.0), (y, 100.0 * flag, 0.0)):
        got = lin_estimate(yy, t, np.column_stack([X, ff]))
        assert got.estimate == pytest.approx(ref.params[1], rel=1e-8)
        assert got.se == pytest.approx(ref.bse[1], rel=1e-8)
        assert got.mean_holdout == pytest.approx(y[t == 0].mean() + shift)
    twin = np.where(t == 0, X[:, 0], X[:, 0] + rng.normal(size=len(t)))
    got = lin_estimate(y, t, np.column_stack([X, twin]))
    plain = lin_estimate(y, t)
    assert (got.estimate, got.se) == pytest.approx((plain.estimate, plain.se), rel=1e-12)


def test_a_total_holdout_mean_is_weighted_as_its_estimate():
    """Two cells, each with an effect of 1 but different holdout sizes: the total's means
    differ by its estimate (both weighted by the policy customers), not by 0.44 as a
    holdout mean weighted by the held-out customers would."""
    cells = pd.DataFrame(
        {"budget_group": "G", "voucher_id": ["A", "B"], "n_policy": [290, 710],
         "n_holdout": [36, 64], "mean_policy": [11.0, 3.0], "mean_holdout": [10.0, 2.0],
         "estimate": 1.0, "se": 0.1, "predicted": 1.0, "metric": "objective",
         "adjustment": "none", COV: 0.0}
    )  # fmt: skip
    total = with_totals(cells).set_index(["budget_group", "voucher_id"]).loc[("G", "*")]
    assert total["mean_policy"] == pytest.approx(5.32)
    assert total["mean_policy"] - total["mean_holdout"] == pytest.approx(total["estimate"])


def test_a_cells_ci_is_welchs_t_interval_and_the_totals_stay_normal():
    """A cell of 40 policy and 3 held-out customers: its CI and p-value are scipy's Welch
    t-test's (df about 2), not the normal's; its group's total stays normal."""
    rng = np.random.default_rng(6)
    y = np.r_[rng.normal(1.0, 1.0, 40), rng.normal(0.0, 2.0, 3)]
    t = np.r_[np.ones(40), np.zeros(3)]
    e = lin_estimate(y, t)
    welch = stats.ttest_ind(y[t == 1], y[t == 0], equal_var=False)
    assert e.df == pytest.approx(welch.df, rel=1e-10)
    cells = pd.DataFrame(
        [{**asdict(e), "budget_group": "G", "voucher_id": "A", "metric": "objective",
          "adjustment": "none", "predicted": 1.0, COV: 0.0}]
    )  # fmt: skip
    out = intervals(with_totals(cells), 0.95).set_index(["budget_group", "voucher_id"])
    ci, cell = welch.confidence_interval(0.95), out.loc[("G", "A")]
    assert (cell["ci_low"], cell["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert cell["p_value"] == pytest.approx(welch.pvalue, rel=1e-10)
    total, z = out.loc[("G", "*")], stats.norm.ppf(0.975)
    assert total["ci_high"] - total["estimate"] == pytest.approx(z * total["se"], rel=1e-12)
    assert total["p_value"] == pytest.approx(2 * stats.norm.sf(abs(e.estimate / e.se)))


def test_the_adjusted_df_is_satterthwaites_over_each_arms_own_fit():
    """Lin's fit is each arm's own: the HC2 variance is the sum of each arm's intercept
    variance at the cell's covariate means (statsmodels' OLS of that arm alone), and the
    df Satterthwaite's over those parts with n_a - (k + 1) each."""
    y, t, X = cell(7, n=400, k=2)
    got = lin_estimate(y, t, X)
    centre = X.mean(axis=0)
    parts, residual_df = [], []
    for a in (1, 0):
        arm = t == a
        fit = sm.OLS(y[arm], sm.add_constant(X[arm] - centre)).fit(cov_type="HC2")
        parts.append(fit.bse[0] ** 2)
        residual_df.append(arm.sum() - 3)
    df = sum(parts) ** 2 / sum(p**2 / m for p, m in zip(parts, residual_df, strict=True))
    assert got.se**2 == pytest.approx(sum(parts), rel=1e-8)
    assert got.df == pytest.approx(df, rel=1e-8)


def test_the_covariance_of_two_outcomes_effects_is_statsmodels_hc2_of_their_sum():
    """Objective and cost of the same customers: Var(O + C) = V_O + V_C + 2 V_OC, each
    term statsmodels' HC2 variance of its own Lin regression."""
    y, t, X = cell(8)
    cost = 0.3 * y + np.random.default_rng(8).exponential(1.0, len(y)) * t
    Xc = X - X.mean(axis=0)
    design = np.column_stack([np.ones_like(y), t, Xc, t[:, None] * Xc])
    for D, covariates in ((sm.add_constant(t), None), (design, X)):
        got = lin_fit(np.column_stack([y, cost]), t, covariates)
        var = [sm.OLS(v, D).fit(cov_type="HC2").bse[1] ** 2 for v in (y, cost, y + cost)]
        assert got.cov[0, 1] == pytest.approx((var[2] - var[0] - var[1]) / 2, rel=1e-7)
        assert np.diag(got.cov) == pytest.approx(var[:2], rel=1e-8)
        assert got.cov[0, 1] > 0  # the cost grows with the objective
        alone = lin_estimate(cost, t, covariates)
        pair = (got.estimates[1].estimate, got.estimates[1].se)
        assert pair == pytest.approx((alone.estimate, alone.se), rel=1e-12)
