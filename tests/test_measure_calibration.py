"""Realized over predicted of past campaigns, against statsmodels' weighted least squares
through the origin, and the choice of the final looks it pools."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from sparklift.contracts import contract
from sparklift.measure.calibration import Calibration, calibrate, corrected, final_looks

DAY = dt.date(2026, 9, 1)


def frame(estimate, se, predicted, metric="objective", campaigns=None) -> pd.DataFrame:
    """One send of its own campaign per row, unless ``campaigns`` names them."""
    campaigns = [f"c{i}" for i in range(len(estimate))] if campaigns is None else campaigns
    return pd.DataFrame({"metric": metric, "campaign_id": campaigns, "estimate": estimate,
                         "se": se, "predicted": predicted})  # fmt: skip


@pytest.mark.parametrize("scatter", [0.2, 5.0])
def test_ratio_and_se_equal_statsmodels_wls_through_the_origin(scatter):
    """Campaigns scattered within their SEs get the fixed-scale SE (dispersion below 1),
    campaigns scattered beyond them the SE widened by the dispersion (statsmodels' default
    scale): the two branches of the rule."""
    rng = np.random.default_rng(3)
    p = rng.uniform(0.05, 0.2, 12)
    se = rng.uniform(0.01, 0.04, 12)
    e = 0.7 * p + scatter * se * rng.standard_normal(12)
    got = calibrate(frame(e, se, p))["objective"]
    fit = sm.WLS(e, p[:, None], weights=1 / se**2)
    scaled, fixed = fit.fit(), fit.fit(cov_type="fixed scale")
    assert got.ratio == pytest.approx(scaled.params[0], rel=1e-12)
    assert got.runs == got.campaigns == 12
    if scatter < 1:
        assert scaled.scale < 1
        assert got.se == pytest.approx(fixed.bse[0], rel=1e-10)
    else:
        assert scaled.scale > 1
        assert got.se == pytest.approx(scaled.bse[0], rel=1e-10)


def test_one_campaign_is_its_own_ratio_and_metrics_are_apart():
    rows = pd.concat([frame([0.06], [0.02], [0.1]), frame([3.0], [0.5], [2.0], "cost")])
    got = calibrate(rows)
    assert got["objective"].ratio == pytest.approx(0.6)
    assert got["objective"].se == pytest.approx(0.2)  # se / p: no dispersion from one run
    assert got["cost"].ratio == pytest.approx(1.5) and got["cost"].se == pytest.approx(0.25)
    assert calibrate(frame([0.1], [0.02], [0.0])) == {}  # nothing predicted: no ratio


def test_a_campaign_s_sends_are_one_measurement():
    """A campaign sent daily (its customers keep their arms, the outcome windows overlap)
    measured 60 times alike counts as one campaign, not 60 independent ones: the ratio and
    SE of the two campaigns' points (statsmodels, as above), where pooling the 61 rows as
    independent gave an SE sqrt(60) times smaller on daily's side and daily 60 times the
    weight. Sends that differ enter as their 1/se^2-weighted mean, with that mean's SE
    were their errors one (the weighted mean of their SEs)."""
    daily = frame([0.04] * 60, [0.01] * 60, [0.1] * 60, campaigns=["daily"] * 60)
    once = frame([0.09], [0.02], [0.1], campaigns=["once"])
    got = calibrate(pd.concat([daily, once]))["objective"]
    fit = sm.WLS([0.04, 0.09], [[0.1], [0.1]], weights=[1 / 0.01**2, 1 / 0.02**2]).fit()
    assert (got.ratio, got.se) == pytest.approx((fit.params[0], fit.bse[0]), rel=1e-10)
    assert (got.runs, got.campaigns) == (61, 2)
    sends = frame([0.03, 0.06], [0.01, 0.02], [0.1, 0.2], campaigns=["d", "d"])
    one = calibrate(sends)["objective"]
    w = np.array([1 / 0.01**2, 1 / 0.02**2])
    e, p, se = (np.average(v, weights=w) for v in ([0.03, 0.06], [0.1, 0.2], [0.01, 0.02]))
    assert (one.ratio, one.se) == pytest.approx((e / p, se / p), rel=1e-12)


def test_sends_that_disagree_widen_their_campaign_s_se():
    """Two sends at 0.02 and 0.10 (se 0.005 each) are no single measurement: the campaign's
    SE, 0.005, is widened by the square root of their dispersion around its ratio 0.6
    (40000 x (0.04^2 + 0.04^2) / 1 = 128), so r's SE is at least statsmodels' for two
    independent sends (0.4); the weighted mean of the SEs alone gave 0.05."""
    got = calibrate(frame([0.02, 0.10], [0.005] * 2, [0.1] * 2, campaigns=["d", "d"]))
    got = got["objective"]
    assert got.ratio == pytest.approx(0.6)
    assert got.se == pytest.approx(0.005 * np.sqrt(128) / 0.1, rel=1e-12)
    independent = sm.WLS([0.02, 0.10], [[0.1], [0.1]], weights=[1 / 0.005**2] * 2).fit()
    assert got.se >= independent.bse[0] == pytest.approx(0.4)


def test_final_looks_known_on_the_run_date_one_per_run(spark):
    base = {"budget_group": "*", "voucher_id": "*", "decile": None, "metric": "objective",
            "information_fraction": 1.0, "predicted": 0.1, "se": 0.02}  # fmt: skip

    def row(cid, sent, measured, adjustment="none", estimate=0.05, **kw):
        return base | {"campaign_id": cid, "run_date": sent, "measured_on": measured,
                       "adjustment": adjustment, "estimate": estimate} | kw  # fmt: skip

    d = lambda n: DAY - dt.timedelta(days=n)  # noqa: E731
    rows = [
        row("a", d(30), d(16), "none", 0.01),
        row("a", d(30), d(16), "cuped", 0.02),  # the adjusted one of the same look
        row("a", d(30), d(18), "cuped", 0.03),  # an earlier measurement of the same run
        row("a", d(20), d(6), "none", 0.04),  # another run of the same campaign
        row("b", d(20), d(6), "none", 0.05),
        row("b", d(20), d(10), "none", 0.06, information_fraction=0.5),  # an interim look
        row("b", d(10), DAY + dt.timedelta(days=4), "none", 0.07),  # measured after the day
        row("c", d(120), d(106), "none", 0.08),  # before the lookback
        row("c", d(50), d(36), "none", 0.09, budget_group="NL"),  # a group's row
        row("c", d(50), d(36), "none", 0.10, decile=3),  # a decile's row
        row("c", d(50), d(36), "none", 0.11, se=0.0),  # no SE: cannot be weighed
        row("c", d(40), d(26), "none", 0.12, se=float("nan")),  # NaN > 0 in Spark
        row("c", d(30), d(16), "none", float("nan")),
    ]
    schema = contract("campaign_results").schema
    names = schema.fieldNames()
    df = spark.createDataFrame([tuple(r.get(n) for n in names) for r in rows], schema)
    got = final_looks(df, DAY, 90).toPandas().sort_values("estimate")
    assert got["estimate"].tolist() == pytest.approx([0.02, 0.04, 0.05])
    assert got["adjustment"].tolist() == ["cuped", "none", "none"]
    only = final_looks(df, DAY, 90, "a").toPandas()
    assert sorted(only["estimate"]) == pytest.approx([0.02, 0.04])


def test_corrected_figures_and_the_ci_of_their_expected_value():
    cal = {"objective": Calibration(0.6, 0.1, 4, 3), "cost": Calibration(0.9, 0.05, 4, 3)}
    got = corrected(200.0, 50.0, cal, 0.95)
    assert got["objective_corrected"] == pytest.approx(120.0)
    assert got["spent_corrected"] == pytest.approx(45.0)
    low, high = got["objective_corrected_ci"]
    assert (low, high) == pytest.approx(
        (200 * (0.6 - 1.959964 * 0.1), 200 * (0.6 + 1.959964 * 0.1))
    )
    assert got["calibration"]["objective"] == {"ratio": 0.6, "se": 0.1, "runs": 4, "campaigns": 3}
    assert set(corrected(200.0, 50.0, {}, 0.95).values()) == {None}
