"""Propensity to purchase: P(at least one order in the next H days | the user's history).

A snapshot on day s describes every user active in the history window [s - W + 1, s]
(the customers of the snapshot) by :mod:`sparklift.predict.history` features over that
window and over its last R days (recency matters most), and labels them with whether
they order (the label column > 0) on one of the days s + 1 .. s + H. One ``groupBy`` per
snapshot reads the features and the label together.

Training is time-based: the validation snapshot is the latest whose label window has
ended (s_val = run date - H); the training snapshots are the K before it, H days apart,
so no training label reaches the validation window. The default fit is unweighted log
loss, a proper scoring rule, so scores are probabilities as fitted; the imbalance shows in
the evaluation (PR-AUC, recall at a precision), and ``class_weight: balanced`` weights the
classes equally and maps the fitted odds back by w_0 / w_1 (prior correction, exact for a
well-specified model). Week-to-week the base rate moves (growth, seasonality, shocks the
features cannot know): ``drift: latest`` shifts the log-odds so that the mean prediction on
the last training snapshot equals its observed rate, ``linear`` extrapolates the snapshots'
shifts as a trend, ``none`` keeps the fit's average level. The reliability table and a
joint calibration test (:func:`calibration_test`) on the validation snapshot show whether
the scores are calibrated.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from scipy import optimize, special, stats
from sklearn.base import ClassifierMixin, clone
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    precision_recall_curve,
    roc_auc_score,
)

from sparklift.config import PropensityConfig
from sparklift.errors import ConfigError
from sparklift.predict.history import (
    feature_names,
    history_aggregates,
    history_features,
    in_window,
)
from sparklift.predict.learners import classifier, weight_argument

DAY = dt.timedelta(days=1)


def model_features(conf: PropensityConfig) -> list[str]:
    """The features, in order: the history window's, then the recent window's (``r_``)."""
    return feature_names(conf.columns) + feature_names(conf.columns, "r_")


def snapshot_days(conf: PropensityConfig, run_date: dt.date) -> tuple[dt.date, list[dt.date]]:
    """The validation snapshot and the training snapshots (oldest first) of ``run_date``."""
    valid = run_date - conf.horizon_days * DAY
    train = [valid - k * conf.horizon_days * DAY for k in range(conf.train_snapshots, 0, -1)]
    return valid, train


def snapshot_frame(activity: DataFrame, snapshot: dt.date, conf: PropensityConfig) -> DataFrame:
    """Per user active in the history window ending on ``snapshot``: user_id, the
    :func:`model_features`, the 0/1 ``label`` of the next H days, the ``snapshot`` and
    (when ``activity`` has zone_id) the ``zone`` of the user's last active day.
    (Scoring builds the same features from :mod:`sparklift.predict.user_history`.)"""
    first = snapshot - (conf.history_days - 1) * DAY
    recent = snapshot - (conf.recent_days - 1) * DAY
    last = snapshot + conf.horizon_days * DAY
    bought = in_window(snapshot + DAY, last) & (F.col(conf.label_column) > 0)
    inside = in_window(first, snapshot)
    zone = (  # the zone of the last active day: the reliability table's clusters
        [F.max_by(F.when(inside, F.col("zone_id")), F.when(inside, F.col("date"))).alias("zone")]
        if "zone_id" in activity.columns
        else []
    )
    per_user = (
        activity.where(in_window(first, last))
        .groupBy("user_id")
        .agg(
            *history_aggregates(conf.columns, first, snapshot, "w_"),
            *history_aggregates(conf.columns, recent, snapshot, "r_"),
            F.max(bought.cast("int")).alias("label"),
            *zone,
        )
        .where(F.col("w_active_days") > 0)
    )
    return per_user.select(
        F.col("user_id").cast("long").alias("user_id"),
        *history_features(conf.columns, first, snapshot, "w_"),
        *history_features(conf.columns, recent, snapshot, "r_", out="r_"),
        F.col("label").cast("int").alias("label"),
        F.lit(snapshot).alias("snapshot"),
        *(["zone"] if zone else []),
    )


@dataclass
class PropensityModel:
    """A fitted classifier and what it was trained on; ``predict`` gives probabilities."""

    learner: str
    features: list[str]
    estimator: ClassifierMixin
    odds_factor: float  # the fitted odds times this are the population's (prior correction)
    windows: PropensityConfig  # what the features were built with (scoring builds the same)
    trained_through: dt.date  # the last day of activity any training label saw
    drift: tuple[float, float] = (0.0, 0.0)  # log-odds shift at the last snapshot, per day
    drift_origin: dt.date | None = None  # the last training snapshot
    drift_max_days: int | None = None  # the trend is held beyond (None: a model from before)
    model_id: str = ""

    def drift_days(self, snapshot: dt.date) -> int:
        """Days of the base rate's trend applied on ``snapshot``: its signed distance from
        the last training snapshot, at most ``drift_max_days`` either way (a line fitted
        over a few weeks says nothing of a year later, nor of a year before)."""
        days = (snapshot - self.drift_origin).days if self.drift_origin else 0
        limit = self.drift_max_days
        return days if limit is None else max(-limit, min(days, limit))

    def predict(self, X: np.ndarray, snapshot: dt.date | None = None) -> np.ndarray:
        """P(label) of each row of ``X``, for a snapshot on ``snapshot`` (the drift of the
        base rate extrapolated to it; None: no drift term)."""
        p = np.asarray(self.estimator.predict_proba(X), dtype=float)[:, 1]
        shift = np.log(self.odds_factor)
        if snapshot is not None and self.drift_origin is not None:
            shift += self.drift[0] + self.drift[1] * self.drift_days(snapshot)
        if shift == 0.0:
            return p
        odds = np.exp(shift) * p
        return odds / (odds + 1.0 - p)


def fit(
    train: pd.DataFrame, conf: PropensityConfig, learner_seed: int, trained_through: dt.date
) -> PropensityModel:
    """The classifier of ``conf`` fitted on ``train`` (features, ``label``, ``snapshot``),
    with the base rate's drift over the snapshots (``conf.drift``)."""
    names = model_features(conf)
    X, y = train[names].to_numpy(dtype=float), train["label"].to_numpy(dtype=int)
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        raise ValueError(f"every training label is {y[0]}: nothing to learn")
    base = propensity_learner(conf, learner_seed)
    kwargs: dict[str, Any] = {}
    factor = 1.0
    weights = check_weighting(conf, base)  # None unless class_weight: balanced
    if weights is not None:
        w1, w0 = len(y) / (2 * positives), len(y) / (2 * (len(y) - positives))
        kwargs[weights] = np.where(y == 1, w1, w0)
        factor = w0 / w1
    estimator = clone(base).fit(X, y, **kwargs)
    model = PropensityModel(conf.learner, names, estimator, factor, conf, trained_through)
    model.drift, model.drift_origin = drift(model, train, conf.drift)
    model.drift_max_days = conf.drift_max_days
    return model


