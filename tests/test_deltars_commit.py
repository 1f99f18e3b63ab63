"""The delta-rs backend's commit protocol on races the Spark tests cannot stage: a
compaction between a replace's read and its commit, a retried write whose marker lands
between two loads of the log, and statistics of NaN and infinite values. No Spark: the
files are staged with pyarrow as the backend's tasks stage them."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from sparklift.tables import commit as C
from sparklift.tables.delta_log import stats_count
from sparklift.tables.deltars_source import _Stats

SCHEMA = pa.schema([("x", pa.float64()), ("d", pa.string())])


def stage(root: Path, values: list[float], day: str = "a") -> C.StagedFile:
    """One data file of partition d=``day``, written but not committed."""
    data = pa.table({"x": pa.array(values, pa.float64())})
    (root / f"d={day}").mkdir(parents=True, exist_ok=True)
    rel = f"d={day}/part-{uuid.uuid4().hex}.parquet"
    pq.write_table(data, root / rel)
    stats = _Stats(data.schema)
    stats.update(data)
    return C.StagedFile(rel, (root / rel).stat().st_size, {"d": day}, stats.to_json())


def rows(root: Path, day: str = "a") -> list[float]:
    table = DeltaTable(str(root)).to_pyarrow_table(partitions=[("d", "=", day)])
    return sorted(table.column("x").to_pylist())


def commit(root: Path, files, mode="append", read_version=None, txn=("t", 0), replace=None):
    return C.commit(str(root), files, mode=mode, schema=SCHEMA, partition_by=["d"],
                    replace=replace, read_version=read_version, txn=txn,
                    operation=mode.upper())  # fmt: skip


def test_a_replace_after_a_concurrent_compaction_removes_the_compacted_rows(tmp_path):
    """A compaction (no data change) between the replace's read and its commit is not a
    conflict, but its file holds the partition's old rows: the replace removes it too."""
    root = tmp_path / "t"
    for i in range(3):
        write_deltalake(str(root), pa.table({"x": [float(i)], "d": ["a"]}), mode="append",
                        partition_by=["d"])  # fmt: skip
    write_deltalake(str(root), pa.table({"x": [7.0], "d": ["b"]}), mode="append",
                    partition_by=["d"])  # fmt: skip
    read = DeltaTable(str(root)).version()
    staged = stage(root, [100.0])
    DeltaTable(str(root)).optimize.compact()  # sparklift maintain, meanwhile
    commit(root, [staged], mode="replace", read_version=read, replace={"d": ["a"]})
    assert rows(root, "a") == [100.0]
    assert rows(root, "b") == [7.0]  # outside the replaced partition: untouched


def test_a_marker_committed_between_two_loads_of_the_log_is_seen(tmp_path, monkeypatch):
    """Writer A commits the same idempotency marker just after writer B loaded the log: B's
    commit on that snapshot loses the race, and its retry sees the marker and applies
    nothing (feedback appends once)."""
    root = tmp_path / "t"
    commit(root, [stage(root, [0.0])], txn=("init", 0))
    key = ("feedback-c1@2026-06-30", 1)
    first = stage(root, [1.0])
    loads = DeltaTable.__init__

    def racing(self, *args, **kwargs):  # A commits just after B's first load of the log
        loads(self, *args, **kwargs)
        monkeypatch.setattr(DeltaTable, "__init__", loads)
        commit(root, [first], read_version=0, txn=key)

    monkeypatch.setattr(DeltaTable, "__init__", racing)
    assert commit(root, [stage(root, [2.0])], read_version=0, txn=key) is None
    assert rows(root) == [0.0, 1.0]


@pytest.mark.parametrize(
    "values", [[float("nan")] * 2, [1.0, float("nan"), 3.0], [1.0, float("inf")], [-float("inf")]]
)
def test_nan_and_infinite_values_leave_the_log_readable(tmp_path, values):
    """Their file's range of the column is left out of its statistics (JSON has no NaN):
    the partition is still listed, counted and replaced."""
    root = tmp_path / "t"
    stats = json.loads(stage(tmp_path / "s", values).stats)
    assert "x" not in stats["minValues"] and stats["nullCount"] == {"x": 0}
    commit(root, [stage(root, values)])
    assert stats_count(str(root), None, [("d", "=", "a")]) == len(values)
    assert len(DeltaTable(str(root)).file_uris(partition_filters=[("d", "=", "a")])) == 1
    commit(root, [stage(root, [1.0])], mode="replace", read_version=0, replace={"d": ["a"]},
           txn=("t", 1))  # fmt: skip
    assert rows(root) == [1.0]
