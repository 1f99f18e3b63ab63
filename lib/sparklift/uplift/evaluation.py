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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def _ranked(score: np.ndarray, y: np.ndarray, treated: np.ndarray):
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    t = np.asarray(treated, dtype=bool)[order]
    yy = np.asarray(y, dtype=float)[order]
    zero = np.zeros(1)
    n_t = np.concatenate([zero, np.cumsum(t)])
    n_c = np.concatenate([zero, np.cumsum(~t)])
    y_t = np.concatenate([zero, np.cumsum(np.where(t, yy, 0.0))])
    y_c = np.concatenate([zero, np.cumsum(np.where(t, 0.0, yy))])
    return n_t, n_c, y_t, y_c


def qini_curve(score: np.ndarray, y: np.ndarray, treated: np.ndarray) -> np.ndarray:
    """Q(k)/N for k = 0..N."""
    n_t, n_c, y_t, y_c = _ranked(score, y, treated)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = y_t - np.where(n_c > 0, y_c * n_t / n_c, 0.0)
    return q / len(score)


def gain_curve(score: np.ndarray, y: np.ndarray, treated: np.ndarray) -> np.ndarray:
    """G(k)/N for k = 0..N."""
    n_t, n_c, y_t, y_c = _ranked(score, y, treated)
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


def calibration(
    score: np.ndarray, y: np.ndarray, treated: np.ndarray, bins: int = 10
) -> list[dict[str, Any]]:
    """Per bin of predicted uplift (highest first): mean prediction vs observed effect."""
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    out = []
    for b, rows in enumerate(np.array_split(order, bins)):
        t, yy = np.asarray(treated, dtype=bool)[rows], np.asarray(y, dtype=float)[rows]
        yt, yc = yy[t], yy[~t]
        ok = len(yt) > 1 and len(yc) > 1
        out.append(
            {
                "bin": b + 1,
                "n_treated": len(yt),
                "n_control": len(yc),
                "predicted": float(np.mean(np.asarray(score)[rows])),
                "observed": float(yt.mean() - yc.mean()) if ok else None,
                "observed_se": (
                    float(math.sqrt(yt.var(ddof=1) / len(yt) + yc.var(ddof=1) / len(yc)))
                    if ok
                    else None
                ),
            }
        )
    return out


def _line(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares intercept and slope of y on s, and their HC0 covariance."""
    X = np.column_stack([np.ones_like(s), s])
    bread = np.linalg.pinv(X.T @ X)
    beta = bread @ X.T @ y
    resid = y - X @ beta
    return beta, bread @ (X.T * resid**2) @ X @ bread


def calibration_line(
    score: np.ndarray, y: np.ndarray, treated: np.ndarray
) -> dict[str, float] | None:
    """``E[tau | score] = intercept + slope * score`` on randomized rows (None with fewer
    than 3 rows in an arm)."""
    s, yy = np.asarray(score, dtype=float), np.asarray(y, dtype=float)
    t = np.asarray(treated, dtype=bool)
    if t.sum() < 3 or (~t).sum() < 3:
        return None
    (bt, vt), (bc, vc) = _line(s[t], yy[t]), _line(s[~t], yy[~t])
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
) -> dict[str, Any]:
    """Every held-out metric of one voucher and response."""
    qini, gain = qini_curve(score, y, treated), gain_curve(score, y, treated)
    return {
        "n_treated": int(np.sum(treated)),
        "n_control": int(len(treated) - np.sum(treated)),
        "qini": area_over_random(qini),
        "auuc": area_over_random(gain),
        "average_effect": float(gain[-1]),
        "policy_value": policy_values(gain, fractions),
        "calibration": calibration(score, y, treated, bins),
        "calibration_line": calibration_line(score, y, treated),
        "qini_curve": grid(qini),
        "uplift_curve": grid(gain),
    }
