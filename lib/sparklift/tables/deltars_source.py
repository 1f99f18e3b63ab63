"""A Spark 4 Python Data Source that writes a Delta table through delta-rs.

Each task receives Arrow batches, splits them by partition values, writes Parquet files
into the table directory and returns their descriptions (path, size, partition values,
statistics). On the driver, ``commit`` hands all of them to :func:`commit.commit`, which
adds them in one Delta transaction; ``abort`` and any failure delete the files. A task
that fails deletes what it wrote before re-raising, so a failed job leaves no new version
and no referenced file behind.

Errors raised here cross Spark's Python workers; each carries a ``[sparklift:Kind]``
marker so the caller can re-raise it as the right sparklift error.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql.datasource import DataSource, DataSourceArrowWriter, WriterCommitMessage
from pyspark.sql.types import StructType

from sparklift.errors import marked
from sparklift.tables import commit as delta_commit
from sparklift.tables.schema import encode_partition_value, partition_dir, spark_to_arrow

SOURCE_NAME = "sparklift_delta"
FLUSH_ROWS = 262_144  # rows buffered per open file before a row group is written
_STAT_TYPES = (pa.types.is_integer, pa.types.is_floating, pa.types.is_date, pa.types.is_boolean)


@dataclass
class WriteSpec:
    """Everything a write needs, passed from the driver as one JSON option."""

    root: str
    table: str
    mode: str  # append | overwrite | replace
    partition_by: list[str]
    replace: dict[str, list[str | None]] | None
    read_version: int | None
    target_file_rows: int
    txn: tuple[str, int]  # the write's idempotency marker (Delta application transaction)
    note: str | None = None  # the commit's userMetadata
    write_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # in its files' names

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> WriteSpec:
        raw = json.loads(text)
        return cls(**{**raw, "txn": tuple(raw["txn"])})


@dataclass
class StagedFiles(WriterCommitMessage):
    files: list[delta_commit.StagedFile]


class _Stats:
    """Delta file statistics (numRecords, min/max for orderable primitives, nullCount)."""

    def __init__(self, schema: pa.Schema) -> None:
        self.rows = 0
        self.nulls = {f.name: 0 for f in schema}
        self.mins: dict[str, Any] = {}
        self.maxs: dict[str, Any] = {}
        self.ranged = [f.name for f in schema if any(t(f.type) for t in _STAT_TYPES)]
        self.unbounded: set[str] = set()  # a NaN or infinite value seen: no range

    def update(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        for name in self.nulls:
            self.nulls[name] += table.column(name).null_count
        for name in self.ranged:
            if name in self.unbounded:
                continue
            column = table.column(name)
            mm = pc.min_max(column).as_py()
            if mm["min"] is None:
                continue
            nan = pa.types.is_floating(column.type) and pc.any(pc.is_nan(column)).as_py()
            if nan or not all(map(_finite, (mm["min"], mm["max"]))):
                # NaN and infinity have no JSON, and min_max skips a NaN that Spark orders
                # above every number: the file's range of the column is left unknown
                # (readers then prune nothing by it)
                self.unbounded.add(name)
                self.mins.pop(name, None)
                self.maxs.pop(name, None)
                continue
            lo, hi = self.mins.get(name), self.maxs.get(name)
            self.mins[name] = mm["min"] if lo is None else min(lo, mm["min"])
            self.maxs[name] = mm["max"] if hi is None else max(hi, mm["max"])

    def to_json(self) -> str:
        def enc(v: Any) -> Any:
            return v.isoformat() if hasattr(v, "isoformat") else v

        return json.dumps(
            {
                "numRecords": self.rows,
                "minValues": {k: enc(v) for k, v in self.mins.items()},
                "maxValues": {k: enc(v) for k, v in self.maxs.items()},
                "nullCount": self.nulls,
            },
            allow_nan=False,
        )


def _finite(v: Any) -> bool:
    return not isinstance(v, float) or math.isfinite(v)


class _FileWriter:
    """One open Parquet file of one partition, buffering batches into row groups."""

    def __init__(self, spec: WriteSpec, schema: pa.Schema, values: dict[str, str | None]) -> None:
        directory = partition_dir(spec.partition_by, values)
        name = f"part-{spec.write_id}-{uuid.uuid4().hex}.c000.snappy.parquet"
        self.rel = f"{directory}/{name}" if directory else name
        self.values = values
        fs, base = delta_commit.filesystem(spec.root)
        self.fs, self.abs = fs, f"{base}/{self.rel}"
        fs.create_dir(f"{base}/{directory}" if directory else base, recursive=True)
        self.writer = pq.ParquetWriter(self.abs, schema, filesystem=fs, compression="snappy")
        self.stats = _Stats(schema)
        self.buffer: list[pa.RecordBatch] = []
        self.buffered = 0

    def add(self, batch: pa.RecordBatch) -> None:
        self.buffer.append(batch)
        self.buffered += batch.num_rows
        if self.buffered >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            table = pa.Table.from_batches(self.buffer)
            self.writer.write_table(table, row_group_size=max(table.num_rows, 1))
            self.stats.update(table)
            self.buffer, self.buffered = [], 0

    def close(self) -> delta_commit.StagedFile:
        self.flush()
        self.writer.close()
        size = self.fs.get_file_info(self.abs).size
        return delta_commit.StagedFile(self.rel, size, self.values, self.stats.to_json())


def _split(
    batch: pa.RecordBatch, partition_by: list[str]
) -> Iterator[tuple[tuple, pa.RecordBatch]]:
    """Runs of equal partition values: the batch itself if it holds one partition, else
    contiguous slices after sorting it by the partition columns."""
    n = batch.num_rows
    if not partition_by or n == 0:
        if n:
            yield (), batch
        return
    cols = [batch.column(c) for c in partition_by]
    if all(c.null_count == 0 and pc.count_distinct(c).as_py() == 1 for c in cols):
        yield tuple(c[0].as_py() for c in cols), batch
        return
    batch = batch.take(pc.sort_indices(batch, sort_keys=[(c, "ascending") for c in partition_by]))
    changed = None
    for name in partition_by:
        a, b = batch.column(name).slice(1), batch.column(name).slice(0, n - 1)
        diff = pc.fill_null(
            pc.or_kleene(pc.not_equal(a, b), pc.xor(pc.is_null(a), pc.is_null(b))), True
        )
        changed = diff if changed is None else pc.or_(changed, diff)
    starts = [0, *(i + 1 for i in pc.indices_nonzero(changed).to_pylist()), n]
    for lo, hi in itertools.pairwise(starts):
        yield tuple(batch.column(c)[lo].as_py() for c in partition_by), batch.slice(lo, hi - lo)


def _clean_up(root: str, rel_paths: list[str]) -> None:
    """Delete a failed write's files; a failure to do so is reported, never raised in
    place of the error that failed the write."""
    try:
        delta_commit.delete_files(root, rel_paths)
    except Exception as e:
        print(
            f"sparklift: could not remove {len(rel_paths)} files of a failed write under "
            f"{root}: {type(e).__name__}: {e}",
            file=sys.stderr,
        )


class DeltaRsWriter(DataSourceArrowWriter):
    def __init__(self, spec: WriteSpec, schema: StructType) -> None:
        self.spec = spec
        self.schema = schema

    def write(self, iterator: Iterator[pa.RecordBatch]) -> StagedFiles:
        spec = self.spec
        data_schema = spark_to_arrow(
            StructType([f for f in self.schema.fields if f.name not in spec.partition_by])
        )
        data_cols = data_schema.names
        open_files: dict[tuple, _FileWriter] = {}
        done: list[delta_commit.StagedFile] = []
        try:
            for batch in iterator:
                for key, part in _split(batch, spec.partition_by):
                    values = {
                        c: encode_partition_value(v)
                        for c, v in zip(spec.partition_by, key, strict=True)
                    }
                    self._check_replace(values)
                    writer = open_files.get(key)
                    if writer is None:
                        writer = open_files[key] = _FileWriter(spec, data_schema, values)
                    data = pa.RecordBatch.from_arrays(
                        [part.column(c) for c in data_cols], schema=data_schema
                    )
                    writer.add(data)
                    if writer.stats.rows + writer.buffered >= spec.target_file_rows:
                        done.append(open_files.pop(key).close())
            done.extend(w.close() for w in open_files.values())
            open_files.clear()
        except BaseException:
            for w in open_files.values():
                with contextlib.suppress(Exception):
                    w.writer.close()
            _clean_up(spec.root, [f.path for f in done] + [w.rel for w in open_files.values()])
            raise
        return StagedFiles(done)

    def _check_replace(self, values: dict[str, str | None]) -> None:
        for col, allowed in (self.spec.replace or {}).items():
            if values[col] not in allowed:
                raise ValueError(
                    marked(
                        "InputError",
                        f"cannot write to table {self.spec.table}: a row has {col}="
                        f"{values[col]}, outside the partitions being replaced {allowed}",
                    )
                )

    def commit(self, messages: list[WriterCommitMessage | None]) -> None:
        files = [f for m in messages if isinstance(m, StagedFiles) for f in m.files]
        spec = self.spec
        try:
            delta_commit.commit(
                spec.root,
                files,
                mode=spec.mode,  # type: ignore[arg-type]
                schema=spark_to_arrow(self.schema),
                partition_by=spec.partition_by,
                replace=spec.replace,
                read_version=spec.read_version,
                txn=spec.txn,
                operation=spec.mode.upper(),
                note=spec.note,
            )
        except BaseException as e:
            _clean_up(spec.root, [f.path for f in files])
            kind = type(e).__name__ if type(e).__module__.startswith("sparklift") else None
            if kind:
                raise RuntimeError(marked(kind, str(e))) from None
            raise

    def abort(self, messages: list[WriterCommitMessage | None]) -> None:
        files = [f.path for m in messages if isinstance(m, StagedFiles) for f in m.files]
        _clean_up(self.spec.root, files)


class DeltaRsDataSource(DataSource):
    """``df.write.format("sparklift_delta").option("spec", spec.to_json()).save()``."""

    @classmethod
    def name(cls) -> str:
        return SOURCE_NAME

    def writer(self, schema: StructType, overwrite: bool) -> DeltaRsWriter:
        return DeltaRsWriter(WriteSpec.from_json(self.options["spec"]), schema)
