"""The cell-statistics TWFE estimator against linearmodels PanelOLS and pyfixest on user rows."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
import pyfixest as pf
import pytest
from linearmodels import PanelOLS

from sparklift.config import load_config
from sparklift.errors import InputError
from sparklift.geo.cells import cell_stats
from sparklift.quality.contract import ContractError
from sparklift.quality.spec import table_spec
from sparklift.stats.clusters import effective_clusters, within_cell_correlation
from sparklift.stats.ssc import FIXEST, LINEARMODELS
from sparklift.stats.twfe import CellStats, TwfeFit

RTOL = 1e-8


def panel(seed: int, zones: int, days: int, arms: int, balanced: bool) -> pd.DataFrame:
    """User-day rows: zone and day effects, zone-day shocks, heteroskedastic noise."""
    rng = np.random.default_rng(seed)
    users = []
    for g in range(zones):
        users += [(g * 1000 + u, g) for u in range(rng.integers(3, 30))]
    uz = pd.DataFrame(users, columns=["user", "zone"])
    df = uz.merge(pd.DataFrame({"day": np.arange(days)}), how="cross")
    if not balanced:
        df = df[rng.uniform(size=len(df)) < 0.6]
    arm = rng.permutation(np.arange(zones) % arms)
    post = df["day"] >= days * 2 // 3
    for a in range(1, arms):
        df[f"d{a}"] = ((arm[df["zone"]] == a) & post).astype(float)
    df["x1"] = rng.normal(size=len(df)) + 0.1 * df["zone"]
    df["x2"] = rng.exponential(size=len(df))
    za, ta = rng.normal(size=zones), rng.normal(size=days)
    shock = rng.normal(0, 0.3, (zones, days))
    noise = rng.normal(size=len(df)) * (1 + df["x2"])
    df["y"] = (
        za[df["zone"]]
        + ta[df["day"]]
        + shock[df["zone"], df["day"]]
        + 0.2 * df.get("d1", 0)
        + 0.5 * df["x1"]
        - 0.2 * df["x2"]
        + noise
    )
    return df.reset_index(drop=True)


def pandas_cells(df: pd.DataFrame, names: list[str], higher: tuple[str, ...] = ()) -> CellStats:
    """Cell statistics straight from the rows with pandas (independent of Spark), with the
    3rd and 4th order products of the ``higher`` columns."""
    keys = [df["zone"], df["day"]]
    n = df.groupby(keys).size()
    products = {
        combo: df[list(combo)].prod(axis=1).groupby(keys).sum().loc[n.index].to_numpy()
        for degree in (3, 4)
        for combo in itertools.combinations_with_replacement(sorted(higher), degree)
    }
    sums = df[names].groupby(keys).sum().loc[n.index].to_numpy()
    cross = np.stack(
        [
            np.stack(
                [(df[a] * df[b]).groupby(keys).sum().loc[n.index].to_numpy() for b in names], 1
            )
            for a in names
        ],
        1,
    )
    return CellStats(
        n.index.get_level_values(0).to_numpy(),
        n.index.get_level_values(1).to_numpy(),
        n.to_numpy(),
        tuple(names),
        sums,
        cross,
        products,
    )


def fit_cells(
    df: pd.DataFrame, effects: list[str], covariates: tuple[str, ...], higher: bool = False
) -> TwfeFit:
    cells = pandas_cells(df, [*covariates, "y", *effects], (*covariates, "y") if higher else ())
    # The effect dummies are constant within a cell: their cell mean is the dummy.
    d = np.column_stack([cells.sums[:, cells.index(e)] / cells.n for e in effects])
    return TwfeFit(cells, d, effects, "y", covariates)


def rel(a, b, floor: float = 1e-300) -> float:
    """Largest relative difference; below ``floor`` differences count as absolute."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), floor)))


