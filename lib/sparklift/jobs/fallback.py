"""Which partition of a checked input a job reads: the run date's, unless it failed an
error check of ``sparklift check`` (``quality_results``) or is missing; then, when the job
is configured to fall back (``{max_age_days: N}``), the latest good partition at most N
days old, said in the job's summary and log, never silently.

A run date's partition never checked counts as good: the checks are a gate only where
they run. A fall-back must be known good: once the table has verdicts in the window, an
earlier partition without one (its check crashed, or never ran) is passed over. A
verdict holds for the table version its checks read: a partition whose rows changed since
(a re-run of the job that wrote it, say) is read on its run date as unchecked, with a
warning, when its checks passed; when they failed it is still refused (rows that failed
may be written again unfixed), and the message says to check it again. A changed
partition is never a fall-back (a check regime exists and the partition left it). In a
pipeline run, a check step of the table that failed or was blocked (it may have crashed
before writing a verdict) marks the run date's partition, when there is one, bad
(``JobContext.unverified``). Which partitions exist comes from the Delta log's
statistics, and which changed from its commits: no data is read but the partition used.
All of it is read at the table version the job then reads (``version``), so a commit in
between cannot slip in unchecked.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from pyspark.sql import functions as F

from sparklift.config.models import FallbackConfig
from sparklift.errors import InputError, InputNotReadyError
from sparklift.jobs import JobContext, log
from sparklift.quality.rules import VERSION_CHECK, checked_table_id
from sparklift.tables.changes import data_changes, table_id, touching
from sparklift.tables.schema import encode_partition_value

Checked = tuple[int, str | None]  # the table version and id a date's checks read


@dataclass(frozen=True)
class Partition:
    """The partition read, and why it is not the run date's (None when it is)."""

    day: dt.date
    fallback: dict[str, str] | None = None


def verdicts(
    ctx: JobContext, table: str, since: dt.date
) -> tuple[dict[dt.date, list[str]], dict[dt.date, Checked]]:
    """Per checked date of ``table`` from ``since`` to the run date, its error checks that
    failed (a re-run of the check replaces its date's results), and the table version and
    id its checks read (``table_version``, from checks since it was recorded)."""
    if not ctx.catalog.exists("quality_results"):
        return {}, {}
    rows = (
        ctx.catalog.read("quality_results", where=[("table_name", "=", table)])
        .where(F.col("run_date").between(F.lit(since), F.lit(ctx.run_date)))
        .select("run_date", "check_name", "severity", "status", "statistic", "message")
        .collect()
    )
    failed: dict[dt.date, list[str]] = defaultdict(list)
    checked: dict[dt.date, Checked] = {}
    for r in sorted(rows, key=lambda r: r["check_name"]):
        if r["check_name"] == VERSION_CHECK and r["statistic"] is not None:
            checked[r["run_date"]] = (int(r["statistic"]), checked_table_id(r["message"] or ""))
        elif r["severity"] == "error" and r["status"] == "fail":
            failed[r["run_date"]].append(f"{r['check_name']}: {r['message']}")
    return dict(failed), checked


def changed(
    ctx: JobContext, table: str, date_column: str, checked: dict[dt.date, Checked], latest: int
) -> dict[dt.date, str]:
    """The dates whose partition changed between the table version their checks read
    (``checked``) and ``latest``: a commit added or removed rows of it (of any date, when
    the table is not partitioned by ``date_column``; a compaction does not count), or the
    table was created again at its path since (another id). A check may also have read a
    version after ``latest`` (the job pinned its version before the check committed): then
    the commits between the two count alike. A date checked before the version was
    recorded is taken as it was."""
    if not checked:
        return {}
    now = table_id(ctx.catalog.path(table), latest)
    out = {
        d: f"its check read table id {was}; the table was created again since (id {now})"
        for d, (_, was) in checked.items()
        if was is not None and was != now
    }
    apart = {d: v for d, (v, _) in checked.items() if v != latest and d not in out}
    if not apart:
        return out
    low = min(min(v, latest) for v in apart.values())
    high = max(max(v, latest) for v in apart.values())
    try:
        commits = data_changes(ctx.catalog.path(table), low, high, date_column)
    except FileNotFoundError:
        return out | {
            d: f"its check read table version {v}; the log no longer holds the commits between "
            f"it and version {latest}"
            for d, v in apart.items()
        }
    for day, version in apart.items():
        lo, hi = min(version, latest), max(version, latest)
        of_day = touching(commits, encode_partition_value(day))
        between = [f"version {n} ({op})" for n, op in of_day if lo < n <= hi]
        if not between:
            continue
        if version < latest:
            out[day] = (
                f"rows changed after its check of table version {version}: {', '.join(between)}"
            )
        else:
            out[day] = (
                f"its check read table version {version}, and rows changed after version "
                f"{latest} read here: {', '.join(between)}"
            )
    return out


