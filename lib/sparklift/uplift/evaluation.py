"""Held-out evaluation of uplift predictions on randomized data (one voucher vs control).

Rows are ranked by predicted uplift, highest first (ties keep their input order). After
the top k rows, with n_t(k), n_c(k) treated and control rows and Y_t(k), Y_c(k) their
summed responses, over N rows in all:

- Qini curve: ``Q(k) = Y_t(k) - Y_c(k) n_t(k) / n_c(k)`` (Y_t(k) while n_c(k) = 0), the
  incremental response of the treated among the top k (Radcliffe 2007);
- uplift (cumulative gain) curve: ``G(k) = (Y_t(k)/n_t(k) - Y_c(k)/n_c(k)) k`` (0 while a
  side is empty), the incremental response if the top k were all treated;
- both curves are reported per row of the population, ``Q(k)/N`` and ``G(k)/N``, against
  the fraction targeted ``k/N``. The Qini coefficient and the AUUC are the areas
  (trapezoids over k = 0..N) between each curve and the random-targeting line from
  (0, 0) to (1, curve(N)): zero for a random ranking, positive for a useful one;
- calibration: rows cut into ``bins`` equal-count bins of predicted uplift; per bin the
  mean prediction against the observed difference in means (with its standard error);
- policy value of treating the top q: ``G(ceil(q N)) / N``, the incremental response per
  customer of the population when only the top q are treated;
- calibration line: the true effect given the prediction s, ``E[tau | s] = a + b s``, from
  one least-squares line of y on s in each arm (``a`` and ``b`` the treated line's
  intercept and slope minus the control line's, with HC0 standard errors; the lines are
  the fully interacted regression of y on 1, t, s, t s). With b < 1 the predictions are
  too spread, and the top of them overstates what it delivers (the winner's curse of a
  policy that picks customers by s); the slope's standard error says how well the
  held-out rows can tell.

Optional ``weight`` per row (1 by default, which gives the plain figures above): every
count and sum is weighted, the bins' standard errors are those of weighted means and the
lines are weighted least squares. The uplift job weighs control rows so that their mix of
campaigns matches the treated rows' (:func:`campaign_weights`): campaigns that split their
arms differently would otherwise compare the treated of one with the controls of another.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd


def _weights(weight: np.ndarray | None, n: int) -> np.ndarray:
    return np.ones(n) if weight is None else np.asarray(weight, dtype=float)


def _ranked(
    score: np.ndarray, y: np.ndarray, treated: np.ndarray, weight: np.ndarray | None = None
):
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    t = np.asarray(treated, dtype=bool)[order]
    yy = np.asarray(y, dtype=float)[order]
    w = _weights(weight, len(t))[order]
    zero = np.zeros(1)
    n_t = np.concatenate([zero, np.cumsum(np.where(t, w, 0.0))])
    n_c = np.concatenate([zero, np.cumsum(np.where(t, 0.0, w))])
    y_t = np.concatenate([zero, np.cumsum(np.where(t, w * yy, 0.0))])
    y_c = np.concatenate([zero, np.cumsum(np.where(t, 0.0, w * yy))])
    return n_t, n_c, y_t, y_c


def qini_curve(
    score: np.ndarray, y: np.ndarray, treated: np.ndarray, weight: np.ndarray | None = None
) -> np.ndarray:
    """Q(k)/N for k = 0..N."""
    n_t, n_c, y_t, y_c = _ranked(score, y, treated, weight)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = y_t - np.where(n_c > 0, y_c * n_t / n_c, 0.0)
    return q / len(score)


def gain_curve(
    score: np.ndarray, y: np.ndarray, treated: np.ndarray, weight: np.ndarray | None = None
) -> np.ndarray:
    """G(k)/N for k = 0..N."""
    n_t, n_c, y_t, y_c = _ranked(score, y, treated, weight)
    k = np.arange(len(n_t))
    both = (n_t > 0) & (n_c > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(both, (y_t / n_t - y_c / n_c) * k, 0.0)
    return g / len(score)


def area_over_random(curve: np.ndarray) -> float:
    """Trapezoid area of ``curve`` (at x = k/N) minus the random line's, curve[-1] / 2."""
    n = len(curve) - 1
    area = (curve.sum() - (curve[0] + curve[-1]) / 2) / n
    return float(area - curve[-1] / 2)


