r"""The leave-one-zone-out jackknife of a two-way fixed-effects fit (CV3), from cell statistics.

The zone-clustered sandwich (CV1) is too small when a few big zones carry the estimate, as
they do in long-tailed geo data; MacKinnon, Nielsen and Webb (2023, "Cluster-robust
inference: a guide to empirical practice", sec. 4-5) recommend the cluster jackknife

    V_CV3 = (G - 1) / G * sum_g (b_(g) - b)(b_(g) - b)',

b_(g) the estimate without zone g, inferred with t(G - 1): typically larger than CV1, and much
closer to the nominal level where CV1 over-rejects. pyfixest computes it by refitting the
model G times; here every refit is exact and costs one small solve. The zone effects are
nested in the zone clusters, so only they are partialled out (within-zone demeaning) and the
day effects stay as T - 1 dummies: with w_i = [r_i, day dummies] demeaned within zone and
A_g = sum_{i in g} w_i w_i', c_g = sum_{i in g} w_i y_i (both functions of a zone's cell
counts, sums and cross-products),

    b = (sum_g A_g)^{-1} sum_g c_g,    b_(g) = (A - A_g)^{-1} (c - c_g);

a zone whose removal leaves a regressor unidentified (a variant's only zone) is an error that
names it. Zones are processed in chunks, so memory stays at a few (K + T)^2 matrices.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sparklift.errors import InputError

if TYPE_CHECKING:
    from sparklift.stats.twfe import TwfeFit


CHUNK = 64  # zones whose Gram matrices are held at once (memory: CHUNK x (K + T)^2)


def zone_deviations(fit: TwfeFit) -> np.ndarray:
    """b_(g) - b for every zone g (zones x regressors), in the order of ``fit.names``."""
    if fit.n_zones < 2:
        raise InputError(f"the zone jackknife needs at least 2 zones, got {fit.n_zones}")
    grams = _ZoneGrams(fit)
    a, c = 0.0, 0.0
    for lo in range(0, fit.n_zones, CHUNK):
        a_g, c_g = grams(range(lo, min(lo + CHUNK, fit.n_zones)))
        a, c = a + a_g.sum(axis=0), c + c_g.sum(axis=0)
    out = np.empty((fit.n_zones, fit.k))
    for lo in range(0, fit.n_zones, CHUNK):
        a_g, c_g = grams(range(lo, min(lo + CHUNK, fit.n_zones)))
        lhs, rhs = a - a_g, (c - c_g)[..., None]
        try:
            b = np.linalg.solve(lhs, rhs)[..., 0]
        except np.linalg.LinAlgError:
            raise InputError(_unidentified(fit, lhs, lo)) from None
        out[lo : lo + len(b)] = b[:, : fit.k]
    return out - fit.params


def _unidentified(fit: TwfeFit, lhs: np.ndarray, lo: int) -> str:
    """The error of a zone whose removal leaves a regressor unidentified."""
    g = next(i for i, m in enumerate(lhs) if np.linalg.matrix_rank(m) < len(m))
    zone = np.unique(fit.cells.zone)[lo + g]
    others = fit.zone_codes != lo + g
    alone = sorted(set(np.unique(fit.cells.day)) - set(np.unique(fit.cells.day[others])))
    if alone:  # a day dummy, not an effect, is what the zone alone identifies
        why = f"only zone {zone} has rows on {', '.join(str(d) for d in alone[:3])}"
        fix = "give those days rows in other zones, or drop them from the analysis"
    else:
        why = f"{fit.names} are not all identified without it (a variant with one zone?)"
        fix = "give every variant at least two zones"
    return f"the zone jackknife cannot leave zone {zone} out: {why}; {fix}"


class _ZoneGrams:
    """Per zone, A_g and c_g (module docstring) over [effects, covariates, day dummies]."""

    def __init__(self, fit: TwfeFit) -> None:
        self.cells, self.n = fit.cells, fit.n
        self.cols = [fit.cells.index(v) for v in fit.row_vars]  # covariates, then the outcome
        self.effects, self.day_codes, self.n_days = fit.effects, fit.day_codes, fit.n_days
        q, p = fit.effects.shape[1], len(self.cols) - 1
        m = q + fit.n_days - 1  # cell-constant columns: effects, day dummies (first day out)
        # [effects, days, covariates, outcome] -> [effects, covariates, days]: fit.names first
        self.perm = [*range(q), *range(m, m + p), *range(q, m)]
        order = np.argsort(fit.zone_codes, kind="stable")
        bounds = np.searchsorted(fit.zone_codes[order], np.arange(fit.n_zones + 1))
        self.members = [order[bounds[g] : bounds[g + 1]] for g in range(fit.n_zones)]

    def __call__(self, zones: range) -> tuple[np.ndarray, np.ndarray]:
        out = []
        for g in zones:
            idx = self.members[g]
            days = np.zeros((len(idx), self.n_days))
            days[np.arange(len(idx)), self.day_codes[idx]] = 1.0
            e, ng = np.concatenate([self.effects[idx], days[:, 1:]], axis=1), self.n[idx]
            s_v = self.cells.sums[idx][:, self.cols]
            q_v = self.cells.cross[idx][:, self.cols][:, :, self.cols].sum(axis=0)
            ee, ev = e.T @ (ng[:, None] * e), e.T @ s_v
            raw = np.block([[ee, ev], [ev.T, q_v]])
            s = np.concatenate([e.T @ ng, s_v.sum(axis=0)])
            out.append(raw - np.outer(s, s) / ng.sum())
        gram = np.stack(out)
        return gram[:, self.perm][:, :, self.perm], gram[:, self.perm, -1]
