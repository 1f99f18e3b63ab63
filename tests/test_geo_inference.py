"""Few-cluster inference, relative lift and event study against independent computations."""

from __future__ import annotations

import datetime as dt
import warnings

import numpy as np
import pandas as pd
import pyfixest as pf
import pytest
from scipy import stats

from sparklift.config import load_config
from sparklift.geo.analysis import analyze
from sparklift.geo.experiment import ExperimentConfig
from sparklift.post import wild_bootstrap
from sparklift.post.event_study import event_study
from sparklift.post.lift import relative_lift
from sparklift.post.wild_bootstrap import wild_cluster_bootstrap
from sparklift.stats.ssc import FIXEST
from tests.test_twfe import fit_cells, pandas_cells, panel

START = dt.date(2026, 1, 1)


def brute_force_wcr_p(df: pd.DataFrame, covariates: str, draws: int, seed: int, g: int) -> float:
    """WCR by refitting pyfixest (fixed effects as in the model) on every bootstrap sample."""
    rng = np.random.default_rng(seed)
    if g < 12:
        v = rng.choice(wild_bootstrap.WEBB, size=(draws, g))
    else:
        v = rng.choice([-1.0, 1.0], size=(draws, g))
    ssc = pf.ssc(k_adj=False, G_adj=False)
    kw = {"vcov": {"CRV1": "zone"}, "fixef_tol": 1e-14, "ssc": ssc}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_obs = pf.feols(f"y ~ d1 + {covariates} | zone + day", data=df, **kw).tstat()["d1"]
        restricted = pf.feols(f"y ~ {covariates} | zone + day", data=df, fixef_tol=1e-14)
        fitted = restricted.predict()
        resid = df["y"] - fitted
        zone = pd.factorize(df["zone"], sort=True)[0]
        t = [
            pf.feols(
                f"ys ~ d1 + {covariates} | zone + day",
                data=df.assign(ys=fitted + v[d][zone] * resid),
                **kw,
            ).tstat()["d1"]
            for d in range(draws)
        ]
    return float(np.mean(np.abs(t) >= abs(t_obs) - 1e-12))


@pytest.mark.parametrize("zones,linear_map", [(30, True), (30, False), (9, True)])
def test_wild_cluster_bootstrap_equals_refitting(zones, linear_map, monkeypatch):
    if not linear_map:
        monkeypatch.setattr(wild_bootstrap, "LINEAR_MAP_MAX", 0)
    df = panel(zones, zones=zones, days=16, arms=2, balanced=False)
    fit = fit_cells(df, ["d1"], ("x1",))
    got = wild_cluster_bootstrap(fit, "d1", draws=99, seed=3)
    assert got.weights == ("webb" if zones < 12 else "rademacher")
    assert got.p_value == brute_force_wcr_p(df, "x1", 99, 3, zones)
    assert got.ci_low < fit.params[0] < got.ci_high


def test_wild_cluster_bootstrap_of_a_constant_outcome_is_nan():
    # Balanced cells of a constant y: every residual and so the standard error is exactly 0.
    df = panel(2, zones=8, days=12, arms=2, balanced=True).assign(y=5.0)
    got = wild_cluster_bootstrap(fit_cells(df, ["d1"], ()), "d1", draws=99, seed=3)
    assert np.isnan([got.p_value, got.ci_low, got.ci_high]).all()


def spec(**over) -> ExperimentConfig:
    base = load_config().design.model_dump() | {
        "experiment_id": "x",
        "variants": ["control", "t1", "t2"],
        "zones_per_variant": 10,
        "start": START,
        "end": START + dt.timedelta(days=8),
        "pre_days": 18,
        "metrics": [{"name": "y"}],
        "covariates": ["x1"],
        "seed": 1,
        "convention": "fixest",  # so that pyfixest's covariance is the reference
    }
    return ExperimentConfig.model_validate(base | over)


