"""CUPED and CUPAC covariates: the Spark path (window aggregation, CUPAC's model, the join
into cell statistics, the TWFE fit) against pyfixest and linearmodels on the user-day rows
with the same user covariate computed independently in pandas; and the refused inputs."""

from __future__ import annotations

import datetime as dt
import warnings

import numpy as np
import pandas as pd
import pyfixest as pf
import pytest
from linearmodels import PanelOLS
from pydantic import ValidationError
from sklearn.base import clone

from sparklift.config import load_config
from sparklift.errors import InputError
from sparklift.geo.adjustment import (
    NO_HISTORY,
    check_pretreatment,
    covariate_column,
    fit_models,
    metric_covariates,
    user_covariates,
)
from sparklift.geo.cells import cell_stats
from sparklift.geo.did import effect_columns
from sparklift.geo.experiment import ExperimentConfig
from sparklift.predict.history import feature_names
from sparklift.predict.learners import regressor
from sparklift.stats.ssc import FIXEST, LINEARMODELS
from sparklift.stats.twfe import TwfeFit

RTOL = 1e-8
D0 = dt.date(2026, 1, 1)
PRE_START = D0 + dt.timedelta(days=30)  # days 0-29: history; 30-49 pre; 50-69 post
START = D0 + dt.timedelta(days=50)


def user_rows(seed: int) -> pd.DataFrame:
    """User-days with activity: a persistent user level (what the covariate predicts),
    zone and day effects, 25% of users new after the history window, an effect of 0.3."""
    rng = np.random.default_rng(seed)
    zones = 24
    users = pd.DataFrame({"user_id": np.arange(1, 1201, dtype=np.int64)})
    users["zone_id"] = rng.integers(1, zones + 1, len(users)).astype(np.int32)
    users["level"] = rng.gamma(2.0, 1.0, len(users))
    users["p"] = rng.uniform(0.1, 0.6, len(users))
    users["joined"] = np.where(rng.uniform(size=len(users)) < 0.25, 30, 0)
    df = users.merge(pd.DataFrame({"day": np.arange(70)}), how="cross")
    df = df[(df["day"] >= df["joined"]) & (rng.uniform(size=len(df)) < df["p"])].copy()
    treated = df["zone_id"] % 2 == 0
    zone_fx, day_fx = rng.normal(0, 0.5, zones + 1), rng.normal(0, 0.3, 70)
    df["orders"] = (
        df["level"]
        + zone_fx[df["zone_id"]]
        + day_fx[df["day"]]
        + 0.3 * (treated & (df["day"] >= 50))
        + rng.normal(0, 1.0, len(df)) * (1 + 0.3 * df["level"])
    )
    df["date"] = [D0 + dt.timedelta(days=int(d)) for d in df["day"]]
    return df[["date", "day", "user_id", "zone_id", "orders"]].reset_index(drop=True)


def spec_of(method: str, **over) -> ExperimentConfig:
    defaults = load_config(None).design
    return ExperimentConfig.model_validate(
        defaults.model_dump()
        | {
            "experiment_id": "adj",
            "variants": ["control", "treatment"],
            "zones_per_variant": 12,
            "start": START,
            "end": START + dt.timedelta(days=19),
            "pre_days": 20,
            "metrics": [{"name": "orders"}],
            "seed": 1,
            "variance_reduction": method,
            "covariate_window": {"days": 15},
            "cupac": {
                "learner": "gbm",
                "learner_params": {"max_iter": 50},
                "features": [],
                "horizon_days": 15,
                "max_train_users": 100000,
                "seed": 0,
            },
        }
        | over
    )


