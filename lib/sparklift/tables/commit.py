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
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable, Schema
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.transaction import AddAction, create_table_with_add_actions

from sparklift.errors import TableConflictError

Mode = Literal["append", "overwrite", "replace"]
WRITE_ID_KEY = "sparklift.writeId"
MAX_ATTEMPTS = 50


@dataclass(frozen=True)
class StagedFile:
    """A Parquet file a task wrote into the table directory, not yet in the log."""

    path: str  # relative to the table root
    size: int
    partition_values: dict[str, str | None]
    stats: str

    def add_action(self) -> AddAction:
        return AddAction(
            path=self.path,
            size=self.size,
            partition_values=self.partition_values,
            modification_time=int(time.time() * 1000),
            data_change=True,
            stats=self.stats,
        )


def filesystem(root: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and in-filesystem path of a table root (local path or URI)."""
    return pafs.FileSystem.from_uri(root)


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
    write_id: str,
    operation: str,
) -> int:
    """Commit ``files`` as one new table version and return that version."""
    actions = [f.add_action() for f in files]
    metadata = {WRITE_ID_KEY: write_id, "sparklift.operation": operation}
    for _ in range(MAX_ATTEMPTS):
        try:
            table = DeltaTable(root)
        except TableNotFoundError:
            table = None
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
                    commit_properties=CommitProperties(custom_metadata=metadata),
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
        filters = [(c, "in", list(v)) for c, v in (replace or {}).items()] or None
        try:
            table.create_write_transaction(
                actions,
                mode="append" if mode == "append" else "overwrite",
                schema=schema,
                partition_by=list(partition_by) or None,
                partition_filters=filters,
                commit_properties=CommitProperties(custom_metadata=metadata, max_commit_retries=0),
            )
        except CommitFailedError:
            if (table_version(root) or 0) > latest:
                continue  # another writer took version latest + 1: check its commits, retry
            raise
        return latest + 1
    raise TableConflictError(f"table {root}: gave up after {MAX_ATTEMPTS} contended attempts")
