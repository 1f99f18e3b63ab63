"""``sparklift analyze``: one experiment's DiD results for the run date into geo_results.

Reads the experiment's row in ``geo_experiments`` and its ``geo_assignments``, then
``user_activity`` for its zones from the pre-period start to min(end, run date), in ONE
Spark aggregation to cell statistics; everything else runs on the driver from them.
Replaces the (experiment, run date) partition of ``geo_results`` in one commit.
"""

from __future__ import annotations

import argparse
import datetime as dt
from dataclasses import dataclass

import pandas as pd
from pyspark.sql import functions as F

from sparklift.errors import InputError, InputNotReadyError, TableConflictError
from sparklift.features.zone_day import date_range
from sparklift.geo.adjustment import history_share
from sparklift.geo.analysis import analysis_window, analyze
from sparklift.geo.cells import experiment_cells
from sparklift.geo.experiment import ExperimentConfig
from sparklift.geo.gates import MIX_PREFIX, look_gates
from sparklift.geo.monitoring import (
    TERMINAL,
    History,
    Observation,
    conclusion,
    decide,
    variant_decisions,
)
from sparklift.jobs import JobContext, log, step, update_records, write_records
from sparklift.jobs.published_designs import read_experiments
from sparklift.pipeline.registry import PipelineStep
from sparklift.quality.spec import table_spec
from sparklift.stats import covariance
from sparklift.stats.ssc import convention
from sparklift.stats.twfe import CellStats
from sparklift.tables import Catalog

HELP = "analyse a geo experiment: two-way FE DiD per metric and variant into geo_results"


def running_experiments(ctx: JobContext) -> dict[str, tuple[str, ...]]:
    """The pipeline's analyses of the run date: the experiments of geo_experiments that
    were not rejected, whose post period contains it and that had not concluded before it
    (-> their ``--experiment``)."""
    if not ctx.catalog.exists("geo_experiments"):
        return {}
    rows = ctx.catalog.read("geo_experiments").select(
        "experiment_id", "status", "start", "end", "concluded_on"
    )
    running = sorted(
        r["experiment_id"]
        for r in rows.collect()  # one row per experiment
        if r["status"] != "rejected"
        and r["start"] <= ctx.run_date <= r["end"]
        and (r["status"] != "concluded" or ctx.run_date <= r["concluded_on"])
    )
    return {e: ("--experiment", e) for e in running}


