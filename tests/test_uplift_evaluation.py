"""Qini, AUUC, calibration and policy value against a hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm

from sparklift.uplift.evaluation import (
    area_over_random,
    calibration,
    calibration_line,
    campaign_weights,
    evaluate,
    gain_curve,
    policy_values,
    qini_curve,
)

# Ranked by score: treated/control alternate, responses 1 0 1 1 0 0.
SCORE = np.array([0.4, 0.9, 0.6, 0.8, 0.5, 0.7])  # shuffled; the ranking sorts it
ORDER = np.argsort(-SCORE)
TREATED = np.empty(6, dtype=bool)
Y = np.empty(6)
TREATED[ORDER] = [1, 0, 1, 0, 1, 0]
Y[ORDER] = [1, 0, 1, 1, 0, 0]


def test_qini_curve_and_coefficient_by_hand():
    # After k rows: n_t, n_c, Y_t, Y_c = (1,0,1,0) (1,1,1,0) (2,1,2,0) (2,2,2,1) (3,2,2,1)
    # (3,3,2,1); Q(k) = Y_t - Y_c n_t / n_c = 1, 1, 2, 1, 0.5, 1.
    q = qini_curve(SCORE, Y, TREATED)
    assert q * 6 == pytest.approx([0, 1, 1, 2, 1, 0.5, 1])
    # Trapezoids over x = k/6: (6.5 - 0.5) / 36 = 1/6; the random line's area is 1/12.
    assert area_over_random(q) == pytest.approx(1 / 12)


def test_gain_curve_and_auuc_by_hand():
    # G(k) = (Y_t/n_t - Y_c/n_c) k: 0 (no control yet), 2, 3, 2, 5/6, 2.
    g = gain_curve(SCORE, Y, TREATED)
    assert g * 6 == pytest.approx([0, 0, 2, 3, 2, 5 / 6, 2])
    # Area (53/6 / 36 = 53/216) minus the random line's (2/6 / 2 = 36/216).
    assert area_over_random(g) == pytest.approx(17 / 216)
    assert policy_values(g, [0.2, 0.5, 1.0]) == pytest.approx(
        {"0.2": 2 / 6, "0.5": 3 / 6, "1": 2 / 6}
    )


def test_calibration_by_hand():
    (only,) = calibration(SCORE, Y, TREATED, bins=1)
    assert only["predicted"] == pytest.approx(0.65)
    assert only["observed"] == pytest.approx(2 / 3 - 1 / 3)
    assert only["observed_se"] == pytest.approx(math.sqrt(2) / 3)
    top, bottom = calibration(SCORE, Y, TREATED, bins=2)
    assert (top["n_treated"], top["n_control"]) == (2, 1)
    assert top["observed"] is None  # one control row: no variance, no estimate
    assert bottom["predicted"] == pytest.approx(0.5)


def test_perfect_ranking_beats_random_and_reversed():
    rng = np.random.default_rng(0)
    n = 20_000
    tau = rng.uniform(-0.5, 1.0, n)
    treated = rng.random(n) < 0.5
    y = rng.normal(0, 1, n) + treated * tau
    good, bad = evaluate(tau, y, treated), evaluate(-tau, y, treated)
    noise = evaluate(rng.random(n), y, treated)
    assert good["qini"] > 0.05 and bad["qini"] < -0.05 and abs(noise["qini"]) < 0.02
    assert good["auuc"] > abs(noise["auuc"]) + 0.05
    assert good["average_effect"] == pytest.approx(tau.mean(), abs=0.05)
    assert good["calibration"][0]["observed"] > good["calibration"][-1]["observed"]
    assert len(good["qini_curve"]) == 101


def test_calibration_line_is_the_interacted_regression_and_finds_the_planted_shrinkage():
    # Predictions s = tau + noise with var(tau) = 1 and var(noise) = 1: the truth given s
    # is E[tau | s] = s / 2 (regression to the mean), what a policy picking high s gets.
    rng = np.random.default_rng(3)
    n = 40_000
    tau = rng.normal(1.0, 1.0, n)
    s = tau + rng.normal(0.0, 1.0, n)
    t = rng.random(n) < 0.5
    y = 2.0 + 0.3 * s + t * tau + rng.normal(0, 2, n) * (1 + t)  # heteroskedastic
    line = calibration_line(s, y, t)
    X = np.column_stack([np.ones(n), t, s, t * s])
    ref = sm.OLS(y, X).fit(cov_type="HC0")
    assert [line["intercept"], line["slope"]] == pytest.approx(ref.params[[1, 3]], rel=1e-9)
    assert [line["intercept_se"], line["slope_se"]] == pytest.approx(ref.bse[[1, 3]], rel=1e-9)
    assert line["slope"] == pytest.approx(0.5, abs=4 * line["slope_se"])
    assert line["intercept"] == pytest.approx(0.5, abs=4 * line["intercept_se"])
    assert calibration_line(s[:4], y[:4], np.array([1, 1, 0, 0], bool)) is None


def test_controls_weighed_to_the_treated_rows_campaigns():
    """Campaign A holds 10% controls, B 50%, and B's customers respond 1.0 more: the
    controls are mostly B's, the treated mostly A's. Weighed (campaign_weights), the
    average effect is the treated rows' mix of each campaign's difference in means (by
    hand), the calibration line is statsmodels' weighted least squares with HC0, and
    a bin's standard error is that of weighted means."""
    rng = np.random.default_rng(4)
    n = 20_000
    campaign = np.where(np.arange(n) < n // 2, "A", "B")
    t = rng.random(n) < np.where(campaign == "A", 0.9, 0.5)
    s = rng.normal(0, 1, n)
    y = 1.0 * (campaign == "B") + t * (0.2 + 0.3 * s) + rng.normal(0, 1, n)
    w = campaign_weights(t, campaign)
    by_hand = sum(
        (t & (campaign == c)).sum()
        / t.sum()
        * (y[t & (campaign == c)].mean() - y[~t & (campaign == c)].mean())
        for c in ("A", "B")
    )
    weighed = evaluate(s, y, t, weight=w)
    assert weighed["average_effect"] == pytest.approx(by_hand, rel=1e-9)
    assert weighed["average_effect"] == pytest.approx(0.2, abs=0.06)  # the planted mean
    assert evaluate(s, y, t)["average_effect"] < 0.2 - 0.3  # unweighed: B's +1.0 leaks in
    line = calibration_line(s, y, t, w)
    X = np.column_stack([np.ones(n), t, s, t * s])
    ref = sm.WLS(y, X, weights=w).fit(cov_type="HC0")
    assert [line["intercept"], line["slope"]] == pytest.approx(ref.params[[1, 3]], rel=1e-9)
    assert [line["intercept_se"], line["slope_se"]] == pytest.approx(ref.bse[[1, 3]], rel=1e-9)
    (only,) = calibration(s, y, t, bins=1, weight=w)
    yc, wc = y[~t], w[~t]
    mc = np.sum(wc * yc) / wc.sum()
    var_c = np.sum(wc**2 * (yc - mc) ** 2) / wc.sum() ** 2 * len(yc) / (len(yc) - 1)
    assert only["observed"] == pytest.approx(y[t].mean() - mc, rel=1e-12)
    assert only["observed_se"] == pytest.approx(
        math.sqrt(y[t].var(ddof=1) / t.sum() + var_c), rel=1e-12
    )
    assert np.all(campaign_weights(t, np.zeros(n)) == 1.0)  # one campaign: unweighed
