"""The reliability table's standard errors against Monte Carlo: customers of a zone share a
shock the scores cannot know, so the binomial standard error understates how far a
calibrated decile's observed rate strays, and the zone-clustered one does not; the joint
calibration test over the deciles keeps its size where summing their squared z-scores does
not. No Spark."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from sparklift.predict.propensity import calibration_test, reliability_table


def test_clustered_se_matches_the_spread_of_calibrated_deciles():
    rng = np.random.default_rng(11)
    n, zones, reps = 20_000, 40, 300
    zone = rng.integers(0, zones, n)
    q = 1 / (1 + np.exp(-rng.normal(-1.3, 1.0, n)))  # the scores: calibrated on average
    gaps, se, binomial = [], [], []
    for _ in range(reps):
        shock = rng.lognormal(-0.5 * 0.3**2, 0.3, zones)  # mean one: E[p | q] = q
        y = (rng.random(n) < np.minimum(q * shock[zone], 1.0)).astype(int)
        table = reliability_table(y, q, 10, zone)
        gaps.append(table["observed_rate"] - table["mean_predicted"])
        se.append(table["se"])
        binomial.append(table["se_binomial"])
    spread = np.std(np.array(gaps), axis=0)  # the truth: how far each decile strays
    clustered, plain = np.mean(se, axis=0) / spread, np.mean(binomial, axis=0) / spread
    assert np.all(np.abs(clustered - 1) < 0.12), clustered
    assert np.all(plain[5:] < 0.8), plain  # understated where the shocks weigh (high p)
    # Without clusters the table keeps the binomial one.
    alone = reliability_table(y, q, 10)
    assert np.array_equal(alone["se"], alone["se_binomial"])


def test_the_joint_calibration_test_keeps_its_size_when_zones_share_shocks():
    """Calibrated scores, 40 zones of long-tailed sizes, a shock per zone: the joint test
    rejects about 5% at 5%, where summing the deciles' squared clustered z-scores against
    chi-square(10) (the bins share the zones' shocks) rejects about twice as often; scores
    30% too high are found in most draws (a miss of 15% in 30%: at 40 zones a shared level
    is hard to tell from the zones' shocks)."""
    rng = np.random.default_rng(7)
    n, zones, reps = 20_000, 40, 300
    size = rng.lognormal(0, 1.0, zones)
    zone = rng.choice(zones, n, p=size / size.sum())
    q = 1 / (1 + np.exp(-rng.normal(-1.3, 1.0, n)))
    joint, summed, high = [], [], []
    for _ in range(reps):
        shock = rng.lognormal(-0.5 * 0.3**2, 0.3, zones)
        y = (rng.random(n) < np.minimum(q * shock[zone], 1.0)).astype(int)
        joint.append(calibration_test(y, q, 10, zone)[1])
        high.append(calibration_test(y, np.minimum(1.3 * q, 1.0), 10, zone)[1])
        table = reliability_table(y, q, 10, zone)
        z2 = ((table["observed_rate"] - table["mean_predicted"]) / table["se"]) ** 2
        summed.append(stats.chi2.sf(z2.sum(), 10))
    size_joint, size_summed = np.mean(np.array(joint) < 0.05), np.mean(np.array(summed) < 0.05)
    assert 0.02 <= size_joint <= 0.08, size_joint  # 300 draws: 5% +- 2.4 SE
    assert size_summed > 0.09, size_summed
    assert np.mean(np.array(high) < 0.05) > 0.6


def test_without_zones_the_calibration_test_is_hosmer_lemeshow():
    """Hosmer-Lemeshow by hand on deciles of a small sample: sum over the deciles of
    (observed - expected events)^2 / (n p (1 - p)), chi-square with 10 degrees of freedom
    (held-out rows: no parameter fitted on them)."""
    rng = np.random.default_rng(3)
    q = rng.uniform(0.05, 0.6, 1000)
    y = (rng.random(1000) < q).astype(int)
    order = np.argsort(q)
    hl = 0.0
    for d in range(10):
        i = order[100 * d : 100 * (d + 1)]
        events, expected = y[i].sum(), q[i].sum()
        hl += (events - expected) ** 2 / (100 * (expected / 100) * (1 - expected / 100))
    statistic, p = calibration_test(y, q, 10)
    assert statistic == pytest.approx(hl, rel=1e-12)
    assert p == pytest.approx(stats.chi2.sf(hl, 10), rel=1e-12)


def test_with_no_more_zones_than_deciles_there_is_no_joint_test():
    """Eight zones cannot test ten deciles jointly (their covariance has rank 7 at most), and
    one decile's clustered z-score is at most sqrt(7) = 2.65, short of Bonferroni's 2.81: a
    p-value there could never reject, so none is given; fifteen zones give one."""
    rng = np.random.default_rng(5)
    q = rng.uniform(0.05, 0.5, 4000)
    y = (rng.random(4000) < 2 * q).astype(int)  # twice the scores: far from calibrated
    statistic, p = calibration_test(y, q, 10, rng.integers(0, 8, 4000))
    assert np.isnan(statistic) and np.isnan(p)
    assert calibration_test(y, q, 10, rng.integers(0, 15, 4000))[1] < 0.05