def test_analysis_rows_equal_row_level_references():
    # 27 days, post from day 18 = START: event weeks -3, -2, -1 (reference), 0, 1.
    df = panel(21, zones=30, days=27, arms=3, balanced=False)
    df["date"] = pd.Timestamp(START - dt.timedelta(days=18)) + pd.to_timedelta(df["day"], "D")
    arm = df.groupby("zone")[["d1", "d2"]].max()
    variant = np.where(arm["d1"] > 0, "t1", np.where(arm["d2"] > 0, "t2", "control"))
    assignment = pd.DataFrame({"zone_id": arm.index, "variant": variant, "group_id": 1})
    cells = pandas_cells(df.assign(day=df["date"]), ["x1", "y"])
    settings = load_config().analysis.model_copy(
        update={"ri_draws": 99, "wild_bootstrap_draws": 99, "covariances": ["zone"]}
    )
    rows = pd.DataFrame(analyze(cells, assignment, spec(), settings, "y"))
    kw = {"vcov": {"CRV1": "zone"}, "fixef_tol": 1e-14}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pf.feols("y ~ d1 + d2 + x1 | zone + day", data=df, **kw)
    att = rows[rows.term == "att"].set_index("variant").loc[["t1", "t2"]]
    np.testing.assert_allclose(att["estimate"], ref.coef()[["d1", "d2"]], rtol=1e-8)
    np.testing.assert_allclose(att["se"], ref.se()[["d1", "d2"]], rtol=1e-8)
    assert att["ri_p"].between(0.01, 1).all() and att["wild_p"].between(0, 1).all()

    # Relative lift: a row-level delta method with explicit dummies.
    zone_variant = assignment.set_index("zone_id")["variant"]
    in_cp = ((zone_variant.loc[df["zone"]].to_numpy() == "control") & (df["day"] >= 18)).to_numpy()
    m = df.loc[in_cp, "y"].mean()
    dummies = pd.get_dummies(df[["zone", "day"]].astype(str), drop_first=True).astype(float)
    design = np.column_stack([df[["d1", "d2", "x1"]], np.ones(len(df)), dummies])
    beta, *_ = np.linalg.lstsq(design, df["y"], rcond=None)
    e = (df["y"] - design @ beta).to_numpy()
    psi_b = (design * e[:, None]) @ np.linalg.pinv(design.T @ design)[:3].T
    psi_m = np.where(in_cp, (df["y"] - m) / in_cp.sum(), 0.0)
    n, g, t = len(df), df["zone"].nunique(), df["day"].nunique()
    factor = (n - 1) / (n - (3 + t)) * g / (g - 1)  # fixest CRV1, zone FE nested
    lift = rows[rows.term == "lift"].set_index("variant")
    for j, v in enumerate(["t1", "t2"]):
        sums = pd.DataFrame({"b": psi_b[:, j], "m": psi_m}).groupby(df["zone"]).sum().to_numpy()
        grad = np.array([1 / m, -beta[j] / m**2])
        assert lift.loc[v, "estimate"] == pytest.approx(beta[j] / m, rel=1e-8)
        assert lift.loc[v, "se"] == pytest.approx(
            np.sqrt(grad @ (sums.T @ sums * factor) @ grad), rel=1e-8
        )

    # Event study and the joint pre-trend test against pyfixest with the same dummies.
    week = (df["day"] - 18) // 7
    cols = {}
    for v in ("t1", "t2"):
        treated = zone_variant.loc[df["zone"]].to_numpy() == v
        for w in (-3, -2, 0, 1):
            cols[f"e_{v}_{w + 10}"] = (treated & (week == w)).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        es = pf.feols(f"y ~ {' + '.join(cols)} + x1 | zone + day", data=df.assign(**cols), **kw)
    weeks = rows[rows.term == "week"]
    assert len(weeks) == 8
    for r in weeks.itertuples():
        name = f"e_{r.variant}_{int(r.event_week) + 10}"
        assert r.estimate == pytest.approx(es.coef()[name], rel=1e-7)
        assert r.se == pytest.approx(es.se()[name], rel=1e-7)
    names = list(es.coef().index)
    for v in ("t1", "t2"):
        pre = [names.index(f"e_{v}_7"), names.index(f"e_{v}_8")]
        b = es.coef().to_numpy()[pre]
        f = b @ np.linalg.solve(es._vcov[np.ix_(pre, pre)], b) / 2
        assert att.loc[v, "pretrend_p"] == pytest.approx(stats.f.sf(f, 2, g - 1), rel=1e-6)


def few_zone_rows(pre_days: int, seed: int) -> pd.DataFrame:
    """User-day rows of 6 zones (3 control, 3 t1), 4 users a cell, zone-day shocks and a
    pre-period drift of the treated zones; 14 post days from START."""
    rng = np.random.default_rng(seed)
    days = np.arange(-pre_days, 14)
    zone, day = np.repeat(np.arange(6), len(days) * 4), np.tile(np.repeat(days, 4), 6)
    shock = rng.normal(0, 0.3, (6, len(days)))[zone, day + pre_days]
    drift = 0.01 * (zone >= 3) * day
    y = rng.normal(size=6)[zone] + rng.normal(size=len(days))[day + pre_days] + shock + drift
    date = pd.Timestamp(START) + pd.to_timedelta(day, "D")
    return pd.DataFrame({"zone": zone, "day": date, "y": y + rng.normal(size=len(zone))})


