r"""Two-way fixed-effects least squares from per-(zone, day) cell statistics.

The model, for row i (a user-day) in zone g on day t:

    y_i = a_g + c_t + r_i' b + e_i,   r_i = [d_gt, x_i]

where ``d_gt`` are regressors constant within a cell (treatment x post dummies, event-time
dummies) and ``x_i`` are row-level covariates. Everything the estimator needs is a function
of the cell sufficient statistics of z_i = [r_i, y_i]: the count n_c, the sums
S_c = sum_i z_i and the cross-products Q_c = sum_i z_i z_i' (for d, S and Q follow from n
and the cell sums of x and y). The algebra, exact and with no approximation:

1. Fixed-effect projection (Frisch-Waugh-Lovell). For each column j of z the fitted
   two-way effects f_j(g, t) = a_g + c_t solve the count-weighted normal equations
       sum_t n_gt (a_g + c_t) = S_g,j    and    sum_g n_gt (a_g + c_t) = S_t,j.
   Eliminating a (its block is diagonal, n_g) leaves a T x T system
       (diag(n_t) - N' diag(1/n_g) N) c = S_t - N' (S_g / n_g),   c_0 = 0,
   with N the G x T matrix of cell counts, then a_g = (S_g - N c)_g / n_g.
2. Centred cell moments. With f_c = f(g, t) for cell c, the residualised rows
   z~_i = z_i - f_c satisfy
       M_c = sum_i z~_i z~_i' = Q_c - f_c S_c' - S_c f_c' + n_c f_c f_c'.
   Summing M_c over cells gives X~'X~ (the r-block) and X~'y~ (the r-y column), so
   b = (X~'X~)^{-1} X~'y~, and SSR = y~'y~ - b' X~'y~.
3. Scores. Residuals are e_i = y~_i - r~_i' b, so a cell's score sum is
       u_c = sum_i r~_i e_i = M_c[r, y] - M_c[r, r] b,
   and the score of any cluster that is a union of cells (a zone, a day, a zone-day) is
   the sum of its cells' u_c. With the bread B = (X~'X~)^{-1} these are what the
   covariances of :mod:`sparklift.stats.covariance` are functions of; the small-sample
   conventions are in :mod:`sparklift.stats.ssc` and the t inference in
   :mod:`sparklift.stats.inference`. The homoskedastic covariance needs the cells' y'y.
4. Heteroskedastic meat: sum_i r~_i r~_i' e_i^2. This needs higher cell moments, not a
   second pass: within a cell z~_i = A_c u_i with u_i = [1, v_i] (v: the row-varying
   covariates and y) and A_c built from the cell-constant regressors and the fitted
   effects, so r~_i r~_i' e_i^2 = R_c (u_i u_i')(g_c'u_i)^2 R_c' with g_c = A_c'[-b, 1],
   and its cell sum is a contraction of the cell sums of all products of up to four of
   u's entries (35 per metric with three covariates). Those are aggregated only when the
   robust covariance is asked for.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
from scipy import linalg, sparse

from sparklift.errors import InputError
from sparklift.stats import covariance
from sparklift.stats.inference import Estimate, t_inference
from sparklift.stats.jackknife import zone_deviations
from sparklift.stats.ssc import LINEARMODELS, FixedEffects, SmallSample


@dataclass(frozen=True)
class CellStats:
    """Sufficient statistics of user rows per (zone, day) cell.

    ``sums[:, j]`` is the cell sum of variable ``names[j]``; ``cross[:, j, l]`` the cell sum
    of the product of variables j and l (NaN where it was not collected); ``higher`` maps a
    sorted tuple of 3 or 4 variable names to the cell sum of their product (only for the
    heteroskedastic covariance).
    """

    zone: np.ndarray
    day: np.ndarray
    n: np.ndarray
    names: tuple[str, ...]
    sums: np.ndarray
    cross: np.ndarray
    higher: dict[tuple[str, ...], np.ndarray] = field(default_factory=dict)

    def moment(self, names: tuple[str, ...]) -> np.ndarray:
        """Cell sums of the product of ``names`` (any degree 0 to 4)."""
        if len(names) == 0:
            return self.n
        if len(names) == 1:
            return self.sums[:, self.index(names[0])]
        if len(names) == 2:
            return self.cross[:, self.index(names[0]), self.index(names[1])]
        key = tuple(sorted(names))
        if key not in self.higher:
            raise InputError(
                f"the heteroskedastic covariance needs cell sums of {'*'.join(key)}: collect "
                "the fourth moments (analysis covariance 'robust')"
            )
        return self.higher[key]

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise InputError(
                f"no cell statistics for column {name!r} (have {self.names})"
            ) from None

    def select(self, mask: np.ndarray) -> CellStats:
        """The cells where ``mask`` is true."""
        return CellStats(
            self.zone[mask],
            self.day[mask],
            self.n[mask],
            self.names,
            self.sums[mask],
            self.cross[mask],
            {k: v[mask] for k, v in self.higher.items()},
        )


@dataclass(frozen=True)
class TwfeResult:
    """Coefficients, covariance and inference of a two-way fixed-effects fit."""

    names: list[str]
    params: np.ndarray
    cov: np.ndarray
    df: float
    cov_type: str  # the covariance's label (:mod:`sparklift.stats.covariance`)
    convention: str  # the small-sample convention's name (:mod:`sparklift.stats.ssc`)
    n_obs: int
    n_zones: int
    n_days: int
    alpha: float
    psd_fixed: bool = False
    estimates: dict[str, Estimate] = field(init=False)

    def __post_init__(self) -> None:
        se = np.sqrt(np.diag(self.cov))
        rows = t_inference(self.names, self.params, se, self.df, self.alpha)
        object.__setattr__(self, "estimates", rows)

    def __getitem__(self, name: str) -> Estimate:
        return self.estimates[name]


class TwfeFit:
    """A two-way (zone, day) fixed-effects least-squares fit on cell statistics.

    ``effects`` (cells x d) holds the cell-constant regressors named ``effect_names``;
    ``covariates`` name row-level regressors in ``cells``. Covariances are asked of
    :meth:`result`, so several can share one fit. Cells without rows are dropped:
    ``kept`` marks the given cells that remain, ``cells`` holds them.
    """

    def __init__(
        self,
        cells: CellStats,
        effects: np.ndarray,
        effect_names: list[str],
        outcome: str,
        covariates: tuple[str, ...] = (),
    ) -> None:
        keep = cells.n > 0
        cells = cells.select(keep)
        self.kept, self.cells, self.outcome = keep, cells, outcome
        self.effect_names = list(effect_names)
        self.names = self.effect_names + list(covariates)
        self.zone_codes, self.n_zones = _codes(cells.zone)
        self.day_codes, self.n_days = _codes(cells.day)
        self.groups = {"zone": self.zone_codes, "day": self.day_codes}
        self.n = cells.n.astype(float)
        self.n_obs = round(self.n.sum())
        self.k = len(self.names)
        self.fixed_effects = FixedEffects(
            self.n_obs, self.k, {"zone": self.n_zones, "day": self.n_days}
        )
        self._projector = _FeProjector(
            self.zone_codes, self.day_codes, self.n, self.n_zones, self.n_days
        )
        self._row_vars = (*covariates, outcome)
        idx = [cells.index(c) for c in self._row_vars]
        s_v, q_v = cells.sums[:, idx], cells.cross[:, idx][:, :, idx]
        n = self.n
        f_v = self.project(s_v)
        fs = np.einsum("ci,cj->cij", f_v, s_v)
        self._m_vv = q_v - fs - fs.transpose(0, 2, 1) + np.einsum("c,ci,cj->cij", n, f_v, f_v)
        self._sigma_v = s_v - n[:, None] * f_v  # sum_i v~_i per cell
        self._f_v = f_v
        self._raw_vv = np.diagonal(q_v.sum(axis=0))
        self._set_effects(np.asarray(effects, dtype=float).reshape(len(keep), -1)[keep])

    def with_effects(self, effects: np.ndarray) -> TwfeFit:
        """The same fit with other cell-constant regressors (same names): only their
        projections are recomputed, which makes randomization inference cheap."""
        other = copy.copy(self)
        other._set_effects(np.asarray(effects, dtype=float).reshape(len(self.n), -1))
        return other

    def _set_effects(self, effects: np.ndarray) -> None:
        n, k = self.n, self.k
        f_d = self.project(effects * n[:, None])
        dd = effects - f_d  # d~ per cell (constant within the cell)
        m_dd = np.einsum("c,ci,cj->cij", n, dd, dd)
        m_dv = np.einsum("ci,cj->cij", dd, self._sigma_v)
        m = np.block([[m_dd, m_dv], [m_dv.transpose(0, 2, 1), self._m_vv]])
        total = m.sum(axis=0)
        self.xtx, self.xty = total[:k, :k], total[:k, k]
        raw = np.concatenate([np.einsum("c,ci->i", n, effects**2), self._raw_vv[:-1]])
        _check_identified(self.names, self.xtx, raw)
        self._effects, self._fitted = effects, np.concatenate([f_d, self._f_v], axis=1)
        self.cell_moments = m  # centred [r, y] cross-products per cell (C x K+1 x K+1)
        self.cell_sigma = np.concatenate([n[:, None] * dd, self._sigma_v[:, :-1]], axis=1)
        self._cell_y = self._sigma_v[:, -1]
        self.bread = np.linalg.inv(self.xtx)
        self.params = self.bread @ self.xty
        self.cell_scores = self.scores(self.params)
        self.ssr = float(total[k, k] - self.params @ self.xty)
        self._zone_dev: np.ndarray | None = None

    def zone_deviations(self) -> np.ndarray:
        """The leave-one-zone-out changes of the coefficients (:mod:`sparklift.stats.jackknife`),
        computed once per fit: every variant's jackknife shares them."""
        if self._zone_dev is None:
            self._zone_dev = zone_deviations(self)
        return self._zone_dev

    @property
    def effects(self) -> np.ndarray:
        """The cell-constant regressors per kept cell (cells x d)."""
        return self._effects

    @property
    def row_vars(self) -> tuple[str, ...]:
        """The row-level variables: the covariates, then the outcome."""
        return self._row_vars

    @property
    def influence(self) -> np.ndarray:
        """Per-cell sums of the coefficients' influence B r~_i e_i (cells x K)."""
        return self.cell_scores @ self.bread

    def project(self, sums: np.ndarray) -> np.ndarray:
        """The fitted zone + day effects, per cell, of variables with these cell sums."""
        return self._projector(sums)

    def cell_resid_sum(self, params: np.ndarray) -> np.ndarray:
        """Per-cell sums of the residuals y~ - r~' params."""
        return self._cell_y - self.cell_sigma @ params

    def scores(self, params: np.ndarray) -> np.ndarray:
        """Per-cell score sums sum_i r~_i (y~_i - r~_i' params) at any coefficients."""
        k = len(self.names)
        return self.cell_moments[:, :k, k] - self.cell_moments[:, :k, :k] @ params

    def result(
        self, cov: str = "zone", ssc: SmallSample = LINEARMODELS, alpha: float = 0.05
    ) -> TwfeResult:
        """Coefficients with the covariance labelled ``cov`` (:data:`covariance.COVARIANCES`)
        under the small-sample convention ``ssc``."""
        spec = covariance.parse(cov)
        scores = covariance.Scores(
            self.bread,
            self.cell_scores,
            self.groups,
            self.n_obs,
            self.ssr,
            self._hetero_meat,
            self.zone_deviations,
        )
        est = spec.estimate(scores)
        factor, df = ssc.correction(spec.kind, self.fixed_effects, spec.clusters, est.clusters)
        return TwfeResult(
            self.names,
            self.params,
            est.cov * factor,
            float(df),
            spec.label,
            ssc.name,
            self.n_obs,
            self.n_zones,
            self.n_days,
            alpha,
            est.psd_fixed,
        )

    def _hetero_meat(self) -> np.ndarray:
        """sum_i r~_i r~_i' e_i^2 from the cells' moments up to order four.

        Per cell, z~_i = A_c u_i with u_i = [1, v_i] (v: the row-varying covariates and y) and
        A_c = [[d_c - f_d, 0], [-f_v, I]], so r~_i r~_i' e_i^2 = R_c (u u')(g_c'u)^2 R_c' with
        R_c the r-rows of A_c and g_c = A_c' [-b, 1]: it needs sum_i u u' u u' per cell.
        """
        cells, names = self.cells, self._row_vars
        p, d = len(names), self._effects.shape[1]
        c_count, k = len(self.n), self.k
        a = np.zeros((c_count, k + 1, p + 1))
        a[:, :d, 0] = self._effects - self._fitted[:, :d]
        a[:, d:, 0] = -self._fitted[:, d:]
        a[:, d:, 1:] = np.eye(p)
        g = np.einsum("cab,a->cb", a, np.append(-self.params, 1.0))
        # sum_i u_a u_b (g'u)^2 = sum_{c,e} M4[a,b,c,e] g_c g_e, built monomial by monomial.
        t = np.zeros((c_count, p + 1, p + 1))
        idx = range(p + 1)
        for i in idx:
            for j in idx:
                if j < i:
                    continue
                acc = np.zeros(c_count)
                for q in idx:
                    for r in idx:
                        key = tuple(names[x - 1] for x in (i, j, q, r) if x > 0)
                        acc += cells.moment(key) * g[:, q] * g[:, r]
                t[:, i, j] = t[:, j, i] = acc
        rows = a[:, :k, :]
        return np.einsum("cka,cab,clb->kl", rows, t, rows)