def _mean(y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """The weighted mean of y and its variance, sum w^2 (y - m)^2 / (sum w)^2 x n / (n - 1):
    with equal weights, the sample variance over n."""
    m = float(np.sum(w * y) / np.sum(w))
    n = len(y)
    return m, float(np.sum(w**2 * (y - m) ** 2) / np.sum(w) ** 2 * n / (n - 1))


def calibration(
    score: np.ndarray,
    y: np.ndarray,
    treated: np.ndarray,
    bins: int = 10,
    weight: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Per bin of predicted uplift (highest first): mean prediction vs observed effect."""
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    weights = _weights(weight, len(order))
    out = []
    for b, rows in enumerate(np.array_split(order, bins)):
        t, yy = np.asarray(treated, dtype=bool)[rows], np.asarray(y, dtype=float)[rows]
        w = weights[rows]
        ok = t.sum() > 1 and (~t).sum() > 1
        (mt, vt), (mc, vc) = (_mean(yy[t], w[t]), _mean(yy[~t], w[~t])) if ok else ((0, 0),) * 2
        out.append(
            {
                "bin": b + 1,
                "n_treated": int(t.sum()),
                "n_control": int((~t).sum()),
                "predicted": float(np.mean(np.asarray(score)[rows])),
                "observed": mt - mc if ok else None,
                "observed_se": math.sqrt(vt + vc) if ok else None,
            }
        )
    return out


def _line(s: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares intercept and slope of y on s, and their HC0 covariance."""
    X = np.column_stack([np.ones_like(s), s])
    bread = np.linalg.pinv((X.T * w) @ X)
    beta = bread @ (X.T * w) @ y
    resid = y - X @ beta
    return beta, bread @ (X.T * (w * resid) ** 2) @ X @ bread


def calibration_line(
    score: np.ndarray, y: np.ndarray, treated: np.ndarray, weight: np.ndarray | None = None
) -> dict[str, float] | None:
    """``E[tau | score] = intercept + slope * score`` on randomized rows (None with fewer
    than 3 rows in an arm)."""
    s, yy = np.asarray(score, dtype=float), np.asarray(y, dtype=float)
    t = np.asarray(treated, dtype=bool)
    w = _weights(weight, len(t))
    if t.sum() < 3 or (~t).sum() < 3:
        return None
    (bt, vt), (bc, vc) = _line(s[t], yy[t], w[t]), _line(s[~t], yy[~t], w[~t])
    beta, cov = bt - bc, vt + vc
    return {
        "intercept": float(beta[0]),
        "slope": float(beta[1]),
        "intercept_se": float(math.sqrt(cov[0, 0])),
        "slope_se": float(math.sqrt(cov[1, 1])),
    }


def policy_values(gain: np.ndarray, fractions: Sequence[float]) -> dict[str, float]:
    """Incremental response per customer when treating the top q, from the gain curve."""
    n = len(gain) - 1
    return {f"{q:g}": float(gain[math.ceil(q * n)]) for q in fractions}


def grid(curve: np.ndarray, points: int = 100) -> list[float]:
    """The curve at fractions 0, 1/points, ..., 1 (for storing, not for the areas)."""
    n = len(curve) - 1
    return [float(curve[math.ceil(i * n / points)]) for i in range(points + 1)]


def evaluate(
    score: np.ndarray,
    y: np.ndarray,
    treated: np.ndarray,
    fractions: Sequence[float] = (0.1, 0.2, 0.3, 0.5),
    bins: int = 10,
    weight: np.ndarray | None = None,
) -> dict[str, Any]:
    """Every held-out metric of one voucher and response."""
    qini = qini_curve(score, y, treated, weight)
    gain = gain_curve(score, y, treated, weight)
    return {
        "n_treated": int(np.sum(treated)),
        "n_control": int(len(treated) - np.sum(treated)),
        "qini": area_over_random(qini),
        "auuc": area_over_random(gain),
        "average_effect": float(gain[-1]),
        "policy_value": policy_values(gain, fractions),
        "calibration": calibration(score, y, treated, bins, weight),
        "calibration_line": calibration_line(score, y, treated, weight),
        "qini_curve": grid(qini),
        "uplift_curve": grid(gain),
    }


def campaign_weights(treated: np.ndarray, campaign: np.ndarray) -> np.ndarray:
    """Per row, 1 for treated rows and, for a control row of campaign c, (n_t,c / n_t) /
    (n_c,c / n_c): the controls then hold the campaigns in the treated rows' proportions
    (every weight 1 with one campaign). Every campaign must have rows of both arms."""
    t = np.asarray(treated, dtype=bool)
    code = pd.factorize(np.asarray(campaign), use_na_sentinel=False)[0]
    n_t = np.bincount(code[t], minlength=code.max() + 1)
    n_c = np.bincount(code[~t], minlength=code.max() + 1)
    ratio = (n_t / n_t.sum()) / (n_c / n_c.sum())
    return np.where(t, 1.0, ratio[code])
