"""Table maintenance: compaction (OPTIMIZE) and VACUUM of a catalog's Delta tables.

Months of nightly appends and partition replaces leave each partition with many small
files, and every replaced or compacted file stays on storage for time travel. Compaction
rewrites a partition's small files into few large ones as a new version whose actions carry
``dataChange=false``: the rows, and what every reader reads, are unchanged. VACUUM deletes
the files that no version of the last ``vacuum_retention_hours`` references, and files of
failed writes (never in the log) older than that.

Reading the table as of any moment of the last ``time_travel_hours`` needs that snapshot's
files, so a retention shorter than the window is refused here, before any table is touched;
and so is a window longer than the table keeps the tombstones of removed files
(``delta.deletedFileRetentionDuration``), since VACUUM deletes a file whose tombstone a
checkpoint has dropped as unreferenced.
This rule replaces Delta's own check (a retention of at least the table's
``delta.deletedFileRetentionDuration``, 7 days by default), which both backends switch off
for the call: the configured window, not Delta's default, decides.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.fs as pafs
from delta.tables import DeltaTable as SparkDeltaTable
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError
from pyspark.sql import SparkSession

from sparklift.config import MaintainConfig
from sparklift.errors import ConfigError, InputNotReadyError, TableConflictError
from sparklift.tables import Catalog
from sparklift.tables.backends import is_conflict, session_conf

log = logging.getLogger("sparklift")
RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"


@dataclass(frozen=True)
class TableState:
    """A table's latest version and its active data files (from the log)."""

    version: int
    files: int
    bytes: int


def check_retention(conf: MaintainConfig) -> None:
    """Refuse a VACUUM retention shorter than the time-travel window."""
    if conf.vacuum_retention_hours < conf.time_travel_hours:
        raise ConfigError(
            f"maintain.vacuum_retention_hours ({conf.vacuum_retention_hours}) is shorter than "
            f"maintain.time_travel_hours ({conf.time_travel_hours}): VACUUM would delete files "
            "that time travel within the window reads; raise the retention or shorten the window"
        )


TOMBSTONES = "delta.deletedFileRetentionDuration"
DEFAULT_TOMBSTONE_HOURS = 168.0  # Delta's default: interval 1 weeks
_UNIT_HOURS = {
    "week": 168.0,
    "day": 24.0,
    "hour": 1.0,
    "minute": 1 / 60,
    "second": 1 / 3600,
    "millisecond": 1 / 3.6e6,
    "microsecond": 1 / 3.6e9,
}


def interval_hours(text: str) -> float | None:
    """Hours of a Delta interval property (``interval 2 weeks``, ``interval 1 week 2
    days``, ``interval 36 hours``); None when it cannot be read."""
    words = text.lower().replace("interval", "").split()
    if not words or len(words) % 2:
        return None
    hours = 0.0
    for count, unit in zip(words[::2], words[1::2], strict=True):
        try:
            hours += float(count) * _UNIT_HOURS[unit.rstrip("s")]
        except (ValueError, KeyError):
            return None
    return hours


def check_tombstones(name: str, properties: dict[str, str], conf: MaintainConfig) -> None:
    """Refuse a time-travel window longer than the table keeps its removed files' tombstones
    (``delta.deletedFileRetentionDuration``): a checkpoint drops older tombstones, and
    VACUUM then deletes their files as unreferenced, however long its own retention."""
    text = properties.get(TOMBSTONES)
    hours = DEFAULT_TOMBSTONE_HOURS if text is None else interval_hours(text)
    if hours is None:
        log.warning("table %s: %s = %r is not an interval sparklift reads; the time-travel "
                    "window is not checked against it", name, TOMBSTONES, text)  # fmt: skip
    elif conf.time_travel_hours > hours:
        raise ConfigError(
            f"table {name}: maintain.time_travel_hours ({conf.time_travel_hours}) is longer "
            f"than its {TOMBSTONES} ({text or 'the default, interval 1 weeks'} = {hours:g} "
            "h): VACUUM after a checkpoint would delete files that time travel within the "
            f"window reads; set the table's {TOMBSTONES} to at least the window, or shorten "
            "maintain.time_travel_hours"
        )


def table_properties(catalog: Catalog, name: str) -> dict[str, str]:
    """The table's Delta properties (``delta.*`` and others set on it)."""
    path = catalog.path(name)
    if catalog.backend.name == "native":
        detail = SparkDeltaTable.forPath(catalog.spark, path).detail().first()
        return dict(detail["properties"] or {})
    return dict(DeltaTable(path).metadata().configuration or {})


