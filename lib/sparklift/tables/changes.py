"""Which partitions of a Delta table a range of its commits changed, from the log alone.

A quality verdict holds for the table version it checked. Whether it still holds is a
question for the commits since: one that adds or removes rows of the partition
(``dataChange=true``: an append, a replace, a delete, a merge) changes what a reader gets,
while a compaction (``OPTIMIZE``, ``dataChange=false``) does not. Each commit file keeps
that flag on every action (checkpoints do not), so the commits are read one by one; a
table's log keeps them for ``delta.logRetentionDuration`` (30 days by default).

The same question serves a derived table: a write records the source version it read
(the commit's ``userMetadata``), and the source's commits since say whether it is stale.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from sparklift.tables.commit import read_commit


def data_changes(
    root: str, after: int, latest: int, column: str
) -> dict[str | None, list[tuple[int, str]]]:
    """Per value of partition ``column`` (as the log writes it), the commits in
    (``after``, ``latest``] that added or removed rows of it: (version, operation).
    Raises FileNotFoundError when a commit file is gone (the log was cleaned up)."""
    out: dict[str | None, list[tuple[int, str]]] = defaultdict(list)
    for version in range(after + 1, latest + 1):
        actions = read_commit(root, version)
        info = next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
        what = (version, str(info.get("operation", "unknown operation")))
        for action in actions:
            kind = next(iter(action))
            body = action[kind]
            if kind in ("add", "remove") and body.get("dataChange", True):
                value = (body.get("partitionValues") or {}).get(column)
                if what not in out[value]:
                    out[value].append(what)
    return dict(out)


def last_change(
    root: str, latest: int, column: str, value: str
) -> tuple[int, dict[str, Any]] | None:
    """The newest commit up to ``latest`` that added or removed rows of the partition where
    ``column`` is ``value`` (as the log writes it): (version, its ``commitInfo``). None when
    no commit the log still holds did (searched back to the first one cleaned up)."""
    for version in range(latest, -1, -1):
        try:
            actions = read_commit(root, version)
        except FileNotFoundError:
            return None
        if any(
            kind in ("add", "remove")
            and body.get("dataChange", True)
            and (body.get("partitionValues") or {}).get(column) == value
            for action in actions
            for kind, body in action.items()
        ):
            return version, next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
    return None


def user_metadata(info: dict[str, Any]) -> dict[str, Any]:
    """A commit's ``userMetadata`` (the JSON object a sparklift write recorded), or {}."""
    try:
        note = json.loads(info.get("userMetadata") or "{}")
    except ValueError:
        return {}
    return note if isinstance(note, dict) else {}
