"""Which partitions of a Delta table a range of its commits changed, from the log alone.

A quality verdict holds for the table version it checked. Whether it still holds is a
question for the commits since: one that adds or removes rows of the partition
(``dataChange=true``: an append, a replace, a delete, a merge) changes what a reader gets,
while a compaction (``OPTIMIZE``, ``dataChange=false``) does not. Each commit file keeps
that flag on every action (checkpoints do not), so the commits are read one by one; a
table's log keeps them for ``delta.logRetentionDuration`` (30 days by default).

A version means something only for the table that had it: one deleted and created again
at the same path counts its versions anew, so a recorded version goes with the table's id
(:func:`table_id`). Under column mapping the log keys partition values by the column's
physical name (:func:`partition_key`, looked up only for such a table).

The same question serves a derived table: a write records the source version it read
(the commit's ``userMetadata``), and the source's commits since say whether it is stale.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from deltalake import DeltaTable

from sparklift.errors import InputError
from sparklift.tables.commit import read_commit

PHYSICAL_NAME = "delta.columnMapping.physicalName"
# data_changes' key for rows whose value the log does not give: the column is not a
# partition column of the table (an upstream writer's), so they may be of any value
ANY_VALUE = "(any: not a partition column)"


def table_id(root: str, version: int | None = None) -> str:
    """The id of the table's metadata (at ``version``): fixed when the table is created, so
    a table created again at the same path has another one."""
    return str(DeltaTable(root, version=version).metadata().id)


def partition_key(root: str, column: str) -> str:
    """The key of partition ``column`` in the log's ``partitionValues``: its physical name
    when the table maps columns (``delta.columnMapping.mode`` name or id), else the name."""
    for field in DeltaTable(root).schema().fields:
        if field.name == column:
            return str(field.metadata.get(PHYSICAL_NAME, column))
    raise InputError(f"table {root} has no column {column!r} (a partition column expected)")


class _Key:
    """The key of a partition column in a table's log, looked up from the table's schema
    (a snapshot load) only when the log does not use the column's name (column mapping)."""

    def __init__(self, root: str, column: str) -> None:
        self.root, self.column = root, column
        self.key: str | None = None  # found with the first add or remove

    def changed(self, actions: list[dict[str, Any]]) -> set[str | None]:
        """The values of the partition column whose rows the commit's actions add or
        remove."""
        out: set[str | None] = set()
        for action in actions:
            for kind, body in action.items():
                if kind in ("add", "remove") and body.get("dataChange", True):
                    values = body.get("partitionValues") or {}
                    if self.key is None and values:
                        named = self.column in values
                        self.key = self.column if named else partition_key(self.root, self.column)
                    key = self.key or self.column
                    out.add(values.get(key, ANY_VALUE))  # None: a null value
        return out


def _info(actions: list[dict[str, Any]]) -> dict[str, Any]:
    return next((a["commitInfo"] for a in actions if "commitInfo" in a), {})


def data_changes(
    root: str, after: int, latest: int, column: str
) -> dict[str | None, list[tuple[int, str]]]:
    """Per value of partition ``column`` (as the log writes it; None: null), the commits
    in (``after``, ``latest``] that added or removed rows of it: (version, operation).
    Rows of a table not partitioned by ``column`` are under :data:`ANY_VALUE`. Raises
    FileNotFoundError when a commit file is gone (the log was cleaned up)."""
    key = _Key(root, column)
    out: dict[str | None, list[tuple[int, str]]] = defaultdict(list)
    for version in range(after + 1, latest + 1):
        actions = read_commit(root, version)
        operation = str(_info(actions).get("operation", "unknown operation"))
        for value in key.changed(actions):
            out[value].append((version, operation))
    return dict(out)


def touching(commits: dict[str | None, list[tuple[int, str]]], value: str) -> list[tuple[int, str]]:
    """The commits of :func:`data_changes` that may have changed the rows where the column
    is ``value`` (as the log writes it), in version order, each once: those of its
    partition, and those of :data:`ANY_VALUE` (a table not partitioned by the column: any
    commit may have changed any value's rows)."""
    return sorted(set(commits.get(value, []) + commits.get(ANY_VALUE, [])))


def last_change(
    root: str, latest: int, column: str, value: str
) -> tuple[int, dict[str, Any]] | None:
    """The newest commit up to ``latest`` that added or removed rows of the partition where
    ``column`` is ``value`` (as the log writes it): (version, its ``commitInfo``). None when
    no commit the log still holds did (searched back to the first one cleaned up)."""
    key = _Key(root, column)
    for version in range(latest, -1, -1):
        try:
            actions = read_commit(root, version)
        except FileNotFoundError:
            return None
        if value in key.changed(actions):
            return version, _info(actions)
    return None


def user_metadata(info: dict[str, Any]) -> dict[str, Any]:
    """A commit's ``userMetadata`` (the JSON object a sparklift write recorded), or {}."""
    try:
        note = json.loads(info.get("userMetadata") or "{}")
    except ValueError:
        return {}
    return note if isinstance(note, dict) else {}
