"""``sparklift user-history``: ``user_history`` as of the run date, the per-user history
``score-propensity`` reads (one row per customer, :mod:`sparklift.predict.user_history`).

With the model's windows and columns (the model ``score-propensity`` will use). The state
as of the day before, if stored with the same windows, is updated by the rows of three
days (the run date, and the days that leave the two windows); otherwise, or with
``--rebuild``, or when a leaving day has no rows (retention reached it), it is rebuilt
from the history window's rows. The run date's partition is written and partitions older
than ``propensity.state_days`` are dropped in the same commit. Late corrections to
``user_activity`` days inside the window reach the state only by a ``--rebuild``.
"""

from __future__ import annotations

import argparse
import datetime as dt

from pyspark.sql import functions as F

from sparklift.errors import InputError
from sparklift.jobs import JobContext, log, step
from sparklift.jobs.propensity_io import (
    has_rows,
    load,
    model_row,
    models_to_score,
    read_activity,
    stored_state,
)
from sparklift.pipeline.registry import PipelineStep
from sparklift.predict import user_history
from sparklift.predict.user_history import DAY, days_read_by_update, state_columns

HELP = "update user_history, the per-user history that score-propensity reads, for the run date"
STEP = PipelineStep("user-history", order=25, targets=models_to_score, per="propensity model")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-id", help="the propensity model whose windows (default: the latest)"
    )
    parser.add_argument(
        "--rebuild", action="store_true", help="rebuild from the window's rows, not the day before"
    )


def run(ctx: JobContext, args: argparse.Namespace) -> dict:
    row = model_row(ctx, args.model_id or ctx.config.propensity.model_id)
    model, _ = load(ctx, row)
    conf, day = model.windows, ctx.run_date
    check_columns(ctx, conf.columns)
    first, _ = user_history.windows_of(conf, day)
    activity = read_activity(ctx, model.model_id, conf, first - DAY, day)
    previous, why = (None, "--rebuild") if args.rebuild else stored_state(ctx, conf, day - DAY)
    leaving = days_read_by_update(conf, day)[1:]
    if previous is not None and not all(has_rows(activity, d) for d in leaving):
        previous, why = None, f"user_activity has no rows on one of {', '.join(map(str, leaving))}"
    if previous is None:
        how = f"rebuilt from user_activity {first}..{day} ({why})"
        state = user_history.build(activity, conf, day)
    else:
        how = f"updated from {why} by the rows of {', '.join(map(str, (day, *leaving)))}"
        state = user_history.update(previous, activity, conf, day)
    stale = stale_partitions(ctx, day)
    with step(f"user_history as of {day}: {how}"):
        version = ctx.catalog.write(
            "user_history", state, mode="replace", replace_where={"as_of": [day, *stale]}
        )
    customers = ctx.catalog.rows_added("user_history", version)
    log.info("user_history version %d: %d customers as of %s", version, customers, day)
    return {
        "model_id": model.model_id,
        "as_of": day,
        "customers": customers,
        "mode": "rebuild" if previous is None else "update",
        "dropped": stale,
        "version": version,
    }


def check_columns(ctx: JobContext, columns: list[str]) -> None:
    """Refuse a model whose columns' sums are not the stored table's (a table has one set)."""
    if not ctx.catalog.exists("user_history"):
        return
    stored = [c for c in ctx.catalog.schema("user_history").fieldNames() if "_sum__" in c]
    wanted = [c for c in state_columns(columns) if "_sum__" in c]
    if sorted(stored) != sorted(wanted):
        raise InputError(
            f"table user_history holds the sums {stored}, but the model summarizes {columns} "
            f"({wanted}); move the table away (it is rebuilt from user_activity) or score "
            "with a model of the same columns"
        )


def stale_partitions(ctx: JobContext, day: dt.date) -> list[dt.date]:
    """The stored as_of days older than the ``propensity.state_days`` ending on ``day``."""
    if not ctx.catalog.exists("user_history"):
        return []
    oldest = day - (ctx.config.propensity.state_days - 1) * DAY
    stored = ctx.catalog.read("user_history").select("as_of").distinct()
    return sorted(r[0] for r in stored.where(F.col("as_of") < F.lit(oldest)).collect())