def table_state(catalog: Catalog, name: str) -> TableState:
    """The table's version and active files, from the log (no data read)."""
    path = catalog.path(name)
    version = catalog.version(name)
    if version is None:
        raise InputNotReadyError(f"table {name} does not exist at {path}")
    if catalog.backend.name == "native":
        detail = SparkDeltaTable.forPath(catalog.spark, path).detail().first()
        return TableState(version, int(detail["numFiles"]), int(detail["sizeInBytes"]))
    table = DeltaTable(path)
    sizes = pa.table(table.get_add_actions(flatten=True))["size_bytes"].to_pylist()
    return TableState(table.version(), len(sizes), sum(sizes))


def optimize(catalog: Catalog, name: str) -> None:
    """Compact the table's small files, partition by partition, in one new version (none
    when there is nothing to compact)."""
    path = catalog.path(name)
    with _conflict_as_error(name):
        if catalog.backend.name == "native":
            SparkDeltaTable.forPath(catalog.spark, path).optimize().executeCompaction()
        else:
            DeltaTable(path).optimize.compact()


def vacuum(catalog: Catalog, name: str, conf: MaintainConfig) -> tuple[int | None, int | None]:
    """Delete the unreferenced files older than the retention; return how many and their
    bytes (None when the native backend's Delta does not log VACUUM: see
    ``spark.databricks.delta.vacuum.logging.enabled``)."""
    check_retention(conf)
    path = catalog.path(name)
    check_tombstones(name, table_properties(catalog, name), conf)
    hours = conf.vacuum_retention_hours
    if catalog.backend.name == "native":
        return _native_vacuum(catalog.spark, path, hours)
    before, base = _listing(path)
    deleted = DeltaTable(path).vacuum(
        retention_hours=hours, dry_run=False, enforce_retention_duration=False, full=True
    )
    # delta-rs also lists removed files it deleted before (tombstones stay in the log until a
    # checkpoint drops them): count only those that were there.
    gone = {_relative(base, p) for p in deleted} & before.keys()
    return len(gone), sum(before[p] for p in gone)


def maintain_table(catalog: Catalog, name: str, conf: MaintainConfig) -> dict[str, Any]:
    """Compact, then vacuum, one table as ``conf`` says; return what changed."""
    check_retention(conf)
    if conf.vacuum:  # refused before the compaction too
        check_tombstones(name, table_properties(catalog, name), conf)
    before = table_state(catalog, name)
    if conf.optimize:
        optimize(catalog, name)
    files_vacuumed, bytes_vacuumed = vacuum(catalog, name, conf) if conf.vacuum else (0, 0)
    after = table_state(catalog, name)
    return {
        "path": catalog.path(name),
        "version_before": before.version,
        "version_after": after.version,
        "files_before": before.files,
        "files_after": after.files,
        "bytes_before": before.bytes,
        "bytes_after": after.bytes,
        "files_vacuumed": files_vacuumed,
        "bytes_vacuumed": bytes_vacuumed,
    }


def _native_vacuum(spark: SparkSession, path: str, hours: int) -> tuple[int | None, int | None]:
    table = SparkDeltaTable.forPath(spark, path)
    start = int(table.history(1).first()["version"])
    with session_conf(spark, {RETENTION_CHECK: "false"}):
        table.vacuum(float(hours))
    logged = {
        r["operation"]: r["operationMetrics"] or {}
        for r in table.history(10).where(f"version > {start}").collect()
    }
    if "VACUUM END" not in logged:
        return None, None
    size = logged.get("VACUUM START", {}).get("sizeOfDataToDelete")
    return int(logged["VACUUM END"]["numDeletedFiles"]), None if size is None else int(size)


@contextmanager
def _conflict_as_error(name: str) -> Iterator[None]:
    """A concurrent commit that removed files the compaction read: the table is unchanged."""
    try:
        yield
    except Exception as e:
        if isinstance(e, CommitFailedError) or is_conflict(e):
            raise TableConflictError(
                f"table {name}: compaction conflicts with a concurrent write, the table is "
                f"unchanged; re-run ({str(e)[:200]})"
            ) from e
        raise


def _listing(path: str) -> tuple[dict[str, int], str]:
    """Every file under the table root (relative path -> size), and the root as the
    filesystem names it."""
    fs, base = pafs.FileSystem.from_uri(path)
    base = base.rstrip("/")
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    return {i.path[len(base) + 1 :]: i.size for i in infos if i.is_file}, base


def _relative(base: str, uri: str) -> str:
    """A file delta-rs's vacuum returned (a URI or path, URI-encoded) relative to the root."""
    path = unquote(uri)
    return path.split(f"{base}/", 1)[1] if f"{base}/" in path else path
