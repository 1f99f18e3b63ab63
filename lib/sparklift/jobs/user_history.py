"""``sparklift user-history``: ``user_history`` as of the run date, the per-user history
``score-propensity`` reads (one row per customer, :mod:`sparklift.predict.user_history`).

With the windows of the model ``score-propensity`` will use, summing every numeric column
of ``user_activity`` (a new table) or the stored table's columns, so that a model
retrained on other columns finds its sums. The state as of the day before, if stored with
the same windows, is updated by the rows of three days (the run date, and the days that
leave the two windows); otherwise, or with ``--rebuild``, or when a leaving day has no rows
(retention reached it), it is rebuilt from the history window's rows. A row added to or
removed from a day of the window after the state counted it (a late row) is found the
night after, by the rows counted (:func:`disagreement`), and the state is rebuilt, with a
warning. A change that keeps the counts (a row moved to another user) may still be found
when its day leaves the window (the update's own check fails, nothing is written); a
corrected value is not: ``--rebuild`` takes a correction in. The run date's partition is
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

HELP = "update user_history, the per-user history that score-propensity reads, for the run date"
KEYS = ("date", "user_id", "zone_id")  # user_activity's columns that are not summed
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
        "propensity.model_id, else the latest)",
    )
    parser.add_argument(
        "--rebuild", action="store_true", help="rebuild from the window's rows, not the day before"
    )


def run(ctx: JobContext, args: argparse.Namespace) -> dict:
    row = model_row(ctx, args.model_id or ctx.config.propensity.model_id)
    model, _ = load(ctx, row)
    day = ctx.run_date
    first, _ = user_history.windows_of(model.windows, day)
    activity = read_activity(ctx, model.model_id, model.windows, first - DAY, day)
    conf = model.windows.model_copy(
        update={"columns": summarized(ctx, model.model_id, model.windows.columns, activity)}
    )
    previous, why = (None, "--rebuild") if args.rebuild else stored_state(ctx, conf, day - DAY)
    leaving = days_read_by_update(conf, day)[1:]
    if previous is not None and not all(has_rows(activity, d) for d in leaving):
        previous, why = None, f"user_activity has no rows on one of {', '.join(map(str, leaving))}"
    if previous is not None and (recounted := disagreement(ctx, previous, conf, day - DAY)):
        log.warning("%s: rows of the window were added or removed since; rebuilding", recounted)
        previous, why = None, recounted
    stale = stale_partitions(ctx, day)

    def write(how: str, state: DataFrame) -> int:
        with step(f"user_history as of {day}: {how}"):
            return ctx.catalog.write(
                "user_history", state, mode="replace", replace_where={"as_of": [day, *stale]}
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
            log.warning("%s: rows of a day in the window changed since; rebuilding", reason)
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


def disagreement(
    ctx: JobContext, state: DataFrame, conf: PropensityConfig, as_of: dt.date
) -> str | None:
    """Why the state as of ``as_of`` no longer counts user_activity's rows, or None. Each
    window's active days, summed over its users, are the rows the state counted; the
    table's log says how many the window holds now (no data read but the state's two count
    columns). So a row added or removed on any day of the window is found the night after,
    not when its day leaves the window; a correction that keeps every row is not
    (``--rebuild`` takes it in)."""
    held = state.agg(F.sum("w_active_days"), F.sum("r_active_days")).first()
    counted = [int(held[0] or 0), int(held[1] or 0)]  # (None: no rows)
    windows = user_history.windows_of(conf, as_of)
    now = [
        ctx.catalog.count("user_activity", where=[("date", ">=", first), ("date", "<=", as_of)])
        for first in windows
    ]
    if counted == now:
        return None
    return (
        f"user_history as of {as_of} counted {counted[0]:,} rows of user_activity in "
        f"{windows[0]}..{as_of} and {counted[1]:,} in {windows[1]}..{as_of}; the table holds "
        f"{now[0]:,} and {now[1]:,}"
    )


def stale_partitions(ctx: JobContext, day: dt.date) -> list[dt.date]:
    """The stored as_of days older than the ``propensity.state_days`` ending on ``day``."""
    if not ctx.catalog.exists("user_history"):
        return []
    oldest = day - (ctx.config.propensity.state_days - 1) * DAY
    stored = ctx.catalog.read("user_history").select("as_of").distinct()
    return sorted(r[0] for r in stored.where(F.col("as_of") < F.lit(oldest)).collect())
