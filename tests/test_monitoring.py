"""Sequential monitoring of a geo experiment (pure): the plan in the experiment file, the
decision at a look against closed forms and scipy, the gates against scipy and statsmodels."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from pydantic import ValidationError
from scipy import stats
from scipy.optimize import brentq

from sparklift.config import load_config
from sparklift.errors import InputError
from sparklift.geo.experiment import ExperimentConfig
from sparklift.geo.gates import MIX_PREFIX, Gate, mix_gates, traffic_gate
from sparklift.geo.monitoring import (
    History,
    Observation,
    conclusion,
    decide,
    decision_inference,
    mde_drift,
    planned_fractions,
    sequential_plan,
    variant_decisions,
    z_score,
)
from sparklift.stats.ssc import LINEARMODELS
from sparklift.stats.twfe import CellStats
from tests.test_twfe import fit_cells, pandas_cells, panel

START = dt.date(2026, 3, 1)


def spec(**over) -> ExperimentConfig:
    base = load_config().design.model_dump() | {
        "experiment_id": "e",
        "variants": ["control", "t1"],
        "zones_per_variant": 10,
        "start": START,
        "end": START + dt.timedelta(days=27),
        "metrics": [{"name": "orders"}],
        "seed": 1,
    }
    return ExperimentConfig.model_validate(base | over)


def observed(**over) -> ExperimentConfig:
    """An experiment whose looks take the information fraction from the observed se."""
    seq = spec().sequential.model_dump() | {"information": "observed"}
    return spec(sequential=seq, **over)


def day(n: int) -> dt.date:
    return START + dt.timedelta(days=n - 1)


def test_plan_in_the_experiment_file_and_its_bad_input():
    s = spec()
    assert s.look_dates == [day(7), day(14), day(21), day(28)]
    assert spec(end=day(24)).look_dates == [day(7), day(14), day(21), day(24)]
    seq = s.sequential.model_dump() | {"looks": [day(10), day(20)]}
    assert spec(sequential=seq).look_dates == [day(10), day(20), day(28)]
    assert spec(sequential=None).look_dates == [day(28)]
    two = spec(
        variants=["c", "a", "b"],
        metrics=[{"name": "x"}, {"name": "y"}, {"name": "z", "primary": False}],
    )
    assert two.alpha_per_test == pytest.approx(0.05 / 4)
    bad = {
        "after the maximum duration": dict(sequential=seq | {"looks": [day(10), day(29)]}),
        "strictly increasing": dict(sequential=seq | {"looks": [day(10), day(10)]}),
        "less than or equal to 0.5": dict(alpha=0.6),
        "greater than 0": dict(alpha=0.0),
        "'obf', 'pocock', 'hsd' or 'power'": dict(sequential=seq | {"spending": "wang_tsiatis"}),
        "at least 1": dict(sequential=seq | {"looks": 0}),
        "at least one must be primary": dict(metrics=[{"name": "x", "primary": False}]),
    }
    for message, over in bad.items():
        with pytest.raises(ValidationError) as e:
            spec(**over)
        assert message in str(e.value).replace("outside", "after the maximum duration"), message


def obs(estimate: float, se: float = 1.0, df: float = 1e6, metric: str = "orders") -> Observation:
    return Observation(metric, "t1", True, estimate, se, df)


def test_fixed_horizon_is_the_t_test_at_the_per_comparison_alpha():
    s = spec(sequential=None, metrics=[{"name": "orders"}, {"name": "gmv"}])
    alpha = 0.05 / 2
    for t_stat, df in [(2.1, 30.0), (2.4, 30.0), (-2.7, 12.0), (2.2, 1e6)]:
        row = decide(s, day(28), obs(t_stat, 1.0, df), None, None, History())
        p = 2 * stats.t.sf(abs(t_stat), df)
        expected = ("efficacy" if t_stat > 0 else "harm") if p < alpha else "no_effect"
        assert row["decision"] == expected, (t_stat, df, p)
        assert row["efficacy_bound"] == pytest.approx(stats.norm.isf(alpha / 2), abs=1e-6)
        q = stats.t.isf(alpha / 2, df)  # the repeated CI of one look is the t interval
        assert row["rci_low"] == pytest.approx(t_stat - q, abs=1e-6)
        assert row["alpha_spent"] == pytest.approx(alpha)
    # Not a look: the daily path, no decision.
    row = decide(s, day(20), obs(5.0), None, None, History())
    assert not row["decision_point"] and row["decision"] is None


def test_first_look_bound_is_the_closed_form_and_information_from_the_standard_errors():
    s = observed()
    # O'Brien-Fleming-type two-sided spending at level a: each side spends
    # g(t) = 2 - 2 Phi(z_{1-a/4} / sqrt(t)), so the first bound solves 1 - Phi(c) = g(t).
    i_max, se_now = 4.0, 0.8  # t = 1 / (I_max se^2) = 0.390625
    t = 1 / (i_max * se_now**2)
    g = lambda t: 2 - 2 * stats.norm.cdf(stats.norm.isf(0.05 / 4) / np.sqrt(t))  # noqa: E731
    row = decide(s, day(7), obs(2.0, se_now), i_max, [0.4, 0.65, 0.85, 1.0], History())
    assert row["information_fraction"] == pytest.approx(t)
    assert row["efficacy_bound"] == pytest.approx(stats.norm.isf(g(t)), abs=1e-4)
    assert row["harm_bound"] == pytest.approx(-stats.norm.isf(g(t)), abs=1e-4)
    assert row["decision"] == "continue" and row["look"] == 1
    assert row["alpha_spent"] == pytest.approx(2 * g(t))
    # The default takes the look's planned fraction, and reports the observed one.
    row = decide(spec(), day(7), obs(2.0, se_now), i_max, [0.4, 0.65, 0.85, 1.0], History())
    assert row["information_fraction"] == 0.4 and "observed 0.391" in row["reason"]
    assert row["efficacy_bound"] == pytest.approx(stats.norm.isf(g(0.4)), abs=1e-4)
    # Without a design (the generator's experiment): calendar time.
    row = decide(s, day(7), obs(2.0), None, None, History())
    assert row["information_fraction"] == pytest.approx(7 / 28)


def test_overshoot_and_stalled_information_and_stopped_variants():
    s = observed()
    # Information beyond the maximum before the end: capped at the look's planned fraction
    # (here calendar 21/28), so a small standard error does not lower the bound.
    row = decide(s, day(21), obs(0.8, 0.4), 4.0, None, History((0.3,)))
    assert row["information_fraction"] == 0.75 and row["decision"] == "continue"
    assert "observed 1.562" in row["reason"]
    # The end date is final whatever the information: all alpha spent.
    row = decide(s, day(28), obs(0.4, 0.8), 4.0, None, History((0.3, 0.75)))
    assert row["information_fraction"] == 1.0 and row["decision"] == "no_effect"
    assert row["alpha_spent"] == pytest.approx(0.05)
    # Information that did not grow: the previous fraction + 0.001. The look nearly repeats
    # the previous one (the two z are almost perfectly correlated): its bound lies close to
    # the previous look's and it spends almost nothing more.
    row = decide(s, day(14), obs(2.0, 1.2), 1.0, None, History((0.9,)))
    g = lambda t: 2 - 2 * stats.norm.cdf(stats.norm.isf(0.05 / 4) / np.sqrt(t))  # noqa: E731
    assert row["information_fraction"] == pytest.approx(0.901)
    assert abs(row["efficacy_bound"] - stats.norm.isf(g(0.9))) < 0.1
    assert row["alpha_spent"] == pytest.approx(2 * g(0.901)) and row["decision"] == "continue"
    row = decide(s, day(14), obs(9.0), 1.0, None, History((0.5,), ("efficacy", day(7))))
    assert row["decision"] == "stopped" and not row["decision_point"]
    # A stop reports the stage-wise p and the median unbiased estimate: at the first look
    # the stage-wise p is the fixed test's two-sided p and the MUE the estimate itself.
    row = decide(s, day(7), obs(-5.0, 1.0), 4.0, None, History())
    assert row["decision"] == "harm" and row["information_fraction"] == 0.25
    assert row["final_p"] == pytest.approx(2 * stats.norm.sf(5.0), rel=1e-3)
    assert row["median_unbiased"] == pytest.approx(-5.0, abs=1e-4)


def test_futility_plan_is_gsdesigns_default_at_one_sided_alpha():
    """With one treatment, one primary metric, sides 1, HSD(-4) efficacy and a non-binding
    HSD(-2) futility with beta 0.1, the experiment's plan is R gsDesign's default
    gsDesign(k=5, test.type=4): futility -0.9016 at the first look, inflation 1.1013."""
    seq = {"spending": "hsd", "param": -4, "sides": 1, "looks": [day(6), day(12), day(17),
           day(23)], "futility": {"spending": "hsd", "param": -2, "beta": 0.1}}  # fmt: skip
    s = spec(alpha=0.025, power=0.5, end=day(28), sequential=seq)
    p = sequential_plan(s, [0.2, 0.4, 0.6, 0.8, 1.0])
    assert p.beta == 0.1 and p.lower[0] == pytest.approx(-0.9016, abs=1e-4)
    assert p.inflation == pytest.approx(1.1013, abs=1e-4)
    row = decide(s, day(6), obs(-1.0), None, [0.2, 0.4, 0.6, 0.8, 1.0], History())
    assert row["decision"] == "futility" and row["harm_bound"] is None


def test_one_sided_stop_below_zero_takes_p_and_estimate_on_the_upper_side():
    """A one-sided plan tests an effect above 0 only: a stop at z < 0 has a stage-wise p
    near 1 (not the p of -z) and a negative median unbiased estimate, against scipy's
    normal and bivariate normal (Z_1, Z_2 with correlation sqrt(t_1 / t_2))."""
    futility = {"spending": "hsd", "param": -2, "beta": 0.1}
    seq = {"spending": "obf", "sides": 1, "looks": [day(14)], "futility": futility}
    s = spec(alpha=0.025, sequential=seq)
    row = decide(s, day(14), obs(-2.5), None, [0.5, 1.0], History())
    assert row["decision"] == "futility"
    # Stopped at the first look: p = P_0(Z_1 >= z), the MUE the estimate itself.
    assert row["final_p"] == pytest.approx(stats.norm.cdf(2.5), rel=1e-6)
    assert row["median_unbiased"] == pytest.approx(-2.5, abs=1e-4)

    s = spec(alpha=0.025, sequential=seq | {"futility": None})
    row = decide(s, day(28), obs(-2.5), None, [0.5, 1.0], History((0.5,)))
    assert row["decision"] == "no_effect"
    # OBF-type spending at 0.025 (one comparison, one side): 1 - Phi(u_1) = f(0.5). Any
    # outcome but (Z_1 < u_1, Z_2 < z) is at least as extreme as the stop.
    u1 = stats.norm.isf(2 - 2 * stats.norm.cdf(stats.norm.isf(0.025 / 2) / np.sqrt(0.5)))
    rho = np.sqrt(0.5)

    def p_value(drift: float) -> float:
        mean = drift * np.array([np.sqrt(0.5), 1.0])
        both = stats.multivariate_normal(mean, [[1, rho], [rho, 1]], abseps=1e-10, releps=0)
        return 1 - both.cdf([u1, -2.5])

    assert row["final_p"] == pytest.approx(p_value(0.0), abs=1e-6)
    assert row["final_p"] > 0.99
    # se 1 at t = 1: the MUE is the drift at which that p is 1/2.
    mue = brentq(lambda d: p_value(d) - 0.5, -5.0, 0.0, xtol=1e-8)
    assert row["median_unbiased"] == pytest.approx(mue, abs=1e-4)


def test_a_jackknife_that_cannot_leave_a_zone_out_says_how_to_decide_without_it():
    """Decisions use the zone jackknife by default, and always with ``sequential: null``,
    where sequential.inference does not exist: the message names what to set in each case,
    and the one-look plan it suggests is the fixed horizon's t test at alpha per test."""
    df = panel(5, zones=12, days=20, arms=2, balanced=True)
    df["d1"] = ((df["zone"] == 3) & (df["day"] >= 13)).astype(float)  # t1 has one zone
    fit = fit_cells(df, ["d1"], ())
    with pytest.raises(InputError, match=r"cannot leave zone 3 out: .* set sequential\."
                       r"inference to effective_clusters$"):  # fmt: skip
        decision_inference(fit, "d1", spec())
    with pytest.raises(InputError, match="cannot leave zone 3 out") as e:
        decision_inference(fit, "d1", spec(sequential=None))
    assert "sequential.inference" not in str(e.value)
    assert "give the experiment a sequential section with inference: effective_clusters and " \
        "looks: 28 (one look, at the end)" in str(e.value)  # fmt: skip
    one_look = spec().sequential.model_dump() | {"inference": "effective_clusters", "looks": 28}
    s = spec(sequential=one_look)
    assert s.look_dates == [day(28)] and decision_inference(fit, "d1", s)[0] > 0
    upper = sequential_plan(s, [1.0]).upper
    assert upper == pytest.approx([stats.norm.isf(0.05 / 2)], abs=1e-6)


