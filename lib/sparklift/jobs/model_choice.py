"""Which trained model a scoring job uses for its run date (``uplift_models``,
``propensity_models``): the one named, else the latest trained for the run date or before
it, so that a backfill of a past date never scores with a model that learnt from that
date's future. A model named by id is used whatever its date, with a warning when it was
trained for a later date.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from pyspark.sql import DataFrame, Row
from pyspark.sql import functions as F

from sparklift.errors import InputError, InputNotReadyError
from sparklift.jobs import JobContext, log

TRAIN_JOB = {"uplift_models": "train-uplift", "propensity_models": "train-propensity"}


def latest_as_of(models: DataFrame, run_date: dt.date, columns: Sequence[str]) -> Row | None:
    """The row (``columns``) of the model trained last for ``run_date`` or a date before."""
    return (
        models.where(F.col("run_date") <= F.lit(run_date))
        .orderBy(F.desc("run_date"), F.desc("trained_at"), F.desc("model_id"))
        .select(*columns)
        .first()
    )


def model_row(
    ctx: JobContext,
    table: str,
    model_id: str | None,
    columns: Sequence[str],
    predicts: bool = True,
) -> dict[str, Any]:
    """The ``table`` row (``columns`` and ``run_date``) of the model ``model_id``, else of
    the latest as of the run date; refused when there is none. ``predicts``: the caller
    predicts with the model (a named later model is then worth a warning)."""
    train = TRAIN_JOB[table]
    if not ctx.catalog.exists(table):
        raise InputNotReadyError(f"no {table} table yet: run sparklift {train} first")
    models = ctx.catalog.read(table)
    wanted = [*dict.fromkeys([*columns, "run_date"])]
    if model_id:
        found = models.where(F.col("model_id") == model_id).select(*wanted).collect()
        if not found:
            raise InputError(f"unknown model {model_id!r}: not in {table}")
        row = found[0].asDict()
        if predicts and row["run_date"] is not None and row["run_date"] > ctx.run_date:
            log.warning(
                "model %s (%s) was trained for %s, after the run date %s: it may have "
                "learnt from data that date did not have; used because it was named",
                model_id, table, row["run_date"], ctx.run_date,
            )  # fmt: skip
        return row
    latest = latest_as_of(models, ctx.run_date, wanted)
    if latest is not None:
        return latest.asDict()
    first, count = models.agg(F.min("run_date"), F.count(F.lit(1))).first()
    if count == 0:
        raise InputNotReadyError(f"{table} is empty: run sparklift {train} first")
    # Waiting does not make a model of a past date: an error, not "not ready".
    raise InputError(
        f"{table} has no model trained for {ctx.run_date} or before (the earliest is for "
        f"{first}; {count} model(s)): a date is scored only with a model of its own past; "
        f"train one with sparklift {train} --run-date {ctx.run_date}, or name one with "
        "--model-id"
    )
