"""Which partition of a checked input a job reads: the run date's, unless it failed an
error check of ``sparklift check`` (``quality_results``) or is missing; then, when the job
is configured to fall back (``{max_age_days: N}``), the latest good partition at most N days
old, said in the job's summary and log, never silently. A partition never checked counts
as good: the checks are a gate only where they run; in a pipeline run, a check step of
the table that failed or was blocked (it may have crashed before writing a verdict) marks
the run date's partition, when there is one, bad (``JobContext.unverified``). Which
partitions exist comes from the Delta log's statistics: no data is read but the partition used.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from pyspark.sql import functions as F

from sparklift.config.models import FallbackConfig
from sparklift.errors import InputError, InputNotReadyError
from sparklift.jobs import JobContext, log


@dataclass(frozen=True)
class Partition:
    """The partition read, and why it is not the run date's (None when it is)."""

    day: dt.date
    fallback: dict[str, str] | None = None


def failed_checks(ctx: JobContext, table: str, since: dt.date) -> dict[dt.date, list[str]]:
    """The error checks of ``table`` that failed, per checked date from ``since`` to the run
    date (a re-run of the check replaces its date's results)."""
    if not ctx.catalog.exists("quality_results"):
        return {}
    rows = (
        ctx.catalog.read("quality_results", where=[("table_name", "=", table)])
        .where(
            F.col("run_date").between(F.lit(since), F.lit(ctx.run_date))
            & (F.col("severity") == "error")
            & (F.col("status") == "fail")
        )
        .select("run_date", "check_name", "message")
        .collect()
    )
    out: dict[dt.date, list[str]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: r["check_name"]):
        out[r["run_date"]].append(f"{r['check_name']}: {r['message']}")
    return dict(out)


def choose(
    ctx: JobContext, table: str, date_column: str, fallback: FallbackConfig | None, key: str
) -> Partition:
    """The partition of ``table`` to read on the run date (``key``: the config key of the
    fallback, for messages). Refuses a partition that failed its checks when there is no
    fallback; a missing one is left to the job's own not-ready message."""
    day = ctx.run_date
    since = day - dt.timedelta(days=fallback.max_age_days) if fallback else day
    failed = failed_checks(ctx, table, since)
    if fallback is None:
        if day in failed:
            raise InputError(
                f"{table} of {day} failed its checks ({'; '.join(failed[day])}): nothing is "
                f"allocated on it; fix it and re-run, or set {key} to use an earlier good "
                "partition"
            )
        return Partition(day)
    days = [day - dt.timedelta(days=k) for k in range(fallback.max_age_days + 1)]
    present = {d for d in days if ctx.catalog.count(table, where=[(date_column, "=", d)]) > 0}
    if table in ctx.unverified and day in present:  # its check did not pass in this run
        failed.setdefault(day, []).append(ctx.unverified[table])  # (verdict or not)
    if day in present and day not in failed:
        return Partition(day)
    why = (
        f"{table} of {day} failed its checks ({'; '.join(failed[day])})"
        if day in failed
        else f"{table} has no rows for {date_column} {day}"
    )
    good = sorted(d for d in present if d not in failed and d < day)
    if not good:  # a bad partition needs a fix (2); a missing one may still land (3)
        raise (InputError if day in failed else InputNotReadyError)(
            f"{why}, and no earlier partition since {since} passed its checks "
            f"({key}.max_age_days {fallback.max_age_days})"
        )
    log.warning("%s: falling back to %s of %s (%s)", key, table, good[-1], why)
    return Partition(
        good[-1], {"table": table, "used": str(good[-1]), "instead_of": str(day), "why": why}
    )
