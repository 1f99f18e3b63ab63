"""``sparklift analyze``: one experiment's DiD results for the run date into geo_results.

Reads the experiment's row in ``geo_experiments`` and its ``geo_assignments``, then
``user_activity`` for its zones from the pre-period start to min(end, run date), in ONE
Spark aggregation to cell statistics; everything else runs on the driver from them.
Replaces the (experiment, run date) partition of ``geo_results`` in one commit.
"""

from __future__ import annotations

import argparse
import datetime as dt

import pandas as pd

from sparklift.errors import InputError, InputNotReadyError
from sparklift.features.zone_day import date_range
from sparklift.geo.analysis import analysis_window, analyze
from sparklift.geo.cells import experiment_cells
from sparklift.geo.experiment import ExperimentConfig
from sparklift.jobs import JobContext, log, step, write_records
from sparklift.jobs.design import read_experiments
from sparklift.pipeline.registry import PipelineStep
from sparklift.stats import covariance

HELP = "analyse a geo experiment: two-way FE DiD per metric and variant into geo_results"


def running_experiments(ctx: JobContext) -> dict[str, tuple[str, ...]]:
    """The pipeline's analyses of the run date: the experiments of geo_experiments that
    were not rejected and whose post period contains it (-> their ``--experiment``)."""
    if not ctx.catalog.exists("geo_experiments"):
        return {}
    rows = ctx.catalog.read("geo_experiments").select("experiment_id", "status", "start", "end")
    running = sorted(
        r["experiment_id"]
        for r in rows.collect()  # one row per experiment
        if r["status"] != "rejected" and r["start"] <= ctx.run_date <= r["end"]
    )
    return {e: ("--experiment", e) for e in running}


STEP = PipelineStep(
    "analyze",
    order=20,
    depends_on=("features",),
    targets=running_experiments,
    per="running experiment",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", required=True, help="experiment_id in geo_experiments")


def run(ctx: JobContext, args: argparse.Namespace) -> dict:
    catalog, settings = ctx.catalog, ctx.config.analysis
    spec, assignment = load_design(ctx, args.experiment)
    first, last = analysis_window(spec, ctx.run_date)
    if ctx.run_date < spec.start:
        raise InputNotReadyError(
            f"experiment {spec.experiment_id} starts on {spec.start}: no post-period data "
            f"for run date {ctx.run_date} yet"
        )
    metrics = [m.name for m in spec.metrics]
    hetero = any(covariance.parse(c).kind == "hetero" for c in settings.covariances)
    zones = assignment["zone_id"].tolist()
    with step(f"cell statistics of {len(zones)} zones, {first}..{last}"):
        cells = experiment_cells(catalog, spec, zones, first, last, fourth_moments=hetero)
    check_coverage(cells, zones, date_range(first, last), spec)
    results = []
    for metric in metrics:
        with step(f"analysing {metric}"):
            results += analyze(cells, assignment, spec, settings, metric)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    for r in results:
        r.update(run_date=ctx.run_date, computed_at=now, experiment_id=spec.experiment_id)
    for r in results:
        if r["term"] == "att" and r["cov_type"] == settings.covariances[0]:
            log.info(
                "%s/%s: %.4g (se %.3g, p %.3g; wild p %.3g, RI p %s, pre-trend p %s)",
                r["metric"],
                r["variant"],
                r["estimate"],
                r["se"],
                r["p_value"],
                r["wild_p"],
                _fmt(r["ri_p"]),
                _fmt(r["pretrend_p"]),
            )
    with step("writing geo_results"):
        version = write_records(
            catalog,
            "geo_results",
            results,
            replace_where={"experiment_id": spec.experiment_id, "run_date": ctx.run_date},
        )
    return {
        "experiment_id": spec.experiment_id,
        "window": f"{first}..{last}",
        "rows": len(results),
        "version": version,
        "effects": {
            f"{r['metric']}/{r['variant']}": [round(r["estimate"], 6), round(r["p_value"], 4)]
            for r in results
            if r["term"] == "att" and r["cov_type"] == settings.covariances[0]
        },
    }


def load_design(ctx: JobContext, experiment_id: str) -> tuple[ExperimentConfig, pd.DataFrame]:
    """The experiment's validated spec and its assignment (zone_id, variant, group_id)."""
    catalog = ctx.catalog
    if not catalog.exists("geo_experiments"):
        raise InputError(f"unknown experiment {experiment_id!r}: no geo_experiments table yet")
    found = (
        read_experiments(catalog, [("experiment_id", "=", experiment_id)])
        .select("status", "spec", "design_id")
        .collect()
    )
    if not found:
        raise InputError(f"unknown experiment {experiment_id!r}: not in geo_experiments")
    status, spec_json, design_id = found[0]["status"], found[0]["spec"], found[0]["design_id"]
    if status == "rejected":
        raise InputError(f"experiment {experiment_id} was rejected at design; nothing to analyse")
    spec = ExperimentConfig.model_validate_json(spec_json)
    assignment = (
        catalog.read(
            "geo_assignments",
            where=[("experiment_id", "=", experiment_id), ("design_id", "=", design_id)],
        )
        .select("zone_id", "variant", "group_id")
        .toPandas()  # one row per zone of the experiment
    )
    empty = [v for v in spec.variants if v not in set(assignment["variant"])]
    if empty:
        raise InputError(
            f"experiment {experiment_id}: variants {empty} have no zones in geo_assignments"
        )
    unknown = sorted(set(assignment["variant"]) - set(spec.variants))
    if unknown:
        raise InputError(
            f"experiment {experiment_id}: geo_assignments has unknown variants {unknown}"
        )
    return spec, assignment


def check_coverage(cells, zones: list[int], days: list[dt.date], spec: ExperimentConfig) -> None:
    """Every assigned zone has data, and the post period has begun in the data."""
    seen = set(int(z) for z in cells.zone)
    absent = sorted(set(zones) - seen)
    if absent:
        raise InputError(
            f"experiment {spec.experiment_id}: assigned zones {absent[:20]} have no rows in "
            f"user_activity {days[0]}..{days[-1]}; their effects cannot be estimated"
        )
    cell_days = set(pd.to_datetime(pd.Series(cells.day)).dt.date)
    if not any(d >= spec.start for d in cell_days):
        raise InputNotReadyError(
            f"experiment {spec.experiment_id}: no user_activity rows from the start "
            f"{spec.start} on yet"
        )
    gaps = [str(d) for d in days if d not in cell_days]
    if gaps:
        raise InputNotReadyError(
            f"table user_activity: no rows for the experiment's zones on {gaps[:10]}"
        )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"