def sparklift_fit(spark, df: pd.DataFrame, spec: ExperimentConfig):
    """The covariates through sparklift's Spark path, and the fit on the cells."""
    sdf = spark.createDataFrame(df.drop(columns="day"))
    zone_ids = sorted(df["zone_id"].unique())
    zones = spark.createDataFrame([(int(z),) for z in zone_ids], "zone_id int")

    def read(first: dt.date, last: dt.date):
        return sdf.where((sdf["date"] >= first) & (sdf["date"] <= last))

    with user_covariates(read, spec, zones, PRE_START) as covs:
        rows = covs.join(read(PRE_START, spec.end))
        cells = cell_stats(rows, ["orders", *covs.columns])
        models = covs.models
    variant_of_zone = {z: "treatment" if z % 2 == 0 else "control" for z in range(1, 25)}
    effects, names = effect_columns(cells, variant_of_zone, ["treatment"], START)
    covariates = metric_covariates(spec, "orders", cells)
    return TwfeFit(cells, effects, names, "orders", covariates), covs, models


def reference_rows(df: pd.DataFrame, spec: ExperimentConfig, models) -> pd.DataFrame:
    """Analysis rows with the covariate computed in pandas: the window's mean per active
    day (CUPED), or the model's prediction from pandas-computed history features (CUPAC)."""
    first, last = spec.covariate_days(PRE_START)
    window = df[(df["date"] >= first) & (df["date"] <= last)]
    g = window.groupby("user_id")
    users = pd.DataFrame({"user_id": df["user_id"].unique()})
    hist = pd.DataFrame(
        {
            "active_days": g.size(),
            "recency_days": g["date"].max().map(lambda d: (last - d).days),
            "sum__orders": g["orders"].sum(),
            "mean__orders": g["orders"].mean(),
        }
    )
    users = users.merge(hist, left_on="user_id", right_index=True, how="left")
    has = users["active_days"].notna()
    users = users.fillna({"active_days": 0.0, "sum__orders": 0.0, "mean__orders": 0.0})
    users["recency_days"] = users["recency_days"].fillna((last - first).days + 2)
    col = covariate_column(spec.variance_reduction, "orders")
    if spec.variance_reduction == "cuped":
        users[col] = users["mean__orders"]
    else:
        X = users[feature_names(["orders"])].to_numpy(dtype=float)
        users[col] = models["orders"].predict(X)
    users[NO_HISTORY] = (~has).astype(float)
    out = df[(df["date"] >= PRE_START) & (df["date"] <= spec.end)]
    out = out.merge(users[["user_id", col, NO_HISTORY]], on="user_id")
    out["d"] = ((out["zone_id"] % 2 == 0) & (out["date"] >= START)).astype(float)
    return out


