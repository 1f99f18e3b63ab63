"""``sparklift train-uplift``: a multi-voucher, two-response uplift model from the
randomized history in ``voucher_campaigns``: the rows whose outcomes were final on the run
date (sent ``measure.window_days`` or more before it), so that a backfill learns only from
its past (and ``score`` of a date uses a model of it).

One Spark aggregation checks the input and the randomization
(:mod:`sparklift.uplift.checks`); then a sample bounded by ``uplift.max_train_rows``,
stratified by arm and drawn by a hash of the key (a small arm keeps about
``uplift.min_arm_rows``), comes to the driver in key order, so the same history gives the
same model on any cluster; there the learner is fitted and evaluated on a held-out split.
The artefact goes under ``tables.model_path`` (default ``<base_path>/models``) and one row
per model to ``uplift_models`` (partitioned by model_id), with ``artifact_sha256``, the
sha256 of the artefact's ``model.pkl``: the hash ``sparklift score`` checks before
unpickling it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType

from sparklift.config import UpliftConfig
from sparklift.contracts.inputs import VOUCHER_CAMPAIGNS
from sparklift.contracts.vouchers import UPLIFT_MODELS
from sparklift.errors import ConfigError, InputError
from sparklift.jobs import JobContext, log, step, write_records
from sparklift.quality.spec import table_spec
from sparklift.synthetic.rand import uniform
from sparklift.uplift import checks, model
from sparklift.uplift.registry import make_learner
from sparklift.uplift.training import train

HELP = "train an uplift model (incremental objective and cost per voucher) on voucher_campaigns"
HISTORY = "voucher_campaigns"
NOT_FEATURES = VOUCHER_CAMPAIGNS.columns  # every other numeric column is a feature
KEY = VOUCHER_CAMPAIGNS.key
HELD = "__held_out"  # the sample's hold-out flag (not a history column)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--learner", help="override uplift.learner (e.g. t_gbm, dr_gbm, dr_gbm+t_gbm)"
    )
    parser.add_argument(
        "--override-checks",
        action="store_true",
        help="train even if the randomization checks fail (the failures are logged)",
    )


def run(ctx: JobContext, args: argparse.Namespace) -> dict:
    conf = ctx.config.uplift
    learner = args.learner or conf.learner
    history = ctx.catalog.read(HISTORY)
    if conf.campaigns:
        history = history.filter(F.col("campaign_id").isin(conf.campaigns))
    history, later = _known_by(history, ctx.run_date, ctx.config.measure.window_days)
    if conf.features is not None:  # listed: each must be a numeric column of the history
        if not conf.features:
            raise ConfigError(
                "uplift.features is an empty list: list the features, or leave it null for "
                f"every numeric column of {HISTORY} that table customers also has"
            )
        checks.check_columns(history, HISTORY, conf.features)
    features = conf.features or [
        f.name
        for f in history.schema.fields
        if f.name not in NOT_FEATURES and isinstance(f.dataType, NumericType)
    ]
    features = _scorable(ctx, features, explicit=conf.features is not None)
    if not features:
        raise InputError(f"table {HISTORY} has no numeric feature columns")
    checks.check_columns(history, HISTORY, features)
    known = {r[0] for r in ctx.catalog.read("vouchers").select("voucher_id").collect()}
    make = lambda: make_learner(learner, conf)  # noqa: E731
    make()  # a bad learner name fails before any Spark work
    _check_models_table(ctx)
    with step(f"checking {HISTORY}: input and randomization"):
        spec = table_spec(HISTORY, ctx.config.quality)
        aggregates = checks.arm_aggregates(history, HISTORY, features, spec)
        if not aggregates:
            raise InputError(
                f"table {HISTORY} has no rows whose outcomes were known on {ctx.run_date} "
                f"(campaigns {conf.campaigns or 'all'}; left out as too recent: {later})"
            )
        if conf.features is None:  # chosen here: drop what cannot inform, and say so
            aggregates, features = _drop_uninformative(aggregates, features)
        report = checks.check_history(
            aggregates,
            HISTORY,
            features,
            known,
            min_arm_rows=conf.min_arm_rows,
            control_share=conf.control_share,
            arm_shares=conf.arm_shares,
            srm_alpha=conf.srm_alpha,
            max_smd=conf.max_smd,
        )
    _randomization_verdict(report, conf.override_checks or args.override_checks)
    vouchers = sorted(a for a in report.arms if a != checks.CONTROL)
    total = sum(s.rows for s in report.arms.values())
    fraction = min(1.0, conf.max_train_rows / total)
    log.info(
        "training on the driver over a sample of %s of %d rows (uplift.max_train_rows=%d), "
        "stratified by arm: fraction %.4g of each of %d arms",
        "all" if fraction == 1 else f"~{math.floor(total * fraction)}",
        total,
        conf.max_train_rows,
        fraction,
        len(report.arms),
    )
    # A small arm keeps about min_arm_rows rows (the history's check asked for them): at
    # the common fraction a new voucher's 1,000 rows of 20M would train on 70.
    fractions = {
        a: max(fraction, min(1.0, conf.min_arm_rows / s.rows)) for a, s in report.arms.items()
    }
    raised = {a: round(f, 4) for a, f in fractions.items() if f > fraction}
    if raised:
        log.info("arms sampled at larger fractions %s, to keep about uplift.min_arm_rows=%d "
                 "rows each", raised, conf.min_arm_rows)  # fmt: skip
    with step("collecting the training sample"):
        sample = history.select(
            *KEY, "treatment", *features, "objective", "cost", held_out(conf).alias(HELD)
        )
        if fraction < 1:  # drawn by the key's hash: the same rows however the table is split
            share = F.coalesce(*[F.when(F.col("treatment") == a, f) for a, f in fractions.items()])
            sample = sample.where(uniform(conf.seed, "train-uplift.sample", *KEY) < share)
        # In key order: the holdout draw and the DR learner's folds then depend on the rows,
        # not on the order the backend's reader returns them in.
        frame = sample.toPandas().sort_values(list(KEY), ignore_index=True)
        customers = frame.pop("customer_id").to_numpy()  # the DR folds keep a customer whole
        campaigns = frame.pop("campaign_id").to_numpy()  # the DR learner: their arm shares
    lost = sorted(set(report.arms) - set(frame["treatment"].unique()))
    if lost:
        raise InputError(
            f"table {HISTORY}: the training sample has no rows of arms {lost} (sample "
            f"fractions {fractions}); raise uplift.min_arm_rows or uplift.max_train_rows"
        )
    with step(f"training {learner} on {len(frame)} rows, {len(vouchers)} vouchers"):
        fitted, metrics, rows = train(
            frame.drop(columns=HELD),
            features,
            vouchers,
            make,
            learner,
            frame[HELD].to_numpy(dtype=bool),
            conf.policy_fractions,
            customers,
            campaigns,
        )
    for v, m in metrics.items():
        log.info(
            "%s: held-out qini objective %.4g, cost %.4g; average effect objective %.4g, cost %.4g",
            v,
            m["objective"]["qini"],
            m["cost"]["qini"],
            m["objective"]["average_effect"],
            m["cost"]["average_effect"],
        )
    model_id, path, sha256, _ = model.save(fitted, ctx.config.tables.models, ctx.run_date)
    log.info("model %s saved to %s", model_id, path)
    record: dict[str, Any] = {
        "model_id": model_id,
        "run_date": ctx.run_date,
        "trained_at": dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
        "learner": learner,
        "vouchers": vouchers,
        "features": list(features),
        "train_rows": rows["train"],
        "holdout_rows": rows["holdout"],
        "metrics": json.dumps(
            {"randomization": report.as_dict(), "sample_fraction": fractions, "vouchers": metrics}
        ),
        "artifact_path": path,
        "artifact_sha256": sha256,
    }
    with step("writing uplift_models"):
        version = write_records(
            ctx.catalog,
            "uplift_models",
            [record],
            replace_where={"model_id": model_id},
        )
    return {
        "model_id": model_id,
        "learner": learner,
        "vouchers": vouchers,
        "features": list(features),
        "train_rows": rows["train"],
        "holdout_rows": rows["holdout"],
        "train_rows_per_arm": rows["train_per_arm"],
        "campaigns_left_out": later,  # outcomes not final on the run date
        "warnings": report.warnings,  # also in uplift_models.metrics' randomization
        "qini_objective": {v: round(m["objective"]["qini"], 6) for v, m in metrics.items()},
        "artifact_path": path,
        "version": version,
    }


def _drop_uninformative(
    aggregates: list[dict[str, Any]], features: list[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The aggregates and features without the automatically chosen features that are
    constant or have fewer than 2 values (a warning names them); listed ones stay errors."""
    dropped = checks.uninformative(aggregates, features)
    if not dropped:
        return aggregates, features
    kept = [c for c in features if c not in dropped]
    described = ", ".join(
        f"{c} ({'constant ' + format(m, 'g') if n >= 2 else f'{n} non-null values'})"
        for c, (n, m) in dropped.items()
    )
    if not kept:
        raise InputError(
            f"table {HISTORY}: no numeric feature column can inform a model: {described}"
        )
    log.warning(
        "table %s: dropping feature columns that cannot inform a model: %s (uplift.features "
        "is null, so the features are every numeric column; list them to choose)",
        HISTORY,
        described,
    )
    return checks.keep_features(aggregates, features, kept), kept


