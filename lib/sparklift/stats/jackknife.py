r"""The leave-one-zone-out jackknife of a two-way fixed-effects fit (CV3), from cell statistics.

The zone-clustered sandwich (CV1) is too small when a few big zones carry the estimate, as
they do in long-tailed geo data; MacKinnon, Nielsen and Webb (2023, "Cluster-robust
inference: a guide to empirical practice", sec. 4-5) recommend the cluster jackknife

    V_CV3 = (G - 1) / G * sum_g (b_(g) - b)(b_(g) - b)',

b_(g) the estimate without zone g, inferred with t(G - 1): it is never smaller than CV1 in
expectation and close to exact where CV1 over-rejects. pyfixest computes it by refitting the
model G times; here every refit is exact and costs one small solve. The zone effects are
nested in the zone clusters, so only they are partialled out (within-zone demeaning) and the
day effects stay as T - 1 dummies: with w_i = [r_i, day dummies] demeaned within zone and
A_g = sum_{i in g} w_i w_i', c_g = sum_{i in g} w_i y_i (both functions of a zone's cell
counts, sums and cross-products),

    b = (sum_g A_g)^{-1} sum_g c_g,    b_(g) = (A - A_g)^+ (c - c_g),

the pseudo-inverse as pyfixest's (a zone whose removal leaves a regressor unidentified, such
as a variant's only zone, gives that regressor no usable variance, and the fit says so).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sparklift.errors import InputError

if TYPE_CHECKING:
    from sparklift.stats.twfe import TwfeFit


def zone_deviations(fit: TwfeFit) -> np.ndarray:
    """b_(g) - b for every zone g (zones x regressors), in the order of ``fit.names``."""
    if fit.n_zones < 2:
        raise InputError(f"the zone jackknife needs at least 2 zones, got {fit.n_zones}")
    cells, n = fit.cells, fit.n
    cols = [cells.index(v) for v in fit.row_vars]  # row covariates, then the outcome
    days = np.eye(fit.n_days)[fit.day_codes][:, 1:]
    const = np.concatenate([fit.effects, days], axis=1)  # cell-constant columns
    q, p = fit.effects.shape[1], len(cols) - 1
    width = const.shape[1] + p + 1
    gram = np.zeros((fit.n_zones, width, width))
    order = np.argsort(fit.zone_codes, kind="stable")
    bounds = np.searchsorted(fit.zone_codes[order], np.arange(fit.n_zones + 1))
    for g in range(fit.n_zones):
        idx = order[bounds[g] : bounds[g + 1]]
        e, ng = const[idx], n[idx]
        s_v = cells.sums[idx][:, cols]
        q_v = cells.cross[idx][:, cols][:, :, cols].sum(axis=0)
        ee, ev = e.T @ (ng[:, None] * e), e.T @ s_v
        raw = np.block([[ee, ev], [ev.T, q_v]])
        s = np.concatenate([e.T @ ng, s_v.sum(axis=0)])
        gram[g] = raw - np.outer(s, s) / ng.sum()
    # Reorder to [effects, covariates, days | outcome] so the first K entries are fit.names.
    perm = [*range(q), *range(const.shape[1], const.shape[1] + p), *range(q, const.shape[1])]
    a_g = gram[:, perm][:, :, perm]
    c_g = gram[:, perm, -1]
    a, c = a_g.sum(axis=0), c_g.sum(axis=0)
    k = fit.k
    out = np.empty((fit.n_zones, k))
    for g in range(fit.n_zones):
        out[g] = (np.linalg.pinv(a - a_g[g]) @ (c - c_g[g]))[:k]
    return out - fit.params
