r"""Restricted wild cluster bootstrap (WCR) for one coefficient, from cell statistics.

Under H0: b_j = b0 the restricted fit b^r (b_j fixed at b0, the other coefficients
re-estimated, same fixed effects) has cluster scores S^r_g = sum_{i in g} x~_i e^r_i. A
bootstrap sample y*_i = yhat^r_i + v_g e^r_i (v_g: Rademacher, or Webb's six-point weights
when there are fewer than 12 clusters) re-estimated with the same regressors gives, since
x~ is orthogonal to the fixed effects,
    b* = b^r + B sum_g v_g S^r_g        (B = (X~'X~)^{-1}).
Its residuals are e*_i = x~_i'(b^r - b*) + v_g e^r_i - phi_c, where phi_c is the two-way
fixed-effect fit of v_g e^r (the day effects do not absorb a zone-varying v), obtained from
the cell sums v_g E_c, E_c = sum_{i in c} e^r_i. So the cluster scores are
    s*_g = v_g S^r_g - sum_{c in g} phi_c sigma_c - H_g (b* - b^r),
with sigma_c = sum_{i in c} x~_i and H_g = sum_{i in g} x~_i x~_i'. Every piece is a sum of
cell statistics, so no user row is touched; this is the WCR of the model with the fixed
effects as dummies (as pyfixest's ``wildboottest`` runs it). With a_g = B_j' s*_g the
bootstrap t is t* = (b*_j - b0) / sqrt(sum_g a_g^2); it is compared with
the observed t(b0) = (b_j - b0) / se_j computed the same way (the small-sample factors of
the two cancel). p(b0) = share of |t*| >= |t(b0)|; the confidence interval is
{b0 : p(b0) > alpha}, found by bisection on each side with the same draws. A coefficient
with se_j = 0 (a constant outcome) has no t to compare: p and the interval are NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from sparklift.stats.twfe import TwfeFit

CHUNK = 128  # bootstrap draws per vectorized batch (bounds memory: cells x CHUNK)
LINEAR_MAP_MAX = 4e7  # cells x zones up to which the zone-to-zone map is precomputed
WEBB = np.array([-np.sqrt(1.5), -1.0, -np.sqrt(0.5), np.sqrt(0.5), 1.0, np.sqrt(1.5)])


@dataclass(frozen=True)
class WildBootstrap:
    p_value: float
    ci_low: float
    ci_high: float
    draws: int
    weights: str  # rademacher | webb
    clusters: int


def wild_cluster_bootstrap(
    fit: TwfeFit, name: str, draws: int = 999, seed: int = 0, alpha: float = 0.05
) -> WildBootstrap:
    """WCR p-value of H0: coefficient ``name`` = 0 and its test-inversion CI, by zone (NaN
    when its standard error is zero)."""
    j = fit.names.index(name)
    k, g = fit.k, fit.n_zones
    rng = np.random.default_rng(seed)
    if g < 12:
        weights, v = "webb", rng.choice(WEBB, size=(draws, g))
    else:
        weights, v = "rademacher", rng.choice([-1.0, 1.0], size=(draws, g))
    h = np.zeros((g, k, k))
    sy = np.zeros((g, k))
    np.add.at(h, fit.zone_codes, fit.cell_moments[:, :k, :k])
    np.add.at(sy, fit.zone_codes, fit.cell_moments[:, :k, k])
    cells = len(fit.n)
    to_zone = sparse.csr_matrix((np.ones(cells), (fit.zone_codes, np.arange(cells))), (g, cells))
    bj = fit.bread[j]
    hb = h @ bj  # (g, k): H_g B_j
    sigma_b = fit.cell_sigma @ bj  # (cells,): sigma_c . B_j
    others = [i for i in range(k) if i != j]
    b_hat = fit.params[j]
    se = np.sqrt(np.sum(((sy - h @ fit.params) @ bj) ** 2))
    if not se > 0:
        return WildBootstrap(np.nan, np.nan, np.nan, draws, weights, g)

    def restricted(b0: float) -> np.ndarray:
        out = np.zeros(k)
        out[j] = b0
        if others:
            rhs = fit.xty[others] - fit.xtx[others, j] * b0
            out[others] = np.linalg.solve(fit.xtx[np.ix_(others, others)], rhs)
        return out

    # The restricted coefficients, and so the residual cell sums E_c, are affine in b0.
    r0, r1 = restricted(0.0), restricted(1.0) - restricted(0.0)
    e0, e1 = fit.cell_resid_sum(r0), -(fit.cell_sigma @ r1)
    # sum_{c in g} phi_c sigma_c.B_j is linear in the zone weights v: v @ (L0 + b0 L1), with
    # L[h, g] the effect of zone h's weight on zone g; precomputed when it is small.
    linear = cells * g <= LINEAR_MAP_MAX

    def zone_map(e: np.ndarray) -> np.ndarray:
        per_zone = np.zeros((cells, g))
        per_zone[np.arange(cells), fit.zone_codes] = e
        return (to_zone @ (fit.project(per_zone) * sigma_b[:, None])).T

    l0, l1 = (zone_map(e0), zone_map(e1)) if linear else (None, None)

    def p_value(b0: float) -> float:
        rest = r0 + b0 * r1
        s_r = sy - h @ rest  # (g, k)
        exceed = 0
        for lo in range(0, draws, CHUNK):
            vv = v[lo : lo + CHUNK]
            delta = (vv @ s_r) @ fit.bread  # b* - b^r, (chunk, k)
            if linear:
                fe_term = vv @ (l0 + b0 * l1)
            else:
                resid_sum = e0 + b0 * e1
                phi = fit.project(resid_sum[:, None] * vv[:, fit.zone_codes].T)
                fe_term = (to_zone @ (phi * sigma_b[:, None])).T
            a = vv * (s_r @ bj)[None, :] - fe_term - delta @ hb.T
            t_star = delta[:, j] / np.sqrt((a**2).sum(axis=1))
            exceed += int(np.sum(np.abs(t_star) >= abs((b_hat - b0) / se) - 1e-12))
        return exceed / draws

    def bound(direction: float) -> float:
        inside, step = b_hat, se
        outside = b_hat + direction * step
        while p_value(outside) > alpha:
            inside, step = outside, 2 * step
            outside = b_hat + direction * step
            if step > 1e6 * max(se, 1e-300):
                return float(direction * np.inf)
        for _ in range(60):
            mid = (inside + outside) / 2
            if p_value(mid) > alpha:
                inside = mid
            else:
                outside = mid
            if abs(outside - inside) <= 1e-6 * se:
                break
        return float((inside + outside) / 2)

    return WildBootstrap(p_value(0.0), bound(-1.0), bound(1.0), draws, weights, g)
