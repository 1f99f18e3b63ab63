"""The reliability table's standard errors against Monte Carlo: customers of a zone share a
shock the scores cannot know, so the binomial standard error understates how far a
calibrated decile's observed rate strays, and the zone-clustered one does not. No Spark."""

from __future__ import annotations

import numpy as np

from sparklift.predict.propensity import reliability_table


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