@pytest.mark.parametrize("method", ["cuped", "cupac"])
def test_adjusted_fit_equals_pyfixest_and_linearmodels(spark, method):
    df = user_rows(7)
    spec = spec_of(method)
    fit, covs, models = sparklift_fit(spark, df, spec)
    ref = reference_rows(df, spec, models)
    col = covariate_column(method, "orders")
    assert fit.names == ["treatment", col, NO_HISTORY]
    assert 0.15 < ref[NO_HISTORY].mean() < 0.5  # the new users are flagged
    if method == "cupac":
        assert covs.trained_through < PRE_START and covs.fit_r2["orders"] > 0.1
    for clusters in ("zone", "zone+day"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fx = pf.feols(
                f"orders ~ d + {col} + {NO_HISTORY} | zone_id + day",
                data=ref,
                vcov={"CRV1": clusters.replace("zone", "zone_id")},
                fixef_tol=1e-14,
            )
        ours = fit.result(clusters, FIXEST)["treatment"]
        assert ours.estimate == pytest.approx(fx.coef()["d"], rel=RTOL)
        assert ours.se == pytest.approx(fx.se()["d"], rel=RTOL)
        pdf = ref.set_index(["user_id", "day"])
        lm = PanelOLS(
            pdf["orders"],
            pdf[["d", col, NO_HISTORY]],
            time_effects=True,
            other_effects=pdf[["zone_id"]],
        )
        cl = pd.DataFrame({"zone": pdf["zone_id"], "day": pdf.index.get_level_values(1)})
        res = lm.fit(cov_type="clustered", clusters=cl[clusters.split("+")], debiased=True)
        ours = fit.result(clusters, LINEARMODELS)["treatment"]
        assert ours.estimate == pytest.approx(res.params["d"], rel=RTOL)
        assert ours.se == pytest.approx(res.std_errors["d"], rel=RTOL)
    # The adjustment pays: the zone-clustered SE falls against the unadjusted fit.
    plain = TwfeFit(fit.cells, fit.effects, ["treatment"], "orders")
    assert fit.result("zone")["treatment"].se < plain.result("zone")["treatment"].se


def test_a_covariate_window_reaching_the_pre_period_is_refused():
    with pytest.raises(ValidationError, match=r"covariate_window.end 2026-01-31 is not before"):
        spec_of("cuped", covariate_window={"days": 15, "end": PRE_START})
    spec = spec_of("cupac")
    with pytest.raises(InputError, match="reaches into the analysis window starting 2026-01-31"):
        check_pretreatment(spec, PRE_START, PRE_START, "CUPAC model's training data")


def test_no_user_with_history_is_a_named_error(spark):
    df = user_rows(3)
    df = df[df["date"] >= PRE_START]  # the data begins with the pre-period
    with pytest.raises(InputError, match="no rows on 2026-01-16, the first day of the cuped"):
        sparklift_fit(spark, df, spec_of("cuped"))
    with pytest.raises(InputError, match="no rows on 2026-01-01, the first day of the CUPAC"):
        sparklift_fit(spark, df, spec_of("cupac"))
    # Rows on the window's first day but no analysis user with history there.
    only = df[df["date"] >= PRE_START].copy()
    first_day = only.head(1).assign(date=D0 + dt.timedelta(days=15), user_id=10**9)
    with pytest.raises(InputError, match="no user of its analysis rows has activity"):
        sparklift_fit(spark, pd.concat([first_day, only]), spec_of("cuped"))


def test_cupac_fits_the_same_models_whatever_the_rows_order(spark):
    """A sample of at most max_train_users: the users of the smallest hashes, sorted, so the
    same data in another row order and partitioning fit the same models (on a cluster the
    order after a shuffle varies from run to run); a pipeline learner gets its weights."""
    df = user_rows(5)
    spec = spec_of("cupac", cupac=spec_of("cupac").cupac.model_dump() | {"max_train_users": 300})
    shuffled = df.sample(frac=1.0, random_state=1).reset_index(drop=True)
    X = np.random.default_rng(0).uniform(0, 10, size=(50, len(feature_names(["orders"]))))
    a, b = (sparklift_fit(spark, frame, spec)[2]["orders"].predict(X) for frame in (df, shuffled))
    np.testing.assert_allclose(a, b, rtol=1e-12)  # (sums in another order: the last bit)


def test_cupac_weights_reach_a_pipeline_learner():
    """The linear learner is a scaler-and-ridge pipeline: each user's weight (its active
    days) must reach the ridge, as scikit-learn's routing of ``ridge__sample_weight`` does."""
    conf = spec_of("cupac").cupac.model_copy(update={"learner": "linear", "learner_params": {}})
    names = feature_names(["orders"])
    rng = np.random.default_rng(2)
    X = rng.uniform(0, 5, size=(400, len(names)))
    w = rng.integers(1, 15, 400).astype(float)
    y = X[:, 0] + np.where(w > 7, 3.0, -3.0) * X[:, 1] + rng.normal(size=400)
    pdf = pd.DataFrame(X, columns=names).assign(y__orders=y, weight=w)
    models, _ = fit_models(pdf, names, ["orders"], conf)
    held = np.random.default_rng(conf.seed).uniform(size=400) < 0.2
    base = regressor("linear", {}, conf.seed, "cupac.learner")
    last = base.steps[-1][0]
    weighted = clone(base).fit(X[~held], y[~held], **{f"{last}__sample_weight": w[~held]})
    np.testing.assert_allclose(models["orders"].predict(X), weighted.predict(X), rtol=1e-10)
    unweighted = clone(base).fit(X[~held], y[~held]).predict(X)
    assert np.abs(models["orders"].predict(X) - unweighted).max() > 0.1
