"""Geo design building blocks against known answers and independent references."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from sparklift.config import load_config
from sparklift.errors import InputError
from sparklift.geo.design import Matching, design_checks, match_zones, randomize
from sparklift.geo.experiment import ExperimentConfig
from sparklift.geo.matching import distances, greedy_groups, pca
from sparklift.stats.equivalence import tost_p
from sparklift.stats.power import mde, power_at
from sparklift.stats.twfe import CellStats, TwfeFit


def test_greedy_adds_the_zone_with_the_least_sum_of_distances():
    # 0-1 is the closest pair. Zone 2 is nearest to zone 0 but far from zone 1, so the sum
    # rule takes zone 3 (5 + 5 = 10 < 2 + 10). Then 2-4 pair up with 5, and 6 is left over.
    d = np.array(
        [
            [0, 1, 2, 5, 9, 9, 9],
            [1, 0, 10, 5, 9, 9, 9],
            [2, 10, 0, 8, 3, 4, 9],
            [5, 5, 8, 0, 9, 9, 9],
            [9, 9, 3, 9, 0, 6, 9],
            [9, 9, 4, 9, 6, 0, 9],
            [9, 9, 9, 9, 9, 9, 0],
        ],
        dtype=float,
    )
    assert greedy_groups(d, 3) == [[0, 1, 3], [2, 4, 5]]
    # Pairs: 0-1 (1), then among 2..6 the closest is 2-4 (3), then 3-5 (9, first tie).
    assert greedy_groups(d, 2) == [[0, 1], [2, 4], [3, 5]]


def naive_greedy(d: np.ndarray, n: int) -> list[list[int]]:
    """The algorithm as worded, scanning every free pair for every group: O(G^3)."""
    free = set(range(len(d)))
    groups = []
    while len(free) >= n:
        pairs = [(d[i, j], i, j) for i in sorted(free) for j in sorted(free) if i < j]
        _, i, j = min(pairs)
        group = [i, j]
        while len(group) < n:
            rest = sorted(free - set(group))
            group.append(min(rest, key=lambda c: (sum(d[m, c] for m in group), c)))
        free -= set(group)
        groups.append(group)
    return groups


@pytest.mark.parametrize("n", [2, 3, 4])
def test_greedy_equals_the_naive_algorithm(n):
    pts = np.random.default_rng(n).normal(size=(41, 5))
    d = distances(pts)
    assert greedy_groups(d, n) == naive_greedy(d, n)


def test_greedy_on_points_on_a_line():
    x = np.array([0.0, 0.5, 3.0, 20.0, 21.0, 25.0, 100.0])
    assert greedy_groups(np.abs(x[:, None] - x[None, :]), 3) == [[0, 1, 2], [3, 4, 5]]


def test_randomize_gives_every_group_each_variant_once_and_is_seeded():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(40, 3))
    d = distances(pts)
    m = Matching(np.arange(101, 141), d, np.ones(3) / 3, greedy_groups(d, 3))
    a = randomize(m, ["c", "t1", "t2"], 5, seed=11)
    assert len(a) == 15 and a["group_id"].nunique() == 5
    assert a.groupby("group_id")["variant"].apply(sorted).tolist() == [["c", "t1", "t2"]] * 5
    pd.testing.assert_frame_equal(a, randomize(m, ["c", "t1", "t2"], 5, seed=11))
    assert not a.equals(randomize(m, ["c", "t1", "t2"], 5, seed=12))
    with pytest.raises(InputError, match="zones_per_variant 14"):
        randomize(m, ["c", "t1", "t2"], 14, seed=1)


def test_pca_equals_scikit_learn():
    rng = np.random.default_rng(3)
    latent = rng.normal(size=(200, 4))
    x = latent @ rng.normal(size=(4, 30)) + 0.3 * rng.normal(size=(200, 30))
    x[:, 7] = 5.0  # a constant feature is dropped, as scaling it is undefined
    got = pca(x, 6)
    assert 7 not in got.kept_columns and len(got.kept_columns) == 29
    z = StandardScaler().fit_transform(np.delete(x, 7, axis=1))
    ref = PCA(n_components=6, svd_solver="full").fit(z)
    np.testing.assert_allclose(
        got.explained_variance_ratio, ref.explained_variance_ratio_, rtol=1e-10
    )
    np.testing.assert_allclose(got.scores, ref.transform(z), atol=1e-9)
    np.testing.assert_allclose(
        distances(got.scores),
        np.linalg.norm(got.scores[:, None] - got.scores[None], axis=2),
        atol=1e-9,
    )


def test_tost_equals_two_one_sided_scipy_t_tests():
    rng = np.random.default_rng(5)
    for shift, margin in [(0.1, 0.4), (0.35, 0.3), (-0.2, 0.5)]:
        x = rng.normal(shift, 1.0, 60)
        lower = stats.ttest_1samp(x, -margin, alternative="greater").pvalue
        upper = stats.ttest_1samp(x, margin, alternative="less").pvalue
        se = x.std(ddof=1) / np.sqrt(len(x))
        assert tost_p(x.mean(), se, margin, len(x) - 1) == pytest.approx(
            max(lower, upper), rel=1e-10
        )


def simulated_cells(rng: np.random.Generator, zones: int, days: int, effect: float, treated):
    """Cells of a panel with zone and day effects, persistent zone-day shocks and user noise."""
    size = np.maximum(5, rng.lognormal(3.0, 0.8, zones)).round()
    z, t = np.meshgrid(np.arange(zones), np.arange(days), indexing="ij")
    n = rng.poisson(size[:, None] * np.ones(days)) + 1.0
    shock = np.zeros((zones, days))
    for d in range(days):  # AR(1) zone shocks: what makes clustering by zone necessary
        shock[:, d] = (0.6 * shock[:, d - 1] if d else 0) + rng.normal(0, 0.15, zones)
    mean = rng.normal(2, 0.5, zones)[:, None] + np.sin(np.arange(days) / 3)[None, :] + shock
    mean = mean + effect * (treated[z] & (t >= days // 2))
    s = n * mean + np.sqrt(n) * rng.normal(0, 1.0, n.shape)
    cross = (s**2 / n + n)[..., None, None]
    return CellStats(
        z.ravel(), t.ravel(), n.ravel(), ("y",), s.reshape(-1, 1), cross.reshape(-1, 1, 1)
    )


def test_mde_gives_the_nominal_power_in_simulation():
    rng = np.random.default_rng(11)
    zones, days, alpha, power = 40, 28, 0.05, 0.8

    def fits(effect: float, reps: int):
        out = []
        for _ in range(reps):
            treated = rng.permutation(zones) < zones // 2
            cells = simulated_cells(rng, zones, days, effect, treated)
            d = (treated[cells.zone] & (cells.day >= days // 2)).astype(float)[:, None]
            out.append(TwfeFit(cells, d, ["b"], "y").result("zone", alpha=alpha))
        return out

    null = fits(0.0, 300)
    se = np.mean([r["b"].se for r in null])
    effect = mde(se, alpha, power, null[0].df)
    rejected = np.mean([r["b"].p_value < alpha for r in fits(effect, 300)])
    assert abs(rejected - power) < 0.07, (effect, rejected)
    assert abs(np.mean([r["b"].p_value < alpha for r in null]) - alpha) < 0.04
    assert power_at(effect, se, alpha, null[0].df) == pytest.approx(power, abs=1e-3)


def spec(**over) -> ExperimentConfig:
    base = load_config().design.model_dump()
    base |= {
        "experiment_id": "x",
        "variants": ["control", "treat"],
        "zones_per_variant": 10,
        "start": dt.date(2026, 3, 1),
        "end": dt.date(2026, 3, 14),
        "metrics": [{"name": "y"}],
        "seed": 1,
    }
    return ExperimentConfig.model_validate(base | over)


def test_constant_metric_is_refused_by_name():
    rng = np.random.default_rng(2)
    cells = simulated_cells(rng, 20, 10, 0.0, np.zeros(20, bool))
    const = CellStats(
        cells.zone,
        cells.day,
        cells.n,
        ("y",),
        3.0 * cells.n[:, None],
        (9.0 * cells.n)[:, None, None],
    )
    assignment = pd.DataFrame(
        {
            "zone_id": np.arange(20),
            "variant": ["control", "treat"] * 10,
            "group_id": np.repeat(np.arange(10), 2),
        }
    )
    days = pd.to_datetime("2026-01-01") + pd.to_timedelta(const.day, "D")
    const = CellStats(const.zone, days.to_numpy(), const.n, const.names, const.sums, const.cross)
    with pytest.raises(InputError, match="metric 'y' is constant"):
        design_checks(const, assignment, spec(), dt.date(2026, 1, 6))


def test_a_metric_of_mean_zero_and_constant_matching_features_are_refused_by_name():
    """The AA margin and the target are shares of the metric's mean: 0 for a metric that
    averages 0 (a net change, say); PCA has nothing to match zones on when every feature
    is the same in every zone."""
    rng = np.random.default_rng(2)
    cells = simulated_cells(rng, 20, 10, 0.0, np.zeros(20, bool))
    centred = cells.sums - cells.n[:, None] * (cells.sums.sum() / cells.n.sum())
    days = (pd.to_datetime("2026-01-01") + pd.to_timedelta(cells.day, "D")).to_numpy()
    zero = CellStats(cells.zone, days, cells.n, cells.names, centred, cells.cross)
    assignment = pd.DataFrame(
        {
            "zone_id": np.arange(20),
            "variant": ["control", "treat"] * 10,
            "group_id": np.repeat(np.arange(10), 2),
        }
    )
    with pytest.raises(InputError, match="metric 'y': its mean over the history window is 0"):
        design_checks(zero, assignment, spec(), dt.date(2026, 1, 6))
    flat = pd.DataFrame(np.ones((6, 4)), columns=[f"visits@{d}" for d in range(4)])
    with pytest.raises(
        InputError, match=r"every matching feature \(4 columns.*is the same in all 6"
    ):
        match_zones(flat, 3, 2)


@pytest.mark.parametrize("convention", ["linearmodels", "fixest"])
def test_design_checks_speak_the_covariance_vocabulary(convention):
    """geo_design_checks.cov_type is the label of analysis.covariances and geo_results; the
    t degrees of freedom are the convention's: N - K - (G + T - 1), or G - 1 for fixest."""
    cells = simulated_cells(np.random.default_rng(5), 20, 10, 0.0, np.zeros(20, bool))
    days = pd.to_datetime("2026-01-01") + pd.to_timedelta(cells.day, "D")
    cells = CellStats(cells.zone, days.to_numpy(), cells.n, cells.names, cells.sums, cells.cross)
    assignment = pd.DataFrame(
        {
            "zone_id": np.arange(20),
            "variant": ["control", "treat"] * 10,
            "group_id": np.repeat(np.arange(10), 2),
        }
    )
    checks = design_checks(cells, assignment, spec(convention=convention), dt.date(2026, 1, 6))
    assert checks["cov_type"].tolist() == ["zone"]
    want = 20 - 1 if convention == "fixest" else cells.n.sum() - 1 - (20 + 10 - 1)
    assert checks["df"].tolist() == [want]


