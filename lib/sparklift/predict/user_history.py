"""The per-user history state that nightly propensity scoring reads: one row per customer.

The state as of day d holds, for every user active in the history window [d - W + 1, d],
the raw aggregates of :func:`sparklift.predict.history.history_aggregates` over that window
(``w_``) and over the recent window [d - R + 1, d] (``r_``): active days, last active day
and each column's sum. The features are computed from it as from the activity rows, so
scoring reads one row per customer instead of W days of rows.

It is built from the window's rows (:func:`build`), or updated from the state as of d - 1
by the rows of three days (:func:`update`): day d enters both windows, day d - W leaves the
history window and day d - R the recent one. Counts and sums are added and subtracted; the
last active day is d for a user active on d and unchanged otherwise (a user still active in
a window was last active inside it); users whose history window empties drop out. Counts
and integer-valued sums are exact; a sum of doubles carries a rounding error of about
1e-16 of its terms per day. An update fails (:data:`MISMATCH`, nothing written) when a row
leaves the window that the state never counted, or one it counted is gone: counts out of
range, or a last active day outside the window (:func:`stale`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from sparklift.config import PropensityConfig
from sparklift.predict.history import history_aggregates, in_window

DAY = dt.timedelta(days=1)
EPOCH = dt.date(1970, 1, 1)
WINDOWS = ("w_", "r_")  # the history window's aggregates, then the recent window's


def state_columns(columns: Sequence[str]) -> list[str]:
    """The state's aggregate columns, in order (besides as_of, user_id and the windows)."""
    return [
        f"{p}{c}"
        for p in WINDOWS
        for c in ("active_days", "last_active", *(f"sum__{m}" for m in columns))
    ]


def windows_of(conf: PropensityConfig, day: dt.date) -> tuple[dt.date, dt.date]:
    """The first days of the history window and of the recent window ending on ``day``."""
    return day - (conf.history_days - 1) * DAY, day - (conf.recent_days - 1) * DAY


MISMATCH = "USER_HISTORY_MISMATCH"  # in the error of an update that found the state stale


def _stamped(
    aggregates: DataFrame, conf: PropensityConfig, day: dt.date, check: Column | None = None
) -> DataFrame:
    """The customers' rows (active in the history window) as of ``day``; a row where
    ``check`` holds fails the task (nothing is written) with :data:`MISMATCH`."""
    kept = F.col("w_active_days") > 0
    if check is not None:
        message = F.concat(
            F.lit(
                f"{MISMATCH}: the user_history of {day - DAY} disagrees with user_activity (user "
            ),
            F.col("user_id").cast("string"),
            F.lit(")"),
        )
        kept = F.when(check, F.raise_error(message)).otherwise(kept)
    return aggregates.where(kept).select(
        F.lit(day).alias("as_of"),
        F.col("user_id").cast("long").alias("user_id"),
        F.lit(conf.history_days).alias("history_days"),
        F.lit(conf.recent_days).alias("recent_days"),
        *(F.col(c) for c in state_columns(conf.columns)),
    )


def build(activity: DataFrame, conf: PropensityConfig, day: dt.date) -> DataFrame:
    """The state as of ``day`` from the history window's ``activity`` rows (one
    aggregation by user); sums of users without values are 0."""
    first, recent = windows_of(conf, day)
    aggregates = (
        activity.where(in_window(first, day))
        .groupBy("user_id")
        .agg(
            *history_aggregates(conf.columns, first, day, "w_"),
            *history_aggregates(conf.columns, recent, day, "r_"),
        )
    )
    zeroed = aggregates.select(
        "user_id",
        *(
            F.coalesce(F.col(c), F.lit(0.0)).alias(c) if "sum__" in c else F.col(c)
            for c in state_columns(conf.columns)
        ),
    )
    return _stamped(zeroed, conf, day)


def days_read_by_update(conf: PropensityConfig, day: dt.date) -> tuple[dt.date, dt.date, dt.date]:
    """The days whose rows :func:`update` reads: ``day`` and the two that leave the windows."""
    return day, day - conf.history_days * DAY, day - conf.recent_days * DAY


