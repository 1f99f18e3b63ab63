"""``sparklift user-history``: ``user_history`` as of the run date, the per-user history
``score-propensity`` reads (one row per customer, :mod:`sparklift.predict.user_history`).

With the windows of the model ``score-propensity`` will use, summing every numeric column
of ``user_activity`` (a new table) or the stored table's columns, so that a model
retrained on other columns finds its sums. The state as of the day before, if stored with
the same windows, is updated by the rows of three days (the run date, and the days that
leave the two windows); otherwise, or with ``--rebuild``, or when a leaving day has no rows
(retention reached it), it is rebuilt from the history window's rows. Each state records
the version of user_activity it counted; a commit of user_activity since then that changed
a day of the window (a late row, a deleted one, a corrected value) is found in the log the
night after (:func:`changed_since`), and the state is rebuilt, with a warning. The update
also checks itself as it runs: a day leaving the window whose rows the state never counted
fails it (nothing is written) and the state is rebuilt. The run date's partition is
written and partitions older than ``propensity.state_days`` are dropped in the same commit.
"""

from __future__ import annotations

import argparse
import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType

from sparklift.config import PropensityConfig
from sparklift.errors import InputError
from sparklift.jobs import JobContext, log, step
from sparklift.jobs.propensity_io import (
    has_rows,
    load,
    model_row,
    models_to_score,
    read_activity,
    require_window,
    stored_state,
)
from sparklift.pipeline.registry import PipelineStep
from sparklift.predict import user_history
from sparklift.predict.user_history import DAY, MISMATCH, days_read_by_update
from sparklift.tables import changes

HELP = "update user_history, the per-user history that score-propensity reads, for the run date"
KEYS = ("date", "user_id", "zone_id")  # user_activity's columns that are not summed
# In the userMetadata of user_history's commits: the user_activity version counted, and the
# id of the table that had it (a table created again at the path counts versions anew).
SOURCE_VERSION, SOURCE_ID = "user_activity_version", "user_activity_id"
STEP = PipelineStep(
    "user-history",
    order=25,
    targets=models_to_score,
    per="propensity model",
    checks=("user_activity",),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-id",
        help="the propensity model whose windows the state keeps (default: "
        "propensity.model_id, else the latest trained for the run date or before)",
    )
    parser.add_argument(
        "--rebuild", action="store_true", help="rebuild from the window's rows, not the day before"
    )


def run(ctx: JobContext, args: argparse.Namespace) -> dict:
    # Only the model's windows and columns are used: a later model may prepare a state.
    row = model_row(ctx, args.model_id or ctx.config.propensity.model_id, predicts=False)
    model, _ = load(ctx, row)
    day = ctx.run_date
    first, _ = user_history.windows_of(model.windows, day)
    source = ctx.catalog.version("user_activity")  # read at it, recorded with the state
    activity = read_activity(ctx, model.model_id, model.windows, first - DAY, day, source)
    source_id = changes.table_id(ctx.catalog.path("user_activity"), source)  # it exists
    conf = model.windows.model_copy(
        update={"columns": summarized(ctx, model.model_id, model.windows.columns, activity)}
    )
    previous, why = (None, "--rebuild") if args.rebuild else stored_state(ctx, conf, day - DAY)
    leaving = days_read_by_update(conf, day)[1:]
    if previous is not None and not all(has_rows(activity, d) for d in leaving):
        previous, why = None, f"user_activity has no rows on one of {', '.join(map(str, leaving))}"
    if previous is not None and (changed := changed_since(ctx, conf, day - DAY, source, source_id)):
        log.warning("%s; rebuilding", changed)
        previous, why = None, changed
    stale = stale_partitions(ctx, day)

    def write(how: str, state: DataFrame) -> int:
        with step(f"user_history as of {day}: {how}"):
            return ctx.catalog.write(
                "user_history",
                state,
                mode="replace",
                replace_where={"as_of": [day, *stale]},
                user_metadata={SOURCE_VERSION: source, SOURCE_ID: source_id},
            )

    rebuild = f"rebuilt from user_activity {first}..{day}"
    if previous is None:
        require_window(activity, first, model.model_id)
        version = write(f"{rebuild} ({why})", user_history.build(activity, conf, day))
    else:
        try:
            version = write(
                f"updated from {why} by the rows of {', '.join(map(str, (day, *leaving)))}",
                user_history.update(previous, activity, conf, day),
            )
        except Exception as e:  # the update's own check: nothing was written
            if MISMATCH not in str(e):
                raise
            require_window(activity, first, model.model_id)
            reason = str(e)[str(e).index(MISMATCH) + len(MISMATCH) + 2 :].splitlines()[0]
            reason = reason.split(" SQLSTATE")[0]
            log.warning(
                "%s: the state disagrees with the user_activity version it records; rebuilding",
                reason,
            )
            previous, why = None, "the day before's disagreed with user_activity"
            version = write(f"{rebuild} ({why})", user_history.build(activity, conf, day))
    customers = ctx.catalog.rows_added("user_history", version)
    log.info("user_history version %d: %d customers as of %s", version, customers, day)
    return {
        "model_id": model.model_id,
        "as_of": day,
        "customers": customers,
        "mode": "rebuild" if previous is None else "update",
        "reason": why if previous is None else None,  # why it was rebuilt
        "dropped": stale,
        "version": version,
    }


