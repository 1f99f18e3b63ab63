"""Whole processes on the table layer: a job killed while writing leaves no version and no
referenced file, on both backends; its process starts (on native Delta too) with every
repository unreachable, since the jars are local files."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

from sparklift.config import load_config
from sparklift.tables import Catalog
from sparklift.tables.maintenance import maintain_table

from .conftest import REPO, SHORT_JVM_OPTIONS

pytestmark = pytest.mark.e2e
UNREACHABLE = {
    # Any resolution or download would go through this closed port and fail.
    "JAVA_TOOL_OPTIONS": "-Dhttp.proxyHost=127.0.0.1 -Dhttp.proxyPort=9 "
    f"-Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort=9 {SHORT_JVM_OPTIONS}",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
}


WRITER = """
import sys, time
from pyspark.sql import functions as F
from sparklift.config import load_config
from sparklift.session import build_session
from sparklift.tables import Catalog

base, backend = sys.argv[1], sys.argv[2]
conf = load_config(None, [f"tables.base_path={base}", f"tables.backend={backend}",
                          "spark.master=local[2]", "tables.target_file_rows=1000"])
spark = build_session(conf.spark, backend)
catalog = Catalog(spark, conf.tables)
rows = spark.range(0, 100, numPartitions=1).select(
    F.lit(1).cast("long").alias("day"), F.col("id").alias("user_id"))
catalog.write_uncontracted("user_activity", rows, partition_by=["day"])
print("created", flush=True)
big = spark.range(0, 400_000, numPartitions=2).select(
    (F.col("id") % 4).cast("long").alias("day"), F.col("id").alias("user_id"))

def slow(batches):
    for batch in batches:
        yield batch
        time.sleep(0.5)  # files are written while the job lingers

catalog.write_uncontracted("user_activity", big.mapInArrow(slow, big.schema))
print("finished", flush=True)
"""


@pytest.mark.parametrize("backend", ["native", "deltars"])
def test_killed_job_leaves_no_version_and_maintain_removes_its_files(spark, tmp_path, backend):
    """A kill leaves the files the write had staged (no commit references them; a driver
    that dies cannot clean up); ``sparklift maintain`` removes them once they are older
    than ``maintain.vacuum_retention_hours``, and never a referenced file."""
    base = tmp_path / "wh"
    table = base / "user_activity"
    # No download can happen: any would go through a closed port, with no Ivy/Maven cache.
    env = {**os.environ, **UNREACHABLE, "HOME": str(tmp_path), "PYSPARK_PYTHON": sys.executable}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(base), backend],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "created"
        with open(table / "_delta_log" / f"{0:020d}.json") as f:
            info = next(json.loads(line)["commitInfo"] for line in f if "commitInfo" in line)
        native = "Delta-Lake/" in info.get("engineInfo", "")  # Delta Lake's JVM writer
        assert native == (backend == "native"), info
        before = set(DeltaTable(str(table)).file_uris())
        deadline = time.monotonic() + 300
        while not _new_data_file(table, before):  # the second write is writing
            assert proc.poll() is None, "the writer exited before it was killed"
            assert time.monotonic() < deadline, "the second write never wrote a file"
            time.sleep(0.2)
    finally:
        _kill_tree(proc.pid)
        proc.wait(timeout=60)
    after = DeltaTable(str(table))
    assert after.version() == 0  # no new version
    assert set(after.file_uris()) == before  # no new referenced file
    logs = [f for f in os.listdir(table / "_delta_log") if f.endswith(".json")]
    assert logs == [f"{0:020d}.json"]

    referenced = {Path(u.removeprefix("file://")) for u in before}
    staged = {p for p in table.rglob("*.parquet") if p not in referenced}
    assert staged  # what the killed write left behind
    conf = load_config(overrides=[f"tables.base_path={base}", f"tables.backend={backend}"])
    catalog = Catalog(spark, conf.tables)
    vacuum = conf.maintain.model_copy(update={"optimize": False})  # compaction: test_maintain
    assert maintain_table(catalog, "user_activity", vacuum)["files_vacuumed"] == 0  # young
    aged = time.time() - (conf.maintain.vacuum_retention_hours + 1) * 3600
    for p in staged | referenced:
        os.utime(p, (aged, aged))
    maintain_table(catalog, "user_activity", vacuum)
    assert set(table.rglob("*.parquet")) == referenced
    assert catalog.read("user_activity").count() == 100


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant, as a lost machine would stop them: Spark's
    Python daemon moves its workers (which write the deltars backend's files) into their
    own process group, so killing the job's group alone lets them write on a moment."""
    for victim in [pid, *_descendants(pid)]:  # all listed before any is orphaned
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``, from /proc (children before they are orphaned)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [c for c, p in parent.items() if p in frontier]
        found += children
        frontier = children
    return found


def _new_data_file(table: Path, before: set[str]) -> bool:
    known = {Path(u.removeprefix("file://")).name for u in before}
    return any(p.name not in known and p.suffix == ".parquet" for p in table.rglob("*.parquet"))
