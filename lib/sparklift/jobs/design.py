"""``sparklift design``: match, randomize and check one geo experiment, write its design.

Reads ``zones``, ``zone_day_features`` (the matching window, ending on the run date),
``user_activity`` (the history window for the AA check and power: pre_days + post length
days ending on the run date, the last post-length days acting as a pseudo post period) and
the designs of other experiments. Writes ``geo_assignments`` and ``geo_design_checks``
under a new ``design_id`` (partitions of their own), then replaces the experiment's row of
``geo_experiments``, which names the design_id: that commit publishes the design, so a
reader that follows it never mixes two design runs (:mod:`sparklift.tables.publish`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparklift.contracts import contract
from sparklift.errors import InputError, InputNotReadyError, SparkliftError, TableConflictError
from sparklift.features.zone_day import date_range
from sparklift.finite import require_finite
from sparklift.geo.cells import experiment_cells
from sparklift.geo.design import design_checks, match_zones, randomize, verdict
from sparklift.geo.experiment import ExperimentConfig, load_experiment
from sparklift.geo.vectors import zone_vectors
from sparklift.jobs import JobContext, log, step, write_records
from sparklift.quality.spec import TableSpec, table_spec
from sparklift.stats.twfe import CellStats
from sparklift.tables import Catalog
from sparklift.tables.publish import named_id, new_id, superseded, utcnow

HELP = "design a geo experiment: match zones, randomize variants, power and AA check"


class DesignRejectedError(SparkliftError):
    """The design was written with status ``rejected`` (its AA check failed)."""

    exit_code = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", required=True, help="conf/experiments/<name>.yaml")
    parser.add_argument(
        "--accept-anyway",
        action="store_true",
        help="write a design whose AA check failed as accepted_anyway instead of rejected",
    )


def run(ctx: JobContext, args: argparse.Namespace) -> dict:
    spec = load_experiment(args.experiment, ctx.config.design)
    catalog = ctx.catalog
    check_plan_fixed(catalog, spec)
    if spec.start <= ctx.run_date:
        log.warning(
            "experiment %s starts on %s, not after the run date %s: the design uses history "
            "up to the run date, which then overlaps the experiment",
            spec.experiment_id,
            spec.start,
            ctx.run_date,
        )
    eligible, left_out = eligible_zones(catalog, spec)
    log.info(
        "%d eligible zones; left out: %s",
        len(eligible),
        ", ".join(f"{k} {v}" for k, v in left_out.items()) or "none",
    )
    need = spec.zones_per_variant * len(spec.variants)
    if len(eligible) < need:
        raise InputError(
            f"experiment {spec.experiment_id}: zones_per_variant x variants = "
            f"{spec.zones_per_variant} x {len(spec.variants)} = {need} zones needed, only "
            f"{len(eligible)} eligible (left out: {left_out})"
        )
    lookback = date_range(ctx.run_date - dt.timedelta(days=spec.lookback_days - 1), ctx.run_date)
    names = spec.features or [f.name for f in ctx.config.features.definitions]
    with step(f"matching {len(eligible)} zones on {len(names)} features x {len(lookback)} days"):
        features = catalog.read(
            "zone_day_features", where=[("date", ">=", lookback[0]), ("date", "<=", lookback[-1])]
        )
        require_finite(features, "zone_day_features", ["date", "zone_id"], names)
        vectors = zone_vectors(features, eligible, names, lookback)
        matching = match_zones(vectors, spec.pca_components, len(spec.variants))
        explained = float(matching.explained_variance_ratio.sum())
        ratio = matching.distance_ratio(spec.seed)
    log.info(
        "PCA: %d components explain %.1f%% of the variance; %d groups of %d; matched/random "
        "within-group distance %.3f",
        len(matching.explained_variance_ratio),
        100 * explained,
        len(matching.groups),
        len(spec.variants),
        ratio,
    )
    assignment = randomize(matching, spec.variants, spec.zones_per_variant, spec.seed)
    check_assignment_fixed(catalog, spec, assignment, ctx.run_date)
    history = date_range(
        ctx.run_date - dt.timedelta(days=spec.pre_days + spec.post_days - 1), ctx.run_date
    )
    pseudo_start = ctx.run_date - dt.timedelta(days=spec.post_days - 1)
    with step(f"AA check and power on {history[0]}..{history[-1]} (pseudo post {pseudo_start})"):
        contract = table_spec("user_activity", ctx.config.quality)
        cells = history_cells(catalog, spec, assignment["zone_id"].tolist(), history, contract)
        checks = design_checks(cells, assignment, spec, pseudo_start)
    status, reason = verdict(checks, spec.alpha)
    if status == "rejected" and args.accept_anyway:
        status = "accepted_anyway"
    experiment = experiment_row(
        spec,
        status,
        reason,
        ctx.run_date,
        len(eligible),
        left_out,
        matching.explained_variance_ratio,
        ratio,
    )
    with step("writing the design"):
        versions = write_design(
            catalog,
            spec.experiment_id,
            assignment,
            checks,
            experiment,
            ctx.config.maintain.vacuum_retention_hours,
        )
    for r in checks.itertuples():
        log.info(
            "%s/%s: AA %.4g (se %.3g, TOST p %.3f, %s); MDE %.2f%% (%s; %.2f%% and %d zones "
            "per variant needed without it, %d with it), power %.2f at %.1f%%; "
            "sequential: power %.2f, expected %.1f days at the target, %.1f with no effect "
            "(of %d), inflation %.3f",
            r.metric,
            r.variant,
            r.aa_estimate,
            r.aa_se,
            r.tost_p,
            "equivalent" if r.equivalent else "NOT equivalent",
            100 * r.mde_relative,
            r.variance_reduction,
            100 * r.mde_relative_unadjusted,
            r.zones_needed_unadjusted,
            r.zones_needed,
            r.power,
            100 * r.target_effect,
            r.sequential_power,
            r.expected_days_target,
            r.expected_days_h0,
            spec.post_days,
            r.inflation,
        )
    summary = {
        "experiment_id": spec.experiment_id,
        "status": status,
        "reason": reason,
        "zones": len(assignment),
        "eligible": len(eligible),
        "explained_variance": round(explained, 4),
        "match_distance_ratio": round(ratio, 4),
        "versions": versions,
    }
    if status == "rejected":
        print(json.dumps(summary, default=str))
        raise DesignRejectedError(
            f"experiment {spec.experiment_id} rejected: {reason} (written with status "
            "'rejected'; --accept-anyway to accept it)"
        )
    return summary


def eligible_zones(catalog: Catalog, spec: ExperimentConfig) -> tuple[list[int], dict[str, int]]:
    """Eligible zone ids, and how many were left out for each reason."""
    zones = catalog.read("zones").select("zone_id", "eligible").toPandas()  # a dimension table
    ineligible = set(zones.loc[~zones["eligible"].astype(bool), "zone_id"])
    unknown = sorted(set(spec.exclude_zones) - set(zones["zone_id"]))
    if unknown:
        raise InputError(f"exclude_zones: zones {unknown} are not in table zones")
    excluded = set(spec.exclude_zones) - ineligible
    busy = busy_zones(catalog, spec) - ineligible - excluded
    keep = sorted(set(zones["zone_id"]) - ineligible - excluded - busy)
    left_out = {
        "ineligible": len(ineligible),
        "excluded": len(excluded),
        "in overlapping experiments": len(busy),
    }
    return [int(z) for z in keep], left_out


def busy_zones(catalog: Catalog, spec: ExperimentConfig) -> set[int]:
    """Zones of other live experiments whose [pre_start, end] overlaps this one's."""
    if not catalog.exists("geo_experiments"):
        return set()
    others = (
        read_experiments(catalog)
        .where(F.col("status") != "rejected")
        .where(F.col("experiment_id") != spec.experiment_id)
        .where((F.col("pre_start") <= F.lit(spec.end)) & (F.col("end") >= F.lit(spec.pre_start)))
    )
    found = others.select("experiment_id", "design_id").collect()  # experiments: a handful
    if not found:
        return set()
    rows = (
        catalog.read("geo_assignments", where=[("experiment_id", "in", [r[0] for r in found])])
        .where(F.col("design_id").isin([r[1] for r in found]))
        .select("zone_id")
    )
    return {int(r["zone_id"]) for r in rows.distinct().collect()}  # at most every zone


