r"""The effective number of clusters of a coefficient (Carter, Schnepel and Steigerwald 2017).

A zone-clustered t statistic is close to t(G - 1) only when the G zones weigh alike in the
estimate. Geo data are long-tailed: in a user-weighted DiD a few big zones carry most of
the weight, the cluster-robust variance rests on few of them and is too small too often,
and the test over-rejects (MacKinnon, Nielsen and Webb 2023, "Cluster-robust inference: a
guide to empirical practice", sec. 6). Carter et al.'s measure of that heterogeneity is

    G* = G / (1 + Gamma),   Gamma = (1/G) sum_g (gamma_g - mean(gamma))^2 / mean(gamma)^2,
    gamma_g = a' B X_g' Omega_g X_g B a,

with B = (X~'X~)^{-1}, a the coefficient's unit vector and Omega_g the within-zone error
covariance under a working model. Zone-constant shocks are absorbed by the zone effects, so
the working model here is a shock shared by the users of a zone-day (independent across
days) on top of user noise: Omega = sigma^2 ((1 - rho) I + rho 1_c 1_c') within a cell c.
With w_i = a' B r~_i the influence of row i,

    gamma_g = (1 - rho) sum_{i in g} w_i^2 + rho sum_{c in g} (sum_{i in c} w_i)^2,

both functions of cell statistics the fit keeps. rho is estimated from the residuals as
Carter et al. suggest: rho = sum_c ((sum_c e)^2 - sum_c e^2) / (s^2 sum_c n_c (n_c - 1)),
s^2 = sum e^2 / N, clipped to [0, 1]. G* = G for zones that weigh alike and tends to 1 when
one zone dominates; inference against t(G* - 1) is the guide's recommendation for such data.
"""

from __future__ import annotations

import numpy as np

from sparklift.stats.twfe import TwfeFit


def within_cell_correlation(fit: TwfeFit) -> float:
    """rho: the residuals' correlation between two users of the same zone-day."""
    b = fit.params
    k = len(b)
    m = fit.cell_moments
    e2 = m[:, k, k] - 2 * m[:, :k, k] @ b + np.einsum("i,cij,j->c", b, m[:, :k, :k], b)
    e1 = fit.cell_resid_sum(b)
    pairs = float((fit.n * (fit.n - 1)).sum())
    s2 = e2.sum() / fit.n.sum()
    if pairs == 0 or s2 <= 0:
        return 0.0
    return float(np.clip((e1**2 - e2).sum() / (s2 * pairs), 0.0, 1.0))


def effective_clusters(fit: TwfeFit, name: str) -> float:
    """G* of coefficient ``name`` with zone clusters (module docstring)."""
    j = fit.names.index(name)
    k = len(fit.names)
    a = fit.bread[:, j]
    own = np.einsum("i,cij,j->c", a, fit.cell_moments[:, :k, :k], a)  # sum_{i in c} w_i^2
    shared = (fit.cell_sigma @ a) ** 2  # (sum_{i in c} w_i)^2
    rho = within_cell_correlation(fit)
    cell = (1 - rho) * own + rho * shared
    gamma = np.bincount(fit.zone_codes, weights=cell, minlength=fit.n_zones)
    mean = gamma.mean()
    spread = float(((gamma - mean) ** 2).mean() / mean**2)
    return fit.n_zones / (1.0 + spread)
