"""I/O shared by ``user-history`` and ``score-propensity``: the model to score with, its
verified artefact, the activity rows it needs and the stored per-user history.

Both steps run for the model that scores the run date (``propensity.model_id``, else the
latest of ``propensity_models`` trained for the run date or before it) and build the
features with that model's own windows and columns, whatever the config says now.
"""

from __future__ import annotations

import datetime as dt
import pickle
from typing import Any

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparklift.config import PropensityConfig
from sparklift.errors import InputError, InputNotReadyError
from sparklift.jobs import JobContext, model_choice
from sparklift.predict.propensity import PropensityModel, model_features
from sparklift.predict.user_history import state_columns
from sparklift.uplift import model as artefact

ROW = ("model_id", "artifact_path", "artifact_sha256", "features")


def models_to_score(ctx: JobContext) -> dict[str, tuple[str, ...]]:
    """The pipeline's propensity target of the run date: the configured model, else the
    latest as of the run date (-> its ``--model-id``); none before a model is trained for
    the run date or before it and none is configured."""
    chosen = ctx.config.propensity.model_id
    if chosen:
        return {chosen: ("--model-id", chosen)}
    if not ctx.catalog.exists("propensity_models"):
        return {}
    models = ctx.catalog.read("propensity_models")
    latest = model_choice.latest_as_of(models, ctx.run_date, ["model_id"])
    return {} if latest is None else {latest["model_id"]: ("--model-id", latest["model_id"])}


def model_row(ctx: JobContext, model_id: str | None, predicts: bool = True) -> dict[str, Any]:
    """The ``propensity_models`` row (ROW's columns) of the given model, else of the
    latest as of the run date (``predicts``: see :func:`model_choice.model_row`)."""
    return model_choice.model_row(ctx, "propensity_models", model_id, ROW, predicts)


def load(ctx: JobContext, row: dict[str, Any]) -> tuple[PropensityModel, bytes]:
    """The verified, unpickled model of ``row`` and its bytes, refused unless it is a
    propensity model whose features are its meta.json's and its row's and which predicts
    from them."""
    model_id, path = row["model_id"], row["artifact_path"]
    meta, blob = artefact.verify(path, model_id, row["artifact_sha256"], kind="propensity")
    on_mismatch = ctx.config.score.on_version_mismatch
    artefact.check_versions(meta, path, model_id, on_mismatch, kind="propensity")
    model = pickle.loads(blob)
    if not isinstance(model, PropensityModel):
        raise InputError(f"model {model_id}: model.pkl holds a {type(model).__name__}")
    model.model_id = model_id
    own = model_features(model.windows)
    for where, listed in (("its meta.json", meta.get("features")), ("its row", row["features"])):
        if list(listed or []) != model.features or model.features != own:
            raise InputError(
                f"model {model_id} was trained with features {model.features}, but {where} "
                f"lists {listed}; refusing to score with a mismatched artefact"
            )
    try:
        model.predict(np.zeros((1, len(model.features))))
    except Exception as e:  # the learner is the model's own code: any failure
        raise InputError(f"model {model_id} cannot predict from its features: {e}") from None
    return model, blob


def read_activity(
    ctx: JobContext,
    model_id: str,
    conf: PropensityConfig,
    first: dt.date,
    last: dt.date,
    version: int | None = None,
) -> DataFrame:
    """``user_activity`` (at ``version``, default the latest) from ``first`` to ``last``
    with the columns the model summarizes, refused until the run date's rows are there."""
    activity = ctx.catalog.read(
        "user_activity", version=version, where=[("date", ">=", first), ("date", "<=", last)]
    )
    missing = [c for c in ("user_id", "date", *conf.columns) if c not in activity.columns]
    if missing:
        raise InputError(f"table user_activity lacks columns {missing} that model {model_id} uses")
    if not has_rows(activity, ctx.run_date):
        raise InputNotReadyError(f"table user_activity has no rows on {ctx.run_date} yet")
    return activity


def has_rows(activity: DataFrame, day: dt.date) -> bool:
    return activity.where(F.col("date") == F.lit(day)).limit(1).count() > 0


def require_window(activity: DataFrame, first: dt.date, model_id: str) -> None:
    """Refuse to summarize a history window whose first day has no rows (a table kept for
    fewer days than the window): the features would cover a shorter history than the
    model was trained on, and its scores would be off without a word."""
    if not has_rows(activity, first):
        raise InputNotReadyError(
            f"table user_activity has no rows on {first}, the first day of model {model_id}'s "
            "history window: its features need the whole window"
        )


def stored_state(
    ctx: JobContext, conf: PropensityConfig, day: dt.date
) -> tuple[DataFrame | None, str]:
    """``user_history``'s partition as of ``day`` if it was built with ``conf``'s windows
    and columns (else None), and why not."""
    if not ctx.catalog.exists("user_history"):
        return None, "no user_history table yet"
    stored = ctx.catalog.schema("user_history").fieldNames()  # no read: only the day's is
    missing = [c for c in state_columns(conf.columns) if c not in stored]
    if missing:
        return None, f"user_history has no columns {missing}"
    state = ctx.catalog.read("user_history", where=[("as_of", "=", day)])
    first = state.select("history_days", "recent_days").first()
    if first is None:
        return None, f"user_history has no rows as of {day}"
    if (first["history_days"], first["recent_days"]) != (conf.history_days, conf.recent_days):
        return None, (
            f"user_history as of {day} has windows of {first['history_days']} and "
            f"{first['recent_days']} days, not {conf.history_days} and {conf.recent_days}"
        )
    return state, f"user_history as of {day}"
