"""Commit staged Parquet files to a Delta table in one transaction, with Delta's conflict rules.

delta-rs commits the actions, but its conflict check is not enough for replace-by-predicate:
it lets a concurrent append into a partition being replaced survive (a lost update) and
rejects replaces of disjoint partitions. So this module applies the rules of Delta's
WriteSerializable isolation itself, against the commits that won since the writer read
the table:

- append: conflicts only with a metadata or protocol change (blind append);
- replace of partitions P: conflicts with any data added to or removed from P;
- overwrite: conflicts with any data change at all.

It then commits at exactly the next version with delta-rs' own retries off; if another
writer took that version first, it re-reads the new commits and checks again.

Every write carries an application transaction (Delta's ``txn`` action: app id, version),
the idempotent-write marker both Delta Spark (``txnAppId``/``txnVersion``) and delta-rs
write: a write whose marker the table already holds is not applied again, and a writer
finds the version it made by the marker, whoever else committed in between.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable, Schema
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.transaction import (
    AddAction,
    RemoveAction,
    Transaction,
    create_table_with_add_actions,
)

from sparklift.errors import TableConflictError
from sparklift.tables.schema import encode_partition_value

Mode = Literal["append", "overwrite", "replace"]
Txn = tuple[str, int]  # (application id, transaction version)
MAX_ATTEMPTS = 50


@dataclass(frozen=True)
class StagedFile:
    """A Parquet file a task wrote into the table directory, not yet in the log."""

    path: str  # relative to the table root, as on the filesystem
    size: int
    partition_values: dict[str, str | None]
    stats: str

    def add_action(self) -> AddAction:
        return AddAction(
            path=self.path,  # delta-rs URI-encodes it for the log
            size=self.size,
            partition_values=self.partition_values,
            modification_time=int(time.time() * 1000),
            data_change=True,
            stats=self.stats,
        )


def filesystem(root: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and in-filesystem path of a table root or file (local path or
    URI)."""
    if "://" in root or root.startswith("file:"):
        return pafs.FileSystem.from_uri(root)
    return pafs.LocalFileSystem(), os.path.abspath(root)


def arrow_cannot_open(path: str) -> str | None:
    """Why this process's Arrow cannot open ``path`` (a file system it was not built for, a
    missing file), or None when it can: for the readers that skip Spark's row conversion."""
    try:
        fs, inner = filesystem(path)
        if fs.get_file_info(inner).type == pafs.FileType.NotFound:
            return f"{path} not found"
    except (pa.ArrowException, ValueError, OSError) as e:
        return str(e)
    return None


def delete_files(root: str, rel_paths: Iterable[str]) -> None:
    fs, base = filesystem(root)
    for rel in rel_paths:
        with contextlib.suppress(FileNotFoundError):
            fs.delete_file(f"{base}/{rel}")


def sweep_write(root: str, write_id: str) -> int:
    """Delete every file of write ``write_id`` under the table root; return how many.

    File names carry the write id, so this finds the files of tasks that were killed
    before they could clean up, and of successful tasks whose messages Spark does not
    pass to ``abort``. Only call it for a write that is not in the log.
    """
    fs, base = filesystem(root)
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    except FileNotFoundError:
        return 0
    doomed = [i.path for i in infos if i.is_file and write_id in i.base_name]
    for path in doomed:
        with contextlib.suppress(FileNotFoundError):
            fs.delete_file(path)
    return len(doomed)


def table_version(root: str) -> int | None:
    try:
        return DeltaTable(root).version()
    except TableNotFoundError:
        return None


def read_commit(root: str, version: int) -> list[dict[str, Any]]:
    """The actions of one commit file of the log."""
    fs, base = filesystem(root)
    with fs.open_input_stream(f"{base}/_delta_log/{version:020d}.json") as f:
        return [json.loads(line) for line in f.read().decode().splitlines() if line.strip()]


def txn_version(root: str, app_id: str) -> int:
    """The table's latest transaction version for ``app_id`` (-1: never written)."""
    try:
        found = DeltaTable(root).transaction_version(app_id)
    except TableNotFoundError:
        return -1
    return -1 if found is None else int(found)


def find_txn_commit(root: str, txn: Txn) -> int | None:
    """The version whose commit holds application transaction ``txn``, or None if the table
    never applied it. Newest first: a fresh write's commit is among the last few; a retried
    write that Delta skipped finds the commit that applied it first."""
    app_id, version = txn
    if txn_version(root, app_id) < version:
        return None
    for v in range(table_version(root) or 0, -1, -1):
        try:
            actions = read_commit(root, v)
        except FileNotFoundError:
            return None  # older commits were cleaned up after a checkpoint
        for action in actions:
            body = action.get("txn")
            if body and body.get("appId") == app_id and int(body["version"]) >= version:
                return v
    return None


