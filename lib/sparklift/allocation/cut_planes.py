"""The cap multipliers mu that make the dual bound smallest: Kelley's cutting planes.

With budget multipliers solved exactly at each mu, the bound
D(mu) = sum_b L_b(lambda_b(mu), mu) + sum_j mu_j Q_j is convex in mu >= 0, and a round
at mu gives its value and a subgradient, g_j = Q_j - x_j(mu), where x is an optimal
solution of the relaxed problem at (lambda_b(mu), mu) that spends each binding budget
exactly (:func:`crossing_counts`). Each round adds the plane
D(mu_k) + g_k (mu - mu_k), which lies under D everywhere; the next mu minimizes the
planes' maximum (an LP in 1 + J variables, HiGHS) inside a box around the best mu so far.
The planes' minimum there is a lower bound on D in the box, so the search knows how far
its best bound can still fall, and stops when that is within ``tolerance``.

It replaced a bracket search that moved each mu towards where its count met its cap: on
tree models' scores, blocks of customers with equal scores tie at the optimum, a count
jumps over its cap there, and the brackets stalled far from it (on the demo the bound was
36-42% above the LP optimum; these planes end 0.02% above it, bench/RESULTS.md).

The counts x_j must come from such a solution, or the plane is no subgradient and can cut
the minimum off: counted as the customers that strictly prefer j, the customers at a
budget's crossing and those tied between options counted for none, and on tree models'
scores the search ended with its bound up to 4.5% above the LP optimum while its planes
said 0.1%.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from scipy.optimize import linprog

log = logging.getLogger("sparklift")

# The primal (deferred acceptance at the best round's lambda) is taken at the best mu
# lowered by this share: at the optimum a block of customers tied at a cap's margin is
# just indifferent, and lowered it asks for the voucher, so deferred acceptance fills the
# cap from it instead of leaving it unused. Lowered further, mu misprices the capped
# vouchers against each other: a tree model's customers lead their next best by as
# little as 1e-4, and 1% of mu moves the vouchers' prices apart by more, so acceptance
# ranks the wrong customers (the demo's policy arm: 0.9951 of the LP optimum; 0.9999 at
# 0.1%, with the search's tolerance at 1e-4 so that the best mu is accurate enough,
# bench/RESULTS.md). When deferred acceptance leaves a binding cap short, mu is lowered
# 4 times as far (0.4%, 1.6%, then 6.4%), up to LOWER_TRIES times.
MU_RTOL = 0.001
LOWER_TRIES = 3
# The planes' minimum lies on the box's face when within this share of the box's half
# width of it: relative, as the box may start 2e-12 wide (no cap binding in the first
# round), where an absolute 1e-8 put every point on the face.
FACE_RTOL = 1e-6
ABOVE, BELOW = "above", "below"  # the sides of a budget's lambda (:func:`crossing_counts`)
SIDES = (ABOVE, BELOW)


class CutSearch:
    """The rounds' mu (:meth:`advance`), the best (smallest) bound seen and its mu.

    The box's half width starts at twice the largest first-round target (the mu that alone
    brings a voucher to its cap) and doubles while the planes' minimum lies on its face.
    The search ends when the best bound is within ``tolerance`` (relative) of the planes'
    minimum inside the box, or at the last round. (Counts that meet the caps end it
    through the planes: their plane is flat, so the planes' minimum is the bound.) A round
    at mu = 0 whose counts are all within their caps ends it at once: no cap binds, and
    D(mu) >= D(0) + g mu >= D(0) for every mu >= 0."""

    def __init__(self, caps: Mapping[int, int], tolerance: float) -> None:
        self.caps = {j: q for j, q in caps.items() if q}  # a zero cap is not searched
        self.zero = [j for j, q in caps.items() if not q]
        self.tolerance = tolerance
        self.options = np.array(list(self.caps), dtype=np.int64)
        self.planes: list[tuple[float, np.ndarray, np.ndarray]] = []  # (D, g, mu) per round
        self.best_bound = np.inf
        self.best_mu: np.ndarray | None = None
        self.width: float | None = None
        self.gap = np.inf  # the best bound's distance to the planes' minimum (relative)
        self.tries = 0  # times the primal's mu was lowered further

    def start(self, n_opt: int) -> np.ndarray:
        """The first round's mu: 0, and infinite for a zero cap, which so removes its
        voucher from every round (its term mu Q is 0: :meth:`cap_term` leaves it out)."""
        mu = np.zeros(n_opt)
        mu[self.zero] = np.inf
        return mu

    def cap_term(self, mu: np.ndarray) -> float:
        """sum_j mu_j Q_j, the caps' part of the bound."""
        return float(sum(mu[j] * q for j, q in self.caps.items()))

    def advance(
        self,
        mu: np.ndarray,
        bound: float,
        counts: Mapping[int, float],
        target: np.ndarray,
        last_round: bool,
    ) -> np.ndarray | None:
        """The next round's mu after a round at ``mu`` gave ``bound`` (D(mu)) and
        ``counts`` (choosers per capped option); ``target``: per option the mu that alone
        would bring it to its cap (its scale, read in the first round). None: done."""
        g = np.array([self.caps[j] - counts[j] for j in self.options], dtype=float)
        target = np.asarray(target, dtype=float)
        self.planes.append((float(bound), g, mu[self.options].astype(float)))
        if bound < self.best_bound:
            self.best_bound, self.best_mu = float(bound), mu.copy()
        if not np.any(mu[self.options]) and np.all(g >= 0):  # no cap binds: 0 is optimal
            self.gap = 0.0
            return None
        if self.width is None:
            self.width = 2.0 * max(float(np.max(target[self.options], initial=0.0)), 1e-12)
        center = self.best_mu[self.options]
        low = np.maximum(center - self.width, 0.0)
        high = center + self.width
        model, point = self._minimum(low, high)
        self.gap = (self.best_bound - model) / max(abs(self.best_bound), 1e-12)
        near = FACE_RTOL * self.width
        on_face = np.any((high - point <= near) | ((point - low <= near) & (low > 0)))
        if last_round:
            if on_face or self.gap > self.tolerance:
                log.warning(
                    "allocation: the cap multipliers' search ran out of rounds %.3g from its "
                    "planes' minimum (tolerance %.3g): the allocation may leave value; "
                    "raise allocate.max_cap_rounds",
                    self.gap,
                    self.tolerance,
                )
            return None
        if on_face:  # the minimum may lie outside the box
            self.width *= 2.0
        elif self.gap <= self.tolerance:
            return None
        out = mu.copy()
        out[self.options] = point
        return out

    def primal_mu(self) -> np.ndarray:
        """The mu of the primal: the best one, lowered by :data:`MU_RTOL`."""
        assert self.best_mu is not None, "no round was run"
        self.tries = 0
        return self.best_mu * (1.0 - MU_RTOL)

    def lower(self, held: Mapping[int, int]) -> np.ndarray | None:
        """The primal's mu again after deferred acceptance there left a binding cap (best
        mu above :data:`MU_RTOL` of the largest) with fewer than its cap (``held``): every
        mu lowered 4 times as far as before, so the ties between capped vouchers keep
        their order; None when every binding cap is full, or after :data:`LOWER_TRIES`."""
        assert self.best_mu is not None, "no round was run"
        top = float(self.best_mu[self.options].max(initial=0.0))
        under = [j for j, q in self.caps.items() if self.best_mu[j] > MU_RTOL * top and held[j] < q]
        if not under or self.tries >= LOWER_TRIES:
            return None
        self.tries += 1
        return self.best_mu * max(1.0 - MU_RTOL * 4**self.tries, 0.0)

    def _minimum(self, low: np.ndarray, high: np.ndarray) -> tuple[float, np.ndarray]:
        """The planes' maximum minimized in the box [low, high]: its value and point."""
        # variables (t, mu): min t s.t. D_k + g_k (mu - mu_k) - t <= 0 for every plane k
        a = np.array([[-1.0, *g] for _, g, _ in self.planes])
        b = np.array([float(g @ m) - d for d, g, m in self.planes])
        bounds = [(None, None), *zip(low, high, strict=True)]
        cost = np.r_[1.0, np.zeros(len(self.options))]
        out = linprog(cost, A_ub=a, b_ub=b, bounds=bounds, method="highs")
        if out.status != 0:  # a bounded, feasible LP: HiGHS should not fail
            raise RuntimeError(f"cap multipliers: the cutting-plane LP failed: {out.message}")
        return float(out.x[0]), np.clip(out.x[1:], low, high)


def crossing_counts(
    sides: pd.DataFrame, budgets: Mapping[str, float], options: Iterable[int]
) -> dict[int, float]:
    """Per option of ``options``, its customers in an optimal solution of the relaxed
    problem that spends each budget exactly where its lambda is positive: the
    subgradient's x.

    ``sides`` has per budget group, side (:data:`ABOVE` or :data:`BELOW` the group's
    lambda) and option: ``n`` customers and ``cost`` (their spend). Just above lambda the
    customers whose breakpoint is lambda keep their cheaper option, just below they take
    the costlier; both choices are optimal at lambda, and they spend S+ <= B <= S-. The
    mix with weight w = (B - S+) / (S- - S+) on the one below spends B (a slack budget,
    lambda 0: the one below, w = 1). Customers tied between options of equal cost count for
    the one the envelope picks, which is as optimal."""
    out = dict.fromkeys(options, 0.0)
    for g, rows in sides.groupby("budget_group"):
        above, below = rows[rows["side"] == ABOVE], rows[rows["side"] == BELOW]
        s_hi, s_lo = float(above["cost"].sum()), float(below["cost"].sum())
        w = 1.0 if s_lo <= s_hi else min(max((budgets[g] - s_hi) / (s_lo - s_hi), 0.0), 1.0)
        for j in out:
            n_hi = float(above.loc[above["option"] == j, "n"].sum())
            n_lo = float(below.loc[below["option"] == j, "n"].sum())
            out[j] += (1.0 - w) * n_hi + w * n_lo
    return out
