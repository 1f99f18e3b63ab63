r"""Power of a two-sided test of a coefficient estimated with standard error ``se``.

With critical value q = t_{1-alpha/2}(df) and the estimate approximately
b_hat ~ N(b, se^2):
- minimum detectable effect at the given power:  MDE = (q + t_{power}(df)) * se;
- power at a true effect b:  P(|b_hat / se| > q) = F(|b| / se - q) + F(-|b| / se - q);
- clusters needed: with K zones per variant the standard error scales as 1 / sqrt(K)
  (zones are the independent units, so the variance of the effect is the variance of a
  mean over zones), hence K_needed = ceil(K * (MDE(K) / |b|)^2).
F is the t(df) distribution function, the reference distribution of the estimator's
inference (:mod:`sparklift.stats.inference`; ``df`` is the one of the small-sample
convention in use).
"""

from __future__ import annotations

import math

from sparklift.stats.inference import critical, reference


def mde(se: float, alpha: float, power: float, df: float) -> float:
    """The smallest absolute effect detected with probability ``power``."""
    return float((critical(alpha, df) + reference(df).ppf(power)) * se)


def power_at(effect: float, se: float, alpha: float, df: float) -> float:
    """The probability of rejecting b = 0 when the true effect is ``effect``."""
    dist, q = reference(df), critical(alpha, df)
    z = abs(effect) / se
    return float(dist.cdf(z - q) + dist.cdf(-z - q))


def zones_needed(
    effect: float, se: float, zones: int, alpha: float, power: float, df: float
) -> int:
    """Zones per variant for ``power`` at ``effect``, given ``se`` with ``zones`` per variant."""
    if effect == 0:
        raise ValueError("the target effect must be non-zero")
    return max(2, math.ceil(zones * (mde(se, alpha, power, df) / abs(effect)) ** 2))