def removes(
    root: str, read_version: int, mode: Mode, replace: Mapping[str, Sequence[str | None]] | None
) -> list[RemoveAction]:
    """The files an overwrite (all) or replace (those in the replaced partitions) removes:
    those of table version ``read_version``."""
    if mode == "append":
        return []
    now = int(time.time() * 1000)
    out = []
    for add in pa.table(DeltaTable(root, version=read_version).get_add_actions()).to_pylist():
        values = {k: encode_partition_value(v) for k, v in (add.get("partition") or {}).items()}
        if mode == "overwrite" or all(values.get(c) in ok for c, ok in (replace or {}).items()):
            out.append(
                RemoveAction(
                    path=unquote(add["path"]),  # as on disk: delta-rs encodes it
                    data_change=True,
                    deletion_timestamp=now,
                    size=add["size_bytes"],
                    partition_values=values,
                )
            )
    return out


def _touches(action: Mapping[str, Any], replace: Mapping[str, Sequence[str | None]]) -> bool:
    values = action.get("partitionValues") or {}
    return all(values.get(col) in allowed for col, allowed in replace.items())


def check_conflicts(
    root: str,
    read_version: int,
    latest: int,
    mode: Mode,
    replace: Mapping[str, Sequence[str | None]] | None,
) -> None:
    """Raise TableConflictError if a commit in (read_version, latest] conflicts with ours."""
    for version in range(read_version + 1, latest + 1):
        for action in read_commit(root, version):
            kind = next(iter(action))
            body = action[kind]
            if kind in ("metaData", "protocol"):
                raise TableConflictError(
                    f"table {root}: version {version} changed the table's {kind} while this "
                    f"write (based on version {read_version}) ran; re-run the write"
                )
            if (
                kind not in ("add", "remove")
                or not body.get("dataChange", True)
                or mode == "append"
            ):
                continue
            if mode == "overwrite" or _touches(body, replace or {}):
                where = "" if mode == "overwrite" else f" in partitions {dict(replace or {})}"
                raise TableConflictError(
                    f"table {root}: version {version} {'added' if kind == 'add' else 'removed'} "
                    f"data{where} that this {mode} (based on version {read_version}) would "
                    "replace; the other writer won, this write was discarded; re-run it"
                )


def commit(
    root: str,
    files: Sequence[StagedFile],
    *,
    mode: Mode,
    schema: pa.Schema,
    partition_by: Sequence[str],
    replace: Mapping[str, Sequence[str | None]] | None,
    read_version: int | None,
    txn: Txn,
    operation: str,
    note: str | None = None,
) -> int | None:
    """Commit ``files`` as one new table version and return that version; None (and the
    files deleted) when the table already holds ``txn``: a retried write, applied before.
    ``note`` becomes the commit's ``userMetadata``, where Delta Spark puts its writers'."""
    actions = [f.add_action() for f in files]
    metadata = {"sparklift.operation": operation}
    if note is not None:
        metadata["userMetadata"] = note
    marker = [Transaction(app_id=txn[0], version=txn[1])]
    for _ in range(MAX_ATTEMPTS):
        try:  # one snapshot for the marker and the conflicts: a commit between two loads
            table = DeltaTable(root)  # could hold the marker unseen and be committed over
        except TableNotFoundError:
            table = None
        applied = table.transaction_version(txn[0]) if table is not None else None
        if applied is not None and int(applied) >= txn[1]:  # applied before, or concurrently
            delete_files(root, [f.path for f in files])
            return None
        if table is None:
            if read_version is not None:
                raise TableConflictError(f"table {root} was deleted while this write ran")
            try:
                create_table_with_add_actions(
                    root,
                    Schema.from_arrow(schema),
                    actions,
                    mode="error",
                    partition_by=list(partition_by),
                    commit_properties=CommitProperties(
                        custom_metadata=metadata, app_transactions=marker
                    ),
                )
            except Exception as e:
                if table_version(root) is not None:
                    raise TableConflictError(
                        f"table {root} was created by another writer while this write ran; "
                        "re-run the write"
                    ) from e
                raise
            return 0
        latest = table.version()
        if read_version is None:
            raise TableConflictError(
                f"table {root} was created by another writer while this write ran; re-run it"
            )
        check_conflicts(root, read_version, latest, mode, replace)
        try:  # the files at latest: a compaction since read_version (no data change, so no
            # conflict) moved the rows read into files the read version does not list
            table.create_write_transaction(
                [*removes(root, latest, mode, replace), *actions],
                mode="append",
                schema=schema,
                partition_by=list(partition_by) or None,
                commit_properties=CommitProperties(
                    custom_metadata=metadata, max_commit_retries=0, app_transactions=marker
                ),
            )
        except CommitFailedError:
            if (table_version(root) or 0) > latest:
                continue  # another writer took version latest + 1: check its commits, retry
            raise
        return latest + 1
    raise TableConflictError(f"table {root}: gave up after {MAX_ATTEMPTS} contended attempts")
