"""CUPED and CUPAC: pre-treatment user covariates that cut the DiD's variance.

Per metric m the analysis adds one user-level covariate to the TWFE model's row
covariates, so the coefficients, every covariance, the wild bootstrap, randomization
inference, the event study and the sequential looks apply to the adjusted model unchanged:

- ``cuped``: the user's mean of m per active day over the covariate window (Deng et al.
  2013; the regression form, which with fixed effects is the standard CUPED estimator);
- ``cupac``: the prediction of the user's m per active day from their history (DoorDash's
  CUPAC; Poyarkov et al. 2016), by a model trained on the window's own past: features of
  the ``days`` days before the last ``horizon_days`` of the window's end, target the mean of
  m per active day over those last days. It then predicts from the covariate window.

Only days before the pre-period enter (the window is refused otherwise, see
:class:`~sparklift.geo.experiment.ExperimentConfig`), so the covariate cannot carry the
treatment and the estimate stays unbiased. Users without rows in the covariate window
(new, or back after a pause) get the covariate of an empty history (0 for CUPED, the
model's prediction for an empty history for CUPAC) and the flag ``adj__no_history`` = 1,
which enters the model as a covariate too whenever some rows have it and some do not: the
estimate then does not depend on the imputed value (the flag absorbs it), and such users
get their own level rather than being treated as users with a history of zeros.

The covariate costs one aggregation over the pre-window rows of the experiment's zones
(by user); the analysis's single pass over its user-day rows joins it by ``user_id``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from sklearn.base import RegressorMixin, clone
from sklearn.metrics import r2_score

from sparklift.config import CupacConfig
from sparklift.errors import InputError
from sparklift.geo.experiment import ExperimentConfig
from sparklift.predict.history import feature_names, history_aggregates, history_features
from sparklift.predict.learners import regressor, weight_argument
from sparklift.stats.twfe import CellStats
from sparklift.synthetic.rand import uniform

log = logging.getLogger("sparklift")

NO_HISTORY = "adj__no_history"
Reader = Callable[[dt.date, dt.date], DataFrame]  # user_activity rows of first..last
_HAS = "adj__has_history"


def covariate_column(method: str, metric: str) -> str:
    """The cell-statistics column of ``metric``'s adjustment covariate."""
    return f"{method}__{metric}"


@dataclass
class UserCovariates:
    """Per user (``frame``: user_id, one column per metric, ``adj__has_history``) the
    adjustment covariates, and the value of each for users absent from the frame."""

    method: str
    metrics: list[str]
    window: tuple[dt.date, dt.date]
    frame: DataFrame
    empty: dict[str, float]
    trained_through: dt.date | None = None  # CUPAC: the last day its model saw
    fit_r2: dict[str, float] = field(default_factory=dict)  # CUPAC: held-out R^2 per metric
    models: dict[str, RegressorMixin] = field(default_factory=dict)  # CUPAC: per metric

    @property
    def columns(self) -> list[str]:
        return [covariate_column(self.method, m) for m in self.metrics] + [NO_HISTORY]

    def join(self, rows: DataFrame) -> DataFrame:
        """``rows`` (user-days with ``user_id``) with the covariate columns; users without
        history get the empty history's value and ``adj__no_history`` = 1."""
        joined = rows.join(self.frame, "user_id", "left")
        values = [F.coalesce(F.col(c), F.lit(self.empty[c])).alias(c) for c in self.columns[:-1]]
        flag = (1.0 - F.coalesce(F.col(_HAS), F.lit(0.0))).alias(NO_HISTORY)
        return joined.select(*rows.columns, *values, flag)


def check_pretreatment(spec: ExperimentConfig, through: dt.date, pre_start: dt.date, what: str):
    """Refuse covariate data (``what``) that reaches the pre-period starting ``pre_start``."""
    if through >= pre_start:
        raise InputError(
            f"experiment {spec.experiment_id}: the {what} uses user_activity through "
            f"{through}, which reaches into the analysis window starting {pre_start} (the "
            f"pre-period, then the experiment): a covariate from those days would bias "
            f"the estimate; it must end by {pre_start - dt.timedelta(days=1)}"
        )