def propensity_learner(conf: PropensityConfig, seed: int) -> ClassifierMixin:
    """The classifier ``propensity.learner`` names, with its own section's parameters
    (``propensity.gbm``, ``propensity.linear``, or ``learner_params`` for a module:Class):
    each learner's defaults stay apart, so choosing another never inherits them."""
    section = conf.learner if conf.learner in ("gbm", "linear") else "learner_params"
    params = getattr(conf, section)
    return classifier(conf.learner, params, seed, "propensity.learner", f"propensity.{section}")


def check_weighting(conf: PropensityConfig, learner: ClassifierMixin) -> str | None:
    """The ``fit`` keyword of ``learner``'s sample weights if ``class_weight: balanced``
    (None otherwise); a ConfigError if it needs them and the learner takes none."""
    if conf.class_weight != "balanced":
        return None
    argument = weight_argument(learner)
    if argument is None:
        raise ConfigError(
            f"propensity.learner {conf.learner} takes no sample_weight, which "
            "propensity.class_weight: balanced needs: set class_weight: none"
        )
    return argument


def drift(
    model: PropensityModel, train: pd.DataFrame, kind: str
) -> tuple[tuple[float, float], dt.date | None]:
    """The log-odds shift that maps the model's mean prediction on each training snapshot
    to its observed rate, as (its value at the last snapshot, its slope per day): ``none``
    (0, 0); ``latest`` the last snapshot's shift; ``linear`` a least-squares line through
    the snapshots' shifts (weighted by rows), extrapolated to later snapshots."""
    snapshots = sorted(train["snapshot"].unique())
    last = snapshots[-1]
    if kind == "none":
        return (0.0, 0.0), last
    X = train[model.features].to_numpy(dtype=float)
    p = model.predict(X)
    days, shifts, weights = [], [], []
    for s in snapshots:
        at = (train["snapshot"] == s).to_numpy()
        days.append((s - last).days)
        shifts.append(shift_to(p[at], train["label"].to_numpy()[at].mean()))
        weights.append(at.sum())
    if kind == "latest" or len(snapshots) < 2:
        return (shifts[-1], 0.0), last
    slope, intercept = np.polyfit(days, shifts, 1, w=np.sqrt(weights))
    return (float(intercept), float(slope)), last


