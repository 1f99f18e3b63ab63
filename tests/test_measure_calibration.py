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


def frame(estimate, se, predicted, metric="objective") -> pd.DataFrame:
    return pd.DataFrame({"metric": metric, "estimate": estimate, "se": se,
                         "predicted": predicted})  # fmt: skip


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
    assert got.runs == 12
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
    cal = {"objective": Calibration(0.6, 0.1, 4), "cost": Calibration(0.9, 0.05, 4)}
    got = corrected(200.0, 50.0, cal, 0.95)
    assert got["objective_corrected"] == pytest.approx(120.0)
    assert got["spent_corrected"] == pytest.approx(45.0)
    low, high = got["objective_corrected_ci"]
    assert (low, high) == pytest.approx(
        (200 * (0.6 - 1.959964 * 0.1), 200 * (0.6 + 1.959964 * 0.1))
    )
    assert got["calibration"]["objective"] == {"ratio": 0.6, "se": 0.1, "runs": 4}
    assert set(corrected(200.0, 50.0, {}, 0.95).values()) == {None}