def read_experiments(catalog: Catalog, where: list | None = None) -> DataFrame:
    """``geo_experiments`` (partitions ``where``), refused if it predates design ids."""
    df = catalog.read("geo_experiments", where=where or [])
    if "design_id" not in df.columns:
        raise InputError(
            "table geo_experiments has no design_id column (written by a sparklift from before "
            "designs were published by id): move geo_experiments, geo_assignments and "
            "geo_design_checks aside and re-run design"
        )
    return df


def history_cells(
    catalog: Catalog,
    spec: ExperimentConfig,
    zone_ids: list[int],
    days: list[dt.date],
    contract: TableSpec | None = None,
) -> CellStats:
    """Cell statistics of the chosen zones over the history window, every day present
    (``contract``: user_activity's checks, counted in the same pass)."""
    cells = experiment_cells(catalog, spec, zone_ids, days[0], days[-1], contract=contract)
    seen = set(pd.to_datetime(pd.Series(cells.day)).dt.date)
    absent = [d for d in days if d not in seen]
    if absent:
        raise InputNotReadyError(
            f"table user_activity: no rows on {len(absent)} day(s) of the history window "
            f"{days[0]}..{days[-1]} needed for the AA check: {[str(d) for d in absent[:10]]}"
        )
    return cells


def experiment_row(
    spec: ExperimentConfig,
    status: str,
    reason: str | None,
    run_date: dt.date,
    n_eligible: int,
    left_out: dict[str, int],
    explained: np.ndarray | None = None,
    ratio: float | None = None,
) -> dict[str, Any]:
    """The experiment's ``geo_experiments`` row (no matching figures for a design that
    was not matched, such as the generator's planted experiment)."""
    return {
        "experiment_id": spec.experiment_id,
        "status": status,
        "reason": reason,
        "variants": list(spec.variants),
        "zones_per_variant": spec.zones_per_variant,
        "pre_start": spec.pre_start,
        "pre_end": spec.start - dt.timedelta(days=1),
        "start": spec.start,
        "end": spec.end,
        "metrics": [m.name for m in spec.metrics],
        "primary_metrics": [m.name for m in spec.metrics if m.primary],
        "covariates": list(spec.covariates),
        "margin": spec.margin,
        "alpha": spec.alpha,
        "power": spec.power,
        "target_effect": spec.target_effect,
        "seed": spec.seed,
        "convention": spec.convention,
        "n_eligible": n_eligible,
        "left_out": left_out,
        "pca_components": None if explained is None else len(explained),
        "explained_variance": None if explained is None else float(explained.sum()),
        "match_distance_ratio": ratio,
        "design_run_date": run_date,
        "designed_at": dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
        "spec": spec.model_dump_json(),
        "sequential": plan_json(spec),
        "alpha_per_test": spec.alpha_per_test,
        "look_dates": spec.look_dates,
        "concluded_on": None,
    }