STEP = PipelineStep(
    "analyze",
    order=20,
    depends_on=("features",),
    targets=running_experiments,
    per="running experiment",
    checks=("zone_day_features",),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", required=True, help="experiment_id in geo_experiments")


def run(ctx: JobContext, args: argparse.Namespace) -> dict:
    catalog, settings = ctx.catalog, ctx.config.analysis
    design = load_design(ctx, args.experiment)
    spec, assignment = design.spec, design.assignment
    first, last = analysis_window(spec, ctx.run_date)
    if ctx.run_date < spec.start:
        raise InputNotReadyError(
            f"experiment {spec.experiment_id} starts on {spec.start}: no post-period data "
            f"for run date {ctx.run_date} yet"
        )
    look = ctx.run_date in spec.look_dates
    metrics = [m.name for m in spec.metrics]
    hetero = any(covariance.parse(c).kind == "hetero" for c in settings.covariances)
    zones = assignment["zone_id"].tolist()
    mix = {MIX_PREFIX + k: v for k, v in settings.gates.mix.items()} if look else {}
    with step(f"cell statistics of {len(zones)} zones, {first}..{last}"):
        cells = experiment_cells(
            catalog,
            spec,
            zones,
            first,
            last,
            hetero,
            extra=mix,
            contract=table_spec("user_activity", ctx.config.quality),
        )
    check_coverage(cells, zones, date_range(first, last), spec)
    metrics = [m for m in metrics if m not in constant_metrics(cells, spec, first, last)]
    if spec.variance_reduction != "none":
        window = spec.covariate_days()
        log.info(
            "%s: %.1f%% of the user-days' users have history in %s..%s",
            spec.variance_reduction,
            100 * history_share(cells),
            *window,
        )
    results = []
    for metric in metrics:
        with step(f"analysing {metric}"):
            results += analyze(cells, assignment, spec, settings, metric)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    for r in results:
        r.update(
            run_date=ctx.run_date,
            computed_at=now,
            experiment_id=spec.experiment_id,
            decision_point=look,
        )
    first_cov = [
        r for r in results if r["term"] == "att" and r["cov_type"] == settings.covariances[0]
    ]
    for r in first_cov:
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
    with step("sequential look" if look else "sequential path (not a decision point)"):
        looks, concluded = sequential_looks(ctx, design, cells, first_cov, now)
    with step("writing geo_results and geo_sequential"):
        version = write_records(
            catalog,
            "geo_results",
            results,
            replace_where={"experiment_id": spec.experiment_id, "run_date": ctx.run_date},
        )
        write_records(
            catalog,
            "geo_sequential",
            looks,
            replace_where={"experiment_id": spec.experiment_id, "run_date": ctx.run_date},
        )
    if concluded:
        with step(f"concluding {spec.experiment_id}"):
            conclude(ctx, design, *concluded)
    return {
        "experiment_id": spec.experiment_id,
        "window": f"{first}..{last}",
        "rows": len(results),
        "version": version,
        "effects": {
            f"{r['metric']}/{r['variant']}": [round(r["estimate"], 6), round(r["p_value"], 4)]
            for r in first_cov
        },
        "decision_point": look,
        "decisions": {f"{r['metric']}/{r['variant']}": r["decision"] for r in looks},
        "concluded": concluded[0] if concluded else None,
    }


def sequential_looks(
    ctx: JobContext, design: Design, cells, first_cov: list[dict], now: dt.datetime
) -> tuple[list[dict], tuple[str, dt.date] | None]:
    """The geo_sequential rows of the run date (decisions at a look of the plan, the path
    of z otherwise) and the conclusion (reason, date) when every treatment has stopped."""
    spec, settings = design.spec, ctx.config.analysis
    history = read_history(ctx.catalog, spec.experiment_id, ctx.run_date)
    primary = {m.name: m.primary for m in spec.metrics}
    gates: dict = {}
    if ctx.run_date in spec.look_dates:
        variant_of_zone = dict(
            zip(design.assignment["zone_id"], design.assignment["variant"], strict=True)
        )
        gates = look_gates(
            cells,
            variant_of_zone,
            spec.treatments,
            spec.start,
            settings.gates,
            convention(spec.convention),
            {(r["metric"], r["variant"]): r["pretrend_p"] for r in first_cov},
        )
    rows = []
    for r in first_cov:
        key = (r["metric"], r["variant"])
        obs = Observation(
            *key, primary[r["metric"]], r["estimate"], r["decision_se"], r["decision_df"]
        )
        plan = design.plans.get(key, (None, None))
        row = decide(
            spec, ctx.run_date, obs, *plan, history.get(key, History()), gates.get(key, ())
        )
        rows.append(row)
    decisions = variant_decisions(rows)
    for row in rows:
        row.update(
            experiment_id=spec.experiment_id,
            run_date=ctx.run_date,
            design_id=design.design_id,
            variant_decision=decisions.get(row["variant"]),
            computed_at=now,
        )
        if row["decision_point"]:
            log.info(
                "look %d %s/%s: %s (%s)",
                row["look"],
                row["metric"],
                row["variant"],
                row["decision"],
                row["reason"],
            )
    stopped = {k[1]: h.stopped for k, h in history.items() if h.stopped}
    return rows, conclusion(spec.treatments, decisions, ctx.run_date, stopped)


def read_history(
    catalog: Catalog, experiment_id: str, run_date: dt.date
) -> dict[tuple[str, str], History]:
    """Each comparison's looks before ``run_date`` and whether its variant stopped."""
    if not catalog.exists("geo_sequential"):
        return {}
    rows = (
        catalog.read("geo_sequential", where=[("experiment_id", "=", experiment_id)])
        .where(F.col("run_date") < F.lit(run_date))
        .select(
            "run_date",
            "metric",
            "variant",
            "decision_point",
            "information_fraction",
            "variant_decision",
        )
        .orderBy("run_date")
        .collect()  # days x metrics x variants of one experiment
    )
    stopped = {}
    for r in rows:
        if r["decision_point"] and r["variant_decision"] in TERMINAL:
            stopped.setdefault(r["variant"], (r["variant_decision"], r["run_date"]))
    out = {}
    for r in rows:
        key = (r["metric"], r["variant"])
        h = out.get(key, History())
        if r["decision_point"]:
            h = History((*h.fractions, r["information_fraction"]))
        out[key] = h
    return {k: History(h.fractions, stopped.get(k[1])) for k, h in out.items()}


def conclude(ctx: JobContext, design: Design, reason: str, on: dt.date) -> None:
    """Mark the experiment concluded on ``on`` in its geo_experiments row (the pipeline then
    stops analysing it), unless a new design replaced the one analysed meanwhile. The
    last commit of an analysis: killed before it, the next run concludes (same date)."""
    catalog, experiment_id = ctx.catalog, design.spec.experiment_id
    changed = TableConflictError(
        f"experiment {experiment_id}: its design changed while it was analysed; re-run the analysis"
    )
    found = read_experiments(catalog, [("experiment_id", "=", experiment_id)]).collect()
    if not found or found[0]["design_id"] != design.design_id:
        raise changed
    row = found[0].asDict(recursive=True)
    if row["status"] == "concluded" and row["concluded_on"] <= on:
        return
    row.update(status="concluded", reason=reason, concluded_on=on)
    # Written only where the row still names the design analysed, checked in the commit
    # that writes: a re-design published since the read above is never overwritten.
    if update_records(catalog, "geo_experiments", [row], unchanged=["design_id"]) is None:
        raise changed
    log.info("experiment %s concluded on %s: %s", experiment_id, on, reason)


@dataclass(frozen=True)
class Design:
    """The published design of an experiment: what the analysis needs of it."""

    spec: ExperimentConfig
    assignment: pd.DataFrame  # zone_id, variant, group_id
    design_id: str
    plans: dict[tuple[str, str], tuple[float, list[float]]]  # (max information, fractions)


def load_design(ctx: JobContext, experiment_id: str) -> Design:
    """The experiment's validated spec, its assignment and its sequential plan, refused if
    it was rejected or concluded before the run date."""
    catalog = ctx.catalog
    if not catalog.exists("geo_experiments"):
        raise InputError(f"unknown experiment {experiment_id!r}: no geo_experiments table yet")
    found = (
        read_experiments(catalog, [("experiment_id", "=", experiment_id)])
        .select("status", "reason", "spec", "design_id", "concluded_on")
        .collect()
    )
    if not found:
        raise InputError(f"unknown experiment {experiment_id!r}: not in geo_experiments")
    status, design_id = found[0]["status"], found[0]["design_id"]
    if status == "rejected":
        raise InputError(f"experiment {experiment_id} was rejected at design; nothing to analyse")
    if status == "concluded" and ctx.run_date > found[0]["concluded_on"]:
        raise InputError(
            f"experiment {experiment_id} concluded on {found[0]['concluded_on']} "
            f"({found[0]['reason']}); nothing to analyse after it"
        )
    spec = ExperimentConfig.model_validate_json(found[0]["spec"])
    where = [("experiment_id", "=", experiment_id), ("design_id", "=", design_id)]
    assignment = (
        catalog.read("geo_assignments", where=where)
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
    plans = {}
    if catalog.exists("geo_design_checks"):
        checks = catalog.read("geo_design_checks", where=where).select(
            "metric", "variant", "max_information", "planned_fractions"
        )
        plans = {
            (r["metric"], r["variant"]): (r["max_information"], r["planned_fractions"])
            for r in checks.collect()  # metrics x variants
            if r["max_information"]
        }
    return Design(spec, assignment, design_id, plans)


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


def constant_metrics(
    cells: CellStats, spec: ExperimentConfig, first: dt.date, last: dt.date
) -> set[str]:
    """The secondary metrics constant over the window's rows, left out with a warning; a
    constant primary one is refused, as the design refuses it on its history: it has zero
    (or round-off) standard errors and nothing to test. From the cells' sums and squares,
    so no pass over the rows."""
    n = cells.n.sum()
    out = set()
    for metric in spec.metrics:
        j = cells.index(metric.name)
        total, squares = cells.sums[:, j].sum(), cells.cross[:, j, j].sum()
        if squares - total * total / n > 1e-12 * max(squares, 1e-300):
            continue
        what = (
            f"experiment {spec.experiment_id}: metric {metric.name!r} is constant "
            f"({total / n:g} on every user_activity row of {first}..{last})"
        )
        if metric.primary:
            raise InputError(f"{what}: it cannot be tested; drop it from the primary metrics")
        log.warning("%s: left out of this analysis, as it cannot be tested", what)
        out.add(metric.name)
    return out


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"
