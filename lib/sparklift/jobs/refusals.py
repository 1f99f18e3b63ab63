"""A job's refusal of bad input, recorded: the failed checks of a :class:`ContractError`
written into ``quality_results`` beside those of ``sparklift check``, so that the history of
a table's failures holds every job's findings (the anomaly checks leave failed days out of
their baselines, and the fall-back skips partitions with failed error checks, from there).

A result replaces the row of the same table, date and check and says which job found it;
the checked date's other checks stay. It is one Delta MERGE on the table's key, so a
``sparklift check`` of the same table and date committing meanwhile is never overwritten:
the merge then conflicts and is retried on the new version. If the record cannot be
written, the job still refuses its input with the same error and exit code; the log says
why the record is missing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict

from sparklift.jobs import JobContext, log, merge_records, retry_on_conflict
from sparklift.quality.contract import ContractError
from sparklift.tables.publish import utcnow


@contextmanager
def recorded(ctx: JobContext, job: str) -> Iterator[None]:
    """Run a job; a :class:`ContractError` it raises is recorded, then raised again."""
    try:
        yield
    except ContractError as e:
        version = record(ctx, e, job)
        if version is not None:
            e.args = (f"{e} (recorded in quality_results version {version})",)
        raise


def record(ctx: JobContext, error: ContractError, job: str) -> int | None:
    """Write ``error``'s failed checks into ``quality_results``; its new version, or None
    when it could not be written."""
    catalog, now = ctx.catalog, utcnow()
    new = [
        {"table_name": error.table, "run_date": day or ctx.run_date}
        | asdict(r)
        | {"message": f"{r.message} (found by sparklift {job})", "computed_at": now}
        for day, results in error.failed.items()
        for r in results
    ]
    days = sorted({r["run_date"] for r in new})
    try:
        version = retry_on_conflict(
            lambda: merge_records(catalog, "quality_results", new), "quality_results"
        )
    except Exception as e:  # the refusal stands, with its own exit code, whatever this was
        log.warning("the failed checks of table %s were not recorded: %s", error.table, e)
        return None
    log.info("failed checks of table %s on %s recorded in quality_results version %d",
             error.table, ", ".join(map(dt.date.isoformat, days)), version)  # fmt: skip
    return version
