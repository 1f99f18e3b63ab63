r"""Small-sample corrections, as named objects (like pyfixest's ``ssc``).

A covariance V_0 of :mod:`sparklift.stats.covariance` becomes V = c V_0, inferred with
t(df). For a fit with N rows, K regressors and two-way fixed effects (levels of each
variable: G zones, T days, so G + T - 1 effects), let k be K plus the fixed effects that
count: all of them (``k_fixef="full"``), or those not nested in a cluster variable
(``"nonnested"``: K + T for zone clusters, K + G for day clusters, K + 1 for both; a
covariance that does not cluster nests nothing). With G_min the fewest clusters of the
one-way terms:

    kind      c                                                   df
    iid       N / (N - k)                                         N - k
    hetero    N / (N - k)                                         N - k
    cluster   (N - 1 or N) / (N - k) x (G_min / (G_min - 1))      N - k or G_min - 1
    jackknife 1 (V_0 carries (G - 1) / G already)                 G - 1

(iid: V_0 = SSR / N B, so V = SSR / (N - k) B.) The conventions users name
(``design.convention``):

- ``linearmodels``: PanelOLS with time effects, zone as the other effect and
  ``debiased=True``: c = N / (N - K - (G + T - 1)) for every covariance, no cluster-count
  factor, t(N - K - (G + T - 1)).
- ``fixest``: pyfixest/fixest defaults, ``ssc(k_adj=True, k_fixef="nonnested", G_adj=True,
  G_df="min")``: clustered (N - 1) / (N - k) x G_min / (G_min - 1) with t(G_min - 1);
  homoskedastic and robust as above.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from sparklift.errors import InputError
from sparklift.stats.covariance import Kind


@dataclass(frozen=True)
class FixedEffects:
    """The sizes a correction depends on: rows, regressors, levels of each fixed effect."""

    n_obs: int
    k: int
    levels: Mapping[str, int]  # fixed-effect variable -> its number of levels

    @property
    def n_effects(self) -> int:
        """Identified fixed effects: every level but one per variable after the first."""
        return sum(self.levels.values()) - (len(self.levels) - 1)


@dataclass(frozen=True)
class SmallSample:
    """A small-sample convention: see the module docstring for the formulas."""

    name: str
    k_fixef: Literal["full", "nonnested"]  # fixed effects counted in k
    cluster_n_minus_one: bool  # clustered: (N - 1) / (N - k) rather than N / (N - k)
    cluster_adj: bool  # clustered: times G_min / (G_min - 1)
    cluster_df: Literal["residual", "min"]  # clustered: t(N - k) or t(G_min - 1)

    def df_k(self, fe: FixedEffects, clusters: tuple[str, ...] = ()) -> int:
        """k: the regressors and the fixed effects counted."""
        nested = sum(fe.levels[c] - 1 for c in clusters if c in fe.levels)
        return fe.k + fe.n_effects - (nested if self.k_fixef == "nonnested" else 0)

    def correction(
        self, kind: Kind, fe: FixedEffects, clusters: tuple[str, ...] = (), g: int | None = None
    ) -> tuple[float, float]:
        """The factor c of a covariance of this kind and its t degrees of freedom."""
        n = fe.n_obs
        if kind == "jackknife" and g is not None:
            return 1.0, g - 1  # MacKinnon, Nielsen and Webb's CV3, whatever the convention
        if kind in ("iid", "hetero"):
            df = n - self.df_k(fe)
            return n / df, df
        if kind != "cluster" or g is None:
            raise InputError(f"no small-sample correction for a {kind} covariance")
        k = self.df_k(fe, clusters)
        factor = (n - 1 if self.cluster_n_minus_one else n) / (n - k)
        if self.cluster_adj:
            factor *= g / (g - 1)
        return factor, (n - k if self.cluster_df == "residual" else g - 1)


LINEARMODELS = SmallSample("linearmodels", "full", False, False, "residual")
FIXEST = SmallSample("fixest", "nonnested", True, True, "min")
CONVENTIONS: dict[str, SmallSample] = {c.name: c for c in (LINEARMODELS, FIXEST)}


def convention(name: str) -> SmallSample:
    """The small-sample convention called ``name``."""
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise InputError(
            f"small-sample convention {name!r} is not one of {', '.join(CONVENTIONS)}"
        ) from None
