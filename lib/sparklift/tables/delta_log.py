"""What a table's Delta log says without reading its data, read by delta-rs: the latest
version, the data files of some partitions, their rows (from the files' statistics) and
their partition values. Both backends and the catalog ask the log first, and fall back to
reading data only where delta-rs cannot read the log (a reader feature it lacks)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
from deltalake import DeltaTable

from sparklift.tables import commit as delta_commit
from sparklift.tables.diagnose import real_path
from sparklift.tables.schema import encode_partition_value

# A partition filter in deltalake's form: (column, op, value), op in = != < <= > >= in.
PartitionFilter = tuple[str, str, Any]


def encode_filters(where: Sequence[PartitionFilter]) -> list[tuple[str, str, Any]]:
    """``where`` with its values as Delta encodes them in partition paths, for delta-rs."""
    out = []
    for col, op, value in where:
        if op in ("in", "not in"):
            out.append((col, op, [encode_partition_value(v) for v in value]))
        else:
            out.append((col, op, encode_partition_value(value)))
    return out


def log_version(path: str) -> int | None:
    """The table's latest version, read from its log by delta-rs (None: no table there)."""
    if "://" not in path and os.path.isfile(path):  # delta-rs: "invalid table location"
        return None
    return delta_commit.table_version(path)


def plain_parquet_files(
    path: str, version: int | None, where: Sequence[PartitionFilter]
) -> list[str] | None:
    """The data files of the snapshot's partitions ``where`` when they hold exactly its
    rows and columns, so a reader may take them as plain Parquet: Delta reader version 1
    (no deletion vectors, no column mapping, no other reader feature). None otherwise."""
    table = plain_table(path, version)
    if table is None:
        return None
    return table.file_uris(partition_filters=encode_filters(where) if where else None)


def stats_count(path: str, version: int | None, where: Sequence[PartitionFilter]) -> int | None:
    """Rows of the snapshot's files in partitions ``where`` from their statistics in the
    log (no data read); None when delta-rs cannot read the log or a file has none."""
    counts = _added(path, version, where, "num_records")
    if counts is None or any(n is None for n in counts):
        return None
    return sum(int(n) for n in counts)


def partition_values(path: str, column: str, where: Sequence[PartitionFilter]) -> set[Any] | None:
    """The values of partition ``column`` in the latest snapshot's partitions ``where``,
    read from the log by delta-rs (no data read); None when a reader feature keeps
    delta-rs from reading it."""
    values = _added(path, None, where, f"partition.{column}")
    return None if values is None else set(values)


def _added(
    path: str, version: int | None, where: Sequence[PartitionFilter], field: str
) -> list[Any] | None:
    """``field`` of the snapshot's add actions (flattened) in partitions ``where``, from the
    log by delta-rs; None when a reader feature keeps delta-rs from reading it."""
    table = plain_table(path, version)
    if table is None:
        return None
    wanted = set(table.file_uris(partition_filters=encode_filters(where) if where else None))
    actions = pa.table(table.get_add_actions(flatten=True)).to_pydict()
    root = real_path(path).rstrip("/")
    return [
        v
        for p, v in zip(actions["path"], actions[field], strict=True)
        if f"{root}/{unquote(p)}" in wanted
    ]


def plain_table(path: str, version: int | None) -> DeltaTable | None:
    """The snapshot when Delta reader version 1 reads it, else None."""
    table = DeltaTable(path, version=version)
    return None if table.protocol().min_reader_version > 1 else table