def plan_json(spec: ExperimentConfig) -> str:
    """What fixes the sequential boundaries: the plan, alpha and its split, power, looks."""
    return json.dumps(
        {
            "sequential": spec.sequential.model_dump(mode="json") if spec.sequential else None,
            "alpha": spec.alpha,
            "alpha_per_test": spec.alpha_per_test,
            "power": spec.power,
            "variants": spec.variants,
            "primary_metrics": [m.name for m in spec.metrics if m.primary],
            "look_dates": [str(d) for d in spec.look_dates],
        },
        sort_keys=True,
    )


def check_assignment_fixed(
    catalog: Catalog, spec: ExperimentConfig, assignment: pd.DataFrame, run_date: dt.date
) -> None:
    """Refuse a new assignment for an experiment that has started (on or before the run
    date; unless its published design was rejected, so never run) or been analysed: its
    zones have been treated, or it would be fitted over the days run under the old one.
    The same assignment (a re-run with the same inputs and seed) is designed again."""
    where = [("experiment_id", "=", spec.experiment_id)]
    first = None
    if catalog.exists("geo_results"):
        first = catalog.read("geo_results", where=where).agg(F.min("run_date")).first()[0]
    if first is None and spec.start > run_date:
        return
    design_id = named_id(catalog, "geo_experiments", "design_id", where)
    if design_id is None:  # nothing published yet: the first design
        return
    if first is None and named_id(catalog, "geo_experiments", "status", where) == "rejected":
        return  # a rejected design is not run: its zones were never treated
    since = (
        f"has been analysed since {first} (geo_results)"
        if first is not None
        else f"started on {spec.start}, on or before the run date {run_date}"
    )
    old = catalog.read("geo_assignments", where=[*where, ("design_id", "=", design_id)])
    was = {(int(r[0]), r[1]) for r in old.select("zone_id", "variant").collect()}  # its zones
    now = {(int(z), v) for z, v in zip(assignment["zone_id"], assignment["variant"], strict=True)}
    if now != was:
        raise InputError(
            f"experiment {spec.experiment_id} {since}: "
            f"its assignment is fixed, and this design assigns {len(now - was)} zone(s) "
            "otherwise; a new assignment would be fitted over the days run under the old one "
            "(a new design is a new experiment: give it a new experiment_id)"
        )


