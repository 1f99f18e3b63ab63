"""Delta tables by catalog name: one API over the native and the delta-rs backend.

``Catalog.write`` writes a table under its contract (:mod:`sparklift.contracts`: columns
and partitioning), enforces the table's schema before any file is written and commits
each write as one Delta version; ``mode`` is ``append``, ``overwrite`` (all rows) or
``replace`` (the partitions matching ``replace_where``, atomically).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from sparklift.config import TablesConfig
from sparklift.contracts import contract
from sparklift.errors import (
    InputError,
    InputNotReadyError,
    SchemaMismatchError,
    TableConflictError,
)
from sparklift.tables.backends import Backend
from sparklift.tables.commit import Txn
from sparklift.tables.delta_log import PartitionFilter, partition_values, plain_parquet_files
from sparklift.tables.diagnose import check_writable, explained, not_a_table, real_path
from sparklift.tables.locate import choose_backend, resolve_path
from sparklift.tables.schema import (
    as_values,
    cast_integers,
    check_partition_columns,
    check_schema,
    normalize_replace_where,
    replace_predicate,
    table_schema,
)

__all__ = ["Catalog", "PartitionFilter", "TableIO", "choose_backend", "resolve_path"]

log = logging.getLogger(__name__)


@dataclass
class TableIO:
    """The table versions a unit of work read (with its partition filters) and wrote:
    the lineage the pipeline records for each step."""

    reads: list[tuple[str, int, tuple[PartitionFilter, ...]]] = field(default_factory=list)
    writes: list[tuple[str, int]] = field(default_factory=list)


class Catalog:
    """The configured tables: read, write, create and inspect them by logical name."""

    def __init__(self, spark: SparkSession, conf: TablesConfig, backend: Backend | None = None):
        self.spark = spark
        # The base path once, its symbolic links resolved: delta-rs resolves them, and
        # Spark must be given the same paths as delta-rs.
        self.conf = conf.model_copy(update={"base_path": real_path(conf.base_path)})
        self.backend = backend or choose_backend(spark, conf)
        self._recorders: list[TableIO] = []

    @contextmanager
    def recording(self) -> Iterator[TableIO]:
        """Record every read and write through this catalog while the block runs."""
        io = TableIO()
        self._recorders.append(io)
        try:
            yield io
        finally:
            self._recorders.remove(io)

    def count(
        self, name: str, version: int | None = None, where: Sequence[PartitionFilter] = ()
    ) -> int:
        """Rows of a snapshot's partitions ``where``, from the log's file statistics where
        the backend keeps them (no data read)."""
        path = self._existing(name)
        with explained(name, path):
            return self.backend.count(path, version, where)

    def path(self, name: str) -> str:
        if name not in self.conf.names:
            raise InputError(f"unknown table {name!r}; the catalog has {sorted(self.conf.names)}")
        return real_path(resolve_path(self.conf.base_path, self.conf.names[name]))

    def exists(self, name: str) -> bool:
        return self.version(name) is not None

    def version(self, name: str) -> int | None:
        path = self.path(name)
        with explained(name, path):
            return self.backend.version(path)

    def schema(self, name: str) -> StructType:
        path = self._existing(name)
        with explained(name, path):
            return self.backend.schema(path)

    def partition_columns(self, name: str) -> list[str]:
        path = self._existing(name)
        with explained(name, path):
            return self.backend.partition_columns(path)

    def history(self, name: str) -> list[dict[str, Any]]:
        path = self.path(name)
        with explained(name, path):
            return self.backend.history(path)

    def rows_added(self, name: str, version: int) -> int:
        """Rows written by the commit that made ``version`` (from the log, no data read)."""
        path = self.path(name)
        with explained(name, path):
            return self.backend.rows_added(path, version)

    def _existing(self, name: str) -> str:
        """The table's path; InputError if something else is there (a Parquet directory:
        waiting will not turn it into a table), InputNotReadyError if nothing is."""
        path = self.path(name)
        if self.version(name) is None:
            other = not_a_table(path)
            if other:
                raise InputError(f"table {name} at {path} {other}")
            raise InputNotReadyError(f"table {name} does not exist at {path}")
        return path

    def read(
        self,
        name: str,
        version: int | None = None,
        where: Sequence[PartitionFilter] = (),
    ) -> DataFrame:
        """The latest snapshot, or ``version`` (time travel), pruned to partitions ``where``."""
        path = self._existing(name)
        with explained(name, path):
            parts = self.backend.partition_columns(path) if where else []
            for col, _, _ in where:
                if col not in parts:
                    raise InputError(f"table {name}: {col!r} is not a partition column ({parts})")
            if self._recorders:
                self._record_read(
                    name, self.backend.version(path) if version is None else version, where
                )
            return self.backend.read(path, version, where)

    def parquet_files(
        self, name: str, where: Sequence[PartitionFilter] = (), version: int | None = None
    ) -> list[str] | None:
        """The latest snapshot's (or ``version``'s) data files in partitions ``where`` when
        they can be read as plain Parquet (:func:`plain_parquet_files`; their rows lack the
        partition columns), else None: for a Python reader that skips Spark's row-to-Arrow
        conversion."""
        path = self._existing(name)
        with explained(name, path):
            version = self.backend.version(path) if version is None else version
            files = plain_parquet_files(path, version, where)
            if files is not None:
                self._record_read(name, version, where)
            return files

    def partition_values(
        self, name: str, column: str, where: Sequence[PartitionFilter] = ()
    ) -> set[Any]:
        """The values of partition column ``column`` in the latest snapshot's partitions
        ``where``: from the log where delta-rs reads it (no data read), else by a query."""
        path = self._existing(name)
        with explained(name, path):
            parts = self.backend.partition_columns(path)
            if column not in parts:
                raise InputError(f"table {name}: {column!r} is not a partition column ({parts})")
            values = partition_values(path, column, where)
            if values is not None:
                self._record_read(name, self.backend.version(path), where)
                return values
            rows = self.read(name, where=where).select(column).distinct().collect()
            return {r[0] for r in rows}

    def _record_read(
        self, name: str, version: int | None, where: Sequence[PartitionFilter]
    ) -> None:
        """Note a read of ``name`` at ``version`` in every recording's lineage."""
        for io in self._recorders:
            io.reads.append((name, int(version or 0), tuple(where)))

    def create(self, name: str, schema: StructType, partition_by: Sequence[str] = ()) -> int:
        """Create an empty table of ``schema``, outside its contract (as
        :meth:`write_uncontracted`); fails if it exists."""
        if self.exists(name):
            raise InputError(f"table {name} already exists at {self.path(name)}")
        empty = self.spark.createDataFrame([], table_schema(schema))
        return self.write_uncontracted(name, empty, mode="append", partition_by=partition_by)

    def write(
        self,
        name: str,
        df: DataFrame,
        mode: Literal["append", "overwrite", "replace"] = "append",
        replace_where: Mapping[str, Any] | None = None,
        txn: Txn | None = None,
        user_metadata: Mapping[str, Any] | None = None,
    ) -> int:
        """Write ``df`` to table ``name`` under its contract and return the new version.

        The frame must have the contract's columns and types (any order; an open table's
        further columns too; an integer column of another width is cast, a value that does
        not fit fails); the table is partitioned as the contract says. ``mode``,
        ``replace_where``, ``txn`` and ``user_metadata`` as in :meth:`write_uncontracted`.
        """
        table = contract(name)
        df = cast_integers(name, df, table.schema)
        check_schema(name, table.schema, df.schema, table.extra is not None, " under its contract")
        return self.write_uncontracted(
            name, df, mode, table.partition_by, replace_where, txn, user_metadata
        )

    def write_uncontracted(
        self,
        name: str,
        df: DataFrame,
        mode: Literal["append", "overwrite", "replace"] = "append",
        partition_by: Sequence[str] = (),
        replace_where: Mapping[str, Any] | None = None,
        txn: Txn | None = None,
        user_metadata: Mapping[str, Any] | None = None,
    ) -> int:
        """Write ``df`` as one new version of table ``name``, whatever its contract says:
        the Delta layer's write, for its own tests and for tables of other shapes (a test's
        table from an older release). Returns the new version.

        A new table is created with ``partition_by``. For an existing table the frame must
        have exactly the table's columns and types (any order); ``partition_by``, if given,
        must equal the table's. ``replace`` swaps the partitions matching
        ``replace_where`` (``{column: value or values}``) for the frame's rows, which must
        all lie in them. ``txn`` (application id, version) is the write's idempotency key,
        recorded as Delta's application transaction: a write whose key the table already
        holds is not applied again and returns the version that applied it. Default: a
        fresh key, so the write finds its own commit whoever else commits meanwhile.
        ``user_metadata`` (JSON-serializable) is kept as the commit's ``userMetadata``,
        Delta's field for a writer's own record (see :mod:`sparklift.tables.changes`).
        """
        if mode not in ("append", "overwrite", "replace"):
            raise InputError(f"write mode must be append, overwrite or replace, got {mode!r}")
        if (mode == "replace") != (replace_where is not None):
            raise InputError("replace_where is required with mode='replace' and only with it")
        path = self.path(name)
        check_writable(name, path)
        with explained(name, path, writing=True):
            note = json.dumps(user_metadata, default=str) if user_metadata else None
            return self._write(name, path, df, mode, partition_by, replace_where, txn, note=note)

    def merge(self, name: str, df: DataFrame) -> int:
        """Upsert ``df``'s rows into table ``name`` on its contract's key in one commit: a
        row whose key the table holds replaces it, the others are added, the rest of the
        table stays (a new table is created with the rows). One Delta MERGE, so a
        concurrent commit to the rows it reads fails it (TableConflictError) instead of
        being overwritten, as a read followed by a write would. For a few driver-side
        records: the delta-rs backend merges them in the driver. Returns the new version."""
        table = contract(name)
        df = cast_integers(name, df, table.schema)
        check_schema(name, table.schema, df.schema, table.extra is not None, " under its contract")
        path = self.path(name)
        check_writable(name, path)
        if self.backend.version(path) is None:
            try:
                with explained(name, path, writing=True):
                    return self._write(
                        name,
                        path,
                        df,
                        "append",
                        table.partition_by,
                        None,
                        None,
                        on_creation_race=False,
                    )
            except TableConflictError:  # another writer created it: merge into theirs
                log.info("table %s was created by another writer meanwhile: merging", name)
        version = self._merge(name, path, df, table.key, None)
        assert version is not None  # an unguarded merge always commits
        return version

    def update(self, name: str, df: DataFrame, unchanged: Sequence[str]) -> int | None:
        """Replace the rows of ``df``'s keys in table ``name`` in one commit, each only
        where the table's row still holds ``df``'s values in the ``unchanged`` columns:
        a read-modify-write whose read is checked by the transaction that writes. A row
        changed before the update is not written (None: no row was); a commit to the rows
        it reads while it runs fails it (TableConflictError), as :meth:`merge`. Adds no
        row. Returns the new version, or None (native Delta still commits the update's
        transaction id then, with no data change)."""
        table = contract(name)
        df = cast_integers(name, df, table.schema)
        check_schema(name, table.schema, df.schema, table.extra is not None, " under its contract")
        missing = [c for c in unchanged if c not in df.columns]
        if not unchanged or missing:
            raise InputError(
                f"table {name}: an update's unchanged columns must be columns of its rows, "
                f"got {list(unchanged)}"
            )
        path = self.path(name)
        check_writable(name, path)
        if self.backend.version(path) is None:
            return None
        guard = " AND ".join(f"(t.`{c}` IS NOT DISTINCT FROM s.`{c}`)" for c in unchanged)
        return self._merge(name, path, df, table.key, guard)

    def _merge(
        self, name: str, path: str, df: DataFrame, key: Sequence[str], guard: str | None
    ) -> int | None:
        """The MERGE of :meth:`merge` and :meth:`update` on an existing table."""
        txn = (f"sparklift-{uuid.uuid4().hex}", 0)
        with explained(name, path, writing=True):
            expected = self.backend.schema(path)
            check_schema(name, expected, df.schema)
            df = df.select(*expected.fieldNames())
            parts = self.backend.partition_columns(path)
            scope = "true"
            if parts:  # the partitions the rows lie in: all the merge reads
                rows = df.select(*parts).distinct().collect()
                where = normalize_replace_where(
                    name, parts, {c: [r[c] for r in rows] for c in parts}
                )
                scope = replace_predicate(where, expected, qualifier="t.")
            version = self.backend.merge(df, path, name, key, scope, txn, guard)
        if version is not None:
            for io in self._recorders:
                io.writes.append((name, version))
        return version

    def _write(
        self,
        name: str,
        path: str,
        df: DataFrame,
        mode: Literal["append", "overwrite", "replace"],
        partition_by: Sequence[str],
        replace_where: Mapping[str, Any] | None,
        txn: Txn | None,
        on_creation_race: bool = True,
        note: str | None = None,
    ) -> int:
        """The write; one that created the table and lost that race to another writer is
        written again onto the winner's table when :meth:`_lands_after_creator` allows."""
        read_version = self.backend.version(path)
        if read_version is None:
            check_partition_columns(name, df.schema, partition_by)
        else:
            existing = self.backend.partition_columns(path)
            if partition_by and list(partition_by) != existing:
                raise SchemaMismatchError(
                    f"table {name} is partitioned by {existing}, not {list(partition_by)}"
                )
            partition_by = existing
            expected = self.backend.schema(path)
            check_schema(name, expected, df.schema)
            df = df.select(*expected.fieldNames())
        replace = (
            normalize_replace_where(name, partition_by, replace_where) if replace_where else None
        )
        txn = txn or (f"sparklift-{uuid.uuid4().hex}", 0)
        try:
            version = self.backend.write(
                df, path, name, mode, partition_by, replace, read_version, txn, note
            )
        except TableConflictError:
            if read_version is not None or not self._lands_after_creator(
                path, mode, replace_where, on_creation_race
            ):
                raise
            log.info("table %s was created by another writer meanwhile: writing onto it", name)
            return self._write(name, path, df, mode, partition_by, replace_where, txn, note=note)
        for io in self._recorders:
            io.writes.append((name, version))
        return version

    def _lands_after_creator(
        self,
        path: str,
        mode: str,
        replace_where: Mapping[str, Any] | None,
        on_creation_race: bool,
    ) -> bool:
        """Whether a write that lost the race to create its table may be written onto
        the winner's table, as if it had come second: an append always; a replace when
        the winner wrote nothing into its partitions (so nothing it never saw is lost;
        not for a null partition, which a partition filter cannot look up); never an
        overwrite, nor a write whose caller handles the race itself."""
        if not on_creation_race or mode == "overwrite":
            return False
        if mode == "append":
            return True
        where = [(c, "in", as_values(v)) for c, v in (replace_where or {}).items()]
        if any(None in values for _, _, values in where):
            return False
        return self.backend.count(path, None, where) == 0
