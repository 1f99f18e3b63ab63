"""Group sequential boundaries against published gsDesign / rpact values and Monte Carlo."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtr, ndtri

from sparklift.stats.sequential import (
    Spending,
    bounds_at,
    crossing_probabilities,
    efficacy_bounds,
    median_unbiased,
    plan,
    repeated_ci,
    spending,
    stagewise_p,
)

T5 = np.linspace(0.2, 1.0, 5)
N_PATHS = 200_000

# R gsDesign, one-sided alpha 0.025, 5 equally spaced looks (gsDesign's manual / vignettes).
OBF_5 = [4.8769, 3.3570, 2.6803, 2.2898, 2.0310]
POCOCK_5 = [2.4380, 2.4268, 2.4102, 2.3966, 2.3860]
HSD4_5 = [3.2527, 2.9860, 2.6917, 2.3737, 2.0253]
# gsDesign(k=5, test.type=4, n.fix=1): non-binding HSD(-2) futility, inflation 1.1013.
HSD2_FUTILITY_5 = [-0.9016, -0.0367, 0.6945, 1.3603, 2.0253]


def z_paths(t: np.ndarray, drift: float, n: int = N_PATHS, seed: int = 7) -> np.ndarray:
    """Z_k on simulated paths: cumulative sums of independent N(drift dt, dt) increments."""
    rng = np.random.default_rng(seed)
    dt = np.diff(t, prepend=0.0)
    scores = np.cumsum(rng.normal(drift * dt, np.sqrt(dt), size=(n, t.size)), axis=1)
    return scores / np.sqrt(t)


def first_crossings(
    z: np.ndarray, upper: np.ndarray, lower: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo per-look frequencies of first crossing the upper and the lower bound."""
    up, lo = z >= upper, z <= lower
    stop = up | lo
    first = np.where(stop.any(axis=1), stop.argmax(axis=1), -1)
    rows = np.arange(z.shape[0])
    hit_up = (first >= 0) & up[rows, first]
    hit_lo = (first >= 0) & ~hit_up
    k = upper.size
    return (
        np.bincount(first[hit_up], minlength=k) / z.shape[0],
        np.bincount(first[hit_lo], minlength=k) / z.shape[0],
    )


def assert_within_mc(observed: np.ndarray, expected: np.ndarray, n: int, sds: float = 4.0):
    """|observed - expected| within ``sds`` Monte Carlo standard errors (floored at 1/n)."""
    p = np.maximum(np.asarray(expected, dtype=float), 1.0 / n)
    se = np.sqrt(p * (1.0 - p) / n)
    np.testing.assert_array_less(np.abs(observed - expected), sds * se)


@pytest.mark.parametrize(
    ("family", "expected"),
    [(Spending("obf"), OBF_5), (Spending("pocock"), POCOCK_5), (Spending("hsd"), HSD4_5)],
)
def test_one_sided_efficacy_bounds_match_gsdesign(family: Spending, expected: list[float]):
    np.testing.assert_allclose(efficacy_bounds(T5, 0.025, family), expected, atol=1e-4)


def test_gsdesign_default_design_nonbinding_futility():
    design = plan(T5, 0.025, 0.1, Spending("hsd", -4), Spending("hsd", -2), binding=False)
    np.testing.assert_allclose(design.upper, HSD4_5, atol=1e-4)
    np.testing.assert_allclose(design.lower, HSD2_FUTILITY_5, atol=1e-4)
    assert design.inflation == pytest.approx(1.1013, abs=1e-4)
    assert design.power(design.drift) == pytest.approx(0.9, abs=1e-9)


def test_two_sided_obf_bounds_match_gsdesign():
    # gsDesign(k=3, test.type=2, alpha=0.025, timing=c(.5,.75), sfu=sfLDOF): 5% over both sides.
    bounds = efficacy_bounds([0.5, 0.75, 1.0], 0.05, Spending("obf"), sides=2)
    np.testing.assert_allclose(bounds, [2.963, 2.359, 2.014], atol=1e-3)