def summarized(
    ctx: JobContext, model_id: str, columns: list[str], activity: DataFrame
) -> list[str]:
    """The columns the state sums: the stored table's (they must include the model's), or
    for a new table every numeric column of user_activity but its keys, so that a model
    retrained on other columns finds its sums there too."""
    if ctx.catalog.exists("user_history"):
        stored = [
            c.removeprefix("w_sum__")
            for c in ctx.catalog.schema("user_history").fieldNames()
            if c.startswith("w_sum__")
        ]
        lacking = [c for c in columns if c not in stored]
        gone = [c for c in stored if c not in activity.columns]
        if lacking or gone:
            raise InputError(
                f"table user_history holds the sums of {stored}: "
                + (f"model {model_id} summarizes {lacking} too" if lacking else "")
                + ("; " if lacking and gone else "")
                + (f"user_activity has no columns {gone}" if gone else "")
                + "; move the table away (the next run rebuilds it from user_activity)"
            )
        return stored
    numeric = [
        f.name
        for f in activity.schema.fields
        if isinstance(f.dataType, NumericType) and f.name not in KEYS and f.name not in columns
    ]
    return [*columns, *numeric]


def changed_since(
    ctx: JobContext, conf: PropensityConfig, as_of: dt.date, version: int, source_id: str
) -> str | None:
    """Why the state as of ``as_of`` no longer holds for user_activity at ``version`` (of
    table id ``source_id``), or None. The commit that wrote the state records the version
    of user_activity it counted and the table's id (:data:`SOURCE_VERSION`,
    :data:`SOURCE_ID`): another id is another table, created again at the path. A commit
    of user_activity since that version that added or removed rows of a day of the
    state's history window (a late row, a deletion, a corrected value: Delta rewrites the
    file) makes it stale. Only the two logs are read."""
    latest = ctx.catalog.version("user_history")
    root = ctx.catalog.path("user_history")
    found = None if latest is None else changes.last_change(root, latest, "as_of", str(as_of))
    if found is None:
        return f"the log of user_history no longer holds the commit that wrote as of {as_of}"
    written, info = found
    note = changes.user_metadata(info)
    counted, counted_id = note.get(SOURCE_VERSION), note.get(SOURCE_ID)
    if not isinstance(counted, int) or not isinstance(counted_id, str):
        return (
            f"user_history as of {as_of} was last changed by its version {written} "
            f"({info.get('operation', 'unknown operation')}), which does not record the "
            "user_activity version and table id it counted"
        )
    if counted_id != source_id:
        return (
            f"user_history as of {as_of} counted user_activity's version {counted} of table "
            f"id {counted_id}, but user_activity is now table id {source_id} (created again "
            "at its path)"
        )
    if counted > version:
        return (
            f"user_history as of {as_of} counted user_activity's version {counted}, but the "
            f"table is at version {version} (was its log rewritten?)"
        )
    first, _ = user_history.windows_of(conf, as_of)
    try:
        changed = changes.data_changes(ctx.catalog.path("user_activity"), counted, version, "date")
    except FileNotFoundError:
        return f"the log of user_activity no longer holds its commits {counted + 1}..{version}"
    inside = {
        day: commits
        for day, commits in changed.items()
        if day in (None, changes.ANY_VALUE) or first <= dt.date.fromisoformat(day) <= as_of
    }
    if not inside:
        return None
    days = sorted(str(day) for day in inside)
    commits = sorted({c for by_day in inside.values() for c in by_day})
    return (
        f"user_activity's rows of {', '.join(days)} changed after user_history as of {as_of} "
        f"counted its version {counted}: by version "
        + ", ".join(f"{v} ({operation})" for v, operation in commits)
    )


def stale_partitions(ctx: JobContext, day: dt.date) -> list[dt.date]:
    """The stored as_of days older than the ``propensity.state_days`` ending on ``day``."""
    if not ctx.catalog.exists("user_history"):
        return []
    oldest = day - (ctx.config.propensity.state_days - 1) * DAY
    stored = ctx.catalog.read("user_history").select("as_of").distinct()
    return sorted(r[0] for r in stored.where(F.col("as_of") < F.lit(oldest)).collect())
