"""One feature vector per zone: its configured features on each day of a lookback window."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparklift.errors import InputError, InputNotReadyError


def zone_vectors(
    features: DataFrame, zone_ids: list[int], names: list[str], dates: list[dt.date]
) -> pd.DataFrame:
    """Pivot ``zone_day_features`` into zones x (date, feature), one Spark aggregation.

    Fails, naming them, when a feature is missing or when a zone lacks a day of the window
    (the features job writes every eligible zone every day, so a gap means it has not run).
    """
    missing = [n for n in names if n not in features.columns]
    if missing:
        raise InputError(f"table zone_day_features: no feature columns {missing}")
    keys = [d.isoformat() for d in dates]
    zones = features.sparkSession.createDataFrame([(z,) for z in zone_ids], "zone_id int")
    wide = (
        features.where(F.col("date").between(dates[0], dates[-1]))
        .join(F.broadcast(zones), "zone_id", "left_semi")
        .withColumn("date_key", F.date_format("date", "yyyy-MM-dd"))
        .groupBy("zone_id")
        .pivot("date_key", keys)
        .agg(*[F.first(F.col(n).cast("double")).alias(n) for n in names])
    )
    pdf = wide.toPandas().set_index("zone_id")
    if len(names) == 1:  # a single aggregate is named by the pivot value alone
        pdf.columns = [f"{c}_{names[0]}" for c in pdf.columns]
    columns = [f"{k}_{n}" for k in keys for n in names]
    pdf = pdf.reindex(index=sorted(zone_ids), columns=columns)
    gaps = pdf.isna()
    if gaps.to_numpy().any():
        rows = gaps.any(axis=1)
        cols = gaps.any(axis=0)
        days = sorted({c.split("_", 1)[0] for c in cols[cols].index})
        raise InputNotReadyError(
            f"table zone_day_features: {int(rows.sum())} eligible zones lack features on "
            f"{len(days)} day(s) of the lookback {dates[0]}..{dates[-1]}: {days[:10]} "
            f"(e.g. zone {int(rows[rows].index[0])}); run `sparklift features` for them"
        )
    return pdf