def _scorable(ctx: JobContext, features: list[str], explicit: bool) -> list[str]:
    """The features that ``score`` can read from table customers, when it exists: a
    column of the history alone (a campaign's discount, say) would give a model that no
    customer can be scored with. Listed ones (``uplift.features``) must all be there;
    chosen ones that are not are left out, with a warning."""
    if not ctx.catalog.exists("customers"):
        return features
    columns = set(ctx.catalog.schema("customers").fieldNames())
    absent = [c for c in features if c not in columns]
    if absent and explicit:
        raise InputError(
            f"uplift.features {absent} are columns of {HISTORY} but not of table customers, "
            "which score reads: a model trained on them could score no one; list features "
            "both tables have"
        )
    if absent and len(absent) == len(features):
        raise InputError(
            f"none of the numeric columns of {HISTORY} ({absent}) is a column of table "
            f"customers, which score reads ({sorted(columns)}): no feature to train on"
        )
    if absent:
        log.warning("features %s of %s are left out: table customers, which score reads, "
                    "has no such columns", absent, HISTORY)  # fmt: skip
    return [c for c in features if c in columns]


def _known_by(
    history: DataFrame, run_date: dt.date, window_days: int
) -> tuple[DataFrame, list[str]]:
    """The history's rows whose outcomes were final on ``run_date`` (sent ``window_days``
    or more before it: what a run of that date could know, so a backfill never learns from
    its future), and the campaigns left out; rows without a send date are refused."""
    if "sent_date" not in history.columns:
        raise InputError(f"table {HISTORY} has no column sent_date")
    last = run_date - dt.timedelta(days=window_days)
    sent = F.col("sent_date")
    unknown = sent.isNull() | (sent > F.lit(last))  # Delta's file statistics skip the rest
    rows = history.where(unknown).select("campaign_id", sent.isNull().alias("undated"))
    left_out = rows.distinct().collect()
    undated = sorted({r["campaign_id"] for r in left_out if r["undated"]})
    if undated:
        raise InputError(
            f"table {HISTORY}: campaigns {undated} have rows without sent_date, so when "
            "their outcomes were known cannot be told: fill it in"
        )
    later = sorted({r["campaign_id"] for r in left_out})
    if later:
        log.warning(
            "%s: campaigns %s were sent after %s, so their outcomes (final "
            "measure.window_days=%d after the send) were not known on %s: a model of that "
            "date does not learn from them",
            HISTORY, later, last, window_days, run_date,
        )  # fmt: skip
    return history.where(~unknown), later


