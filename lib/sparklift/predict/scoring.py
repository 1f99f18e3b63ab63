"""Propensity scores for every customer of a snapshot, in Arrow batches.

The pickled model travels once per executor as a broadcast variable; each Python worker
checks the bytes' sha256 against the one the driver verified, unpickles them on its first
batch and keeps the model for the next ones (:func:`sparklift.uplift.scoring.cached_model`).
Scikit-learn's threads are capped at one per task: Spark already runs one task per core.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, LongType, StructField, StructType

from sparklift.predict.propensity import PropensityModel
from sparklift.tables.schema import spark_to_arrow
from sparklift.uplift.scoring import cached_model

_PREDICTED = StructType(
    [StructField("customer_id", LongType()), StructField("propensity", DoubleType())]
)
_ARROW_SCHEMA = spark_to_arrow(_PREDICTED)


def score(
    features: DataFrame, blob: Broadcast, sha256: str, model: PropensityModel, run_date: dt.date
) -> DataFrame:
    """``features`` (user_id and ``model.features``) -> PROPENSITY_SCORES rows, with ``blob``
    the broadcast bytes (sha256 ``sha256``) of ``model``, verified on the driver. Python
    returns only each customer's id and score; the constant columns are Spark literals."""
    model_id, names = model.model_id, list(model.features)

    def predict(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from threadpoolctl import threadpool_limits

        fitted = cached_model(model_id, blob, sha256)
        with threadpool_limits(limits=1):
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                X = np.column_stack(
                    [batch.column(c).to_numpy(zero_copy_only=False) for c in names]
                ).astype(np.float64)
                yield pa.RecordBatch.from_arrays(
                    [batch.column("user_id"), pa.array(fitted.predict(X, run_date), pa.float64())],
                    schema=_ARROW_SCHEMA,
                )

    selected = features.select(
        F.col("user_id").cast("long"), *[F.col(c).cast("double") for c in names]
    )
    return selected.mapInArrow(predict, _PREDICTED).select(
        F.lit(run_date).alias("run_date"),
        "customer_id",
        "propensity",
        F.lit(model.windows.horizon_days).cast("int").alias("horizon_days"),
        F.lit(model_id).alias("model_id"),
    )
