"""``sparklift report --experiment ID | --campaign ID | --all``: one self-contained HTML page
per experiment and per campaign, and an index of them, under ``tables.report_path``
(default ``<base_path>/reports``): ``index.html``, ``experiments/<id>.html``,
``campaigns/<id>.html``.

Everything a page shows comes from the result tables, read filtered to the experiment or
campaign (a few thousand rows at most), and from two small Spark aggregations over
``zone_day_features`` (the daily metric per arm and the features' balance). Each page is
written to a temporary file and renamed, so a reader never sees half a page.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType

from sparklift.allocation.campaign import load_campaign
from sparklift.errors import InputError, InputNotReadyError
from sparklift.jobs import JobContext, log, step
from sparklift.reports.campaign import CampaignData, campaign_page
from sparklift.reports.experiment import ExperimentData, experiment_page
from sparklift.reports.index import index_page
from sparklift.tables import Catalog

HELP = "write the HTML report of an experiment, a campaign or all of them, and the index"
MAX_BYTES = 2_000_000  # a page above this is logged: it should stay light to open and mail


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--experiment", help="an experiment_id of geo_experiments")
    which.add_argument("--campaign", help="a campaign_id, or its conf/campaigns/<name>.yaml")
    which.add_argument("--all", action="store_true", help="every experiment and campaign")


def run(ctx: JobContext, args: argparse.Namespace) -> dict:
    if args.all:
        experiments, campaigns = _experiment_ids(ctx), _campaign_ids(ctx)
    else:
        experiments = [args.experiment] if args.experiment else []
        campaigns = [_campaign_id(ctx, args.campaign)] if args.campaign else []
    return refresh(ctx, experiments, campaigns)


def refresh(ctx: JobContext, experiments: list[str], campaigns: list[str]) -> dict:
    """Write the pages of ``experiments`` and ``campaigns``, then the index."""
    out = _directory(ctx.config.tables.reports)
    written: dict[str, Path] = {}  # by path under out: an experiment and a campaign may share an id
    for experiment_id in experiments:
        with step(f"report of experiment {experiment_id}"):
            html = experiment_page(experiment_data(ctx, experiment_id))
            name = f"experiments/{_safe(experiment_id)}"
            written[name] = _write(out / f"{name}.html", html)
    for campaign_id in campaigns:
        with step(f"report of campaign {campaign_id}"):
            html = campaign_page(campaign_data(ctx, campaign_id))
            name = f"campaigns/{_safe(campaign_id)}"
            written[name] = _write(out / f"{name}.html", html)
    index = _write(out / "index.html", index_page(*_index_rows(ctx, out), ctx.run_date))
    return {
        "index": str(index),
        "pages": {k: str(v) for k, v in written.items()},
        "bytes": {k: v.stat().st_size for k, v in written.items()},
    }


def _directory(path: str) -> Path:
    """The reports' local directory (a ``file:`` URI as a path; other schemes refused)."""
    if path.startswith("file:"):
        path = re.sub(r"^file:(//)?", "", path)
    elif "://" in path:
        raise InputError(
            f"tables.report_path {path!r}: reports are written to a local "
            "directory; set tables.report_path to one"
        )
    return Path(path)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _write(path: Path, html: str) -> Path:
    """Write atomically: a temporary file beside the page, renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(html, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # gone after the rename; a failed write's leftover
    size = path.stat().st_size
    if size > MAX_BYTES:
        log.warning("report %s is %d bytes, above %d", path, size, MAX_BYTES)
    log.info("wrote %s (%d kB)", path, size // 1000)
    return path


def _experiment_ids(ctx: JobContext) -> list[str]:
    """The experiments designed by the run date."""
    if not ctx.catalog.exists("geo_experiments"):
        return []
    e = ctx.catalog.read("geo_experiments").where(_designed_by(ctx.run_date))
    return sorted(r[0] for r in e.select("experiment_id").collect())


def _designed_by(day: dt.date) -> Column:
    """Designed on or before ``day`` (a design written before the date was recorded is)."""
    return F.col("design_run_date").isNull() | (F.col("design_run_date") <= F.lit(day))


def _campaign_ids(ctx: JobContext) -> list[str]:
    """The campaigns allocated by the run date."""
    if not ctx.catalog.exists("allocation_summary"):
        return []
    s = ctx.catalog.read("allocation_summary").where(F.col("run_date") <= F.lit(ctx.run_date))
    return sorted(r[0] for r in s.select("campaign_id").distinct().collect())


def _campaign_id(ctx: JobContext, given: str) -> str:
    if given.endswith((".yaml", ".yml")) and Path(given).is_file():
        return load_campaign(given, ctx.config.allocate).campaign_id
    return given


def experiment_data(ctx: JobContext, experiment_id: str) -> ExperimentData:
    """The experiment's rows of every table its page shows."""
    catalog = ctx.catalog
    if not catalog.exists("geo_experiments"):
        raise InputNotReadyError("no geo_experiments table yet: run sparklift design first")
    where = [("experiment_id", "=", experiment_id)]
    found = catalog.read("geo_experiments", where=where).toPandas()
    if found.empty:
        raise InputError(f"unknown experiment {experiment_id!r}: not in geo_experiments")
    designed = found["design_run_date"].iloc[0]
    if designed is not None and not pd.isna(designed) and designed > ctx.run_date:
        raise InputError(
            f"experiment {experiment_id!r} was designed on {designed}, after the report's "
            f"date {ctx.run_date}: give a --run-date on or after it"
        )
    found = _as_of(catalog, found, ctx.run_date)
    e = {k: list(v) if isinstance(v, np.ndarray) else v for k, v in found.iloc[0].items()}
    design = [*where, ("design_id", "=", e["design_id"])]
    assignment = catalog.read("geo_assignments", where=design).toPandas()
    checks = catalog.read("geo_design_checks", where=design).toPandas()
    results = _latest(catalog, "geo_results", where, ctx.run_date)
    sequential = (
        catalog.read("geo_sequential", where=[*where, ("run_date", "<=", ctx.run_date)]).toPandas()
        if catalog.exists("geo_sequential")
        else pd.DataFrame()
    )
    daily, balance = _zone_days(ctx, e, assignment)
    forecasts = (  # made once concluded (recomputed on each run: the latest is kept)
        catalog.read("forecasts", where=where)
        .where(F.col("concluded_on") <= F.lit(ctx.run_date))
        .toPandas()
        if catalog.exists("forecasts")
        else pd.DataFrame()
    )
    return ExperimentData(
        e, assignment, checks, results, sequential, daily, balance, ctx.run_date, forecasts
    )