def row_level_pretrend(df: pd.DataFrame) -> tuple[float, int]:
    """Wald F of the treated zones' pre-weeks (< -1) with explicit dummies, the zone-clustered
    sandwich scaled as linearmodels does (N / (N - columns)), a pseudo-inverse; and its rank."""
    week = (df["day"] - pd.Timestamp(START)).dt.days // 7
    treated = df["zone"].to_numpy() >= 3
    weeks = [w for w in sorted(week.unique()) if w != -1]
    cols = np.column_stack([treated & (week == w) for w in weeks]).astype(float)
    dummies = pd.get_dummies(df[["zone", "day"]].astype(str), drop_first=True).astype(float)
    x = np.column_stack([cols, np.ones(len(df)), dummies])
    bread = np.linalg.pinv(x.T @ x)
    beta = bread @ x.T @ df["y"].to_numpy()
    scores = pd.DataFrame(x * (df["y"].to_numpy() - x @ beta)[:, None]).groupby(df["zone"]).sum()
    n = len(df)
    cov = bread @ scores.T.to_numpy() @ scores.to_numpy() @ bread * n / (n - x.shape[1])
    pre = [i for i, w in enumerate(weeks) if w < -1]
    v = cov[np.ix_(pre, pre)]
    tol = 1e-8 * np.linalg.norm(v, 2)
    rank = np.linalg.matrix_rank(v, tol=tol)
    b = beta[pre]
    return float(b @ np.linalg.pinv(v, rcond=1e-8) @ b) / rank, rank


@pytest.mark.parametrize("pre_days,full_rank", [(28, True), (56, False)])
def test_pretrend_f_is_referred_to_fewest_clusters(pre_days, full_rank):
    # Under linearmodels the t df is N - k; the joint test must use G - 1 = 5 anyway. With 7
    # pre-weeks and 6 zones the pre-week covariance is singular: its rank replaces q.
    df = few_zone_rows(pre_days, seed=4)
    variant_of_zone = {g: "t1" if g >= 3 else "control" for g in range(6)}
    experiment = spec(
        variants=["control", "t1"],
        zones_per_variant=3,
        end=START + dt.timedelta(days=13),
        pre_days=pre_days,
        covariates=[],
        convention="linearmodels",
    )
    got = event_study(pandas_cells(df, ["y"]), variant_of_zone, experiment, "y", "zone")
    f, rank = row_level_pretrend(df)
    q = pre_days // 7 - 1
    assert (rank == q) == full_rank
    assert got.pretrend_p["t1"] == pytest.approx(stats.f.sf(f, rank, 5), rel=1e-6)


def test_two_way_lift_of_an_indefinite_covariance_is_psd_fixed_with_its_own_flag():
    """zone+day: V_zone + V_day - V_zone-day of (b, m) can be indefinite, g' V g < 0. The
    lift's V then has its negative eigenvalues set to zero (Cameron, Gelbach and Miller
    2011, as fixest does), by numpy's eigh on row-level scores here, and is flagged on its
    own: the coefficients' covariance of this fit needs no fix."""
    df = panel(25, zones=6, days=6, arms=2, balanced=True)  # post: days 4 and 5
    fit = fit_cells(df, ["d1"], ())
    cells = fit.cells
    treated = set(df.loc[df["d1"] > 0, "zone"])
    base = ~np.isin(cells.zone, list(treated)) & (cells.day >= 4)
    got = relative_lift(fit, "d1", base, "zone+day", FIXEST, 0.05)

    in_cp = (~df["zone"].isin(treated) & (df["day"] >= 4)).to_numpy()
    m = df.loc[in_cp, "y"].mean()
    dummies = pd.get_dummies(df[["zone", "day"]].astype(str), drop_first=True).astype(float)
    design = np.column_stack([df["d1"], np.ones(len(df)), dummies])
    beta, *_ = np.linalg.lstsq(design, df["y"], rcond=None)
    e = (df["y"] - design @ beta).to_numpy()
    psi_b = (design * e[:, None]) @ np.linalg.pinv(design.T @ design)[0]
    psi = pd.DataFrame({"b": psi_b, "m": np.where(in_cp, (df["y"] - m) / in_cp.sum(), 0.0)})

    def meat(*keys):
        s = psi.groupby([df[k] for k in keys]).sum().to_numpy()
        return s.T @ s

    n = len(df)
    factor = (n - 1) / (n - 2) * 6 / 5  # fixest CRV1, both fixed effects nested: k = K + 1
    v = (meat("zone") + meat("day") - meat("zone", "day")) * factor
    grad = np.array([1 / m, -beta[0] / m**2])
    assert grad @ v @ grad < 0  # the case: the raw variance of the lift is negative
    w, u = np.linalg.eigh(v)
    se = np.sqrt(grad @ (u * np.maximum(w, 0)) @ u.T @ grad)
    assert got.estimate == pytest.approx(beta[0] / m, rel=1e-8)
    assert got.se == pytest.approx(se, rel=1e-8) and got.se > 0
    q = stats.t.isf(0.025, 5)  # t(G_min - 1)
    assert got.ci_high - got.ci_low == pytest.approx(2 * q * se, rel=1e-8)
    assert got.p_value == pytest.approx(2 * stats.t.sf(abs(beta[0] / m) / se, 5), rel=1e-8)
    assert got.psd_fixed and not fit.result("zone+day", FIXEST).psd_fixed
    # One-way clustering needs no fix.
    assert not relative_lift(fit, "d1", base, "zone", FIXEST, 0.05).psd_fixed
