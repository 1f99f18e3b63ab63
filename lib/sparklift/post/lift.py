r"""Relative lift L = b / m of a coefficient b over the mean m of the outcome in some cells.

m is the mean of the outcome over the rows of the given cells (for a DiD: the control
zones' post-period rows). b and m are both M-estimators, so their joint covariance is
clustered like b's: the per-cell scores are [B_j' u_c, (S_c - m n_c) / N_m] (the second
only in the cells of m), and by the delta method Var(L) = g' V g with g = [1/m, -b/m^2],
V the clustered meat of those scores with the fit's small-sample factor. Two-way
(zone+day) V = V_zone + V_day - V_zone-day can be indefinite, and g' V g then negative: as
for the coefficients (:func:`sparklift.stats.covariance.psd`), V's negative eigenvalues are
set to zero and the lift says so (``psd_fixed``, its own: V is not the coefficients'
covariance). The CI is L +- t se(L) (:mod:`sparklift.stats.inference`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparklift.errors import InputError
from sparklift.stats import covariance
from sparklift.stats.inference import Estimate, t_estimate
from sparklift.stats.ssc import SmallSample
from sparklift.stats.twfe import TwfeFit


@dataclass(frozen=True)
class Lift(Estimate):
    """The lift's estimate and inference, and whether its two-way covariance of (b, m) had
    negative eigenvalues set to zero."""

    psd_fixed: bool = False


def relative_lift(
    fit: TwfeFit, name: str, base: np.ndarray, cov: str, ssc: SmallSample, alpha: float
) -> Lift:
    """The lift of coefficient ``name`` over the outcome's mean in the cells ``base`` (a
    mask over the cells the fit was given), with a clustered delta-method CI."""
    spec = covariance.parse(cov)
    if spec.kind != "cluster":
        raise InputError(f"the relative lift needs a clustered covariance, not {cov!r}")
    j = fit.names.index(name)
    b = fit.params[j]
    cells, base = fit.cells, np.asarray(base, dtype=bool)[fit.kept]
    y = cells.sums[:, cells.index(fit.outcome)]
    n_base = cells.n[base].sum()
    m = y[base].sum() / n_base
    psi_m = np.where(base, (y - m * cells.n) / n_base, 0.0)
    psi = np.column_stack([fit.influence[:, j], psi_m])
    meat, g = covariance.cluster_meat(psi, [fit.groups[c] for c in spec.clusters], spec.clusters)
    factor, df = ssc.correction(spec.kind, fit.fixed_effects, spec.clusters, g)
    v, fixed = meat * factor, False
    if len(spec.clusters) == 2:
        v, fixed = covariance.psd(v)
    grad = np.array([1 / m, -b / m**2])
    se = float(np.sqrt(max(grad @ v @ grad, 0.0)))  # a PSD V: below 0 only by round-off
    return Lift(**vars(t_estimate("lift", b / m, se, df, alpha)), psd_fixed=fixed)