def shift_to(p: np.ndarray, rate: float) -> float:
    """The s with mean(sigmoid(logit(p) + s)) = ``rate``: one shift of every log-odds that
    brings the mean prediction to the observed rate (logit(rate) - logit(mean p) falls
    short of it when the predictions are spread; the mean is monotone in s)."""
    eps = 1e-9
    z = special.logit(np.clip(p, eps, 1 - eps))
    target = min(max(rate, eps), 1 - eps)
    gap = lambda s: float(special.expit(z + s).mean()) - target  # noqa: E731
    lo, hi = -60.0, 60.0  # beyond, every p is within 1e-26 of 0 or 1
    if gap(lo) >= 0:
        return lo
    if gap(hi) <= 0:
        return hi
    return float(optimize.brentq(gap, lo, hi, xtol=1e-12))


@dataclass
class Evaluation:
    """Held-out quality of the scores against the realized labels."""

    metrics: dict[str, float]
    reliability: pd.DataFrame = field(repr=False)


def evaluate(
    y: np.ndarray,
    p: np.ndarray,
    precision_target: float,
    clusters: np.ndarray | None = None,
    bins: int = 10,
) -> Evaluation:
    """ROC-AUC, PR-AUC (average precision), recall at ``precision_target``, Brier score,
    the reliability table (``bins`` quantile bins of p: mean predicted against the observed
    rate and its standard error, clustered by ``clusters`` when given) and a joint test of
    calibration over the bins (:func:`calibration_test`)."""
    precision, recall, _ = precision_recall_curve(y, p)
    reached = recall[precision >= precision_target]
    table = reliability_table(y, p, bins, clusters)
    statistic, p_value = calibration_test(y, p, bins, clusters)
    metrics = {
        "rows": float(len(y)),
        "base_rate": float(np.mean(y)),
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "recall_at_precision": float(reached.max()) if len(reached) else 0.0,
        "precision_target": precision_target,
        "brier": float(brier_score_loss(y, p)),
        "calibration_stat": statistic,
        "calibration_p": p_value,
    }
    return Evaluation(metrics, table)


def _quantile_bins(p: np.ndarray, bins: int) -> list[np.ndarray]:
    """The rows of each of ``bins`` quantile bins of ``p`` (equal counts, ties by order)."""
    return [idx for idx in np.array_split(np.argsort(p, kind="stable"), bins) if len(idx)]


