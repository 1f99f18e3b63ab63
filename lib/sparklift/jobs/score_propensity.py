"""``sparklift score-propensity``: every customer of the run date (every user active in the
model's history window ending on it) scored into ``propensity_scores`` (the run date's
partition replaced in one commit).

The model is the one given (``--model-id`` or ``propensity.model_id``) or the latest in
``propensity_models``; its ``model.pkl`` is unpickled only after its sha256 has matched the
row's, the id's and meta.json's (:func:`sparklift.uplift.model.verify`), and an artefact
saved under other scikit-learn or numpy versions is refused or loaded with a warning
(``score.on_version_mismatch``, shared with ``score``). The features are built with the
model's own windows and columns, whatever the config says now.
"""

from __future__ import annotations

import argparse
import pickle
from typing import Any

import numpy as np
from pyspark.sql import functions as F

from sparklift.errors import InputError, InputNotReadyError
from sparklift.jobs import JobContext, log, step
from sparklift.predict.propensity import DAY, PropensityModel, model_features, snapshot_frame
from sparklift.predict.scoring import score
from sparklift.uplift import model as artefact

HELP = "score every customer's propensity to purchase into propensity_scores"
ROW = ("model_id", "artifact_path", "artifact_sha256", "features", "trained_through")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-id", help="model_id in propensity_models (default: the latest)")


def run(ctx: JobContext, args: argparse.Namespace) -> dict:
    row = model_row(ctx, args.model_id or ctx.config.propensity.model_id)
    model, blob = load(ctx, row)
    windows = model.windows
    first = ctx.run_date - (windows.history_days - 1) * DAY
    activity = ctx.catalog.read(
        "user_activity", where=[("date", ">=", first), ("date", "<=", ctx.run_date)]
    )
    missing = [c for c in ("user_id", *windows.columns) if c not in activity.columns]
    if missing:
        raise InputError(
            f"table user_activity lacks columns {missing} that model {row['model_id']} uses"
        )
    if activity.where(F.col("date") == F.lit(ctx.run_date)).limit(1).count() == 0:
        raise InputNotReadyError(f"table user_activity has no rows on {ctx.run_date} yet")
    features = snapshot_frame(activity, ctx.run_date, windows, labelled=False)
    broadcast = ctx.spark.sparkContext.broadcast(blob)
    scores = score(features, broadcast, row["artifact_sha256"], model, ctx.run_date)
    with step(f"scoring the customers of {first}..{ctx.run_date} with {model.model_id}"):
        version = ctx.catalog.write(
            "propensity_scores", scores, mode="replace", replace_where={"run_date": ctx.run_date}
        )
    broadcast.unpersist()
    rows = ctx.catalog.rows_added("propensity_scores", version)
    log.info("propensity_scores version %d: %d customers", version, rows)
    return {"model_id": model.model_id, "customers_scored": rows, "version": version}


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


def model_row(ctx: JobContext, model_id: str | None) -> dict[str, Any]:
    """The ``propensity_models`` row (ROW's columns) of the given or the latest model."""
    if not ctx.catalog.exists("propensity_models"):
        raise InputNotReadyError(
            "no propensity_models table yet: run sparklift train-propensity first"
        )
    models = ctx.catalog.read("propensity_models")
    if model_id:
        found = models.filter(F.col("model_id") == model_id).select(*ROW).collect()
        if not found:
            raise InputError(f"unknown model {model_id!r}: not in propensity_models")
        return found[0].asDict()
    latest = models.orderBy(F.desc("trained_at")).select(*ROW).first()
    if latest is None:
        raise InputNotReadyError("propensity_models is empty: run sparklift train-propensity")
    return latest.asDict()