def test_power_figures_are_at_the_alpha_per_test_of_the_decisions():
    """Two treatments x two primary metrics: every decision is a test at 0.05 / 4 (the
    fixed horizon's t test, and the sequential plan's alpha), so the MDE, the power at the
    target and the zones needed are the t(df) test's at 0.0125 (scipy), not at 0.05."""
    rng = np.random.default_rng(5)
    cells = simulated_cells(rng, 30, 10, 0.0, np.zeros(30, bool))
    days = (pd.to_datetime("2026-01-01") + pd.to_timedelta(cells.day, "D")).to_numpy()
    # A second metric w = 2 y on every row: its sums and cross-products follow.
    c = cells.cross[:, 0, 0]
    cells = CellStats(
        cells.zone,
        days,
        cells.n,
        ("y", "w"),
        np.column_stack([cells.sums[:, 0], 2 * cells.sums[:, 0]]),
        np.stack([np.stack([c, 2 * c], 1), np.stack([2 * c, 4 * c], 1)], 1),
    )
    assignment = pd.DataFrame(
        {
            "zone_id": np.arange(30),
            "variant": ["control", "t1", "t2"] * 10,
            "group_id": np.repeat(np.arange(10), 3),
        }
    )
    experiment = spec(variants=["control", "t1", "t2"], metrics=[{"name": "y"}, {"name": "w"}])
    assert experiment.alpha_per_test == 0.0125
    checks = design_checks(cells, assignment, experiment, dt.date(2026, 1, 6))
    assert len(checks) == 4
    for r in checks.itertuples():
        dist = stats.t(r.df)
        q = dist.isf(0.0125 / 2)
        mde_ref = (q + dist.ppf(0.8)) * r.aa_se
        assert r.mde == pytest.approx(mde_ref, rel=1e-10)
        assert dist.cdf(mde_ref / r.aa_se - q) + dist.cdf(-mde_ref / r.aa_se - q) == (
            pytest.approx(0.8, abs=1e-6)
        )
        target = 0.05 * abs(r.baseline_mean)
        power_ref = dist.cdf(target / r.aa_se - q) + dist.cdf(-target / r.aa_se - q)
        assert r.power == pytest.approx(power_ref, rel=1e-10)
        assert r.zones_needed == max(2, int(np.ceil(10 * (mde_ref / target) ** 2)))
        assert r.zones_needed_unadjusted == r.zones_needed  # no covariates: the same fit


@pytest.mark.parametrize(
    "over,message",
    [
        ({"variants": ["control"]}, "N >= 2"),
        ({"margin": 0}, "margin"),
        ({"margin": -0.1}, "margin"),
        ({"end": dt.date(2026, 2, 1)}, "before start"),
        ({"variants": ["a", "a"]}, "distinct"),
        ({"covariates": ["x1", "x2", "x1"]}, r"covariates: \['x1'\] listed twice"),
        ({"covariates": ["x1", "y"]}, r"covariates: \['y'\] are metrics of the experiment"),
        (
            {"metrics": [{"name": "y"}, {"name": "v", "primary": False}], "covariates": ["v"]},
            r"covariates: \['v'\] are metrics of the experiment",
        ),
    ],
)
def test_bad_experiment_specs_name_the_value(over, message):
    with pytest.raises(ValueError, match=message):
        spec(**over)
