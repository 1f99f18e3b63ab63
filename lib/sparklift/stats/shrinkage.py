r"""Two honest corrections of an experiment's estimated effect before it is forecast.

**Empirical Bayes shrinkage** towards the distribution of other experiments' effects. The
true effects of the other experiments are taken as draws from N(mu, tau^2), each estimate x_i
as N(theta_i, s_i^2). The prior is estimated from their estimates by DerSimonian and
Laird's method of moments: with w_i = 1 / s_i^2, the fixed-effect mean
m = sum w_i x_i / sum w_i, Q = sum w_i (x_i - m)^2 and
tau^2 = max(0, (Q - (k - 1)) / (sum w_i - sum w_i^2 / sum w_i)); then
mu = sum w*_i x_i / sum w*_i with w*_i = 1 / (s_i^2 + tau^2). A new estimate x with
standard error s is shrunk to the posterior mean mu + B (x - mu), B = tau^2 / (tau^2 + s^2):
the noisier the estimate, or the more alike the other effects are, the more it moves.

**The winner's curse** (Lee and Shen, KDD 2018): an estimate reported because it is
significant, |x| / s > c with c = z_{1 - alpha/2}, overstates its effect on average. Given
the true effect theta, the expected estimate of a selected result exceeds theta by

    b(theta) = s [phi(c - theta/s) - phi(-c - theta/s)] / [1 - Phi(c - theta/s) + Phi(-c - theta/s)]

(the mean of a normal truncated to |x| > c s). Lee and Shen estimate it by plugging in the
estimate for theta and subtract it: x - b(x). A result that is not significant was not
selected, so it is left as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Prior:
    """The distribution of the other experiments' true effects, N(mean, sd^2), estimated
    from ``experiments`` of them."""

    mean: float
    sd: float
    experiments: int


def prior(estimates: Sequence[float], ses: Sequence[float]) -> Prior:
    """DerSimonian-Laird estimate of the prior from the other estimates and their SEs."""
    x, s = np.asarray(estimates, float), np.asarray(ses, float)
    if len(x) < 2 or (s <= 0).any():
        raise ValueError("a prior needs at least 2 past estimates with positive SEs")
    w = 1 / s**2
    m = float(np.sum(w * x) / np.sum(w))
    q = float(np.sum(w * (x - m) ** 2))
    tau2 = max(0.0, (q - (len(x) - 1)) / (np.sum(w) - np.sum(w**2) / np.sum(w)))
    ws = 1 / (s**2 + tau2)
    return Prior(float(np.sum(ws * x) / np.sum(ws)), float(np.sqrt(tau2)), len(x))


def shrink(estimate: float, se: float, p: Prior) -> tuple[float, float]:
    """The posterior mean of the effect and the weight B kept on the estimate."""
    weight = p.sd**2 / (p.sd**2 + se**2)
    return p.mean + weight * (estimate - p.mean), weight


def selection_bias(theta: float, se: float, alpha: float) -> float:
    """E[x - theta | |x| > c se] for x ~ N(theta, se^2), c = z_{1 - alpha/2}."""
    c, t = stats.norm.isf(alpha / 2), theta / se
    upper, lower = stats.norm.sf(c - t), stats.norm.cdf(-c - t)
    return float(se * (stats.norm.pdf(c - t) - stats.norm.pdf(-c - t)) / (upper + lower))


def winners_curse(estimate: float, se: float, alpha: float) -> tuple[float, float]:
    """Lee and Shen's corrected estimate of a result and the bias removed (0 when it is not
    significant at ``alpha``, |estimate| / se <= z_{1 - alpha/2}: not selected; or without
    a positive SE)."""
    if not se > 0 or abs(estimate) / se <= stats.norm.isf(alpha / 2):
        return estimate, 0.0
    bias = selection_bias(estimate, se, alpha)
    return estimate - bias, bias
