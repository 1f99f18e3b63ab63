"""The allocation's predicted value corrected for selection by past holdout measurements.

Choosing customers on noisy predictions overstates what they deliver (the winner's curse).
Every measured campaign shows by how much: its realized incremental objective per targeted
customer e (``campaign_results``, the policy against the holdout) against the allocation's
predicted p for the same customers. Over the past campaigns' final looks, the ratio r of
realized to predicted is the weighted least-squares slope of e on p through the origin,
weights 1 / se^2 (a precision-weighted ratio of sums: a campaign measured precisely counts
more), and the allocation's predicted objective (and cost) times r is its honest value.

A campaign's sends are one measurement, not many: each customer keeps its arm on every
send and the outcome windows of daily sends overlap, so their errors move together. Each
campaign enters as one point: its sends' 1 / se^2-weighted means of e and p, with the same
weighted mean of their SEs (the SE of that mean were the sends' errors one and the same,
the most they can be correlated), widened by the sends' own dispersion around the
campaign's ratio (its weighted residual sum of squares over n - 1) when they scatter more
than their SEs allow: sends that disagree are not one measurement either. Pooled as
independent, 60 daily sends of one campaign would shrink r's SE by sqrt(60) and outweigh
60 one-off campaigns.

r's standard error is 1 / sqrt(sum p^2 / se^2) over the campaigns, widened by their
dispersion around the line (the weighted residual sum of squares over k - 1) when they
scatter more than their SEs allow, as a multiplicative-dispersion meta-analysis does. It
assumes the ratio is common to the campaigns pooled: same models and similar budgets.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from scipy.stats import norm

from sparklift.finite import nonfinite

METRICS = ("objective", "cost")


@dataclass(frozen=True)
class Calibration:
    """Realized over predicted for one metric, from ``runs`` measured sends of
    ``campaigns`` campaigns."""

    ratio: float
    se: float
    runs: int
    campaigns: int


def final_looks(
    results: DataFrame, run_date: dt.date, lookback_days: int, campaign_id: str | None = None
) -> DataFrame:
    """The campaign-level rows of the final looks known on ``run_date``: measured on or
    before it and within ``lookback_days``, with finite figures and a positive SE, one row
    per campaign run and metric (its latest measurement; CUPED-adjusted where measured so,
    its SE is smaller).
    ``campaign_id``: that campaign's runs only (default: every campaign)."""
    since = run_date - dt.timedelta(days=lookback_days)
    rows = results.where(
        (F.col("budget_group") == "*")
        & (F.col("voucher_id") == "*")
        & F.col("decile").isNull()
        & (F.col("information_fraction") >= 1)
        & (F.col("measured_on") <= F.lit(run_date))
        & (F.col("measured_on") > F.lit(since))
        & F.col("metric").isin(*METRICS)
        & (F.col("se") > 0)
        & ~nonfinite("se")  # NaN > 0 holds in Spark: a cell with one customer has se NaN
        & ~nonfinite("estimate")
        & ~nonfinite("predicted")  # and null where null: dropped too
    )
    if campaign_id is not None:
        rows = rows.where(F.col("campaign_id") == campaign_id)
    latest = Window.partitionBy("campaign_id", "run_date", "metric").orderBy(
        F.col("measured_on").desc(), (F.col("adjustment") == "none").asc()
    )
    return (
        rows.withColumn("_n", F.row_number().over(latest))
        .where(F.col("_n") == 1)
        .select("campaign_id", "run_date", "metric", "adjustment", "estimate", "se", "predicted")
    )


def calibrate(rows: pd.DataFrame) -> dict[str, Calibration]:
    """Per metric of ``rows`` (columns metric, campaign_id, estimate, se, predicted: one
    per campaign run), realized over predicted and its SE, each campaign one point (see
    the module docstring). A metric whose predictions sum to 0 gets none."""
    out = {}
    for metric, m in rows.groupby("metric"):
        points = [_campaign_point(c) for _, c in m.groupby("campaign_id")]
        e, p, se = (np.array(v) for v in zip(*points, strict=True))
        fit = _through_origin(e, p, 1.0 / se**2)
        if fit is None:
            continue
        ratio, info, dispersion = fit
        se_ratio = float(np.sqrt(dispersion / info))
        out[str(metric)] = Calibration(ratio, se_ratio, len(m), len(points))
    return out


def _through_origin(
    e: np.ndarray, p: np.ndarray, w: np.ndarray
) -> tuple[float, float, float] | None:
    """The weighted least-squares slope of e on p through the origin, its information
    sum w p^2, and the points' dispersion around it (their weighted residual sum of squares
    over k - 1, at least 1; 1 for one point). None when nothing is predicted."""
    info = float(np.sum(w * p * p))
    if not info > 0:
        return None
    ratio = float(np.sum(w * p * e)) / info
    k = len(e)
    dispersion = float(np.sum(w * (e - ratio * p) ** 2)) / (k - 1) if k > 1 else 1.0
    return ratio, info, max(1.0, dispersion)


def _campaign_point(sends: pd.DataFrame) -> tuple[float, float, float]:
    """One campaign's (e, p, se) from its sends: their 1/se^2-weighted means, and the
    weighted mean of their SEs times the square root of the sends' dispersion around the
    campaign's own ratio (see the module docstring)."""
    e, p, se = (sends[c].to_numpy(float) for c in ("estimate", "predicted", "se"))
    w = 1.0 / se**2
    mean_se = float(np.average(se, weights=w))
    fit = _through_origin(e, p, w)
    widen = 1.0 if fit is None else float(np.sqrt(fit[2]))
    return float(np.average(e, weights=w)), float(np.average(p, weights=w)), mean_se * widen


def corrected(
    objective: float, spent: float, calibration: dict[str, Calibration], confidence: float
) -> dict:
    """The allocation summary's honest figures: the predicted objective and spend times
    realized over predicted, and the CI of the corrected objective's expected value from
    r's SE (not an interval for one campaign's realized value, which also has the
    measurement's noise). All None without a calibration of the objective."""
    obj, cost = calibration.get("objective"), calibration.get("cost")
    if obj is None:
        return dict.fromkeys(
            ("objective_corrected", "objective_corrected_ci", "spent_corrected", "calibration")
        )
    z = float(norm.ppf(0.5 + confidence / 2))
    low, high = sorted(objective * (obj.ratio + s * z * obj.se) for s in (-1, 1))
    return {
        "objective_corrected": objective * obj.ratio,
        "objective_corrected_ci": [low, high],
        "spent_corrected": spent * cost.ratio if cost else None,
        "calibration": {m: asdict(c) for m, c in calibration.items()},
    }
