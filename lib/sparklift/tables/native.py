"""The native backend: Delta Lake's own Spark data source and DML."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from sparklift import errors
from sparklift.tables import commit as delta_commit
from sparklift.tables.backends import (
    committed_version,
    is_conflict,
    merge_conflict,
    merge_predicate,
    session_conf,
)
from sparklift.tables.delta_log import PartitionFilter, log_version, stats_count
from sparklift.tables.diagnose import first_line
from sparklift.tables.schema import replace_predicate


class NativeBackend:
    """Delta Lake's own Spark data source, used when its JVM classes are on the classpath."""

    name = "native"

    def __init__(self, spark: SparkSession) -> None:
        from delta.tables import DeltaTable as SparkDeltaTable

        self.spark = spark
        self._dt = SparkDeltaTable

    # The version, partition columns and a commit's row count come from the log through
    # delta-rs, as the write's own commit lookup does: Delta Spark's history() and detail()
    # run a Spark job each (0.1-0.5 s), and a job asks for them dozens of times.
    def version(self, path: str) -> int | None:
        return log_version(path)

    def schema(self, path: str) -> StructType:
        return self.spark.read.format("delta").load(path).schema

    def partition_columns(self, path: str) -> list[str]:
        return list(DeltaTable(path).metadata().partition_columns)

    def read(self, path: str, version: int | None, where: Sequence[PartitionFilter]) -> DataFrame:
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        df = reader.load(path)
        for col, op, value in where:
            c = F.col(col)
            if op == "in":
                df = df.filter(c.isin(list(value)))
            elif op == "not in":
                df = df.filter(~c.isin(list(value)))
            else:
                ops = {"=": c == value, "!=": c != value, "<": c < value, "<=": c <= value}
                ops |= {">": c > value, ">=": c >= value}
                df = df.filter(ops[op])
        return df

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
        writer = (
            df.write.format("delta")
            .partitionBy(*partition_by)
            .mode("append" if mode == "append" else "overwrite")
            .option("txnAppId", txn[0])
            .option("txnVersion", txn[1])
        )
        if note is not None:
            writer = writer.option("userMetadata", note)
        if replace:
            writer = writer.option("replaceWhere", replace_predicate(replace, df.schema))
        try:
            writer.save(path)
        except Exception as e:
            if is_conflict(e):
                raise errors.TableConflictError(
                    f"table {table}: a concurrent write conflicts with this {mode} "
                    f"(based on version {read_version}): {first_line(e)}; the other writer "
                    "won, this write was discarded; re-run it"
                ) from None
            if "DELTA_REPLACE_WHERE_MISMATCH" in str(e):
                raise errors.InputError(
                    f"cannot write to table {table}: a row lies outside the partitions being "
                    f"replaced {dict(replace or {})}"
                ) from None
            errors.reraise_marked(e)  # a value its contract refuses, found in a task
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
        """Delta Lake's MERGE, marked with ``txn`` through the session's idempotent-write
        settings (DML takes no writer options); with ``guard``, an update of the matched
        rows where it holds (None: none)."""
        marker = {
            "spark.databricks.delta.write.txnAppId": txn[0],
            "spark.databricks.delta.write.txnVersion": str(txn[1]),
        }
        merger = (
            self._dt.forPath(self.spark, path)
            .alias("t")
            .merge(df.alias("s"), merge_predicate(key, scope))
        )
        if guard is None:
            merger = merger.whenMatchedUpdateAll().whenNotMatchedInsertAll()
        else:
            merger = merger.whenMatchedUpdateAll(condition=guard)
        try:
            with session_conf(self.spark, marker):
                metrics = merger.execute().first()
        except Exception as e:
            if is_conflict(e):
                raise merge_conflict(table, e) from None
            errors.reraise_marked(e)
            raise
        if guard is not None and not metrics["num_updated_rows"]:
            return None
        return committed_version(path, txn)

    def history(self, path: str) -> list[dict[str, Any]]:
        if not self._dt.isDeltaTable(self.spark, path):
            return []
        rows = self._dt.forPath(self.spark, path).history().collect()
        return [r.asDict(recursive=True) for r in rows]

    def count(self, path: str, version: int | None, where: Sequence[PartitionFilter]) -> int:
        """From the files' statistics in the log, read by delta-rs without a Spark job;
        else Delta's own count (which also uses them where it can)."""
        counted = stats_count(path, version, where)
        return counted if counted is not None else self.read(path, version, where).count()

    def rows_added(self, path: str, version: int) -> int:
        """The commit's own operation metrics (Delta Spark records its output rows)."""
        info = next(
            (a["commitInfo"] for a in delta_commit.read_commit(path, version) if "commitInfo" in a),
            {},
        )
        return int((info.get("operationMetrics") or {}).get("numOutputRows", 0))
