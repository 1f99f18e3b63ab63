r"""Inference at or after stopping a group sequential trial.

Repeated confidence intervals (Jennison & Turnbull 2000, ch. 9): estimate_k +- c_k se_k with
the two-sided level-alpha bounds c_k of the design contain theta at every look simultaneously
with probability >= 1 - alpha, so they stay valid whenever and however the trial stops. With
the one-sided level-alpha bounds of a one-sided plan, each side holds with probability
>= 1 - alpha, so the +- interval has simultaneous coverage >= 1 - 2 alpha.

Stage-wise ordering (J&T ch. 8.4; Armitage 1957; Tsiatis, Rosner & Mehta 1984): an outcome
(k, z) is more extreme than (k', z') if it stopped earlier for efficacy, or at the same look
with a larger Z. For a trial stopped at look k* with Z = z*,

    p(theta) = sum_{j < k*} P_theta(first crossing of u_j at j) + P_theta(no crossing before
               k*, Z_{k*} >= z*),

the one-sided p-value is p(0) and the median unbiased estimate solves p(theta) = 1/2. Only
the upper bounds enter: futility is treated as non-binding (the conventional, conservative
choice), so pass the efficacy bounds used at the looks actually made.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import brentq

from sparklift.stats.sequential.arguments import fractions, look
from sparklift.stats.sequential.integration import crossing_probabilities


def repeated_ci(
    estimate: ArrayLike, se: ArrayLike, bound: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """The repeated confidence interval estimate +- bound * se (element-wise)."""
    est, half = np.asarray(estimate, dtype=float), np.asarray(bound, dtype=float) * np.asarray(se)
    return est - half, est + half


def _stagewise_tail(t: np.ndarray, upper: np.ndarray, k_stop: int, z_stop: float, drift: float):
    """P_drift(an outcome at least as extreme as (k_stop, z_stop) in the stage-wise order)."""
    bounds = np.append(upper[: k_stop - 1], z_stop)
    p_up, _ = crossing_probabilities(t[:k_stop], bounds, np.full(k_stop, -np.inf), drift)
    return float(p_up.sum())


def _checked(t: ArrayLike, upper: ArrayLike, k_stop: int) -> tuple[np.ndarray, np.ndarray, int]:
    t = fractions(t)
    up = np.asarray(upper, dtype=float)
    if up.shape != t.shape:
        raise ValueError(f"upper: expected {t.size} bounds (one per look), got {up.shape}")
    return t, up, look(k_stop, t.size)


def stagewise_p(t: ArrayLike, upper: ArrayLike, k_stop: int, z_stop: float) -> float:
    """One-sided p-value of stopping at look ``k_stop`` (counted from 1) with Z = ``z_stop``,
    under the stage-wise ordering; ``t`` and ``upper`` describe the looks made."""
    t, up, k_stop = _checked(t, upper, k_stop)
    return _stagewise_tail(t, up, k_stop, z_stop, 0.0)


def median_unbiased(
    t: ArrayLike, upper: ArrayLike, k_stop: int, z_stop: float, i_max: float
) -> float:
    """Median unbiased estimate of theta after stopping at look ``k_stop`` with Z = ``z_stop``.

    The solved drift is divided by sqrt(``i_max``), so the result is on the effect's scale
    when ``i_max`` is the information the fractions ``t`` refer to, e.g. 1 / se^2 of the
    estimate at t = 1 (then Z_k = estimate_k / se_k with se_k = se / sqrt(t_k)).
    """
    t, up, k_stop = _checked(t, upper, k_stop)
    if not i_max > 0:
        raise ValueError(f"i_max: expected a positive information, got {i_max}")

    def gap(drift: float) -> float:
        return _stagewise_tail(t, up, k_stop, z_stop, drift) - 0.5

    centre = z_stop / math.sqrt(t[k_stop - 1])
    lo, hi = centre - 1.0, centre + 1.0
    while gap(lo) > 0.0:
        lo, hi = lo - 2.0 * (hi - lo), lo
    while gap(hi) < 0.0:
        lo, hi = hi, hi + 2.0 * (hi - lo)
    return float(brentq(gap, lo, hi, xtol=1e-10)) / math.sqrt(i_max)
