"""Publishing a result that spans several tables or commits, atomically for readers.

A run writes its rows under a fresh id (a partition of its own, invisible to readers), then
commits one row set in a *commit-point* table that names the id (``allocation_summary``
names a ``run_id``, ``geo_experiments`` a ``design_id``). Readers follow the name, so they
see the previous run or the complete new one, never a mix.

After publishing at version V, a run removes only what it provably superseded: the id the
commit point named at V - 1 (commits are serial, so that is exactly what V replaced), and
ids abandoned longer than a run can last. An id merely present may be a concurrent run
about to publish, and is kept. Ids start with their UTC start time, which is what makes
"abandoned" decidable.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sparklift.tables import Catalog, PartitionFilter

ID_TIME = "%Y%m%dT%H%M%S"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def new_id(now: dt.datetime) -> str:
    """A unique id that tells when its run started (UTC), e.g. 20260630T021500-1f2e3d4c."""
    return f"{now:{ID_TIME}}-{uuid.uuid4().hex[:8]}"


def abandoned(run_id: str, now: dt.datetime, after_hours: float) -> bool:
    """Whether an unpublished id's run started more than ``after_hours`` before ``now`` (an
    id without a start time, from before ids carried one, counts as abandoned)."""
    try:
        started = dt.datetime.strptime(run_id.split("-")[0], ID_TIME)
    except ValueError:
        return True
    return now - started > dt.timedelta(hours=after_hours)


def named_id(
    catalog: Catalog,
    table: str,
    column: str,
    where: Sequence[PartitionFilter],
    version: int | None = None,
) -> str | None:
    """The id the commit-point ``table`` names in the partitions ``where`` (at ``version``)."""
    if (version is not None and version < 0) or not catalog.exists(table):
        return None
    rows = catalog.read(table, version=version, where=where).select(column).distinct().collect()
    return rows[0][0] if rows else None


def superseded(
    catalog: Catalog,
    table: str,
    column: str,
    where: Sequence[PartitionFilter],
    published_at: int,
    present: set[str],
    after_hours: float,
) -> set[str]:
    """Of the ids ``present``, those a publish at version ``published_at`` may remove: the
    one it replaced and the abandoned ones, never the one named now."""
    if not present:  # a first run of its partitions: nothing to remove, nothing to read
        return set()
    replaced = named_id(catalog, table, column, where, version=published_at - 1)
    current = named_id(catalog, table, column, where)
    now = utcnow()
    return {i for i in present if i == replaced or abandoned(i, now, after_hours)} - {current}