# rpact tests/testthat/test-f_design_group_sequential.R (rpact-com/rpact): x2, x3 (non-binding
# beta spending), x7 (binding), each with its getDesignCharacteristics y2 where quoted.
def test_rpact_hsd_design_nonbinding():
    design = plan([0.2, 0.4, 1.0], 0.07, 0.14, Spending("hsd", -1), Spending("hsd", -2))
    np.testing.assert_allclose(design.upper, [2.364813, 2.1928805, 1.5660474], atol=1e-6)
    np.testing.assert_allclose(design.lower[:2], [-1.1063623, -0.35992438], atol=1e-6)
    np.testing.assert_allclose(design.alpha_spent, [0.0090195874, 0.020036136, 0.07], atol=1e-9)
    assert design.inflation == pytest.approx(1.0869177, abs=1e-6)
    p_up, p_lo = crossing_probabilities(design.t, design.upper, design.lower, design.drift)
    np.testing.assert_allclose(np.cumsum(p_up), [0.12038954, 0.32895265, 0.86], atol=1e-6)
    np.testing.assert_allclose(np.cumsum(p_lo)[:2], [0.010777094, 0.026854629], atol=1e-6)
    # rpact's average sample numbers are relative to the fixed design: fraction * inflation.
    for drift, asn in [(design.drift, 0.82636428), (design.drift / 2, 0.91614201), (0, 0.79471657)]:
        assert design.expected_fraction(drift) * design.inflation == pytest.approx(asn, abs=1e-6)


def test_rpact_power_family_design_nonbinding():
    design = plan([0.3, 0.7, 1.0], 0.03, 0.34, Spending("power", 2.2), Spending("power", 3.2))
    np.testing.assert_allclose(design.upper, [2.8594012, 2.2435708, 1.9735737], atol=1e-6)
    np.testing.assert_allclose(design.lower[:2], [-1.1558435, 0.72836893], atol=1e-6)
    assert design.inflation == pytest.approx(1.0555891, abs=1e-6)


def test_rpact_obf_design_binding_futility():
    design = plan(
        [0.4, 0.75, 1.0], 0.03, 0.2, Spending("obf"), Spending("power", 2.5), binding=True
    )
    np.testing.assert_allclose(design.alpha_spent, [0.00060088601, 0.012217314, 0.03], atol=1e-9)
    np.testing.assert_allclose(design.upper, [3.2384592, 2.2562378, 1.905812], atol=1e-6)
    np.testing.assert_allclose(design.lower[:2], [-0.29391761, 1.0736333], atol=1e-6)
    p_up, _ = crossing_probabilities(design.t, design.upper, design.lower, design.drift)
    np.testing.assert_allclose(np.cumsum(p_up), [0.068966747, 0.55923121, 0.8], atol=1e-6)
    # binding: the type I error counts the futility stops, so alpha is spent with them in force
    assert design.power(0.0) == pytest.approx(0.03, abs=1e-7)


def test_crossing_probabilities_match_gsdesign_gsprobability():
    # keaven/gsDesign tests/testthat/test-c-numerics-regression.R: gsProbability(k=3,
    # theta=c(-.25,0,.25), n.I=c(.3,.6,1), a=c(-.5,-.75,-1), b=c(2.5,2.25,2)).
    lower = {
        -0.25: [0.358276535928559, 0.0804375200442274, 0.0379541059065421],
        0.0: [0.308537538725987, 0.0658271483061993, 0.0281699654253188],
        0.25: [0.26208501204865, 0.052087603770101, 0.0197314332763651],
    }
    upper = {
        -0.25: [0.0041829967861875, 0.00596407884275666, 0.00854522426818119],
        0.0: [0.00620966532577613, 0.00996166709538417, 0.0156648014320317],
        0.25: [0.00906213856022171, 0.0160735550179362, 0.0271031723267736],
    }
    t, a, b = [0.3, 0.6, 1.0], [-0.5, -0.75, -1.0], [2.5, 2.25, 2.0]
    for theta in lower:
        p_up, p_lo = crossing_probabilities(t, b, a, theta)
        np.testing.assert_allclose(p_up, upper[theta], rtol=1e-9)
        np.testing.assert_allclose(p_lo, lower[theta], rtol=1e-9)