def _missing_at_check(messages: list[str]) -> bool:
    """Whether a date's failed checks are only its freshness (no rows when checked)."""
    return all(m.startswith("freshness: ") for m in messages)


def choose(
    ctx: JobContext,
    table: str,
    date_column: str,
    fallback: FallbackConfig | None,
    key: str,
    version: int,
) -> Partition:
    """The partition of ``table`` to read on the run date at table ``version`` (``key``:
    the config key of the fallback, for messages). Refuses a partition that failed its
    checks when there is no fallback; a missing one (checked or not) is left to the job's
    own not-ready message."""
    day = ctx.run_date
    since = day - dt.timedelta(days=fallback.max_age_days) if fallback else day
    failed, checked = verdicts(ctx, table, since)
    # The table's checks run (a verdict in the window, or its check step in this run): a
    # fall-back needs a verdict that passed.
    regime = bool(failed or checked) or table in ctx.unverified
    stale = changed(ctx, table, date_column, checked, version)
    if day in stale and day in failed and checked[day][0] > version:  # a later version's
        failed[day].append(
            f"that verdict is on a later version than this job read ({stale[day]}): run "
            "the job again, so that it reads the version checked"
        )
    elif day in stale and day in failed:  # refused still, but the message says to check again
        failed[day].append(
            f"that verdict is older than its rows ({stale[day]}): check it again with "
            f"sparklift check --table {table} --run-date {day}"
        )
    elif day in stale:  # as if never checked: the gate is where it runs
        log.warning("%s of %s: %s; reading it as unchecked", table, day, stale[day])
    if fallback is None:
        if day in failed and not _missing_at_check(failed[day]):
            raise InputError(
                f"{table} of {day} failed its checks ({'; '.join(failed[day])}): nothing is "
                f"allocated on it; fix it and re-run, or set {key} to use an earlier good "
                "partition"
            )
        return Partition(day)
    days = [day - dt.timedelta(days=k) for k in range(fallback.max_age_days + 1)]
    present = {
        d for d in days if ctx.catalog.count(table, version, where=[(date_column, "=", d)]) > 0
    }
    if table in ctx.unverified and day in present:  # its check did not pass in this run
        failed.setdefault(day, []).append(ctx.unverified[table])  # (verdict or not)
    if day in present and day not in failed:
        return Partition(day)
    why = (  # a partition missing when its freshness was checked is missing still
        f"{table} of {day} failed its checks ({'; '.join(failed[day])})"
        if day in present
        else f"{table} has no rows for {date_column} {day}"
    )
    earlier = sorted((d for d in present if d < day), reverse=True)
    good = [
        d for d in earlier if d not in failed and d not in stale and (d in checked or not regime)
    ]
    if not good:  # a bad partition needs a fix (2); a missing one may still land (3)
        passed_over = "; ".join(f"{d}: {stale[d]}" for d in earlier if d in stale)
        unverified = [str(d) for d in earlier if d not in checked and d not in failed]
        raise (InputError if day in present else InputNotReadyError)(
            f"{why}, and no earlier partition since {since} passed its checks "
            f"({key}.max_age_days {fallback.max_age_days})"
            + (f"; passed over, as changed since checked: {passed_over}" if passed_over else "")
            + (f"; passed over, never checked: {', '.join(unverified)}" if unverified else "")
        )
    for d in earlier[: earlier.index(good[0])]:
        if d in stale:
            log.warning("%s: passing over %s of %s: %s", key, table, d, stale[d])
        elif d not in failed:
            log.warning("%s: passing over %s of %s: never checked", key, table, d)
    log.warning("%s: falling back to %s of %s (%s)", key, table, good[0], why)
    return Partition(
        good[0], {"table": table, "used": str(good[0]), "instead_of": str(day), "why": why}
    )