def update(
    previous: DataFrame, activity: DataFrame, conf: PropensityConfig, day: dt.date
) -> DataFrame:
    """The state as of ``day`` from ``previous`` (the state as of ``day`` - 1, built with
    the same windows and columns) and ``activity``'s rows of :func:`days_read_by_update`."""
    enters, leaves_w, leaves_r = days_read_by_update(conf, day)
    date = F.col("date")

    def change(value: Column, leaves: dt.date) -> Column:
        def on(d: dt.date) -> Column:
            return F.coalesce(F.sum(F.when(date == F.lit(d), value)), F.lit(0))

        return on(enters) - on(leaves)

    deltas = (
        activity.where(date.isin(enters, leaves_w, leaves_r))
        .groupBy(F.col("user_id").cast("long").alias("user_id"))
        .agg(
            F.max(date == F.lit(enters)).alias("d_today"),
            *(
                change(F.lit(1), leaves).alias(f"d_{p}active_days")
                for p, leaves in zip(WINDOWS, (leaves_w, leaves_r), strict=True)
            ),
            *(
                change(F.coalesce(F.col(m).cast("double"), F.lit(0.0)), leaves).alias(
                    f"d_{p}sum__{m}"
                )
                for p, leaves in zip(WINDOWS, (leaves_w, leaves_r), strict=True)
                for m in conf.columns
            ),
        )
    )
    today = F.coalesce(F.col("d_today"), F.lit(False))
    updated: list[Column] = []
    for p in WINDOWS:
        days = F.coalesce(F.col(f"{p}active_days"), F.lit(0)) + F.coalesce(
            F.col(f"d_{p}active_days"), F.lit(0)
        )
        last = (
            F.when(today, F.lit(enters))
            .when(days > 0, F.col(f"{p}last_active"))
            .otherwise(F.lit(None).cast("date"))
        )
        updated += [days.cast("long").alias(f"{p}active_days"), last.alias(f"{p}last_active")]
        updated += [
            (
                F.coalesce(F.col(f"{p}sum__{m}"), F.lit(0.0))
                + F.coalesce(F.col(f"d_{p}sum__{m}"), F.lit(0.0))
            ).alias(f"{p}sum__{m}")
            for m in conf.columns
        ]
    kept = previous.select("user_id", *state_columns(conf.columns))
    joined = kept.join(deltas, "user_id", "full_outer").select("user_id", *updated)
    return _stamped(joined, conf, day, stale(conf, day))


def stale(conf: PropensityConfig, day: dt.date) -> Column:
    """True on an updated row that no window can hold: the rows of a day changed between
    entering the state and leaving it (a late or removed row), so counts go out of range
    or a customer's last active day falls outside the window."""
    first, recent = windows_of(conf, day)
    w, r = F.col("w_active_days"), F.col("r_active_days")
    return (
        (w < 0)
        | (w > conf.history_days)
        | (r < 0)
        | (r > F.least(w, F.lit(conf.recent_days)))
        | ((w > 0) & (F.col("w_last_active") < F.lit(first)))
        | ((r > 0) & (F.col("r_last_active") < F.lit(recent)))
    )


def feature_matrix(
    batch: pa.RecordBatch | pa.Table, conf: PropensityConfig, day: dt.date, names: Sequence[str]
) -> np.ndarray:
    """The features ``names`` (of :func:`sparklift.predict.history.feature_names`, history
    window's then recent window's ``r_``) of a batch of the state as of ``day``, one row per
    customer: :func:`sparklift.predict.history.history_features`' formulas in NumPy, to the
    bit, so scoring moves the state's columns (about 40% fewer values than the features)
    from Spark to Python."""
    values: dict[str, np.ndarray] = {}
    for prefix, out, first in zip(WINDOWS, ("", "r_"), windows_of(conf, day), strict=True):
        days = _floats(batch.column(f"{prefix}active_days"))
        last = batch.column(f"{prefix}last_active").cast(pa.int32()).to_numpy(zero_copy_only=False)
        recency = (day - EPOCH).days - np.asarray(last, dtype=float)
        values[f"{out}active_days"] = days
        never = (day - first).days + 2.0  # the window's length + 1
        values[f"{out}recency_days"] = np.where(np.isnan(recency), never, recency)
        with np.errstate(divide="ignore", invalid="ignore"):
            for m in conf.columns:
                total = _floats(batch.column(f"{prefix}sum__{m}"), null=0.0)
                values[f"{out}sum__{m}"] = total
                values[f"{out}mean__{m}"] = np.where(days > 0, total / days, 0.0)
    return np.column_stack([values[n] for n in names])


def _floats(column: pa.Array, null: float = np.nan) -> np.ndarray:
    """A numeric Arrow column as float64, null as ``null`` (a NaN value stays NaN)."""
    return pc.fill_null(pc.cast(column, pa.float64()), null).to_numpy(zero_copy_only=False)


def feature_inputs(conf: PropensityConfig) -> list[str]:
    """The state's columns :func:`feature_matrix` reads."""
    return state_columns(conf.columns)