def test_crossing_probabilities_at_gsdesign_gsbound_bounds():
    # Same source: gsBound(I=(1,2,3)/3, trueneg=rep(.02,3), falsepos=rep(.01,3)) and
    # gsBound1(theta=0, a=rep(-20,3), probhi=c(.001,.009,.015)) bounds spend what was asked
    # (gsDesign solved them to its tol = 1e-6).
    t = np.array([1.0, 2.0, 3.0]) / 3
    a = [-2.05374891063182, -1.91418286953087, -1.78920626107788]
    b = [2.32634787404084, 2.21929929409811, 2.12012742952919]
    p_up, p_lo = crossing_probabilities(t, b, a, 0.0)
    np.testing.assert_allclose(p_up, [0.01] * 3, atol=1e-7)
    np.testing.assert_allclose(p_lo, [0.02] * 3, atol=1e-7)
    b1 = [3.09023230616781, 2.34482438570837, 2.03950136608231]
    p_up, _ = crossing_probabilities(t, b1, [-np.inf] * 3, 0.0)
    np.testing.assert_allclose(p_up, [0.001, 0.009, 0.015], atol=1e-7)


def test_spending_functions():
    t = np.array([0.0, 0.3, 1.0, 1.7])
    for family in [Spending("obf"), Spending("pocock"), Spending("hsd", 1.5), Spending("power")]:
        spent = family.cumulative(t, 0.05)
        assert spent[0] == 0.0 and spent[2] == spent[3] == 0.05
        assert 0.0 < spent[1] < 0.05
    np.testing.assert_allclose(spending("hsd", 0).cumulative(t, 0.1), [0, 0.03, 0.1, 0.1])
    np.testing.assert_allclose(spending("power", 2).cumulative([0.5], 0.1), [0.025])
    # rpact x3 alphaSpent (asKD, gammaA = 2.2): 0.03 * t^2.2
    np.testing.assert_allclose(
        Spending("power", 2.2).cumulative([0.3, 0.7], 0.03), [0.0021222083, 0.013687904]
    )
    assert Spending("hsd").param == -4.0 and Spending("power").param == 3.0


def test_spending_rejects_unknown_names_and_bad_parameters():
    with pytest.raises(ValueError, match=r"'kim'.*obf, pocock, hsd, power"):
        spending("kim")
    with pytest.raises(ValueError, match="rho > 0"):
        spending("power", 0.0)
    with pytest.raises(ValueError, match="takes no parameter"):
        spending("obf", 1.0)


DESIGNS = {
    "gsdesign-test-type-4": lambda: plan(T5, 0.025, 0.1, Spending("hsd"), Spending("hsd", -2)),
    "two-sided-obf": lambda: plan(T5, 0.05, 0.2, Spending("obf"), sides=2),
    "binding-obf": lambda: plan(T5, 0.025, 0.1, Spending("obf"), Spending("power", 2), True),
}


@pytest.mark.parametrize("name", DESIGNS)
def test_crossings_match_monte_carlo(name: str):
    design = DESIGNS[name]()
    for seed, drift in [(1, 0.0), (2, design.drift)]:
        z = z_paths(design.t, drift, seed=seed)
        mc_up, mc_lo = first_crossings(z, design.upper, design.lower)
        p_up, p_lo = crossing_probabilities(design.t, design.upper, design.lower, drift)
        assert_within_mc(mc_up, p_up, N_PATHS)
        assert_within_mc(mc_lo[:-1], p_lo[:-1], N_PATHS)
        assert_within_mc(mc_up.sum(), p_up.sum(), N_PATHS)
        if drift:
            assert_within_mc(mc_up.sum(), 1 - design.beta, N_PATHS)
            assert design.power(drift) == pytest.approx(1 - design.beta, abs=1e-9)
        else:
            # the upper bound alone (futility ignored unless binding) has type I error alpha
            ignored = design.lower if design.binding else np.full(design.t.size, -np.inf)
            mc_alone, _ = first_crossings(z, design.upper, ignored)
            assert_within_mc(mc_alone.sum(), design.alpha / design.sides, N_PATHS)


