"""Score every customer for every voucher, distributed in Arrow batches.

The pickled model travels once per executor as a broadcast variable; each Python worker
checks the bytes' sha256 against the one the driver verified (see
:func:`sparklift.uplift.model.verify`), unpickles them on its first batch and keeps the
model (keyed by model id) for the next ones. The features read and the voucher columns
taken are the model's own lists, never meta.json's. Each Arrow batch of customers becomes
one NumPy matrix, one ``predict`` per response, and ``len(vouchers)`` output rows per
customer. Scikit-learn's OpenMP threads are capped at one per task: Spark already runs one
task per core.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import pickle
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.broadcast import Broadcast
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from sparklift.contracts.vouchers import UPLIFT_SCORES
from sparklift.tables.schema import spark_to_arrow
from sparklift.uplift.model import UpliftModel

_ARROW_SCHEMA = spark_to_arrow(UPLIFT_SCORES.schema)
_MODELS: dict[str, Any] = {}


def cached_model(
    model_id: str, blob: Broadcast, sha256: str, check: Callable[[Any], bool] | None = None
) -> Any:
    """In a Python worker: the broadcast model, its bytes checked against ``sha256`` and
    (``check``) its contents against the driver's, unpickled once and kept for the next
    batches."""
    if model_id not in _MODELS:
        _MODELS.clear()
        data = blob.value
        if hashlib.sha256(data).hexdigest() != sha256:
            raise RuntimeError(f"broadcast of model {model_id} does not have sha256 {sha256}")
        model = pickle.loads(data)
        if check is not None and not check(model):
            raise RuntimeError(f"broadcast of model {model_id} differs from the driver's")
        _MODELS[model_id] = model
    return _MODELS[model_id]


def any_missing(features: Sequence[str]) -> Column:
    """True where some feature is null or NaN."""
    cols = [F.col(c).isNull() | F.isnan(F.col(c).cast("double")) for c in features]
    out = cols[0]
    for c in cols[1:]:
        out = out | c
    return out


def score(
    customers: DataFrame,
    blob: Broadcast,
    sha256: str,
    model: UpliftModel,
    vouchers: Sequence[str],
    run_date: dt.date,
) -> DataFrame:
    """``customers`` (customer_id, budget_group, ``model.features``) x ``vouchers`` ->
    UPLIFT_SCORES, with ``blob`` the broadcast bytes (sha256 ``sha256``) of ``model``,
    verified and unpickled on the driver."""
    model_id = model.model_id
    features, vouchers = list(model.features), list(vouchers)
    model_vouchers = list(model.vouchers)
    columns = [model_vouchers.index(v) for v in vouchers]
    n_vouchers = len(vouchers)
    voucher_col = pa.array(vouchers, pa.string())

    def predict(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from threadpoolctl import threadpool_limits

        fitted = cached_model(
            model_id,
            blob,
            sha256,
            lambda m: (m.features, m.vouchers) == (features, model_vouchers),
        )
        with threadpool_limits(limits=1):
            for batch in batches:
                n = batch.num_rows
                if n == 0:
                    continue
                X = np.column_stack(
                    [
                        batch.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
                        for c in features
                    ]
                )
                pred = fitted.predict(X)
                take = np.repeat(np.arange(n), n_vouchers)
                yield pa.RecordBatch.from_arrays(
                    [
                        pa.array(np.full(n * n_vouchers, run_date), pa.date32()),
                        batch.column("customer_id").take(take),
                        batch.column("budget_group").take(take),
                        voucher_col.take(np.tile(np.arange(n_vouchers), n)),
                        pa.array(pred["objective"][:, columns].ravel()),
                        pa.array(pred["cost"][:, columns].ravel()),
                        pa.array(np.full(n * n_vouchers, model_id, dtype=object), pa.string()),
                    ],
                    schema=_ARROW_SCHEMA,
                )

    selected = customers.select(
        F.col("customer_id").cast("long"),
        F.col("budget_group").cast("string"),
        *[F.col(c).cast("double") for c in features],
    )
    return selected.mapInArrow(predict, UPLIFT_SCORES.schema)
