"""Per-user history features over a window of ``user_activity`` rows, as Spark aggregates.

A user's history in a window [first, last] is summarized, for every metric m, by its sum
and its mean per active day, with the number of active days and the days from the last
active day to ``last`` (the window's length + 1 without one). The rows are user-days with
activity, so a user without rows in the window has zero sums, zero means and the maximum
recency: the same vector for every such user. Several windows can be aggregated in one
``groupBy`` (each a set of conditional aggregates), which is how CUPAC reads its training
features, its targets and its application features in a single pass.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import Column
from pyspark.sql import functions as F


def in_window(first: dt.date, last: dt.date) -> Column:
    return (F.col("date") >= F.lit(first)) & (F.col("date") <= F.lit(last))


def history_aggregates(
    metrics: Sequence[str], first: dt.date, last: dt.date, prefix: str
) -> list[Column]:
    """Aggregates (for a ``groupBy("user_id")``) of the raw sums of the window: active days,
    last active date and each metric's sum, named ``<prefix>...``."""
    inside = in_window(first, last)
    return [
        F.count_if(inside).alias(f"{prefix}active_days"),
        F.max(F.when(inside, F.col("date"))).alias(f"{prefix}last_active"),
        *(
            F.sum(F.when(inside, F.col(m).cast("double"))).alias(f"{prefix}sum__{m}")
            for m in metrics
        ),
    ]


def feature_names(metrics: Sequence[str], out: str = "") -> list[str]:
    """The model's features, in order: active days, recency, each metric's sum and mean
    (each name prefixed by ``out``)."""
    names = [
        "active_days",
        "recency_days",
        *(f"sum__{m}" for m in metrics),
        *(f"mean__{m}" for m in metrics),
    ]
    return [out + n for n in names]


def history_features(
    metrics: Sequence[str], first: dt.date, last: dt.date, prefix: str, out: str = ""
) -> list[Column]:
    """The features (:func:`feature_names` with ``out``) from :func:`history_aggregates`'
    columns of the same ``prefix``: never null (a metric without values sums to 0), so
    users without history get one vector."""
    days = F.col(f"{prefix}active_days").cast("double")
    length = (last - first).days + 1
    recency = F.datediff(F.lit(last), F.col(f"{prefix}last_active")).cast("double")
    sums = [F.coalesce(F.col(f"{prefix}sum__{m}"), F.lit(0.0)) for m in metrics]
    means = [F.when(days > 0, total / days).otherwise(0.0) for total in sums]
    values = [days, F.coalesce(recency, F.lit(float(length + 1))), *sums, *means]
    return [v.alias(n) for v, n in zip(values, feature_names(metrics, out), strict=True)]
