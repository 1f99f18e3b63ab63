"""The published designs of geo experiments: the ``geo_experiments`` row of a design, its
publication with its ``geo_assignments`` and ``geo_design_checks`` rows, and the refusals
of a new design for an experiment that has started or begun its looks.

A design is written under a new ``design_id`` (partitions of its own), then the
experiment's row of ``geo_experiments``, which names the design_id, is replaced: that
commit publishes the design, so a reader that follows it never mixes two design runs
(:mod:`sparklift.tables.publish`).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparklift.contracts import contract
from sparklift.errors import InputError, TableConflictError
from sparklift.geo.experiment import ExperimentConfig
from sparklift.jobs import log, write_records
from sparklift.tables import Catalog
from sparklift.tables.publish import named_id, new_id, superseded, utcnow


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
    """Write a design under a new design_id and publish it;
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