def calibration_test(
    y: np.ndarray, p: np.ndarray, bins: int, clusters: np.ndarray | None = None
) -> tuple[float, float]:
    """(statistic, p-value) of "every bin's observed rate equals its mean predicted".

    Without ``clusters``: Hosmer-Lemeshow on held-out rows, sum of squared binomial
    z-scores, chi-square(bins). With them (each row's zone): customers of a zone share its
    shocks, so the bins' gaps are correlated and a sum of squared clustered z-scores is no
    chi-square (under calibration with zone shocks it rejected 10-14% at 5%). The bins' gaps
    are then the sum over the G zones of each zone's residuals per bin, so Hotelling's T^2
    of those G vectors, (G - k) / (k (G - 1)) T^2 ~ F(k, G - k) (k bins), tests them jointly
    (2.8-6.8% at 5% over 20-300 zones of long-tailed sizes; tests/test_reliability.py). With
    G <= k zones there is no test: their covariance cannot be inverted, and one bin's
    clustered z-score cannot exceed sqrt(G - 1), short of Bonferroni's 5% bound over them; the
    statistic and p are then NaN (the reliability table still shows each bin)."""
    parts = _quantile_bins(p, bins)
    k = len(parts)
    if clusters is None:
        z2 = [
            (y[i].mean() - p[i].mean()) ** 2 / max(p[i].mean() * (1 - p[i].mean()), 1e-12) * len(i)
            for i in parts
        ]
        return float(sum(z2)), float(stats.chi2.sf(sum(z2), k))
    groups, zone = np.unique(clusters, return_inverse=True)
    g = len(groups)
    sums = np.zeros((g, k))  # per zone and bin: the residuals' sum over the bin's rows
    for b, i in enumerate(parts):
        sums[:, b] = np.bincount(zone[i], weights=y[i] - p[i], minlength=g) / len(i)
    gaps = sums.sum(axis=0)
    if g <= k:
        return float("nan"), float("nan")
    centred = sums - sums.mean(axis=0)
    t2 = float(gaps @ np.linalg.lstsq(g / (g - 1) * centred.T @ centred, gaps, rcond=None)[0])
    f = (g - k) / (k * (g - 1)) * t2
    return f, float(stats.f.sf(f, k, g - k))


def reliability_table(
    y: np.ndarray, p: np.ndarray, bins: int, clusters: np.ndarray | None = None
) -> pd.DataFrame:
    """Per quantile bin of p: rows, mean predicted, observed rate, the gap's standard error
    and whether they agree within 2 of it.

    ``se_binomial`` is the binomial one at the mean predicted, right when the outcomes are
    independent given the scores. They are not when customers share shocks the features
    cannot know (a zone's week: weather, local events), so with ``clusters`` (each row's
    zone) ``se`` is the cluster-robust one under calibration (residuals not centred: the
    score test's form), sqrt(G / (G - 1) sum_g (sum_{i in g} (y_i - p_i))^2) / n; without,
    it is the binomial one. A bin of G zones can then show a gap of at most sqrt(G - 1)
    se, so few zones per bin make the check lenient (the model's bins here span 40)."""
    rows = []
    for b, idx in enumerate(_quantile_bins(p, bins)):
        predicted, observed = float(p[idx].mean()), float(y[idx].mean())
        binomial = float(np.sqrt(max(predicted * (1 - predicted), 1e-12) / len(idx)))
        se = binomial
        if clusters is not None:
            groups, where = np.unique(clusters[idx], return_inverse=True)
            if len(groups) > 1:
                sums = np.bincount(where, weights=y[idx] - p[idx])
                g = len(groups)
                se = float(np.sqrt(g / (g - 1) * (sums**2).sum()) / len(idx))
        rows.append(
            {
                "bin": b + 1,
                "rows": len(idx),
                "mean_predicted": predicted,
                "observed_rate": observed,
                "se": se,
                "se_binomial": binomial,
                "within_2se": abs(observed - predicted) <= 2 * se,
            }
        )
    return pd.DataFrame(rows)