CASES = [
    # arms, balanced, covariates, clusters
    (2, True, (), ("zone",)),
    (2, False, ("x1", "x2"), ("zone",)),
    (3, False, ("x1", "x2"), ("zone",)),
    (3, True, ("x1",), ("zone", "day")),
    (2, False, ("x1", "x2"), ("zone", "day")),
    (3, False, (), ("day",)),
]


@pytest.mark.parametrize("arms,balanced,covariates,clusters", CASES)
def test_equals_linearmodels_panelols(arms, balanced, covariates, clusters):
    df = panel(arms * 10 + balanced, zones=36, days=40, arms=arms, balanced=balanced)
    effects = [f"d{a}" for a in range(1, arms)]
    res = fit_cells(df, effects, covariates).result("+".join(clusters), LINEARMODELS)
    assert not res.psd_fixed
    pdf = df.set_index(["user", "day"])
    exog = pdf[[*effects, *covariates]]
    model = PanelOLS(pdf["y"], exog, time_effects=True, other_effects=pdf[["zone"]])
    cl = pd.DataFrame({"zone": pdf["zone"], "day": pdf.index.get_level_values(1)}, pdf.index)
    ref = model.fit(cov_type="clustered", clusters=cl[list(clusters)], debiased=True)
    names = res.names
    assert rel(res.params, ref.params[names]) < RTOL
    assert rel([res[n].se for n in names], ref.std_errors[names]) < RTOL
    assert rel([res[n].t for n in names], ref.tstats[names]) < RTOL
    assert rel([res[n].p_value for n in names], ref.pvalues[names]) < RTOL
    ci = ref.conf_int()
    assert rel([res[n].ci_low for n in names], ci.loc[names, "lower"]) < RTOL
    assert rel([res[n].ci_high for n in names], ci.loc[names, "upper"]) < RTOL
    assert res.n_obs == ref.nobs


@pytest.mark.parametrize("arms,balanced,covariates,clusters", CASES)
def test_equals_pyfixest(arms, balanced, covariates, clusters):
    df = panel(arms * 10 + balanced, zones=36, days=40, arms=arms, balanced=balanced)
    effects = [f"d{a}" for a in range(1, arms)]
    res = fit_cells(df, effects, covariates).result("+".join(clusters), FIXEST)
    rhs = " + ".join([*effects, *covariates])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pf.feols(
            f"y ~ {rhs} | zone + day", data=df, vcov={"CRV1": "+".join(clusters)}, fixef_tol=1e-14
        )
    names = res.names
    ci = ref.confint()
    assert rel(res.params, ref.coef()[names]) < RTOL
    assert rel([res[n].se for n in names], ref.se()[names]) < RTOL
    assert rel([res[n].t for n in names], ref.tstat()[names]) < RTOL
    # pyfixest computes p as 1 - cdf, exact only to ~1e-16 absolute
    assert rel([res[n].p_value for n in names], ref.pvalue()[names], floor=1e-6) < RTOL
    assert rel([res[n].ci_low for n in names], ci.loc[names].iloc[:, 0]) < RTOL
    assert rel([res[n].ci_high for n in names], ci.loc[names].iloc[:, 1]) < RTOL


def test_homoskedastic_equals_both_references():
    df = panel(5, zones=30, days=30, arms=2, balanced=False)
    fit = fit_cells(df, ["d1"], ("x1", "x2"))
    pdf = df.set_index(["user", "day"])
    exog = pdf[["d1", "x1", "x2"]]
    lm = PanelOLS(pdf["y"], exog, time_effects=True, other_effects=pdf[["zone"]]).fit()
    assert rel(fit.result("unadjusted").cov.diagonal() ** 0.5, lm.std_errors) < RTOL
    fx = pf.feols("y ~ d1 + x1 + x2 | zone + day", data=df, vcov="iid", fixef_tol=1e-14)
    res = fit.result("unadjusted", FIXEST)
    assert rel(res.cov.diagonal() ** 0.5, fx.se()) < RTOL
    assert rel([res[n].p_value for n in res.names], fx.pvalue(), floor=1e-6) < RTOL