def test_failing_gate_makes_a_decision_invalid():
    gates = [Gate("traffic", 30.0, 1e-6, 0.001), Gate("pretrend", None, 0.2, 0.001)]
    row = decide(spec(sequential=None), day(28), obs(5.0), None, None, History(), gates)
    assert row["decision"] == "invalid" and row["reason"].startswith("efficacy withheld")
    assert "gate traffic failed" in row["reason"] and len(row["gates"]) == 2


def test_variant_decisions_and_conclusion():
    def r(metric, variant, decision, primary=True, point=True):
        return dict(metric=metric, variant=variant, decision=decision, primary=primary,
                    decision_point=point)  # fmt: skip

    rows = [
        r("a", "v1", "efficacy"), r("b", "v1", "continue"), r("c", "v1", "harm", primary=False),
        r("a", "v2", "futility"), r("b", "v2", "no_effect"),
        r("a", "v3", "harm"), r("b", "v3", "efficacy"),
        r("a", "v4", "invalid"), r("b", "v4", "efficacy"),
        r("a", "v5", "continue"), r("b", "v5", "futility"),
        r("a", "v6", "stopped", point=False),
        r("a", "v7", None, point=False),
    ]  # fmt: skip
    got = variant_decisions(rows)
    assert got == {
        "v1": "efficacy", "v2": "futility", "v3": "harm", "v4": "invalid", "v5": "continue",
        "v6": "stopped",
    }  # fmt: skip
    earlier = {"v6": ("harm", day(1))}
    both = f"v1: efficacy on {day(7)}; v2: futility on {day(7)}"
    assert conclusion(["v1", "v2"], got, day(7), earlier) == (both, day(7))
    assert conclusion(["v1", "v5"], got, day(7), earlier) is None
    mixed = f"v1: efficacy on {day(7)}; v6: harm on {day(1)}"
    assert conclusion(["v1", "v6"], got, day(7), earlier) == (mixed, day(7))
    # Every variant stopped at earlier looks (a run killed before it concluded): the
    # conclusion keeps the date of the look at which the last one stopped.
    assert conclusion(["v6"], got, day(9), earlier) == (f"v6: harm on {day(1)}", day(1))


