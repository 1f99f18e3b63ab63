"""``sparklift score-propensity``: every customer of the run date (every user active in the
model's history window ending on it) scored into ``propensity_scores`` (the run date's
partition replaced in one commit).

The model is the one given (``--model-id`` or ``propensity.model_id``) or the latest in
``propensity_models`` trained for the run date or before it; its ``model.pkl`` is
unpickled only after its sha256 has matched the row's, the id's and meta.json's
(:func:`sparklift.uplift.model.verify`), and an artefact saved under other scikit-learn or
numpy versions is refused or loaded with a warning (``score.on_version_mismatch``, shared
with ``score``). The features are built with the model's own windows and columns,
whatever the config says now: from ``user_history`` as of the run date (one row per
customer, kept by ``user-history``) when it holds them, else from the window's
``user_activity`` rows (one aggregation by user). The state's files are read by Python
itself when they are plain Parquet (``reader`` in the summary: ``arrow``), else (or with
``propensity.state_reader: spark``) through Spark (``spark``): Spark's conversion of rows
to Arrow costs more than the model.
"""

from __future__ import annotations

import argparse
import datetime as dt

from sparklift.jobs import JobContext, log, step
from sparklift.jobs.propensity_io import (
    load,
    model_row,
    models_to_score,
    read_activity,
    require_window,
    stored_state,
)
from sparklift.pipeline.registry import PipelineStep
from sparklift.predict import user_history
from sparklift.predict.propensity import PropensityModel
from sparklift.predict.scoring import StateFiles, score

HELP = "score every customer's propensity to purchase into propensity_scores"
STEP = PipelineStep(
    "score-propensity",
    order=27,
    depends_on=("user-history",),
    targets=models_to_score,
    per="propensity model",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-id",
        help="model_id in propensity_models (default: propensity.model_id, else the latest "
        "trained for the run date or before)",
    )


def run(ctx: JobContext, args: argparse.Namespace) -> dict:
    row = model_row(ctx, args.model_id or ctx.config.propensity.model_id)
    model, blob = load(ctx, row)
    conf, day = model.windows, ctx.run_date
    state, source = stored_state(ctx, conf, day)
    reader = "spark"
    if state is None:
        first, _ = user_history.windows_of(conf, day)
        log.info("%s: aggregating user_activity %s..%s by user instead", source, first, day)
        activity = read_activity(ctx, model.model_id, conf, first, day)
        require_window(activity, first, model.model_id)
        state = user_history.build(activity, conf, day)
        source = f"user_activity {first}..{day}"
    elif ctx.config.propensity.state_reader == "auto":
        files = ctx.catalog.parquet_files("user_history", where=[("as_of", "=", day)])
        plain = StateFiles.of(ctx.spark, files or [])
        if plain is not None:
            state, reader = plain, f"arrow ({len(plain.files)} files, {plain.tasks} tasks)"
    held = _held_drift(model, day)
    broadcast = ctx.spark.sparkContext.broadcast(blob)
    scores = score(state, broadcast, row["artifact_sha256"], model, day)
    with step(f"scoring the customers of {source} with {model.model_id}"):
        version = ctx.catalog.write(
            "propensity_scores", scores, mode="replace", replace_where={"run_date": day}
        )
    broadcast.unpersist()
    rows = ctx.catalog.rows_added("propensity_scores", version)
    log.info("propensity_scores version %d: %d customers", version, rows)
    return {
        "model_id": model.model_id,
        "customers_scored": rows,
        "features_from": source,
        "reader": reader,
        "drift_held": held,
        "version": version,
    }


def _held_drift(model: PropensityModel, day: dt.date) -> bool:
    """Whether the model's base-rate trend (``drift: linear``) stops short of the run date
    (``drift_max_days`` either way), said with a warning: the model is due for retraining
    (or, before its snapshots, not the date's model)."""
    if model.drift[1] == 0.0 or model.drift_origin is None:
        return False
    past, held = (day - model.drift_origin).days, model.drift_days(day)
    if abs(past) <= abs(held):
        return False
    where = f"{past} days past" if past > 0 else f"{-past} days before"
    advice = "retrain it" if past > 0 else "score that date with a model of its own past"
    log.warning(
        "model %s: the run date is %s its last training snapshot (%s); its base-rate trend "
        "(%+.4f log-odds a day) is held at %d days (propensity.drift_max_days): %s",
        model.model_id, where, model.drift_origin, model.drift[1], held, advice,
    )  # fmt: skip
    return True
