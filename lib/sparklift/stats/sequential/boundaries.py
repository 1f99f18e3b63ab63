r"""Error-spending boundaries, solved look by look on the recursive integration.

Efficacy (Lan & DeMets 1983; Jennison & Turnbull 2000, ch. 7): under theta = 0 the bound u_k
spends exactly the increment of the alpha-spending function,

    P_0(Z_k >= u_k, no crossing before k) = f(t_k; alpha) - f(t_{k-1}; alpha),

and for the symmetric two-sided test (gsDesign test.type = 2) the +-u_k bounds share the
increment over both tails, with both boundaries in the integration; as in gsDesign each side
spends the function at alpha / 2 (for the O'Brien-Fleming type this differs from spending the
function at alpha over both sides). Futility by beta spending (J&T ch. 7.3; Pampallona &
Tsiatis 1994; gsDesign's manual, test.type 3 and 4): under the design drift the lower bound
l_k spends the increment of g(t; beta),

    P_delta(Z_k <= l_k, no crossing before k) = g(t_k; beta) - g(t_{k-1}; beta).

Non-binding futility (test.type 4) computes u under theta = 0 ignoring l, so the type I error
holds whether or not futility is acted on; binding futility (test.type 3) includes l in the
theta = 0 integration, which lowers u. A look whose increment is (numerically) nothing gets
the bound +-BOUND_MAX = 20, which no statistic reaches (P(|Z| >= 20) < 1e-88); it stands for
"no bound" while keeping the arrays finite. Each bound is a root found by safeguarded Newton
steps (the slope is the sub-density at the bound), started from the previous look's bound.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtri

from sparklift.stats.sequential.arguments import alpha_level, fractions, sides_count
from sparklift.stats.sequential.integration import (
    ORIGIN,
    Density,
    advance,
    tail_and_density,
)
from sparklift.stats.sequential.spending import Spending

BOUND_MAX = 20.0
_XTOL = 1e-10


def _newton(
    slope_fn: Callable[[float], tuple[float, float]], lo: float, hi: float, x: float
) -> float:
    """The root in [lo, hi] of an increasing function given as (value, slope), by Newton
    steps from ``x`` kept inside a shrinking bracket (bisection when a step leaves it)."""
    x = min(max(x, lo), hi)
    for _ in range(200):
        value, slope = slope_fn(x)
        if value == 0.0:
            return float(x)
        lo, hi = (x, hi) if value < 0.0 else (lo, x)
        step = x - value / slope if abs(value) < 100.0 * slope else np.nan  # else far out
        nxt = step if lo < step < hi else 0.5 * (lo + hi)
        if abs(nxt - x) < _XTOL:
            return float(nxt)
        x = nxt
    return float(x)


def _upper_bound(null: Density, t: float, spend: float, sides: int, guess: float) -> float:
    """The bound u whose crossing (of +-u if two-sided) under theta = 0 spends ``spend``."""
    if spend <= 0.0:
        return BOUND_MAX

    def excess(c: float) -> tuple[float, float]:
        tail, dens = tail_and_density(null, t, 0.0, c, upper=True)
        if sides == 2:
            other, other_dens = tail_and_density(null, t, 0.0, -c, upper=False)
            tail, dens = tail + other, dens + other_dens
        return spend - tail, dens

    return _newton(excess, -BOUND_MAX if sides == 1 else 0.0, BOUND_MAX, guess)


def _lower_bound(alt: Density, t: float, drift: float, spend: float, guess: float) -> float:
    """The bound l whose crossing at ``drift`` spends ``spend`` of beta."""
    if spend <= 0.0:
        return -BOUND_MAX

    def excess(c: float) -> tuple[float, float]:
        tail, dens = tail_and_density(alt, t, drift, c, upper=False)
        return tail - spend, dens

    return _newton(excess, -BOUND_MAX, BOUND_MAX, guess)


def efficacy_path(t: np.ndarray, cumulative: np.ndarray, sides: int) -> np.ndarray:
    """Upper bounds under theta = 0 spending the increments of ``cumulative`` (both sides'
    total if ``sides`` is 2, the lower bound then being the mirror image)."""
    increments = np.diff(cumulative, prepend=0.0)
    upper = np.empty(t.size)
    null = ORIGIN
    for k, tk in enumerate(t):
        guess = upper[k - 1] if k else float(-ndtri(increments[0] / sides))
        upper[k] = _upper_bound(null, tk, increments[k], sides, guess)
        if k + 1 < t.size:
            null = advance(null, tk, 0.0, -upper[k] if sides == 2 else -np.inf, upper[k])
    return upper


def futility_path(
    t: np.ndarray, upper: np.ndarray, beta_cumulative: np.ndarray, drift: float
) -> np.ndarray:
    """Beta-spending lower bounds at ``drift`` given fixed (non-binding) upper bounds.

    A lower bound above the upper one is cut to it (the trial stops there anyway).
    """
    increments = np.diff(beta_cumulative, prepend=0.0)
    lower = np.empty(t.size)
    alt = ORIGIN
    for k, tk in enumerate(t):
        guess = lower[k - 1] if k else float(drift * np.sqrt(tk) + ndtri(increments[0]))
        lower[k] = min(_lower_bound(alt, tk, drift, increments[k], guess), upper[k])
        if k + 1 < t.size:
            alt = advance(alt, tk, drift, lower[k], upper[k])
    return lower


def binding_path(
    t: np.ndarray, alpha_cumulative: np.ndarray, beta_cumulative: np.ndarray, drift: float
) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower bounds when futility binds: u_k under theta = 0 with the earlier lower
    bounds in the integration, l_k at ``drift`` as in :func:`futility_path`."""
    alpha_inc = np.diff(alpha_cumulative, prepend=0.0)
    beta_inc = np.diff(beta_cumulative, prepend=0.0)
    upper, lower = np.empty(t.size), np.empty(t.size)
    null = alt = ORIGIN
    for k, tk in enumerate(t):
        up_guess = upper[k - 1] if k else float(-ndtri(alpha_inc[0]))
        low_guess = lower[k - 1] if k else float(drift * np.sqrt(tk) + ndtri(beta_inc[0]))
        upper[k] = _upper_bound(null, tk, alpha_inc[k], 1, up_guess)
        lower[k] = min(_lower_bound(alt, tk, drift, beta_inc[k], low_guess), upper[k])
        if k + 1 < t.size:
            null = advance(null, tk, 0.0, lower[k], upper[k])
            alt = advance(alt, tk, drift, lower[k], upper[k])
    return upper, lower


def alpha_cumulative(spending: Spending, t: np.ndarray, alpha: float, sides: int) -> np.ndarray:
    """Cumulative alpha at ``t``, both sides' total: each side spends ``spending`` at
    alpha / sides, as gsDesign's test.type = 2 spends its one-sided alpha on each side."""
    return sides * spending.cumulative(t, alpha / sides)


def efficacy_bounds(t: ArrayLike, alpha: float, spending: Spending, sides: int = 1) -> np.ndarray:
    """Efficacy bounds at fractions ``t`` spending ``spending.cumulative(t, alpha)``.

    ``sides=2``: symmetric bounds +-u_k with total type I error ``alpha``, each side spending
    ``spending.cumulative(t, alpha / 2)`` (gsDesign test.type = 2 with its alpha = alpha / 2).
    """
    t = fractions(t)
    sides = sides_count(sides)
    return efficacy_path(t, alpha_cumulative(spending, t, alpha_level(alpha), sides), sides)