def _codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    uniq, codes = np.unique(values, return_inverse=True)
    return codes.ravel(), len(uniq)


class _FeProjector:
    """Fitted two-way (zone + day) effects of many variables at once, from cell sums.

    The zone and day indicator matrices are sparse and the T x T system of step 1 of the
    module docstring is factorized once, so a projection costs two sparse products and one
    triangular solve (the wild bootstrap projects thousands of columns).
    """

    def __init__(self, zi: np.ndarray, ti: np.ndarray, n: np.ndarray, g: int, t: int) -> None:
        cells = np.arange(len(n))
        self.zi, self.ti = zi, ti
        self.to_zone = sparse.csr_matrix((np.ones(len(n)), (zi, cells)), (g, len(n)))
        self.to_day = sparse.csr_matrix((np.ones(len(n)), (ti, cells)), (t, len(n)))
        counts = np.zeros((g, t))
        counts[zi, ti] = n
        self.counts, self.ng = counts, counts.sum(axis=1)
        self.scaled = counts / self.ng[:, None]
        a_mat = np.diag(counts.sum(axis=0)) - counts.T @ self.scaled
        self.lu = None
        self.a_mat = a_mat
        if t > 1:
            try:
                self.lu = linalg.lu_factor(a_mat[1:, 1:], check_finite=False)
                if not np.isfinite(self.lu[0]).all() or np.abs(np.diag(self.lu[0])).min() < 1e-9:
                    self.lu = None
            except (linalg.LinAlgError, ValueError):
                self.lu = None

    def __call__(self, s: np.ndarray) -> np.ndarray:
        sg, st = self.to_zone @ s, self.to_day @ s
        rhs = st - self.scaled.T @ sg
        c = np.zeros_like(rhs)
        if self.lu is not None:
            c[1:] = linalg.lu_solve(self.lu, rhs[1:], check_finite=False)
        elif len(rhs) > 1:  # zones and days fall apart in disconnected groups
            c = np.linalg.lstsq(self.a_mat, rhs, rcond=None)[0]
        a = (sg - self.counts @ c) / self.ng[:, None]
        return a[self.zi] + c[self.ti]


def _check_identified(names: list[str], xtx: np.ndarray, raw: np.ndarray) -> None:
    """Fail when a regressor is (nearly) absorbed by the fixed effects or collinear;
    ``raw`` holds the regressors' uncentred sums of squares."""
    scale = np.sqrt(np.maximum(raw, 1e-300))
    norm = xtx / np.outer(scale, scale)
    for j, name in enumerate(names):
        if norm[j, j] < 1e-10:
            raise InputError(
                f"regressor {name!r} is absorbed by the zone and day effects (it does not vary "
                "within zones over time, e.g. every zone treated or no post-period day)"
            )
    if np.linalg.cond(norm) > 1e12:
        raise InputError(f"the regressors {names} are collinear after the zone and day effects")
