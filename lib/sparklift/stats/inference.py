r"""t inference of an estimate with a standard error and degrees of freedom.

For b with standard error se and reference distribution t(df) (df from the small-sample
convention, :mod:`sparklift.stats.ssc`): t = b / se, p = 2 P(T > |t|) and the
(1 - alpha) confidence interval b +- q se with q = t_{1-alpha/2}(df). The fit's
coefficients, the relative lift, power (:mod:`sparklift.stats.power`) and the TOST
equivalence test (:mod:`sparklift.stats.equivalence`) all take their reference
distribution from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Estimate:
    """One estimate with its inference, in the shape of a linearmodels result row."""

    name: str
    estimate: float
    se: float
    t: float
    p_value: float
    ci_low: float
    ci_high: float


def reference(df: float):
    """The t(df) distribution (a frozen scipy distribution)."""
    return stats.t(df)


def critical(alpha: float, df: float) -> float:
    """q = t_{1-alpha/2}(df), the two-sided critical value."""
    return float(reference(df).ppf(1 - alpha / 2))


def t_inference(
    names: list[str], estimates: np.ndarray, se: np.ndarray, df: float, alpha: float
) -> dict[str, Estimate]:
    """t, two-sided p and the (1 - alpha) CI of each named estimate."""
    estimates, se = np.asarray(estimates, dtype=float), np.asarray(se, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = estimates / se
    p = 2 * reference(df).sf(np.abs(t))
    q = critical(alpha, df)
    return {
        n: Estimate(n, b, s, tt, pp, b - q * s, b + q * s)
        for n, b, s, tt, pp in zip(names, estimates, se, t, p, strict=True)
    }


def t_estimate(name: str, estimate: float, se: float, df: float, alpha: float) -> Estimate:
    """:func:`t_inference` of one estimate."""
    return t_inference([name], np.array([estimate]), np.array([se]), df, alpha)[name]