def _as_of(catalog: Catalog, experiments: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    """``geo_experiments`` rows as of ``day``: the table keeps only the current status, so
    one that concluded after ``day`` shows the status its design had then, with its
    conclusion's date: ``accepted_anyway`` where a primary metric of the design failed its
    AA check (only such a design, or an accepted one, is ever analysed), else
    ``accepted``."""
    later = (experiments["status"] == "concluded") & experiments["concluded_on"].map(
        lambda d: d is not None and not pd.isna(d) and d > day
    )
    if not later.any():
        return experiments
    out = experiments.copy()
    designs = list(zip(out.loc[later, "experiment_id"], out.loc[later, "design_id"], strict=True))
    failed = _failed_aa(catalog, set(designs))
    out.loc[later, "reason"] = (
        "as of " + str(day) + "; concluded on " + out.loc[later, "concluded_on"].astype(str)
    )
    out.loc[later, "status"] = ["accepted_anyway" if d in failed else "accepted" for d in designs]
    return out


def _failed_aa(catalog: Catalog, designs: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The (experiment_id, design_id) of ``designs`` with a primary metric whose AA check
    failed (not equivalent) in ``geo_design_checks``."""
    if not catalog.exists("geo_design_checks"):
        return set()
    rows = (
        catalog.read("geo_design_checks")
        .where(F.col("experiment_id").isin(sorted({e for e, _ in designs})))
        .where(F.col("primary") & ~F.col("equivalent"))
        .select("experiment_id", "design_id")
        .distinct()
        .collect()
    )
    return {(r[0], r[1]) for r in rows} & designs


def _latest(catalog: Catalog, table: str, where: list, as_of: dt.date) -> pd.DataFrame:
    """The rows of ``table`` of its latest run date up to ``as_of``, the report's (a
    backfill's page shows what was known then); ``where``: its partition filter."""
    if not catalog.exists(table):
        return pd.DataFrame()
    df = catalog.read(table, where=[*where, ("run_date", "<=", as_of)])
    last = df.agg(F.max("run_date")).first()[0]
    return pd.DataFrame() if last is None else df.where(F.col("run_date") == F.lit(last)).toPandas()


def _zone_days(
    ctx: JobContext, e: dict, assignment: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per date and arm, each metric per active user of the assigned zones, from the
    pre-period's start to the run date; per arm, each feature's pre-period mean and SD over
    zones. Two aggregations of zones x days; empty frames without the features table."""
    catalog = ctx.catalog
    if not catalog.exists("zone_day_features") or assignment.empty:
        return pd.DataFrame(), pd.DataFrame()
    first, last = e["pre_start"], min(e["end"], ctx.run_date) if e.get("end") else ctx.run_date
    zones = ctx.spark.createDataFrame(
        [
            (int(z), str(v))
            for z, v in zip(assignment["zone_id"], assignment["variant"], strict=True)
        ],
        "zone_id int, variant string",
    )
    features = catalog.read(
        "zone_day_features", where=[("date", ">=", first), ("date", "<=", last)]
    )
    rows = features.join(F.broadcast(zones), "zone_id")
    metrics = [m for m in e["metrics"] if m in features.columns]
    if metrics and "active_users" in features.columns:
        per_user = [(F.sum(m) / F.sum("active_users")).alias(m) for m in metrics]
        wide = rows.groupBy("date", "variant").agg(*per_user).toPandas()
        daily = wide.melt(id_vars=["date", "variant"], var_name="metric", value_name="value")
    else:
        daily = pd.DataFrame(columns=["date", "variant", "metric", "value"])
    numeric = [
        f.name
        for f in features.schema.fields
        if isinstance(f.dataType, NumericType) and f.name != "zone_id"
    ]
    pre = rows.where(F.col("date") <= F.lit(e["pre_end"]))
    per_zone = pre.groupBy("zone_id", "variant").agg(*[F.avg(c).alias(c) for c in numeric])
    stats = (
        per_zone.groupBy("variant")
        .agg(
            *[F.avg(c).alias(f"mean__{c}") for c in numeric],
            *[F.stddev(c).alias(f"sd__{c}") for c in numeric],
        )
        .toPandas()
    )
    balance = pd.DataFrame(
        [
            {"feature": c, "variant": r["variant"], "mean": r[f"mean__{c}"], "sd": r[f"sd__{c}"]}
            for r in stats.to_dict("records")
            for c in numeric
        ]
    )
    return daily, balance


def campaign_data(ctx: JobContext, campaign_id: str) -> CampaignData:
    """The campaign's latest published allocation summary, its model and its latest
    measurement, as of the report's run date."""
    catalog = ctx.catalog
    if not catalog.exists("allocation_summary"):
        raise InputNotReadyError("no allocation_summary table yet: run sparklift allocate first")
    summary = _latest(
        catalog, "allocation_summary", [("campaign_id", "=", campaign_id)], ctx.run_date
    )
    if summary.empty:
        first = (
            catalog.read("allocation_summary", where=[("campaign_id", "=", campaign_id)])
            .agg(F.min("run_date"))
            .first()[0]
        )
        if first is None:
            raise InputError(f"unknown campaign {campaign_id!r}: not in allocation_summary")
        raise InputError(
            f"campaign {campaign_id!r} was first allocated on {first}, after the report's "
            f"date {ctx.run_date}: give a --run-date on or after it"
        )
    model = None
    if catalog.exists("uplift_models"):
        model_id = str(summary["model_id"].iloc[0])
        rows = catalog.read("uplift_models", where=[("model_id", "=", model_id)]).toPandas()
        model = rows.iloc[0].to_dict() if not rows.empty else None
    results = _measurement(catalog, campaign_id, ctx.run_date)
    return CampaignData(campaign_id, summary, model, results, ctx.run_date)


def _measurement(catalog: Catalog, campaign_id: str, as_of: dt.date) -> pd.DataFrame:
    """The campaign's ``campaign_results`` rows of one measurement: its latest look
    (``measured_on``) up to ``as_of`` and, of the sends (``run_date``) measured that day,
    the latest. Two sends measured on one day (one's final look, another's interim) would
    otherwise mix, unlabelled, in one page."""
    if not catalog.exists("campaign_results"):
        return pd.DataFrame()
    where = [("campaign_id", "=", campaign_id), ("measured_on", "<=", as_of)]
    df = catalog.read("campaign_results", where=where)
    last = df.agg(F.max(F.struct("measured_on", "run_date"))).first()[0]
    if last is None:
        return pd.DataFrame()
    one = (F.col("measured_on") == F.lit(last["measured_on"])) & (
        F.col("run_date") == F.lit(last["run_date"])
    )
    return df.where(one).toPandas()


def _index_rows(ctx: JobContext, out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per experiment and per campaign whose page exists, with its status, as of
    the run date (a backfill's index shows what was known then)."""
    catalog, day = ctx.catalog, ctx.run_date
    experiments = pd.DataFrame()
    if catalog.exists("geo_experiments"):
        e = (
            catalog.read("geo_experiments")
            .where(_designed_by(day))
            .select(
                "experiment_id", "design_id", "status", "reason", "concluded_on", "start", "end"
            )
        )
        e = _as_of(catalog, e.toPandas(), day)[["experiment_id", "status", "start", "end"]]
        decision = pd.DataFrame(columns=["experiment_id", "decision"])
        if catalog.exists("geo_sequential"):
            seq = catalog.read("geo_sequential").where(
                F.col("primary") & (F.col("run_date") <= day)
            )
            last = seq.groupBy("experiment_id").agg(F.max("run_date").alias("run_date"))
            decision = (
                seq.join(last, ["experiment_id", "run_date"])
                .groupBy("experiment_id")
                .agg(
                    F.array_join(F.sort_array(F.collect_set("variant_decision")), ", ").alias(
                        "decision"
                    )
                )
                .toPandas()
            )
        experiments = e.merge(decision, on="experiment_id", how="left")
        experiments["href"] = "experiments/" + experiments["experiment_id"].map(_safe) + ".html"
        experiments = experiments[[(out / h).is_file() for h in experiments["href"]]]
    campaigns = pd.DataFrame()
    if catalog.exists("allocation_summary"):
        s = catalog.read("allocation_summary").where(F.col("run_date") <= day)
        last = s.groupBy("campaign_id").agg(F.max("run_date").alias("run_date"))
        campaigns = (
            s.join(last, ["campaign_id", "run_date"])
            .groupBy("campaign_id", "run_date")
            .agg(F.sum("spent").alias("spent"), F.sum("objective").alias("objective"))
            .toPandas()
        )
        measured = set()
        if catalog.exists("campaign_results"):
            measured = {
                r[0]
                for r in catalog.read("campaign_results")
                .where(F.col("measured_on") <= day)
                .select("campaign_id")
                .distinct()
                .collect()
            }
        campaigns["measured"] = campaigns["campaign_id"].isin(measured)
        campaigns["href"] = "campaigns/" + campaigns["campaign_id"].map(_safe) + ".html"
        campaigns = campaigns[[(out / h).is_file() for h in campaigns["href"]]]
    return experiments, campaigns
