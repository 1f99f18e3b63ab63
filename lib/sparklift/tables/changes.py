"""Which partitions of a Delta table a range of its commits changed, from the log alone.

A quality verdict holds for the table version it checked. Whether it still holds is a
question for the commits since: one that adds or removes rows of the partition
(``dataChange=true``: an append, a replace, a delete, a merge) changes what a reader gets,
while a compaction (``OPTIMIZE``, ``dataChange=false``) does not. Each commit file keeps
that flag on every action (checkpoints do not), so the commits are read one by one; a
table's log keeps them for ``delta.logRetentionDuration`` (30 days by default).
"""

from __future__ import annotations

from collections import defaultdict

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