def test_z_score_keeps_the_t_p_value_and_planned_fractions_increase():
    for t, df in [(2.5, 8.0), (-3.1, 20.0), (0.3, 4.0)]:
        z = z_score(t, 1.0, df)
        assert stats.norm.sf(abs(z)) == pytest.approx(stats.t.sf(abs(t), df), rel=1e-9)
        assert np.sign(z) == np.sign(t)
    assert z_score(80.0, 1.0, 5.0) == pytest.approx(stats.norm.isf(stats.t.sf(80.0, 5.0)))
    t = planned_fractions([2.0, 1.5, 1.6, 1.0])
    assert t[0] == pytest.approx(0.25) and t[-1] == 1.0 and np.all(np.diff(t) > 0)


def cells_from_counts(counts: dict[int, tuple[int, int]]) -> CellStats:
    """One pre day and one post day per zone with the given user-day counts."""
    zones, days, n = [], [], []
    for z, (pre, post) in counts.items():
        zones += [z, z]
        days += [np.datetime64(START - dt.timedelta(days=1)), np.datetime64(START)]
        n += [pre, post]
    k = len(n)
    return CellStats(
        np.array(zones), np.array(days), np.array(n, dtype=float), ("x",),
        np.zeros((k, 1)), np.zeros((k, 1, 1)), {},
    )  # fmt: skip


