"""``sparklift design``: match, randomize and check one geo experiment, write its design.

Reads ``zones``, ``zone_day_features`` (the matching window, ending on the run date),
``user_activity`` (the history window for the AA check and power: pre_days + post length
days ending on the run date, the last post-length days acting as a pseudo post period) and
the designs of other experiments. Writes ``geo_assignments`` and ``geo_design_checks``
under a new ``design_id`` (partitions of their own), then replaces the experiment's row of
``geo_experiments``, which names the design_id: that commit publishes the design
(:mod:`sparklift.jobs.published_designs`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json

import pandas as pd
from pyspark.sql import functions as F

from sparklift.errors import InputError, InputNotReadyError, SparkliftError
from sparklift.features.zone_day import date_range
from sparklift.finite import require_finite
from sparklift.geo.cells import experiment_cells
from sparklift.geo.design import design_checks, match_zones, randomize, verdict
from sparklift.geo.experiment import ExperimentConfig, load_experiment
from sparklift.geo.vectors import zone_vectors
from sparklift.jobs import JobContext, log, step
from sparklift.jobs.published_designs import (
    check_assignment_fixed,
    check_plan_fixed,
    experiment_row,
    read_experiments,
    write_design,
)
from sparklift.quality.spec import TableSpec, table_spec
from sparklift.stats.twfe import CellStats
from sparklift.tables import Catalog

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
