"""``sparklift train-propensity``: P(an order in the next H days) from the user's history.

Snapshots (:mod:`sparklift.predict.propensity`): the validation one is the run date - H,
the latest whose labels are all in ``user_activity``; the ``train_snapshots`` before it
are H days apart. One aggregation per snapshot; samples bounded by
``propensity.max_train_rows`` / ``max_validation_rows`` come to the driver, where the
classifier is fitted on the older snapshots and evaluated on the latest (ROC-AUC, PR-AUC,
recall at ``precision_target``, Brier score, reliability table). The artefact goes under
``<model_path>/propensity/`` and one row to ``propensity_models``, with the sha256 that
``score-propensity`` checks before unpickling it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparklift.errors import InputError, InputNotReadyError
from sparklift.jobs import JobContext, log, step, write_records
from sparklift.predict.propensity import (
    DAY,
    check_weighting,
    evaluate,
    fit,
    model_features,
    propensity_learner,
    snapshot_days,
    snapshot_frame,
)
from sparklift.uplift.model import save_artifact

HELP = "train the propensity-to-purchase model on user_activity snapshots into propensity_models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--learner", help="override propensity.learner (gbm, linear, module:Class)")


def run(ctx: JobContext, args: argparse.Namespace) -> dict:
    conf = ctx.config.propensity
    if args.learner:
        conf = conf.model_copy(update={"learner": args.learner})
    learner = propensity_learner(conf, conf.seed)
    check_weighting(conf, learner)  # bad config fails before any work
    valid_day, train_days = snapshot_days(conf, ctx.run_date)
    first = train_days[0] - (conf.history_days - 1) * DAY
    activity = read_activity(ctx, first, ctx.run_date, [*conf.columns, conf.label_column])
    with step(f"training snapshots {', '.join(map(str, train_days))}"):
        train, train_rows = sample(
            [snapshot_frame(activity, s, conf) for s in train_days],
            conf.max_train_rows,
            conf.seed,
        )
    with step(f"validation snapshot {valid_day}"):
        valid, valid_rows = sample(
            [snapshot_frame(activity, valid_day, conf)],
            conf.max_validation_rows,
            conf.seed + 1,
        )
    for name, frame in (("training", train), ("validation", valid)):
        if frame["label"].nunique() < 2:
            raise InputError(
                f"table user_activity: every {name} customer has label {frame['label'].iloc[0]}"
                f" ({conf.label_column} > 0 in the next {conf.horizon_days} days): nothing "
                "to learn or to evaluate"
            )
    with step(f"fitting {conf.learner} on {len(train)} of {train_rows} customer-snapshots"):
        model = fit(train, conf, conf.seed, trained_through=valid_day)
    names = model_features(conf)
    p = model.predict(valid[names].to_numpy(dtype=float), valid_day)
    zones = valid["zone"].to_numpy() if "zone" in valid else None
    result = evaluate(valid["label"].to_numpy(dtype=int), p, conf.precision_target, zones)
    m = result.metrics
    log.info(
        "validation on %s (%d of %d customers, base rate %.3f): ROC-AUC %.4f, PR-AUC %.4f, "
        "recall %.3f at precision %.2f, Brier %.4f",
        valid_day,
        len(valid),
        valid_rows,
        m["base_rate"],
        m["roc_auc"],
        m["pr_auc"],
        m["recall_at_precision"],
        conf.precision_target,
        m["brier"],
    )
    for r in result.reliability.itertuples():
        log.info(
            "reliability bin %d: predicted %.4f, observed %.4f (se %.4f; binomial %.4f)%s",
            r.bin,
            r.mean_predicted,
            r.observed_rate,
            r.se,
            r.se_binomial,
            "" if r.within_2se else "  <- more than 2 se apart",
        )
    meta = {"features": names, "horizon_days": conf.horizon_days}
    artifact = save_artifact(model, "propensity", ctx.config.tables.models, ctx.run_date, meta)
    log.info(
        "model %s saved to %s; base-rate drift (propensity.drift=%s): %+.4f log-odds at %s, "
        "%+.5f per day",
        artifact.model_id,
        artifact.path,
        conf.drift,
        *model.drift[:1],
        model.drift_origin,
        model.drift[1],
    )
    record: dict[str, Any] = {
        "model_id": artifact.model_id,
        "run_date": ctx.run_date,
        "trained_at": dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
        "learner": conf.learner,
        "features": names,
        "horizon_days": conf.horizon_days,
        "train_snapshots": train_days,
        "validation_snapshot": valid_day,
        "trained_through": valid_day,
        "train_rows": len(train),
        "validation_rows": len(valid),
        "metrics": json.dumps(m),
        "reliability": result.reliability.to_json(orient="records"),
        "artifact_path": artifact.path,
        "artifact_sha256": artifact.sha256,
    }
    with step("writing propensity_models"):
        version = write_records(
            ctx.catalog,
            "propensity_models",
            [record],
            replace_where={"model_id": record["model_id"]},
        )
    return {
        "model_id": artifact.model_id,
        "learner": conf.learner,
        "validation_snapshot": str(valid_day),
        "train_rows": len(train),
        "validation_rows": len(valid),
        "metrics": {k: round(v, 6) for k, v in m.items()},
        "calibrated_bins": int(result.reliability["within_2se"].sum()),
        "artifact_path": artifact.path,
        "version": version,
    }


def read_activity(ctx: JobContext, first: dt.date, last: dt.date, columns: list[str]) -> DataFrame:
    """``user_activity`` from ``first`` to ``last``, refused without the columns or rows
    on either end (the snapshots' windows need both)."""
    activity = ctx.catalog.read(
        "user_activity", where=[("date", ">=", first), ("date", "<=", last)]
    )
    missing = [c for c in dict.fromkeys(["user_id", "date", *columns]) if c not in activity.columns]
    if missing:
        raise InputError(
            f"table user_activity has no columns {missing} (propensity.columns and "
            f"label_column); it has {activity.columns}"
        )
    for day in (first, last):
        if activity.where(activity["date"] == day).limit(1).count() == 0:
            raise InputNotReadyError(
                f"table user_activity has no rows on {day}: the propensity snapshots need "
                f"{first}..{last} (history_days, and horizon_days x (train_snapshots + 1))"
            )
    return activity


def sample(frames: list[DataFrame], limit: int, seed: int):
    """The union of ``frames`` as pandas, a uniform sample of at most ``limit`` rows
    (the same for the same rows and ``seed``), and the number of rows it was drawn from."""
    union = frames[0]
    for f in frames[1:]:
        union = union.unionByName(f)
    union = union.persist()
    try:
        total = union.count()
        if total == 0:
            raise InputError("table user_activity: no customer is active in a snapshot window")
        if total > limit:  # the rows of the lowest hashes: uniform, whatever the row order
            union = union.orderBy(F.xxhash64("snapshot", "user_id", F.lit(seed))).limit(limit)
        # bounded (at most limit rows), and in one order, so the fit is the same every run
        frame = union.toPandas().sort_values(["snapshot", "user_id"], ignore_index=True)
        return frame, total
    finally:
        union.unpersist()