def check_reaches(read: Reader, day: dt.date, what: str) -> None:
    """Refuse a window whose first ``day`` has no user_activity rows: the data does not
    reach back that far (a covariate from part of its window would mean something else)."""
    if read(day, day).limit(1).count() == 0:
        raise InputError(
            f"table user_activity has no rows on {day}, {what}: the data does not reach "
            "back that far; shorten covariate_window.days (or cupac.horizon_days), or use "
            "variance_reduction: none"
        )


@contextlib.contextmanager
def user_covariates(
    read: Reader, spec: ExperimentConfig, zones: DataFrame, pre_start: dt.date
) -> Iterator[UserCovariates | None]:
    """The experiment's adjustment covariates for an analysis window whose pre-period
    starts on ``pre_start`` (None without adjustment), from the ``user_activity`` rows
    ``read(first, last)`` of ``zones`` (a frame of zone_id); cached data is released on
    exit."""
    method = spec.variance_reduction
    if method == "none":
        yield None
        return
    metrics = [m.name for m in spec.metrics]
    first, last = spec.covariate_days(pre_start)
    check_pretreatment(spec, last, pre_start, f"{method} covariate window {first}..{last}")
    if method == "cuped":
        check_reaches(read, first, f"the first day of the cuped covariate window {first}..{last}")
        rows = read(first, last).join(F.broadcast(zones), "zone_id", "semi")
        frame = rows.groupBy("user_id").agg(
            *(F.avg(F.col(m).cast("double")).alias(covariate_column(method, m)) for m in metrics),
            F.lit(1.0).alias(_HAS),
        )
        empty = {covariate_column(method, m): 0.0 for m in metrics}
        yield UserCovariates(method, metrics, (first, last), frame, empty)
        return
    covs, cached = cupac_covariates(read, spec, zones, pre_start, metrics, (first, last))
    try:
        yield covs
    finally:
        for df in cached:
            df.unpersist()


def cupac_covariates(
    read: Reader,
    spec: ExperimentConfig,
    zones: DataFrame,
    pre_start: dt.date,
    metrics: list[str],
    window: tuple[dt.date, dt.date],
) -> tuple[UserCovariates, list[DataFrame]]:
    """CUPAC's covariates (module docstring) and the frames cached for them."""
    conf: CupacConfig = spec.cupac
    first, last = window
    shift = dt.timedelta(days=conf.horizon_days)
    target = (last - shift + dt.timedelta(days=1), last)
    train_window = (first - shift, last - shift)
    check_pretreatment(spec, target[1], pre_start, "CUPAC model's training data")
    check_reaches(
        read,
        train_window[0],
        f"the first day of the CUPAC training window {train_window[0]}..{last} (features "
        f"{conf.horizon_days} days before the covariate window's {first}..{last})",
    )
    rows = read(train_window[0], last)
    columns = list(dict.fromkeys([*metrics, *conf.features]))
    missing = [c for c in columns if c not in rows.columns]
    if missing:
        raise InputError(
            f"experiment {spec.experiment_id}: cupac.features {missing} are not columns of "
            f"table user_activity (it has {rows.columns})"
        )
    rows = rows.join(F.broadcast(zones), "zone_id", "semi")
    history = (
        rows.groupBy("user_id")
        .agg(
            *history_aggregates(columns, *train_window, "f_"),
            *history_aggregates(metrics, *target, "t_"),
            *history_aggregates(columns, first, last, "a_"),
        )
        .persist()
    )
    names = feature_names(columns)
    targets = [(F.col(f"t_sum__{m}") / F.col("t_active_days")).alias(f"y__{m}") for m in metrics]
    targets.append(F.col("t_active_days").cast("double").alias("weight"))
    key = uniform(conf.seed, "cupac.sample", F.col("user_id")).alias("_key")
    train = history.where(F.col("t_active_days") > 0).select(
        key, *history_features(columns, *train_window, "f_"), *targets
    )
    n = train.count()
    if n < 20:
        history.unpersist()
        raise InputError(
            f"experiment {spec.experiment_id}: CUPAC needs users active in user_activity "
            f"{target[0]}..{target[1]} (its training target window) in the experiment's "
            f"zones; found {n}: the data does not reach back {conf.horizon_days} + "
            f"{(last - first).days + 1} days before {last} (or use cuped)"
        )
    # The users of the smallest hashes: a random sample that is the same whatever the
    # rows' order, so the same data fit the same models on every look.
    pdf = train.orderBy("_key").limit(conf.max_train_users).toPandas()  # bounded
    models, r2 = fit_models(pdf, names, metrics, conf)
    empty_history = pd.DataFrame(
        [[0.0, float((last - first).days + 2)] + [0.0] * (2 * len(columns))], columns=names
    )
    empty = {
        covariate_column("cupac", m): float(models[m].predict(empty_history.to_numpy())[0])
        for m in metrics
    }
    for m in metrics:
        log.info(
            "CUPAC %s: trained on %d of %d users (features %s..%s, target %s..%s), "
            "held-out R^2 %.3f",
            m,
            len(pdf),
            n,
            *train_window,
            *target,
            r2[m],
        )
    apply = history.select(
        F.col("user_id").cast("long").alias("user_id"),
        (F.col("a_active_days") > 0).cast("double").alias(_HAS),
        *history_features(columns, first, last, "a_"),
    )
    out_cols = [covariate_column("cupac", m) for m in metrics]
    schema = "user_id long, " + _HAS + " double, " + ", ".join(f"{c} double" for c in out_cols)
    predicted = apply.mapInArrow(_predictor(models, names, metrics), schema).persist()
    covs = UserCovariates("cupac", metrics, window, predicted, empty, target[1], r2, models)
    return covs, [predicted, history]


