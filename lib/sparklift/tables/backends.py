"""The two Delta backends behind one interface, the delta-rs one, and what both share;
the native Delta Spark one is :mod:`sparklift.tables.native`."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from sparklift import errors
from sparklift.tables import commit as delta_commit
from sparklift.tables.delta_log import (
    PartitionFilter,
    encode_filters,
    log_version,
    plain_table,
    stats_count,
)
from sparklift.tables.deltars_source import SOURCE_NAME, DeltaRsDataSource, WriteSpec
from sparklift.tables.diagnose import first_line, real_path
from sparklift.tables.schema import arrow_to_spark

# Delta's error classes of a commit that lost to a concurrent one.
CONFLICT_CLASSES = ("DELTA_CONCURRENT", "DELTA_METADATA_CHANGED", "DELTA_PROTOCOL_CHANGED")
log = logging.getLogger(__name__)


class Backend(Protocol):
    name: str

    def version(self, path: str) -> int | None: ...
    def schema(self, path: str) -> StructType: ...
    def partition_columns(self, path: str) -> list[str]: ...
    def read(
        self, path: str, version: int | None, where: Sequence[PartitionFilter]
    ) -> DataFrame: ...
    def write(
        self,
        df: DataFrame,
        path: str,
        table: str,
        mode: str,
        partition_by: Sequence[str],
        replace: Mapping[str, list[str | None]] | None,
        read_version: int | None,
        txn: delta_commit.Txn,
        note: str | None = None,
    ) -> int: ...
    def merge(
        self,
        df: DataFrame,
        path: str,
        table: str,
        key: Sequence[str],
        scope: str,
        txn: delta_commit.Txn,
        guard: str | None = None,
    ) -> int | None: ...
    def history(self, path: str) -> list[dict[str, Any]]: ...
    def rows_added(self, path: str, version: int) -> int: ...
    def count(self, path: str, version: int | None, where: Sequence[PartitionFilter]) -> int: ...


class DeltaRsBackend:
    """Reads through deltalake's snapshot + Spark's Parquet reader; writes through the
    Python data source, committed by delta-rs in one transaction."""

    name = "deltars"

    def __init__(self, spark: SparkSession, target_file_rows: int) -> None:
        self.spark = spark
        self.target_file_rows = target_file_rows
        spark.dataSource.register(DeltaRsDataSource)

    def _table(self, path: str, version: int | None = None) -> DeltaTable:
        table = plain_table(path, version)
        if table is None:
            protocol = DeltaTable(path, version=version).protocol()
            raise errors.InputError(
                f"table {path} needs Delta reader version {protocol.min_reader_version} "
                f"(features {protocol.reader_features}); use the native backend for it"
            )
        return table

    def version(self, path: str) -> int | None:
        return log_version(path)

    def schema(self, path: str) -> StructType:
        return arrow_to_spark(pa.schema(self._table(path).schema().to_arrow()))

    def partition_columns(self, path: str) -> list[str]:
        return list(self._table(path).metadata().partition_columns)

    def read(self, path: str, version: int | None, where: Sequence[PartitionFilter]) -> DataFrame:
        table = self._table(path, version)
        schema = arrow_to_spark(pa.schema(table.schema().to_arrow()))
        parts = list(table.metadata().partition_columns)
        files = table.file_uris(partition_filters=encode_filters(where) if where else None)
        if not files:
            return self.spark.createDataFrame([], schema)
        # Hive-style directories carry the partition values; Spark parses them with the
        # table's types because the full schema is given.
        for uri in files:
            for col in parts:
                if f"/{col}=" not in uri:
                    raise errors.InputError(
                        f"table {path}: file {uri} is not in a hive-style {col}= directory, "
                        "which the delta-rs backend needs; read it with the native backend"
                    )
        root = real_path(path).rstrip("/")  # delta-rs' own root, or Spark refuses its files
        return (
            self.spark.read.schema(schema)
            .option("basePath", root)
            .parquet(*files)
            .select(*[F.col(f.name) for f in schema.fields])
        )

    def write(
        self,
        df: DataFrame,
        path: str,
        table: str,
        mode: str,
        partition_by: Sequence[str],
        replace: Mapping[str, list[str | None]] | None,
        read_version: int | None,
        txn: delta_commit.Txn,
        note: str | None = None,
    ) -> int:
        spec = WriteSpec(
            root=path,
            table=table,
            mode=mode,
            partition_by=list(partition_by),
            replace=dict(replace) if replace else None,
            read_version=read_version,
            target_file_rows=self.target_file_rows,
            txn=txn,
            note=note,
        )
        # A Python data source is found through the JVM thread's active session, which a
        # thread other than the one that built the session (a pool, Airflow) does not have.
        jvm = self.spark._jvm  # type: ignore[attr-defined]
        jvm.org.apache.spark.sql.SparkSession.setActiveSession(self.spark._jsparkSession)
        try:
            df.write.format(SOURCE_NAME).mode("append").option("spec", spec.to_json()).save()
        except Exception as e:
            try:
                if delta_commit.find_txn_commit(path, txn) is None:
                    delta_commit.sweep_write(path, spec.write_id)
            except Exception as cleanup:  # never in place of the write's own error
                log.warning(
                    "table %s: removing the files of failed write %s failed too: %s",
                    table,
                    spec.write_id,
                    first_line(cleanup),
                )
            errors.reraise_marked(e)
            raise
        return committed_version(path, txn)

    def merge(
        self,
        df: DataFrame,
        path: str,
        table: str,
        key: Sequence[str],
        scope: str,
        txn: delta_commit.Txn,
        guard: str | None = None,
    ) -> int | None:
        """delta-rs' MERGE of the frame's rows, collected to the driver (a few records);
        with ``guard``, an update of the matched rows where it holds (None: none)."""
        source = df.toArrow()
        commit = CommitProperties(app_transactions=[Transaction(txn[0], txn[1])])
        merger = self._table(path).merge(
            source, merge_predicate(key, scope), "s", "t", commit_properties=commit
        )
        if guard is None:
            merger = merger.when_matched_update_all().when_not_matched_insert_all()
        else:
            merger = merger.when_matched_update_all(predicate=guard)
        try:
            metrics = merger.execute()
        except CommitFailedError as e:
            raise merge_conflict(table, e) from None
        if guard is not None and not metrics["num_target_rows_updated"]:
            return None
        return committed_version(path, txn)

    def rows_added(self, path: str, version: int) -> int:
        """Rows in the files a commit added, from their statistics: no data is read."""
        stats = [
            a["add"].get("stats") for a in delta_commit.read_commit(path, version) if "add" in a
        ]
        return sum(json.loads(s)["numRecords"] for s in stats if s)

    def count(self, path: str, version: int | None, where: Sequence[PartitionFilter]) -> int:
        """Rows of the snapshot's files in partitions ``where``, from their statistics
        (counted by Spark when a file has none)."""
        counted = stats_count(path, version, where)
        return counted if counted is not None else self.read(path, version, where).count()

    def history(self, path: str) -> list[dict[str, Any]]:
        try:
            return DeltaTable(path).history()
        except TableNotFoundError:
            return []


@contextmanager
def session_conf(spark: SparkSession, settings: Mapping[str, str]) -> Iterator[None]:
    """Set Spark SQL conf for the block, then restore what was there."""
    saved = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def merge_predicate(key: Sequence[str], scope: str) -> str:
    """Target ``t`` and source ``s`` rows with equal keys (nulls equal too), the target's
    rows limited to ``scope`` (its partitions the source's rows lie in: what the merge
    reads, so only a concurrent change there conflicts with it)."""
    return " AND ".join([f"({scope})", *(f"(t.`{k}` IS NOT DISTINCT FROM s.`{k}`)" for k in key)])


def merge_conflict(table: str, e: BaseException) -> errors.TableConflictError:
    return errors.TableConflictError(
        f"table {table}: a concurrent write changed rows this merge read ({first_line(e)}); "
        "the merge was discarded; re-run it"
    )


def committed_version(path: str, txn: delta_commit.Txn) -> int:
    """The version a write of application transaction ``txn`` made."""
    version = delta_commit.find_txn_commit(path, txn)
    if version is None:
        raise errors.SparkliftError(f"table {path}: write {txn} is not in the log")
    return version


def is_conflict(exc: BaseException) -> bool:
    """Delta's optimistic-concurrency failures (a concurrent writer won), including the
    protocol change of two writers creating one table (delta-spark's Python classes for
    them share no base class but PySparkException: each is named)."""
    from delta import exceptions as d

    lost = (
        d.DeltaConcurrentModificationException,
        d.ConcurrentWriteException,
        d.ConcurrentAppendException,
        d.ConcurrentDeleteReadException,
        d.ConcurrentDeleteDeleteException,
        d.ConcurrentTransactionException,
        d.MetadataChangedException,
        d.ProtocolChangedException,
    )
    if isinstance(exc, lost):
        return True
    head = str(exc)[:500]
    return any(k in head for k in CONFLICT_CLASSES)
