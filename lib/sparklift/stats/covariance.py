r"""Covariances of a least-squares fit, as pure functions of its scores and bread.

Each is a sandwich V_0 = B M B with the bread B = (X~'X~)^{-1} and a meat M of scores,
before any small-sample factor (:mod:`sparklift.stats.ssc` scales V_0 and gives its t
degrees of freedom):

- ``unadjusted``: V_0 = (SSR / N) B (homoskedastic);
- ``robust`` (HC0): M = sum_i x~_i x~_i' e_i^2, which the fit supplies (from cell moments up
  to order four, :mod:`sparklift.stats.twfe`);
- ``zone``, ``day`` (clustered, one-way): M = sum_g s_g s_g', s_g the score sum of cluster g;
- ``zone+day`` (clustered, two-way; Cameron, Gelbach and Miller 2011):
  M = M_zone + M_day - M_zone-day; when V_0 is not positive semi-definite its negative
  eigenvalues are set to zero and the estimate says so (``psd_fixed``);
- ``zone-jackknife`` (CV3): not a sandwich but (G - 1) / G sum_g d_g d_g', d_g the change of
  the coefficients when zone g is left out (:mod:`sparklift.stats.jackknife`); it carries
  its own small-sample factor and is inferred with t(G - 1).

Scores come as per-cell sums (a cell is a zone-day, nested in every cluster), so a
cluster's score is the sum of its cells' scores and no row is needed.

The label is the one covariance vocabulary: what a user writes in ``analysis.covariances``,
what the fit is asked for, and what ``geo_results.cov_type`` and
``geo_design_checks.cov_type`` hold. A new covariance is one estimator function (a
:data:`Estimator`) and one entry of :data:`COVARIANCES`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from sparklift.errors import InputError

Kind = Literal["iid", "hetero", "cluster", "jackknife"]  # how a correction treats it


@dataclass(frozen=True)
class Scores:
    """What a covariance is a function of.

    ``cell_scores`` (cells x q) are the per-cell sums of the scores x~_i e_i, ``bread`` the
    q x q inverse Hessian, ``groups`` each cluster variable's code (0..G-1) per cell;
    ``ssr`` and ``hetero_meat`` (computed lazily: it needs higher moments) serve the
    homoskedastic and the heteroskedastic covariance, ``zone_deviations`` (lazily: one
    solve per zone) the jackknife.
    """

    bread: np.ndarray
    cell_scores: np.ndarray
    groups: Mapping[str, np.ndarray]
    n_obs: int
    ssr: float = float("nan")
    hetero_meat: Callable[[], np.ndarray] | None = None
    zone_deviations: Callable[[], np.ndarray] | None = None  # zones x q, for the jackknife


@dataclass(frozen=True)
class CovEstimate:
    """An uncorrected covariance V_0, its fewest clusters (None if not clustered) and
    whether negative eigenvalues were set to zero."""

    cov: np.ndarray
    clusters: int | None = None
    psd_fixed: bool = False


Estimator = Callable[[Scores], CovEstimate]


@dataclass(frozen=True)
class Covariance:
    """A named covariance: its label, its kind for the small-sample correction, its
    estimator and the variables it clusters by."""

    label: str
    kind: Kind
    estimate: Estimator
    clusters: tuple[str, ...] = ()


def unadjusted(s: Scores) -> CovEstimate:
    """(SSR / N) B."""
    if not np.isfinite(s.ssr):
        raise InputError("a homoskedastic covariance needs the cells' y'y, not collected")
    return CovEstimate(s.ssr / s.n_obs * s.bread)


def robust(s: Scores) -> CovEstimate:
    """B (sum_i x~_i x~_i' e_i^2) B (HC0)."""
    if s.hetero_meat is None:
        raise InputError("the heteroskedastic covariance needs the fit's fourth cell moments")
    return CovEstimate(sandwich(s.bread, s.hetero_meat()))


def jackknife(s: Scores) -> CovEstimate:
    """(G - 1) / G sum_g d_g d_g' of the leave-one-zone-out changes d_g (CV3)."""
    if s.zone_deviations is None:
        raise InputError("the zone jackknife needs the fit's leave-one-zone-out estimates")
    dev = s.zone_deviations()
    g = len(dev)
    return CovEstimate((g - 1) / g * (dev.T @ dev), g)


def clustered(s: Scores, by: tuple[str, ...]) -> CovEstimate:
    """B M B with M the one- or two-way cluster meat of the cell scores (PSD-fixed when
    two-way)."""
    meat, g = cluster_meat(s.cell_scores, [s.groups[c] for c in by], by)
    cov = sandwich(s.bread, meat)
    fixed = False
    if len(by) == 2:
        cov, fixed = psd(cov)
    return CovEstimate(cov, g, fixed)


def cluster_meat(
    cell_scores: np.ndarray, codes: list[np.ndarray], by: tuple[str, ...] = ()
) -> tuple[np.ndarray, int]:
    """sum_g s_g s_g' of per-cell scores (cells x q) clustered by one code array, or
    M_a + M_b - M_ab by two; and the fewest clusters of the one-way terms."""
    if len(codes) == 1:
        terms = [(1, codes[0])]
    elif len(codes) == 2:
        a, b = codes
        both = np.unique(a * (b.max() + 1) + b, return_inverse=True)[1].ravel()
        terms = [(1, a), (1, b), (-1, both)]
    else:
        raise InputError(f"clusters {by!r}: expected one or two cluster variables")
    q = cell_scores.shape[1]
    meat = np.zeros((q, q))
    sizes = []
    for sign, code in terms:
        size = int(code.max()) + 1 if len(code) else 0
        if size < 2:
            raise InputError(f"clustering by {by} needs at least 2 clusters, got {size}")
        s = np.zeros((size, q))
        np.add.at(s, code, cell_scores)
        meat += sign * (s.T @ s)
        sizes.append(size)
    return meat, min(sizes)


def sandwich(bread: np.ndarray, meat: np.ndarray) -> np.ndarray:
    """B M B, symmetrized."""
    cov = bread @ meat @ bread
    return (cov + cov.T) / 2


def psd(cov: np.ndarray) -> tuple[np.ndarray, bool]:
    """``cov`` with its negative eigenvalues set to zero, and whether there were any."""
    vals, vecs = np.linalg.eigh(cov)
    if vals.min() >= 0:
        return cov, False
    return (vecs * np.maximum(vals, 0)) @ vecs.T, True


def _clustered_by(*by: str) -> Covariance:
    return Covariance("+".join(by), "cluster", functools.partial(clustered, by=by), by)


COVARIANCES: dict[str, Covariance] = {
    c.label: c
    for c in (
        _clustered_by("zone"),
        _clustered_by("day"),
        _clustered_by("zone", "day"),
        Covariance("zone-jackknife", "jackknife", jackknife, ("zone",)),
        Covariance("robust", "hetero", robust),
        Covariance("unadjusted", "iid", unadjusted),
    )
}


def parse(label: str) -> Covariance:
    """The covariance named ``label``."""
    try:
        return COVARIANCES[label]
    except KeyError:
        raise InputError(f"covariance {label!r} is not one of {', '.join(COVARIANCES)}") from None