def fit_models(
    pdf: pd.DataFrame, names: list[str], metrics: list[str], conf: CupacConfig
) -> tuple[dict[str, RegressorMixin], dict[str, float]]:
    """One regressor per metric on the sampled users (80% fitted, 20% held out for R^2),
    each user weighted by its active days in the target window: the covariate serves
    user-days, so the model minimizes the squared error per user-day."""
    X = pdf[names].to_numpy(dtype=float)
    w = pdf["weight"].to_numpy(dtype=float)
    held_out = np.random.default_rng(conf.seed).uniform(size=len(pdf)) < 0.2
    base = regressor(conf.learner, conf.learner_params, conf.seed, "cupac.learner")
    weighted = weight_argument(base)  # a pipeline routes them to its last step
    models, r2 = {}, {}
    for m in metrics:
        y = pdf[f"y__{m}"].to_numpy(dtype=float)
        fit_kw = {weighted: w[~held_out]} if weighted else {}
        models[m] = clone(base).fit(X[~held_out], y[~held_out], **fit_kw)
        r2[m] = (
            float(r2_score(y[held_out], models[m].predict(X[held_out]), sample_weight=w[held_out]))
            if held_out.sum() > 1
            else float("nan")
        )
    return models, r2


def _predictor(models: dict[str, RegressorMixin], names: list[str], metrics: list[str]):
    """The mapInArrow function: each batch of users' features -> their predictions."""

    def predict(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from threadpoolctl import threadpool_limits  # one thread per task: Spark has the cores

        with threadpool_limits(limits=1):
            for batch in batches:
                X = np.column_stack([batch.column(c).to_numpy() for c in names]).astype(float)
                cols = {"user_id": batch.column("user_id"), _HAS: batch.column(_HAS)}
                for m in metrics:
                    pred = models[m].predict(X) if len(X) else np.empty(0)
                    cols[covariate_column("cupac", m)] = pa.array(pred, pa.float64())
                yield pa.RecordBatch.from_pydict(cols)

    return predict


def metric_covariates(spec: ExperimentConfig, metric: str, cells: CellStats) -> tuple[str, ...]:
    """The TWFE row covariates of ``metric``: the experiment's own, then its adjustment
    covariate and, when some rows (not all) lack history, the no-history flag."""
    base = tuple(spec.covariates)
    if spec.variance_reduction == "none":
        return base
    flagged = cells.sums[:, cells.index(NO_HISTORY)].sum()
    if flagged >= cells.n.sum():
        raise InputError(
            f"experiment {spec.experiment_id}: no user of its analysis rows has activity "
            f"in the {spec.variance_reduction} covariate window ({spec.covariate_window.days} "
            "days before the pre-period): the data does not reach back that far; shorten "
            "covariate_window.days or use variance_reduction: none"
        )
    flag = (NO_HISTORY,) if flagged > 0 else ()
    return (*base, covariate_column(spec.variance_reduction, metric), *flag)


def history_share(cells: CellStats) -> float:
    """Share of the user-day rows whose user has history in the covariate window."""
    return float(1.0 - cells.sums[:, cells.index(NO_HISTORY)].sum() / cells.n.sum())
