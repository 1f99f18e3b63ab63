"""The policy-against-holdout estimate of one cell (budget group x voucher x metric).

Without covariates it is the difference in means with the Neyman standard error
sqrt(s1^2 / n1 + s0^2 / n0), which is the HC2 standard error of OLS y ~ 1 + t. With
pre-campaign covariates X (CUPED), it is Lin's (2013) regression adjustment: OLS
y ~ 1 + t + Xc + t Xc with X centred on the cell's mean, whose t coefficient estimates
the same average effect with the variance X explains removed, consistent however wrong
the linear model is (the arms are randomized), with the HC2 standard error. Columns of X
that are constant within either arm are dropped: each arm fits its own slopes, and a
column constant in one arm (a rare flag no held-out customer has) would be collinear with
that arm's intercept, leaving the effect unidentified; columns still collinear within an
arm leave the cell unadjusted. An arm with few units per parameter is nearly
interpolated: its residuals, and the HC2 standard error with them, shrink towards 0 (7
covariates, 3 held-out customers: an SE of 1e-10). A cell whose smaller arm has fewer
than ``MIN_UNITS_PER_PARAMETER`` units per parameter of its arm's fit (k covariates + 1)
is therefore left unadjusted.

Each arm's rows add their own part to the HC2 variance (the fit is each arm's own: the
effect is the treated fit's intercept less the held-out one's), V = V1 + V0, and the
estimate's degrees of freedom are Welch-Satterthwaite's over those parts,
df = V^2 / (V1^2 / (n1 - p) + V0^2 / (n0 - p)) with p the parameters per arm (1 without
covariates: Welch's t-test's df, V_a = s_a^2 / n_a), so that a cell of a few held-out
customers gets a t interval, not a normal one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_UNITS_PER_PARAMETER = 5


@dataclass(frozen=True)
class Estimate:
    estimate: float
    se: float
    n_policy: int
    n_holdout: int
    mean_policy: float
    mean_holdout: float
    df: float = np.nan  # Welch-Satterthwaite (NaN: no SE, or no variance in either arm)


def lin_estimate(y: np.ndarray, t: np.ndarray, X: np.ndarray | None = None) -> Estimate:
    """The effect of t (0/1) on y, adjusted for the columns of ``X`` (none: unadjusted)."""
    return lin_fit(np.asarray(y, dtype=float)[:, None], t, X).estimates[0]


@dataclass(frozen=True)
class Fit:
    """The effects of t on each column of Y, their HC2 covariance matrix (NaN where either
    arm has fewer than 2 units), and its parts: each arm's (policy's, then holdout's)
    score cross-products and residual degrees of freedom."""

    estimates: list[Estimate]
    cov: np.ndarray
    parts: tuple[np.ndarray, np.ndarray] | None = None
    residual_df: tuple[int, int] = (0, 0)

    def df(self, w: np.ndarray) -> float:
        """Welch-Satterthwaite df of the combination w' effects: V^2 / sum_a V_a^2 / df_a,
        V_a = w' parts_a w (NaN without an SE, or with no variance in either arm)."""
        if self.parts is None:
            return np.nan
        v = [float(w @ p @ w) for p in self.parts]
        spread = sum(x**2 / d for x, d in zip(v, self.residual_df, strict=True))
        return sum(v) ** 2 / spread if spread > 0 else np.nan

    def ratio_df(self) -> float:
        """The df of O - R C at R = O / C (columns 0 and 1): Fieller's statistic
        (:mod:`sparklift.measure.ratio`), whose df may be below both O's and C's."""
        o, c = self.estimates[0].estimate, self.estimates[1].estimate
        ratio = o / c if c else np.nan
        return self.df(np.array([1.0, -ratio])) if np.isfinite(ratio) else np.nan


def lin_fit(Y: np.ndarray, t: np.ndarray, X: np.ndarray | None = None) -> Fit:
    """:func:`lin_estimate` of each column of ``Y`` (n x m) on one design, with the HC2
    covariances of the effects: sum_i g_i^2 r_ia r_ib / (1 - h_i), g = D (D'D)^-1 e_t, the
    sandwich's cross terms. The columns are outcomes of the same customers (objective and
    cost), so a ratio of their effects needs them (:mod:`sparklift.measure.ratio`)."""
    Y, t = np.asarray(Y, dtype=float), np.asarray(t, dtype=float)
    n1, n0 = int(t.sum()), int(len(t) - t.sum())
    m = Y.shape[1]
    means = [
        (float(y[t == 1].mean()) if n1 else np.nan, float(y[t == 0].mean()) if n0 else np.nan)
        for y in Y.T
    ]
    if n1 < 2 or n0 < 2:
        estimates = [Estimate(a - b, np.nan, n1, n0, a, b) for a, b in means]
        return Fit(estimates, np.full((m, m), np.nan))
    columns = [np.ones_like(t), t]
    if X is not None and X.size:
        X = np.asarray(X, dtype=float)
        X = X[:, (X[t == 1].std(axis=0) > 0) & (X[t == 0].std(axis=0) > 0)]
        if min(n1, n0) >= MIN_UNITS_PER_PARAMETER * (X.shape[1] + 1):
            Xc = X - X.mean(axis=0)
            columns += [Xc, t[:, None] * Xc]
    D = np.column_stack(columns)
    if np.linalg.matrix_rank(D) < D.shape[1]:  # columns collinear within an arm
        D = np.column_stack(columns[:2])
    bread = np.linalg.pinv(D.T @ D)
    beta = bread @ (D.T @ Y)
    leverage = np.einsum("ij,jk,ik->i", D, bread, D)
    g = D @ bread[:, 1]  # each row's weight in the effect
    scores = g[:, None] * (Y - D @ beta) / np.sqrt(np.clip(1.0 - leverage, 1e-12, None))[:, None]
    parts = (scores[t == 1].T @ scores[t == 1], scores[t == 0].T @ scores[t == 0])
    per_arm = D.shape[1] // 2  # the design is each arm's intercept and slopes
    fit = Fit([], parts[0] + parts[1], parts, (n1 - per_arm, n0 - per_arm))
    for j, (a, b) in enumerate(means):
        se, df = float(np.sqrt(fit.cov[j, j])), fit.df(np.eye(m)[j])
        fit.estimates.append(Estimate(float(beta[1, j]), se, n1, n0, a, b, df))
    return fit