def test_traffic_gate_is_the_quasi_binomial_test_of_the_post_share():
    rng = np.random.default_rng(3)
    variant = {z: ("control" if z < 12 else "t1" if z < 24 else "t2") for z in range(36)}
    for shift in (1.0, 1.25):
        counts = {}
        for z, v in variant.items():
            size = rng.integers(200, 2000)
            post = rng.binomial(size, 0.5 * rng.uniform(0.9, 1.1) * (shift if v == "t2" else 1))
            counts[z] = (size, int(post))
        gate = traffic_gate(cells_from_counts(counts), variant, START, 0.001)
        table = np.array(
            [[sum(counts[z][j] for z in variant if variant[z] == v) for j in (0, 1)]
             for v in ("control", "t1", "t2")]
        )  # fmt: skip
        x_between = stats.chi2_contingency(table, correction=False)[0]
        # statsmodels: the binomial GLM of each zone's post share on the variant, with the
        # Pearson dispersion (quasi-binomial): its scale is the within-variant dispersion.
        post = np.array([counts[z][1] for z in variant])
        total = np.array([sum(counts[z]) for z in variant])
        x = np.column_stack([np.ones(36), [variant[z] == "t1" for z in variant],
                             [variant[z] == "t2" for z in variant]]).astype(float)  # fmt: skip
        glm = sm.GLM(np.column_stack([post, total - post]), x, family=sm.families.Binomial())
        fit = glm.fit()
        phi = fit.pearson_chi2 / fit.df_resid
        assert phi > 1  # zones' traffic is overdispersed here
        assert gate.statistic == pytest.approx(x_between / phi, rel=1e-9)
        assert gate.p_value == pytest.approx(stats.f.sf(x_between / phi / 2, 2, 33), rel=1e-9)
        assert gate.passed == (shift == 1.0)


