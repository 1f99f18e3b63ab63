r"""A group sequential design (``plan``) and its bounds recomputed at the looks reached.

The maximum information I_max is found through the drift delta = theta * sqrt(I_max) at which
the design has power 1 - beta against theta (the effect it is powered for):

- efficacy only: upper bounds under theta = 0, delta solves P_delta(cross upper) = 1 - beta;
- with beta-spending futility (gsDesign test.type 4 non-binding, 3 binding; Jennison &
  Turnbull 2000, ch. 7.3 and gsDesign's manual): for a trial delta the lower bounds spend
  g(t; beta) at delta and the last one is set to the last upper one, l_K = u_K, so that every
  path ends in one of the two; delta is solved so that power is 1 - beta, which makes the
  beta-spending l_K meet u_K (gsDesign's condition).

The fixed design with the same alpha and power needs I_fixed = (z_{1-alpha/sides} +
z_{1-beta})^2 / theta^2, so ``inflation`` = I_max / I_fixed = (delta / (z_{1-alpha/sides} +
z_{1-beta}))^2: multiply a fixed-design sample size by it.

Two-sided plans (sides = 2): without futility the bounds are the symmetric +-u_k of
:func:`efficacy_bounds`. With futility the design is the one-sided one at alpha / 2 on the
upper side (the lower efficacy bound -u_k lies below the futility bound, so a trial there has
stopped for futility); ``lower`` then holds the futility bounds.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import brentq
from scipy.special import ndtri

from sparklift.stats.sequential.arguments import alpha_level, beta_level, fractions, sides_count
from sparklift.stats.sequential.boundaries import (
    alpha_cumulative,
    binding_path,
    efficacy_path,
    futility_path,
)
from sparklift.stats.sequential.integration import crossing_probabilities
from sparklift.stats.sequential.spending import Spending

_XTOL = 1e-10
OBF = Spending("obf")


@dataclass(frozen=True, eq=False)
class Plan:
    """A group sequential design at planned information fractions ``t`` (last = 1).

    ``upper``/``lower`` are the efficacy and futility bounds on the Z scale (``lower`` is
    -inf where there is no lower bound, -upper for a two-sided plan without futility);
    ``drift`` = theta * sqrt(I_max) for the powered effect theta; ``inflation`` = I_max /
    I_fixed; ``alpha_spent`` the cumulative alpha (both sides' total when two-sided).
    """

    t: np.ndarray
    alpha: float
    beta: float
    sides: int
    efficacy: Spending
    futility: Spending | None
    binding: bool
    upper: np.ndarray
    lower: np.ndarray
    drift: float
    inflation: float
    alpha_spent: np.ndarray

    def power(self, drift: float) -> float:
        """Probability of crossing the upper bound at ``drift``, with the lower bound in force."""
        return float(crossing_probabilities(self.t, self.upper, self.lower, drift)[0].sum())

    def expected_fraction(self, drift: float) -> float:
        """Expected information fraction at stopping, sum_k t_k P(stop at look k), at ``drift``.

        Stopping counts either boundary, so this assumes futility is acted on.
        """
        p_up, p_lo = crossing_probabilities(self.t, self.upper, self.lower, drift)
        stop = p_up + p_lo
        stop[-1] = 1.0 - stop[:-1].sum()
        return float(self.t @ stop)


def _solve_drift(gap: Callable[[float], float], start: float) -> float:
    """The root of the increasing ``gap`` in delta, bracketed upwards from ``start`` > 0
    (values are remembered: Brent's method re-evaluates the bracket's ends)."""
    gap = functools.cache(gap)
    lo, hi = start, 1.25 * start
    while gap(lo) > 0.0:
        lo, hi = lo / 1.25, lo
    while gap(hi) < 0.0:
        lo, hi = hi, 1.25 * hi
    return float(brentq(gap, lo, hi, xtol=_XTOL))


def _futility_bounds(
    t: np.ndarray,
    alpha_cumulative: np.ndarray,
    beta_cumulative: np.ndarray,
    drift: float,
    nonbinding_upper: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower bounds of a design with futility at ``drift``:
    binding when ``nonbinding_upper`` is None, else non-binding with these upper bounds."""
    if nonbinding_upper is None:
        return binding_path(t, alpha_cumulative, beta_cumulative, drift)
    return nonbinding_upper, futility_path(t, nonbinding_upper, beta_cumulative, drift)


def plan(
    t: ArrayLike,
    alpha: float = 0.025,
    beta: float = 0.1,
    efficacy: Spending = OBF,
    futility: Spending | None = None,
    binding: bool = False,
    sides: int = 1,
) -> Plan:
    """Design bounds and maximum information for looks at fractions ``t`` (ending at 1) with
    type I error ``alpha`` (one-sided, or total over both sides) and power 1 - ``beta``."""
    t = fractions(t)
    if abs(t[-1] - 1.0) > 1e-9:
        raise ValueError(f"t: planned information fractions must end at 1, got {t[-1]}")
    alpha, sides = alpha_level(alpha), sides_count(sides)
    beta = beta_level(beta, alpha / sides)
    z_fixed = float(ndtri(1.0 - alpha / sides) + ndtri(1.0 - beta))
    alpha_spent = alpha_cumulative(efficacy, t, alpha, sides)
    if futility is None:
        upper = efficacy_path(t, alpha_spent, sides)
        lower = -upper if sides == 2 else np.full(t.size, -np.inf)
        drift = _solve_drift(
            lambda d: crossing_probabilities(t, upper, lower, d)[0].sum() - (1.0 - beta), z_fixed
        )
    else:
        alpha_cum = efficacy.cumulative(t, alpha / sides)
        beta_cum = futility.cumulative(t, beta)
        nonbinding = None if binding else efficacy_path(t, alpha_cum, 1)

        def final_bounds(d: float) -> tuple[np.ndarray, np.ndarray]:
            upper, lower = _futility_bounds(t, alpha_cum, beta_cum, d, nonbinding)
            lower[-1] = upper[-1]
            return upper, lower

        def gap(d: float) -> float:
            return crossing_probabilities(t, *final_bounds(d), d)[0].sum() - (1.0 - beta)

        drift = _solve_drift(gap, z_fixed)
        upper, lower = final_bounds(drift)
    return Plan(
        t=t,
        alpha=alpha,
        beta=beta,
        sides=sides,
        efficacy=efficacy,
        futility=futility,
        binding=binding,
        upper=upper,
        lower=lower,
        drift=drift,
        inflation=(drift / z_fixed) ** 2,
        alpha_spent=alpha_spent,
    )


def bounds_at(
    design: Plan, t_observed: ArrayLike, final: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Efficacy and futility bounds ``(upper, lower)`` at the fractions of I_max reached.

    Spending is evaluated at the observed fractions, so unplanned timing keeps the type I
    error. The last look is final, spending all remaining alpha (and beta), if ``final`` or
    if it reached t >= 1 (any later look would spend nothing); at a final look with futility
    lower = upper, as in the design. Futility bounds are the beta-spending ones recomputed at
    the observed fractions with the plan's drift; ``lower`` is as in :class:`Plan`.
    """
    t = fractions(t_observed, "t_observed")
    final = final or bool(t[-1] >= 1.0)
    if design.futility is None:
        spent = alpha_cumulative(design.efficacy, t, design.alpha, design.sides)
        if final:
            spent[-1] = design.alpha
        upper = efficacy_path(t, spent, design.sides)
        return upper, (-upper if design.sides == 2 else np.full(t.size, -np.inf))
    alpha_cum = design.efficacy.cumulative(t, design.alpha / design.sides)
    if final:
        alpha_cum[-1] = design.alpha / design.sides
    beta_cum = design.futility.cumulative(t, design.beta)
    if final:
        beta_cum[-1] = design.beta
    nonbinding = None if design.binding else efficacy_path(t, alpha_cum, 1)
    upper, lower = _futility_bounds(t, alpha_cum, beta_cum, design.drift, nonbinding)
    if final:
        lower[-1] = upper[-1]
    return upper, lower