def test_expected_fraction_matches_monte_carlo():
    design = DESIGNS["gsdesign-test-type-4"]()
    z = z_paths(design.t, design.drift, seed=3)
    mc_up, mc_lo = first_crossings(z, design.upper, design.lower)
    mc_fraction = design.t @ (mc_up + mc_lo)
    assert mc_fraction == pytest.approx(design.expected_fraction(design.drift), abs=2e-3)


def test_repeated_ci_simultaneous_coverage():
    theta, i_max = 0.3, 50.0
    for design, level in [(DESIGNS["two-sided-obf"](), 0.95), (plan(T5, 0.025), 0.95)]:
        drift = theta * np.sqrt(i_max)
        z = z_paths(design.t, drift, n=100_000, seed=4)
        se = 1.0 / np.sqrt(design.t * i_max)
        estimate = z * se
        lo, hi = repeated_ci(estimate, se, design.upper)
        coverage = np.mean(np.all((lo <= theta) & (theta <= hi), axis=1))
        mc_se = np.sqrt(level * (1 - level) / z.shape[0])
        assert coverage >= level - 3 * mc_se
    # the two-sided bounds give exactly 1 - alpha when every look is made
    assert coverage == pytest.approx(0.95, abs=0.01)


def test_stagewise_p():
    design = plan(T5, 0.025)
    for k in range(1, 6):
        p = stagewise_p(design.t, design.upper, k, design.upper[k - 1])
        assert p == pytest.approx(design.alpha_spent[k - 1], abs=1e-8)
    # a fixed design: the usual one-sided p-value
    assert stagewise_p([1.0], [1.96], 1, 2.5) == pytest.approx(ndtr(-2.5), rel=1e-9)
    # at the final look with no earlier crossing: P_0(cross before, or reach K with Z_K >= z)
    z = z_paths(design.t, 0.0, seed=5)
    z_stop = 1.7
    early = np.any(z[:, :4] >= design.upper[:4], axis=1)
    mc = np.mean(early | (z[:, 4] >= z_stop))
    p = stagewise_p(design.t, design.upper, 5, z_stop)
    assert_within_mc(np.array(mc), np.array(p), N_PATHS)


def test_median_unbiased():
    # a single look: the estimate itself
    assert median_unbiased([1.0], [1.96], 1, 2.3, i_max=4.0) == pytest.approx(2.3 / 2, rel=1e-9)
    design = plan(T5, 0.025)
    # stopped at the first look: P_theta(Z_1 >= z) = 1/2 gives theta = z / sqrt(t_1 I_max)
    z1 = design.upper[0] + 0.4
    assert median_unbiased(design.t, design.upper, 1, z1, 9.0) == pytest.approx(
        z1 / np.sqrt(0.2 * 9.0), rel=1e-8
    )
    # stopped at look 3: at theta_hat half of the trials are at least as extreme (Monte Carlo)
    i_max, z_stop = 9.0, design.upper[2] + 0.3
    theta_hat = median_unbiased(design.t, design.upper, 3, z_stop, i_max)
    z = z_paths(design.t, theta_hat * np.sqrt(i_max), seed=6)
    early = np.any(z[:, :2] >= design.upper[:2], axis=1)
    more_extreme = early | ((z[:, :2] < design.upper[:2]).all(axis=1) & (z[:, 2] >= z_stop))
    assert_within_mc(np.array(more_extreme.mean()), np.array(0.5), N_PATHS)
    # stopping early for efficacy overstates the effect; the MUE is below the naive estimate
    assert theta_hat < z_stop / np.sqrt(design.t[2] * i_max)


