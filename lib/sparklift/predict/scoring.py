"""Propensity scores for every customer of a snapshot, in Arrow batches.

The pickled model travels once per executor as a broadcast variable; each Python worker
checks the bytes' sha256 against the one the driver verified, unpickles them on its first
batch and keeps the model for the next ones (:func:`sparklift.uplift.scoring.cached_model`).
Scikit-learn's threads are capped at one per task: Spark already runs one task per core.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, LongType, StructField, StructType

from sparklift.predict.propensity import PropensityModel
from sparklift.predict.user_history import feature_inputs, feature_matrix
from sparklift.tables.commit import arrow_cannot_open, filesystem
from sparklift.tables.schema import spark_to_arrow
from sparklift.uplift.scoring import cached_model

_PREDICTED = StructType(
    [StructField("customer_id", LongType()), StructField("propensity", DoubleType())]
)
_ARROW_SCHEMA = spark_to_arrow(_PREDICTED)
_BATCH_ROWS = 65_536  # rows per batch read from a state file


def score(
    state: DataFrame | StateFiles,
    blob: Broadcast,
    sha256: str,
    model: PropensityModel,
    run_date: dt.date,
) -> DataFrame:
    """The state as of ``run_date`` (:mod:`sparklift.predict.user_history`'s rows, built
    with the model's windows: a frame, or :class:`StateFiles`) -> PROPENSITY_SCORES rows,
    with ``blob`` the broadcast bytes (sha256 ``sha256``) of ``model``, verified on the
    driver. Python gets the state's columns and computes the features itself
    (:func:`feature_matrix`): the values Spark converts from rows to Arrow are most of the
    scoring's cost, so plain Parquet files are read by Python directly. It returns only each
    customer's id and score; the constant columns are Spark literals."""
    model_id, names, conf = model.model_id, list(model.features), model.windows
    columns = ["user_id", *feature_inputs(conf)]

    def predict(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from threadpoolctl import threadpool_limits

        fitted = cached_model(model_id, blob, sha256)
        with threadpool_limits(limits=1):
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                X = feature_matrix(batch, conf, run_date, names)
                ids = pc.cast(batch.column("user_id"), pa.int64())
                yield pa.RecordBatch.from_arrays(
                    [ids, pa.array(fitted.predict(X, run_date), pa.float64())],
                    schema=_ARROW_SCHEMA,
                )

    if isinstance(state, StateFiles):
        files, per_file, tasks = state.files, state.per_file, state.tasks

        def read(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            for b in batches:
                for task in b.column(0).to_pylist():
                    yield from predict(_row_groups(files, per_file, task, columns))

        spark = state.spark
        predicted = spark.range(tasks, numPartitions=tasks).mapInArrow(read, _PREDICTED)
    else:
        selected = state.select(F.col("user_id").cast("long"), *columns[1:])
        predicted = selected.mapInArrow(predict, _PREDICTED)
    return predicted.select(
        F.lit(run_date).alias("run_date"),
        "customer_id",
        "propensity",
        F.lit(model.windows.horizon_days).cast("int").alias("horizon_days"),
        F.lit(model_id).alias("model_id"),
    )


@dataclass(frozen=True)
class StateFiles:
    """The state's Parquet files (plain: :meth:`sparklift.tables.Catalog.parquet_files`),
    each read by ``per_file`` Spark tasks: task t reads file t mod F's row groups r with
    r = t div F (mod ``per_file``)."""

    spark: SparkSession
    files: list[str]
    per_file: int

    @property
    def tasks(self) -> int:
        return len(self.files) * self.per_file

    @staticmethod
    def of(spark: SparkSession, files: list[str]) -> StateFiles | None:
        """The files, in at least two tasks per core; None when there are none or this
        process's Arrow cannot open them (a file system it was not built for)."""
        if not files or arrow_cannot_open(files[0]):
            return None
        wanted = 2 * spark.sparkContext.defaultParallelism
        return StateFiles(spark, files, -(-wanted // len(files)))


def _row_groups(
    files: list[str], per_file: int, task: int, columns: list[str]
) -> Iterator[pa.RecordBatch]:
    """Task ``task``'s share of ``files`` (:class:`StateFiles`), in batches of ``columns``.
    A column the file lacks (written before the table's schema gained it) is null, as
    Spark's reader makes it."""
    n = len(files)
    fs, path = filesystem(files[task % n])
    with fs.open_input_file(path) as f:
        parquet = pq.ParquetFile(f)
        present = [c for c in columns if c in parquet.schema_arrow.names]
        groups = range(task // n, parquet.num_row_groups, per_file)
        if not len(groups):
            return
        for batch in parquet.iter_batches(
            batch_size=_BATCH_ROWS, row_groups=list(groups), columns=present, use_threads=False
        ):
            if len(present) < len(columns):
                batch = pa.RecordBatch.from_arrays(
                    [
                        batch.column(c) if c in present else pa.nulls(batch.num_rows, pa.float64())
                        for c in columns
                    ],
                    names=columns,
                )
            yield batch