def check_plan_fixed(catalog: Catalog, spec: ExperimentConfig) -> None:
    """Refuse a new plan for an experiment whose sequential looks have begun: the alpha
    already spent was spent under the old one."""
    where = [("experiment_id", "=", spec.experiment_id)]
    if not (catalog.exists("geo_sequential") and catalog.exists("geo_experiments")):
        return
    looks = (
        catalog.read("geo_sequential", where=where)
        .where(F.col("decision_point"))
        .agg(F.count(F.lit(1)).alias("n"), F.min("run_date").alias("first"))
        .first()
    )
    if not looks["n"]:
        return
    found = read_experiments(catalog, [("experiment_id", "=", spec.experiment_id)])
    old = [r["sequential"] for r in found.select("sequential").collect()]
    if old and old[0] != plan_json(spec):
        raise InputError(
            f"experiment {spec.experiment_id}: its sequential looks began on {looks['first']} "
            f"under the plan {old[0]}; a plan is fixed once looks have begun, refusing "
            f"{plan_json(spec)} (a changed plan is a new experiment: give it a new "
            "experiment_id)"
        )


DESIGN_ROWS = ("geo_assignments", "geo_design_checks")


def write_design(
    catalog: Catalog,
    experiment_id: str,
    assignment: pd.DataFrame,
    checks: pd.DataFrame,
    row: dict[str, Any],
    abandoned_after_hours: float,
) -> dict[str, int]:
    """Write a design under a new design_id and publish it (see the module docstring);
    then remove the design it replaced and designs abandoned longer than
    ``abandoned_after_hours``. Returns each table's version."""
    design_id = new_id(utcnow())
    key = {"experiment_id": experiment_id, "design_id": design_id}
    versions = {}
    try:
        for table, frame in zip(DESIGN_ROWS, (assignment, checks), strict=True):
            versions[table] = write_records(
                catalog,
                table,
                [{**r, **key} for r in frame.to_dict("records")],
            )
        versions["geo_experiments"] = write_records(
            catalog,
            "geo_experiments",
            [{**row, **key}],
            replace_where={"experiment_id": experiment_id},
        )
    except BaseException:
        try:
            drop_designs(catalog, experiment_id, [design_id])  # unpublished: no reader sees it
        except Exception as e:  # never in place of the design's own error
            log.warning("design %s: its unpublished rows stay until abandoned (%s)", design_id, e)
        raise
    present = set()
    for table in DESIGN_ROWS:
        rows = catalog.read(table, where=[("experiment_id", "=", experiment_id)])
        present |= {r[0] for r in rows.select("design_id").distinct().collect()}
    drop = superseded(
        catalog,
        "geo_experiments",
        "design_id",
        [("experiment_id", "=", experiment_id)],
        versions["geo_experiments"],
        present - {design_id},
        abandoned_after_hours,
    )
    if drop:
        try:
            drop_designs(catalog, experiment_id, sorted(drop))
        except TableConflictError as e:
            log.warning("superseded designs %s not removed (%s); the next design will", drop, e)
    return versions


def drop_designs(catalog: Catalog, experiment_id: str, design_ids: list[str]) -> None:
    """Remove the assignments and checks of unpublished or superseded designs."""
    for table in DESIGN_ROWS:
        if catalog.exists(table):
            catalog.write(
                table,
                catalog.spark.createDataFrame([], contract(table).schema),
                mode="replace",
                replace_where={"experiment_id": experiment_id, "design_id": design_ids},
            )
