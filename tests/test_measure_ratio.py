"""The realized return (incremental objective per unit of incremental cost) and Fieller's
interval: against statsmodels' HC2 test of O - R C = 0 at the bounds, and its coverage of
a planted ratio."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from sparklift.measure.campaign import with_totals
from sparklift.measure.estimate import lin_fit
from sparklift.measure.ratio import COV, DF, fieller, returns


def draw(rng: np.random.Generator, n: int, cost_effect: float) -> tuple[np.ndarray, ...]:
    """A cell: orders (objective) rise with the voucher, its cost is paid by the
    customers who redeem it, more by those who order more (correlated outcomes)."""
    t = (rng.uniform(size=n) < 0.5).astype(float)
    basket = rng.lognormal(0.0, 0.8, n)
    y = rng.poisson(basket * (1.0 + 0.3 * t)).astype(float)
    cost = t * cost_effect * y * (rng.uniform(size=n) < 0.6)
    return y, cost, t


def rows(y: np.ndarray, cost: np.ndarray, t: np.ndarray, bound: float = 2.5) -> pd.DataFrame:
    """The objective and cost rows of one cell as ``fit_cells`` and ``with_look`` give
    them."""
    fit = lin_fit(np.column_stack([y, cost]), t)
    common = {"budget_group": "G", "voucher_id": "A", "adjustment": "none", "decile": np.nan,
              "look": 1, "information_fraction": 1.0, "z_bound": bound,
              COV: fit.cov[0, 1], DF: fit.ratio_df()}  # fmt: skip
    return pd.DataFrame(
        [
            {**asdict(e), **common, "metric": m, "predicted": p}
            for m, e, p in zip(("objective", "cost"), fit.estimates, (0.4, 0.2), strict=True)
        ]
    )


def hc2_t(y: np.ndarray, cost: np.ndarray, t: np.ndarray, r: float) -> tuple[float, float]:
    """statsmodels' HC2 t statistic and SE of the effect of t on y - r cost."""
    fit = sm.OLS(y - r * cost, sm.add_constant(t)).fit(cov_type="HC2")
    return float(fit.tvalues[1]), float(fit.bse[1])


def test_fieller_bounds_are_where_the_hc2_test_of_o_minus_r_c_is_at_its_quantile():
    y, cost, t = draw(np.random.default_rng(1), 600, 0.5)
    cell = rows(y, cost, t)
    got = returns(cell, 0.95).iloc[0]
    o, c = cell.set_index("metric").loc["objective"], cell.set_index("metric").loc["cost"]
    assert got["metric"] == "return" and got["estimate"] == pytest.approx(
        o["estimate"] / c["estimate"]
    )
    # t at Welch's df of O - R C at the estimate: scipy's Welch test of y - R cost
    z = y - got["estimate"] * cost
    welch = stats.ttest_ind(z[t == 1], z[t == 0], equal_var=False)
    assert got["df"] == pytest.approx(welch.df, rel=1e-10)
    q = stats.t.ppf(0.975, welch.df)
    for bound in (got["ci_low"], got["ci_high"]):
        assert abs(hc2_t(y, cost, t, bound)[0]) == pytest.approx(q, rel=1e-8)
    for bound in (got["rci_low"], got["rci_high"]):  # the repeated CI: at the look's bound
        assert abs(hc2_t(y, cost, t, bound)[0]) == pytest.approx(2.5, rel=1e-8)
    assert got["ci_low"] < got["estimate"] < got["ci_high"]
    assert got["rci_low"] < got["ci_low"]
    # the delta method's SE: the HC2 SE of O - R C at the estimate, over |C|
    se = hc2_t(y, cost, t, got["estimate"])[1] / abs(c["estimate"])
    assert got["se"] == pytest.approx(se, rel=1e-8)
    assert got["predicted"] == pytest.approx(2.0)
    assert (got["n_policy"], got["n_holdout"]) == (o["n_policy"], o["n_holdout"])