def _check_models_table(ctx: JobContext) -> None:
    """Refuse, before any training, an ``uplift_models`` table without ``artifact_sha256``."""
    if not ctx.catalog.exists("uplift_models"):
        return
    columns = ctx.catalog.schema("uplift_models").fieldNames()
    if "artifact_sha256" not in columns:
        raise InputError(
            "table uplift_models has no artifact_sha256 column (written by a sparklift from "
            "before model artefacts were verified; sparklift score refuses its models): move "
            f"the table aside, then train again to create it with columns {UPLIFT_MODELS.columns}"
        )


def held_out(conf: UpliftConfig) -> Column:
    """Whether a history row's customer is held out for the evaluation metrics: a hash of
    the customer, so all of its rows fall on one side whatever else the sample holds."""
    return uniform(conf.seed, "train-uplift.holdout", "customer_id") < conf.holdout_share


def _randomization_verdict(report: checks.HistoryReport, override: bool) -> None:
    for line in report.warnings:
        log.warning("%s: %s", HISTORY, line)
    for line in report.problems:
        log.warning("randomization check failed: %s", line)
    if report.problems and not override:
        hints = {  # what a user can fix, beside overriding the check
            "sample ratio mismatch: arm shares": "if the history was randomized at other "
            "shares by design, configure them (uplift.control_share, or uplift.arm_shares "
            "per arm)",
            "covariate imbalance": "a column the voucher itself moves (an outcome, or "
            "anything recorded after the send) is no feature: list the features known "
            "before the send in uplift.features",
        }
        found = [
            h for start, h in hints.items() if any(p.startswith(start) for p in report.problems)
        ]
        raise checks.RandomizationError(
            f"table {HISTORY} fails the randomization checks: "
            + "; ".join(report.problems + found)
            + " (set uplift.override_checks=true or pass --override-checks to train anyway)"
        )
    log.info(
        "randomization: arms %s, sample-ratio p %.3g, largest |SMD| %s",
        {a: s.rows for a, s in report.arms.items()},
        report.srm_p,
        {a: round(v, 3) for a, v in report.as_dict()["max_abs_smd"].items()},
    )
