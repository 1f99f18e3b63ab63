"""Forecasts and their corrections: Groupon's formula against a hand computation, the
empirical Bayes prior against statsmodels' DerSimonian-Laird, the winner's-curse bias
against Monte Carlo, and both corrections by simulation against the planted truth."""

from __future__ import annotations

import argparse
import datetime as dt

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.meta_analysis import combine_effects

from sparklift.config import load_config
from sparklift.errors import ConfigError
from sparklift.geo.forecast import forecasts
from sparklift.jobs import JobContext, write_records
from sparklift.jobs import forecast as forecast_job
from sparklift.stats.shrinkage import prior, selection_bias, shrink
from sparklift.tables import Catalog
from sparklift.tables.local import read_pandas

CONF = load_config(
    None,
    [
        "forecast.platform_revenue={gmv: 2000000, orders: 500000}",
        "forecast.platform_factor=0.5",
        "forecast.success_probability=0.8",
        "forecast.haircut=0.25",
    ],
).forecast


def lifts(values, ses, metric="gmv", p=0.2) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "experiment_id": [f"e{i}" for i in range(len(values))],
            "metric": metric,
            "variant": "treatment",
            "concluded_on": None,
            "cov_type": "zone",
            "lift": values,
            "lift_se": ses,
            "p_value": p,
        }
    )


def test_the_prior_is_dersimonian_lairds():
    x, s = np.array([0.02, -0.01, 0.05, 0.012, 0.03]), np.array([0.01, 0.02, 0.015, 0.008, 0.02])
    ref = combine_effects(x, s**2, method_re="dl")
    got = prior(x, s)
    assert got.sd**2 == pytest.approx(ref.tau2, rel=1e-10)
    assert got.mean == pytest.approx(ref.mean_effect_re, rel=1e-10)
    same = prior(np.full(4, 0.01), np.full(4, 0.02))  # no spread beyond the noise: tau = 0
    assert same.sd == 0 and shrink(0.08, 0.02, same) == (pytest.approx(0.01), 0.0)


P4 = 2 * stats.norm.sf(4.0)  # the p-value of 0.04 with se 0.01 under a normal reference


def test_forecast_of_a_small_example_by_hand():
    """Four concluded experiments on gmv; e0's forecast from the three others' prior."""
    rows = forecasts(
        lifts([0.04, 0.01, 0.0, 0.02], [0.01, 0.01, 0.01, 0.01], p=[P4, 0.3, 0.9, 0.05]),
        CONF,
        {f"e{i}": 0.05 for i in range(4)},
    )
    r = rows.set_index("experiment_id").loc["e0"]
    assert r["forecast_raw"] == pytest.approx(0.04 * 0.5 * 0.8 * 2_000_000 * 0.75)  # 24,000
    # The others: 0.01, 0.0, 0.02 with se 0.01: m = 0.01, Q = (0 + 1 + 1) = 2 = k - 1, so
    # tau^2 = 0 and every lift is shrunk all the way to 0.01.
    assert r["prior_mean"] == pytest.approx(0.01) and r["prior_sd"] == 0
    assert r["shrinkage_weight"] == 0 and r["lift_shrunk"] == pytest.approx(0.01)
    assert r["forecast_shrunk"] == pytest.approx(0.01 * 0.5 * 0.8 * 2_000_000 * 0.75)
    assert r["significant"] and r["winners_curse_bias"] == pytest.approx(
        selection_bias(0.04, 0.01, 0.05)
    )
    # A non-significant one is not corrected; a metric without revenue has no forecast.
    assert rows.set_index("experiment_id").loc["e2", "winners_curse_bias"] == 0
    alone = forecasts(lifts([0.03], [0.01], metric="visits"), CONF, {"e0": 0.05}).iloc[0]
    assert alone["forecast_raw"] is None and alone["prior_mean"] is None
    assert alone["lift_shrunk"] == 0.03 and alone["prior_experiments"] == 0


def test_a_result_is_corrected_exactly_when_its_p_value_is_significant():
    """The analysis' p comes from t(df) with few zones: |x|/s = 2.2 is p = 0.04 under the
    normal but 0.053 under t(9) — not reported as significant, so not corrected; one with
    t(9) p = 0.01 is corrected as a normal result with that p (s' = |x| / z_{p/2})."""
    x, s = 0.022, 0.01
    p_t = 2 * stats.t.sf(2.2, 9)
    assert p_t > 0.05 and 2 * stats.norm.sf(2.2) < 0.05
    row = forecasts(lifts([x], [s], p=p_t), CONF, {"e0": 0.05}).iloc[0]
    assert not row["significant"] and row["winners_curse_bias"] == 0
    row = forecasts(lifts([x], [s], p=0.01), CONF, {"e0": 0.05}).iloc[0]
    s_normal = x / stats.norm.isf(0.005)
    assert row["winners_curse_bias"] == pytest.approx(selection_bias(x, s_normal, 0.05))
    assert row["lift_winners_curse"] == pytest.approx(x - selection_bias(x, s_normal, 0.05))
    # A row without a usable SE neither joins a prior nor breaks it (and is not shrunk).
    bad = forecasts(
        lifts([0.01, 0.02, 0.0, 0.03, 0.05], [0.01, 0.0, 0.01, 0.01, 0.01]),
        CONF,
        dict.fromkeys([f"e{i}" for i in range(5)], 0.05),
    )
    assert bad.loc[0, "prior_experiments"] == 3  # e1 (se 0) left out of the others' prior,
    assert bad["prior_mean"].isna().tolist() == [False, True, False, False, False]  # and kept