@pytest.mark.parametrize("covariates", [(), ("x1", "x2")])
def test_heteroskedastic_robust_equals_both_references(covariates):
    df = panel(8, zones=25, days=30, arms=3, balanced=False)
    effects = ["d1", "d2"]
    fit = fit_cells(df, effects, covariates, higher=True)
    pdf = df.set_index(["user", "day"])
    exog = pdf[[*effects, *covariates]]
    lm = PanelOLS(pdf["y"], exog, time_effects=True, other_effects=pdf[["zone"]])
    ref = lm.fit(cov_type="robust")
    res = fit.result("robust", LINEARMODELS)
    assert rel([res[n].se for n in res.names], ref.std_errors[res.names]) < RTOL
    assert rel([res[n].p_value for n in res.names], ref.pvalues[res.names], floor=1e-6) < RTOL
    rhs = " + ".join([*effects, *covariates])
    fx = pf.feols(f"y ~ {rhs} | zone + day", data=df, vcov="hetero", fixef_tol=1e-14)
    res = fit.result("robust", FIXEST)
    assert rel([res[n].se for n in res.names], fx.se()[res.names]) < RTOL
    assert rel([res[n].p_value for n in res.names], fx.pvalue()[res.names], floor=1e-6) < RTOL


def test_robust_without_fourth_moments_says_what_to_collect():
    fit = fit_cells(panel(1, zones=6, days=6, arms=2, balanced=True), ["d1"], ())
    with pytest.raises(InputError, match="fourth moments"):
        fit.result("robust")


def test_every_zone_treated_is_a_clear_error():
    df = panel(3, zones=10, days=12, arms=2, balanced=True)
    df["d1"] = (df["day"] >= 8).astype(float)  # a pure time effect: absorbed by the days
    with pytest.raises(InputError, match="'d1' is absorbed by the zone and day effects"):
        fit_cells(df, ["d1"], ())


def test_spark_cell_statistics_equal_pandas(spark):
    df = panel(9, zones=8, days=6, arms=2, balanced=False)
    rows = spark.createDataFrame(
        df.rename(columns={"zone": "zone_id", "day": "date"})[["zone_id", "date", "x1", "y"]]
    )
    got = cell_stats(rows, ["x1", "y"], higher=[["x1", "y"]])
    want = pandas_cells(df, ["x1", "y"], ("x1", "y"))
    order = np.lexsort((got.day, got.zone))
    np.testing.assert_array_equal(got.zone[order], want.zone)
    np.testing.assert_allclose(got.n[order], want.n)
    np.testing.assert_allclose(got.sums[order], want.sums, rtol=1e-12)
    np.testing.assert_allclose(got.cross[order], want.cross, rtol=1e-12)
    assert sorted(got.higher) == sorted(want.higher) and len(got.higher) == 4 + 5
    for key, values in want.higher.items():
        np.testing.assert_allclose(got.higher[key][order], values, rtol=1e-12)


def test_with_effects_equals_a_fresh_fit():
    """Randomization inference swaps the effect columns of a fit; it must equal refitting."""
    df = panel(12, zones=20, days=15, arms=2, balanced=False)
    fit = fit_cells(df, ["d1"], ("x1", "x2"))
    cells = pandas_cells(df, ["x1", "x2", "y"])
    rng = np.random.default_rng(0)
    other = (rng.permutation(20)[cells.zone] < 10) & (cells.day >= 10)
    fresh = TwfeFit(cells, other[:, None].astype(float), ["d1"], "y", ("x1", "x2"))
    swapped = fit.with_effects(other[:, None].astype(float))
    for clusters in [("zone",), ("zone", "day")]:
        a, b = swapped.result("+".join(clusters)), fresh.result("+".join(clusters))
        np.testing.assert_allclose(a.params, b.params, rtol=1e-10)
        np.testing.assert_allclose(a.cov, b.cov, rtol=1e-9)