def test_bounds_at_planned_fractions_reproduce_the_design():
    design = plan(T5, 0.025, 0.1, Spending("hsd"), Spending("hsd", -2))
    upper, lower = bounds_at(design, T5)
    np.testing.assert_allclose(upper, HSD4_5, atol=1e-4)
    np.testing.assert_allclose(lower, HSD2_FUTILITY_5, atol=1e-4)
    binding = plan([0.4, 0.75, 1.0], 0.03, 0.2, Spending("obf"), Spending("power", 2.5), True)
    upper, lower = bounds_at(binding, [0.4, 0.75, 1.0])
    np.testing.assert_allclose(upper, [3.2384592, 2.2562378, 1.905812], atol=1e-6)
    np.testing.assert_allclose(lower[:2], [-0.29391761, 1.0736333], atol=1e-6)


def test_bounds_at_unplanned_fractions_keep_alpha():
    design = plan(T5, 0.025, 0.1, Spending("obf"), Spending("hsd", -2))
    t_obs = np.array([0.3, 0.55, 1.07])
    upper, lower = bounds_at(design, t_obs)
    # the first look has a closed form: spend f(0.3), and beta-spend g(0.3) at the drift
    assert upper[0] == pytest.approx(-ndtri(Spending("obf").cumulative(0.3, 0.025)), abs=1e-8)
    beta_1 = Spending("hsd", -2).cumulative(0.3, 0.1)
    assert lower[0] == pytest.approx(design.drift * np.sqrt(0.3) + ndtri(beta_1), abs=1e-8)
    assert lower[-1] == upper[-1]  # overran t = 1: final look
    z = z_paths(t_obs, 0.0, seed=8)
    mc_up, _ = first_crossings(z, upper, np.full(3, -np.inf))
    assert_within_mc(mc_up.sum(), 0.025, N_PATHS)
    # earlier looks' bounds do not depend on later looks
    early_upper, early_lower = bounds_at(design, t_obs[:2])
    np.testing.assert_allclose(early_upper, upper[:2], rtol=1e-12)
    assert early_lower[0] == pytest.approx(lower[0], abs=1e-12)
    assert early_lower[1] < early_upper[1]


def test_bounds_at_final_look_short_of_full_information_spends_all_alpha():
    design = plan(T5, 0.025)
    t_obs = np.array([0.25, 0.6, 0.85])
    upper, _ = bounds_at(design, t_obs, final=True)
    z = z_paths(t_obs, 0.0, seed=9)
    mc_up, _ = first_crossings(z, upper, np.full(3, -np.inf))
    assert_within_mc(mc_up.sum(), 0.025, N_PATHS)
    not_final, _ = bounds_at(design, t_obs)
    assert not_final[-1] > upper[-1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 0.6}, "alpha"),
        ({"beta": 0.0}, "beta"),
        ({"beta": 0.98}, "beta"),
        ({"t": [0.5, 0.5, 1.0]}, "strictly increasing"),
        ({"t": [0.0, 1.0]}, "> 0"),
        ({"t": []}, "non-empty"),
        ({"t": [0.5, 0.8]}, "end at 1"),
        ({"sides": 3}, "sides"),
    ],
)
def test_plan_validation(kwargs: dict, message: str):
    arguments = {"t": T5} | kwargs
    with pytest.raises(ValueError, match=message):
        plan(**arguments)


def test_inference_validation():
    with pytest.raises(ValueError, match="k_stop"):
        stagewise_p(T5, HSD4_5, 6, 2.0)
    with pytest.raises(ValueError, match="i_max"):
        median_unbiased(T5, HSD4_5, 2, 3.0, 0.0)
    with pytest.raises(ValueError, match="upper"):
        stagewise_p(T5, HSD4_5[:3], 2, 3.0)
    with pytest.raises(ValueError, match="t_observed"):
        bounds_at(plan(T5), [0.4, 0.3])
