"""``sparklift score``: every customer of the run date's ``customers`` snapshot x every
active voucher, scored with an uplift model into ``uplift_scores`` (the run date's
partition replaced in one commit).

The model is the one given (``--model-id`` or ``score.model_id``) or the latest in
``uplift_models`` trained for the run date or before it (a backfill never scores with a
model of its future: :mod:`sparklift.jobs.model_choice`). Its ``model.pkl`` is unpickled
only after its sha256 has matched the row's ``artifact_sha256``, the hash in its id and its
meta.json (see :func:`sparklift.uplift.model.verify`); the unpickled model's own features
and vouchers must equal meta.json's and the row's, and are the ones used. It must know the
snapshot's features and every active voucher. An artefact saved under other scikit-learn or
numpy versions is refused, or loaded with a warning (``score.on_version_mismatch``).
Customers with missing features are scored if the learner handles them, otherwise
counted, reported and skipped.
"""

from __future__ import annotations

import argparse
from typing import Any

from pyspark.sql import functions as F

from sparklift.errors import InputError, InputNotReadyError
from sparklift.finite import require_finite
from sparklift.jobs import JobContext, log, model_choice, step
from sparklift.pipeline.registry import PipelineStep
from sparklift.uplift import model as artefact
from sparklift.uplift.scoring import any_missing, score

HELP = "score every customer for every active voucher with an uplift model into uplift_scores"
STEP = PipelineStep("score", order=30, checks=("customers",), outputs=("uplift_scores",))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-id",
        help="model_id in uplift_models (default: score.model_id, else the latest trained "
        "for the run date or before)",
    )


def run(ctx: JobContext, args: argparse.Namespace) -> dict:
    catalog, spark = ctx.catalog, ctx.spark
    row = _model_row(ctx, args.model_id or ctx.config.score.model_id)
    model_id, sha256 = row["model_id"], row["artifact_sha256"]
    meta, blob = artefact.verify(row["artifact_path"], model_id, sha256)  # nothing unpickled
    on_mismatch = ctx.config.score.on_version_mismatch
    artefact.check_versions(meta, row["artifact_path"], model_id, on_mismatch)
    fitted = artefact.unpickle(meta, blob, model_id)
    artefact.check_agrees(fitted, row["features"], row["vouchers"], "its uplift_models row")
    customers = catalog.read("customers", where=[("snapshot_date", "=", ctx.run_date)])
    if customers.limit(1).count() == 0:
        raise InputNotReadyError(f"table customers has no snapshot_date={ctx.run_date} yet")
    for col in ("customer_id", "budget_group"):
        if col not in customers.columns:
            raise InputError(f"table customers has no column {col}")
    active = sorted(
        r[0]
        for r in catalog.read("vouchers").filter(F.col("active")).select("voucher_id").collect()
    )
    if not active:
        raise InputError("table vouchers has no active voucher; nothing to score")
    artefact.check_compatible(fitted, customers.columns, active)
    features = fitted.features
    keys = ["snapshot_date", "customer_id"]
    total, nulls = require_finite(customers, "customers", keys, features, nulls=features)
    empty = [c for c in features if total and nulls[c] == total]
    if empty:  # an upstream column lost: every customer would be scored without it
        raise InputError(
            f"table customers of {ctx.run_date}: feature(s) {empty} of model {model_id} are "
            f"null in all {total} rows; expected values (fix the upstream column, or "
            "retrain without it)"
        )
    missing_counts = {c: n for c, n in nulls.items() if n}
    if missing_counts:
        log.info("customers with a missing feature (feature: rows of %d): %s", total,
                 missing_counts)  # fmt: skip
    skipped = 0
    if not fitted.handles_missing:
        missing = any_missing(features)
        skipped = customers.filter(missing).count()
        if skipped == total and total:
            raise InputError(
                f"table customers of {ctx.run_date}: every one of its {total} customers has a "
                f"missing feature ({missing_counts}) and learner {fitted.learner} cannot "
                "score them; expected values, or a learner that handles missing ones"
            )
        if skipped:
            log.warning(
                "%d customers have missing features and learner %s cannot score them; skipped",
                skipped,
                fitted.learner,
            )
        customers = customers.filter(~missing)
    broadcast = spark.sparkContext.broadcast(blob)
    scores = score(customers, broadcast, sha256, fitted, active, ctx.run_date)
    with step(f"scoring customers of {ctx.run_date} for {len(active)} vouchers with {model_id}"):
        version = catalog.write(
            "uplift_scores", scores, mode="replace", replace_where={"run_date": ctx.run_date}
        )
    broadcast.unpersist()
    rows = catalog.rows_added("uplift_scores", version)
    log.info("uplift_scores version %d: %d rows (%d customers)", version, rows, rows // len(active))
    return {
        "model_id": model_id,
        "vouchers": active,
        "customers_scored": rows // len(active),
        "customers_skipped": skipped,
        "features_missing": missing_counts,
        "rows": rows,
        "version": version,
    }


ROW = ("model_id", "artifact_path", "artifact_sha256", "features", "vouchers")


def _model_row(ctx: JobContext, model_id: str | None) -> dict[str, Any]:
    """The ``uplift_models`` row (ROW's columns) of the given model, else of the latest
    as of the run date; refused without ``artifact_sha256``."""
    tables = ctx.catalog
    if (
        tables.exists("uplift_models")
        and "artifact_sha256" not in tables.schema("uplift_models").fieldNames()
    ):
        raise InputError(
            "table uplift_models has no artifact_sha256 column (written by a sparklift "
            "from before model artefacts were verified), so no model in it can be "
            "checked before unpickling: move the table aside and retrain with "
            "sparklift train-uplift"
        )
    row = model_choice.model_row(ctx, "uplift_models", model_id, ROW)
    if not row["artifact_sha256"]:
        raise InputError(
            f"model {row['model_id']} has no artifact_sha256 in uplift_models, so its "
            f"artefact {row['artifact_path']} cannot be verified: retrain it"
        )
    return row