@pytest.mark.parametrize("theta", [0.0, 0.01, 0.025, -0.02])
def test_the_selection_bias_is_the_truncated_normals(theta):
    rng = np.random.default_rng(3)
    x = theta + 0.01 * rng.standard_normal(4_000_000)
    kept = x[np.abs(x) > 1.959963984540054 * 0.01]
    mc, mc_se = kept.mean() - theta, kept.std() / np.sqrt(len(kept))
    assert selection_bias(theta, 0.01, 0.05) == pytest.approx(mc, abs=4 * mc_se)


def test_both_corrections_cut_the_forecast_error_against_the_truth():
    """2,000 experiments with weak, heterogeneous true lifts (mean 1%, sd 1.5%) measured with
    standard errors of 0.5-3%: the shrunk lifts are closer to the truth than the raw ones,
    and among the significant results the corrected lifts are less biased and closer."""
    rng = np.random.default_rng(11)
    n = 2000
    truth = rng.normal(0.01, 0.015, n)
    se = rng.uniform(0.005, 0.03, n)
    x = truth + se * rng.standard_normal(n)
    p = 2 * stats.norm.sf(np.abs(x) / se)
    rows = forecasts(lifts(x, se, p=p), CONF, {f"e{i}": 0.05 for i in range(n)})
    raw, shrunk = rows["forecast_raw"] - revenue(truth), rows["forecast_shrunk"] - revenue(truth)
    assert np.mean(shrunk**2) < 0.6 * np.mean(raw**2)
    sig = rows["significant"].to_numpy()
    corrected = rows["forecast_winners_curse"] - revenue(truth)
    assert abs(corrected[sig].mean()) < 0.8 * abs(raw[sig].mean())  # 36% less here
    assert np.mean(corrected[sig] ** 2) < np.mean(raw[sig] ** 2)


def revenue(lift):
    return lift * 0.5 * 0.8 * 2_000_000 * 0.75


def test_the_job_reads_the_lift_of_the_first_clustered_covariance(spark, tmp_path):
    """The analysis writes lift rows only for clustered covariances: with
    analysis.covariances [zone-jackknife, zone] the final lift is zone's (the jackknife's
    att is not a lift); with no clustered covariance the job is refused, naming the key,
    unless no experiment has concluded (a nightly run with nothing to forecast)."""
    day = dt.date(2026, 3, 14)
    money = ["forecast.platform_revenue={gmv: 2000000}", "forecast.platform_factor=0.5",
             "forecast.success_probability=0.8", "forecast.haircut=0.25"]  # fmt: skip
    config = load_config(None, [f"tables.base_path={tmp_path}", *money])
    catalog = Catalog(spark, config.tables)
    experiment = {"experiment_id": "e", "status": "concluded", "concluded_on": day,
                  "alpha": 0.05, "alpha_per_test": 0.025}  # fmt: skip
    write_records(catalog, "geo_experiments", [experiment], {"experiment_id": ["e"]})
    common = {"experiment_id": "e", "run_date": day, "metric": "gmv", "variant": "t1"}
    lift = {"term": "lift", "cov_type": "zone", "estimate": 0.03, "se": 0.01, "p_value": 0.2}
    results = [
        common | {"term": "att", "cov_type": "zone-jackknife", "estimate": 2.0, "se": 0.9},
        common | {"term": "att", "cov_type": "zone", "estimate": 2.0, "se": 0.8},
        common | lift,
    ]
    write_records(catalog, "geo_results", results, {"experiment_id": ["e"]})

    def run(*covariances: str) -> dict:
        analysis = config.analysis.model_copy(update={"covariances": list(covariances)})
        conf = config.model_copy(update={"analysis": analysis})
        return forecast_job.run(JobContext(spark, conf, catalog, day), argparse.Namespace())

    assert run("zone-jackknife", "zone")["experiments"] == 1
    row = read_pandas(str(tmp_path / "forecasts")).iloc[0]
    assert row["cov_type"] == "zone" and row["lift"] == 0.03
    assert row["forecast_raw"] == pytest.approx(0.03 * 0.5 * 0.8 * 2_000_000 * 0.75)
    for covariances in (("zone-jackknife",), ("robust", "unadjusted")):
        with pytest.raises(ConfigError, match=r"analysis\.covariances .*clustered covariance"):
            run(*covariances)
    running = experiment | {"status": "accepted", "concluded_on": None}
    write_records(catalog, "geo_experiments", [running], {"experiment_id": ["e"]})
    assert run("robust") == {"experiments": 0, "rows": 0}  # nothing to forecast: no refusal