def test_a_cost_not_distinguishable_from_zero_leaves_the_return_unbounded():
    """A voucher almost nobody redeems: its cost's effect is within noise, so no finite
    interval covers the return at 95% (Fieller's is the whole line or two rays), and the
    bounds are null rather than a finite delta-method interval."""
    rng = np.random.default_rng(2)
    y, cost, t = draw(rng, 300, 0.5)
    cost = cost * (rng.uniform(size=len(t)) < 0.02) + 0.2 * rng.exponential(1.0, len(t))
    cell = rows(y, cost, t)
    c = cell.set_index("metric").loc["cost"]
    assert abs(c["estimate"] / c["se"]) < stats.t.ppf(0.975, c["df"])  # the premise
    got = returns(cell, 0.95).iloc[0]
    assert np.isfinite(got["estimate"])
    assert np.isnan(got["ci_low"]) and np.isnan(got["ci_high"])


def test_a_totals_interval_is_fiellers_over_its_cells_at_the_normal_quantile():
    """Two cells of a group, of 900 and 300 policy customers: the total return is the
    ratio of the cells' weighted sums, and at its bounds the weighted sum of the cells'
    O_k - R0 C_k (statsmodels' HC2 effects of y - R0 cost, independent cells) is at the
    normal quantile of its SE."""
    rng = np.random.default_rng(3)
    worlds = [draw(rng, 1800, 0.5), draw(rng, 500, 0.3)]
    cells = pd.concat([rows(*w).assign(voucher_id=v) for w, v in zip(worlds, "AB", strict=True)])
    totals = with_totals(cells.drop(columns=["look", "information_fraction", "z_bound"]))
    totals = totals[totals["voucher_id"] == "*"].assign(
        look=1, information_fraction=1.0, z_bound=2.5
    )
    got = returns(totals, 0.9).set_index("budget_group")
    weights = [w[2].sum() for w in worlds]  # the cells' policy customers
    for group in ("G", "*"):
        r = got.loc[group]
        assert np.isnan(r["df"])
        for bound in (r["ci_low"], r["ci_high"]):
            parts = []
            for (y, cost, t), n in zip(worlds, weights, strict=True):
                fit = sm.OLS(y - bound * cost, sm.add_constant(t)).fit(cov_type="HC2")
                parts.append((n * fit.params[1], (n * fit.bse[1]) ** 2))
            z = sum(p[0] for p in parts) / np.sqrt(sum(p[1] for p in parts))
            assert abs(z) == pytest.approx(stats.norm.ppf(0.95), rel=1e-8)


def test_fieller_covers_the_planted_return_at_its_level():
    """2,000 cells of 100 customers whose cost effect is about 4 SEs from 0 (where the
    ratio's sampling distribution is skewed): the 95% interval (t at the df of O - R C, as
    :func:`returns` takes it) covers the planted ratio of the expected effects 93.5-96.5%
    of the time (binomial SE 0.5 points). An unbounded set (the whole line or two rays:
    a few cells) covers the truth where the test of O - R C at the truth does not reject."""
    rng = np.random.default_rng(4)
    # E[y | t] = E[basket] (1 + 0.3 t), E[cost | t = 1] = 0.25 x 0.6 x 1.3 E[basket]
    truth = 0.3 / (0.25 * 0.6 * 1.3)
    covered, zs = [], []
    for _ in range(2000):
        y, cost, t = draw(rng, 100, 0.25)
        fit = lin_fit(np.column_stack([y, cost]), t)
        (o, c), v = (e.estimate for e in fit.estimates), fit.cov
        q = stats.t.ppf(0.975, fit.ratio_df())
        low, high = fieller(*map(np.array, (o, c, v[0, 0], v[1, 1], v[0, 1], q)))
        spread = v[0, 0] - 2 * truth * v[0, 1] + truth**2 * v[1, 1]
        accepted = (o - truth * c) ** 2 <= q**2 * spread
        covered.append(bool(low < truth < high) if np.isfinite(low) else bool(accepted))
        zs.append(c / np.sqrt(v[1, 1]))
    assert 3 < np.median(zs) < 5  # the premise
    assert 0.935 <= np.mean(covered) <= 0.965, np.mean(covered)
