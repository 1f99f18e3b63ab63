"""The realized return: incremental objective per unit of incremental cost, with its CI.

The return of a cell (or a total) is the ratio R = O / C of its two estimates, which come
from the same customers and so are correlated (a redeemed voucher both costs and sells).
Its interval is Fieller's: the R0 that a test of O - R0 C = 0 does not reject,
(O - R0 C)^2 <= q^2 (V_O - 2 R0 V_OC + R0^2 V_C), the quadratic
(C^2 - q^2 V_C) R0^2 - 2 (O C - q^2 V_OC) R0 + (O^2 - q^2 V_O) <= 0. It is bounded only
when the cost is itself distinguishable from 0 (C^2 > q^2 V_C); otherwise no finite
interval covers R at the asked confidence and the bounds are NaN (unbounded), where a
delta-method interval would be a misleadingly finite one. The row's ``se`` is the delta
method's, sqrt(V_O - 2 R V_OC + R^2 V_C) / |C|, for reading only. A cell's quantile is
Student's t at the Welch-Satterthwaite df of O - R C at R = O / C
(:meth:`sparklift.measure.estimate.Fit.ratio_df`): a held-out arm's cost is all 0, so
that arm's part of the statistic is its objective's and the df may be below both metrics'.
The totals' quantile is normal, as their metrics'
(:func:`sparklift.measure.campaign.intervals`), and the repeated CI is Fieller's at the
look's bound. A cell without an SE (an arm of fewer than 2 customers) keeps its ratio of
the two differences in means, with no bounds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

RETURN = "return"
COV = "cov_objective_cost"  # the covariance of a row's objective and cost estimates
DF = "df_return"  # a cell's Welch-Satterthwaite df of O - R C at its ratio
CARRIED = [COV, DF]  # the fit's columns for the returns, not campaign_results'
_PAIR = ["budget_group", "voucher_id", "adjustment"]


def fieller(
    o: np.ndarray, c: np.ndarray, v_o: np.ndarray, v_c: np.ndarray, v_oc: np.ndarray, q: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Fieller's bounds of o / c at quantile q (NaN where unbounded; module docstring)."""
    a = c**2 - q**2 * v_c
    b = o * c - q**2 * v_oc
    root = np.sqrt(np.clip(b**2 - a * (o**2 - q**2 * v_o), 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        low, high = (b - root) / a, (b + root) / a
    bounded = a > 0
    return np.where(bounded, low, np.nan), np.where(bounded, high, np.nan)


def returns(results: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """The ``return`` rows of ``results``' objective and cost rows that are not deciles
    (with ``se``, ``predicted``, :data:`CARRIED` and the look's ``z_bound``): one per
    budget group x voucher x adjustment, as the metrics' rows."""
    rows = results[results["decile"].isna()]
    o = rows[rows["metric"] == "objective"].set_index(_PAIR)
    c = rows[rows["metric"] == "cost"].set_index(_PAIR).reindex(o.index)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = o["estimate"] / c["estimate"]
        spread = o["se"] ** 2 - 2 * ratio * o[COV] + ratio**2 * c["se"] ** 2
        se = np.sqrt(spread.clip(lower=0.0)) / c["estimate"].abs()
        predicted = o["predicted"] / c["predicted"]
    df = o[DF]  # NaN: a total, normal
    level = 0.5 + confidence / 2
    q = np.where(np.isfinite(df), stats.t.ppf(level, df.fillna(1.0)), stats.norm.ppf(level))
    args = (o["estimate"], c["estimate"], o["se"] ** 2, c["se"] ** 2, o[COV])
    low, high = fieller(*(np.asarray(x, dtype=float) for x in args), q)
    rci = fieller(*(np.asarray(x, dtype=float) for x in args), o["z_bound"].to_numpy())
    out = o[["n_policy", "n_holdout", "look", "information_fraction", "z_bound"]].assign(
        metric=RETURN,
        estimate=ratio.where(np.isfinite(ratio)),
        se=se.where(np.isfinite(se)),
        ci_low=low,
        ci_high=high,
        rci_low=rci[0],
        rci_high=rci[1],
        predicted=predicted.where(np.isfinite(predicted)),
        df=df,
    )
    return out.reset_index()