def test_mix_gate_refers_its_t_to_g_minus_one():
    # 6 zones; linearmodels' t df would be N - k (over 1000): the gate must use G - 1 = 5.
    rng = np.random.default_rng(5)
    days = np.arange(-14, 14)
    zone, day = np.repeat(np.arange(6), len(days) * 5), np.tile(np.repeat(days, 5), 6)
    d = ((zone >= 3) & (day >= 0)).astype(float)
    shock = rng.normal(0, 0.5, (6, len(days)))[zone, day + 14]
    mix = rng.normal(size=6)[zone] + shock + 0.3 * d + rng.normal(size=len(zone))
    date = pd.Timestamp(START) + pd.to_timedelta(day, "D")
    rows = pd.DataFrame({"zone": zone, "day": date, MIX_PREFIX + "tenure": mix})
    variant = {z: "t1" if z >= 3 else "control" for z in range(6)}
    cells = pandas_cells(rows, [MIX_PREFIX + "tenure"])
    gate = mix_gates(cells, variant, ["t1"], START, ["tenure"], LINEARMODELS, 0.001)["t1"][0]
    # Row level: explicit dummies, zone-clustered sandwich scaled N / (N - columns).
    dummies = pd.get_dummies(rows[["zone", "day"]].astype(str), drop_first=True).astype(float)
    x = np.column_stack([d, np.ones(len(rows)), dummies])
    bread = np.linalg.inv(x.T @ x)
    beta = bread @ x.T @ mix
    scores = pd.DataFrame(x * (mix - x @ beta)[:, None]).groupby(zone).sum().to_numpy()
    n = len(rows)
    se = np.sqrt((bread @ scores.T @ scores @ bread)[0, 0] * n / (n - x.shape[1]))
    assert gate.statistic == pytest.approx(beta[0] / se, rel=1e-8)
    assert gate.p_value == pytest.approx(2 * stats.t.sf(abs(beta[0] / se), 5), rel=1e-8)


def test_mde_drift_with_one_degree_of_freedom():
    # Fixed horizon, two-sided: efficacy when t >= c = t_{1 - alpha/2}(df), so with the t
    # statistic N(drift, 1) the MDE drift is c + Phi^-1(power). df 1 puts it beyond 40.
    s = spec(sequential=None, alpha=0.0125)
    p = sequential_plan(s, [1.0])
    expected = stats.t.isf(0.0125 / 2, 1) + stats.norm.ppf(s.power)
    assert expected > 40
    assert mde_drift(p, 1.0, s.power) == pytest.approx(expected, rel=1e-6)
    tiny = spec(sequential=None, alpha=0.0005)  # c = 1273 standard errors: no usable MDE
    with pytest.raises(
        InputError, match=r"1 degrees of freedom, G\* - 1 with G\* = 2 .*more zones"
    ):
        mde_drift(sequential_plan(tiny, [1.0]), 1.0, tiny.power)


def test_repeated_ci_stays_finite_beyond_a_normal_bound_of_8_3():
    # An early obf look spends nothing: bound u = 20, where Phi(u) rounds to 1 (from 8.3 on)
    # and F_t^-1(Phi(u)) would be inf.
    row = decide(spec(), day(7), obs(2.0, 0.5, 5.0), None, [0.05, 0.4, 0.7, 1.0], History())
    u, q = row["efficacy_bound"], (row["rci_high"] - 2.0) / 0.5
    assert u == 20.0 and np.isfinite(q)
    assert stats.t.sf(q, 5.0) == pytest.approx(stats.norm.sf(u), rel=1e-9)
    assert (2.0 - row["rci_low"]) / 0.5 == pytest.approx(q, rel=1e-12)