def test_null_metric_values_are_named(spark):
    rows = spark.createDataFrame(
        [(1, "2026-01-01", 1.0), (1, "2026-01-01", None), (2, "2026-01-02", None)],
        "zone_id int, date string, orders double",
    )
    with pytest.raises(InputError, match=r"null values in \{'orders': 2\}"):
        cell_stats(rows, ["orders"])


def test_nan_and_infinite_metric_values_are_named_with_an_example(spark):
    """Design and analyze aggregate user rows here; a NaN used to poison the sums."""
    rows = spark.createDataFrame(
        [
            (1, "2026-01-01", 1.0, 3),
            (2, "2026-01-02", float("nan"), 1),
            (3, "2026-01-02", 1.0, 2),
            (3, "2026-01-03", float("inf"), 2),
        ],
        "zone_id int, date string, gmv double, orders int",
    )
    with pytest.raises(
        InputError,
        match=r"table user_activity: NaN or infinite values in column\(s\) \{'gmv': 2\} "
        r"\(column: rows\), e\.g\. at zone_id=\d, date=2026-01-0\d",
    ):
        cell_stats(rows, ["gmv", "orders"])


def test_user_activity_checks_are_counted_in_the_same_pass(spark):
    """With user_activity's checks (design and analyze pass them), a negative count or a
    NaN is refused as the failed check of its date, with an example row; the null metric
    the estimators cannot take (no check of the table's) is still refused after them."""
    spec = table_spec("user_activity", load_config(None).quality)
    rows = spark.createDataFrame(
        [(1, "2026-01-01", 1.0, 3), (2, "2026-01-02", float("nan"), 1), (3, "2026-01-03", 2.0, -1)],
        "zone_id int, date string, gmv double, orders int",
    )
    message = (
        r"table user_activity of 2026-01-02: check range:gmv failed: 1 values not >= 0 or not "
        r"finite, e\.g\. at zone_id=2, date=2026-01-02 \(gmv=nan\) \(and 1 more failed check"
    )
    with pytest.raises(ContractError, match=message) as e:
        cell_stats(rows, ["gmv", "orders"], contract=spec)
    assert {d: [r.check_name for r in rs] for d, rs in e.value.failed.items()} == {
        "2026-01-02": ["range:gmv"],
        "2026-01-03": ["range:orders"],
    }
    nulls = spark.createDataFrame([(1, "2026-01-01", None)], "zone_id int, date string, orders int")
    with pytest.raises(InputError, match=r"null values in \{'orders': 1\}"):
        cell_stats(nulls, ["orders"], contract=spec)


def test_effective_clusters_equal_a_dense_regression_and_the_balanced_limit():
    """G* from cell statistics against the rows of the dense dummy regression (zone and day
    dummies, covariates): influence weights w_i = a'(X'X)^{-1} x_i, residuals e_i, the
    within-zone-day correlation rho and Carter et al.'s gamma_g, computed row by row."""
    df = panel(5, zones=14, days=9, arms=2, balanced=False)
    names = ["d1", "x1", "x2"]
    fit = fit_cells(df, names[:1], tuple(names[1:]))
    zone = pd.get_dummies(df["zone"], drop_first=False).to_numpy(float)
    day = pd.get_dummies(df["day"], drop_first=True).to_numpy(float)
    x = np.column_stack([df[names].to_numpy(), zone, day])
    coef, *_ = np.linalg.lstsq(x, df["y"].to_numpy(), rcond=None)
    rows = df.assign(w=np.linalg.solve(x.T @ x, x.T)[0], e=df["y"].to_numpy() - x @ coef)
    by_cell = rows.groupby(["zone", "day"])
    n = by_cell.size()
    s2 = (rows["e"] ** 2).mean()
    rho = ((by_cell["e"].sum() ** 2 - by_cell["e"].apply(lambda e: (e**2).sum())).sum()
           / (s2 * (n * (n - 1)).sum()))  # fmt: skip
    assert 0 < rho < 1 and within_cell_correlation(fit) == pytest.approx(rho, rel=1e-7)
    own = by_cell["w"].apply(lambda w: (w**2).sum())
    cell = (1 - rho) * own + rho * by_cell["w"].sum() ** 2
    gamma = cell.groupby(level="zone").sum().to_numpy()
    expected = len(gamma) / (1 + gamma.var() / gamma.mean() ** 2)
    assert effective_clusters(fit, "d1") == pytest.approx(expected, rel=1e-7)
    assert effective_clusters(fit, "d1") < 14
    # Zones that weigh alike: the same users in every zone on every day, half treated.
    even = df.groupby(["zone", "day"]).head(1)
    even = pd.concat([even.assign(user=even["user"] + k) for k in range(3)])
    even = even.assign(d1=((even["zone"] % 2 == 0) & (even["day"] >= 6)) * 1.0)
    assert effective_clusters(fit_cells(even, ["d1"], ()), "d1") == pytest.approx(14, rel=1e-9)


@pytest.mark.parametrize(
    "arms,balanced,covariates", [(2, True, ()), (3, False, ("x1", "x2")), (2, False, ("x1",))]
)
def test_zone_jackknife_equals_pyfixest_crv3(arms, balanced, covariates):
    """CV3 from cell statistics against pyfixest's CRV3, which refits the model without each
    zone: pyfixest scales sum_g d_g d_g' by its ssc, ours by (G - 1) / G (MacKinnon, Nielsen
    and Webb), both inferred with t(G - 1)."""
    df = panel(arms * 7 + balanced, zones=24, days=30, arms=arms, balanced=balanced)
    effects = [f"d{a}" for a in range(1, arms)]
    res = fit_cells(df, effects, covariates).result("zone-jackknife", FIXEST)
    rhs = " + ".join([*effects, *covariates])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pf.feols(
            f"y ~ {rhs} | zone + day",
            data=df,
            vcov={"CRV3": "zone"},
            ssc=pf.ssc(k_adj=False, G_adj=False),
            fixef_tol=1e-14,
        )
    names, g = res.names, df["zone"].nunique()
    assert rel(res.params, ref.coef()[names]) < RTOL
    assert rel([res[n].se for n in names], np.sqrt((g - 1) / g) * ref.se()[names]) < RTOL
    assert res.df == g - 1 and res.cov_type == "zone-jackknife"
    cv1 = fit_cells(df, effects, covariates).result("zone", FIXEST)
    assert all(res[n].se != cv1[n].se for n in names)


def test_zone_jackknife_names_a_zone_it_cannot_leave_out():
    """A variant with one zone: without it the effect is not identified."""
    df = panel(5, zones=12, days=20, arms=2, balanced=True)
    df["d1"] = ((df["zone"] == 3) & (df["day"] >= 13)).astype(float)
    fit = fit_cells(df, ["d1"], ())
    assert fit.result("zone", FIXEST)["d1"].se > 0  # the clustered covariance exists
    with pytest.raises(InputError, match=r"cannot leave zone 3 out: .*a variant with one zone"):
        fit.result("zone-jackknife", FIXEST)


def test_zone_jackknife_names_a_day_only_the_zone_left_out_has():
    """A day with rows in one zone only: without that zone the day's dummy, not a variant's
    effect, is unidentified, and the message says so."""
    df = panel(5, zones=12, days=20, arms=2, balanced=True)
    df = df[(df["day"] != 7) | (df["zone"] == 5)]
    fit = fit_cells(df, ["d1"], ())
    with pytest.raises(InputError, match=r"cannot leave zone 5 out: only zone 5 has rows on 7;"):
        fit.result("zone-jackknife", FIXEST)
