"""``sparklift generate``: synthetic raw tables with a planted truth, written as Delta.

The truth (treated zones and their true ATT, the voucher effect model) goes to
``<base_path>/generator_truth.json`` next to the tables, and the planted geo effect is
registered as the accepted experiment ``synthetic_geo`` (geo_experiments, geo_assignments)
so that ``sparklift analyze --experiment synthetic_geo`` measures it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json

import pandas as pd
import pyarrow.fs as pafs
from pyspark.sql import DataFrame, SparkSession

from sparklift.config import FAULT_KINDS, FaultConfig, GenerateConfig
from sparklift.errors import ConfigError
from sparklift.jobs import JobContext, log, step
from sparklift.jobs.published_designs import experiment_row, write_design
from sparklift.synthetic import faults, geo, vouchers
from sparklift.tables import resolve_path

HELP = "generate a synthetic data set (user_activity, zones, customers, vouchers, campaigns)"
SCALE_FLAGS = ("seed", "users", "zones", "days", "customers", "vouchers", "campaign_rows")
TRUTH_FILE = "generator_truth.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for flag in SCALE_FLAGS:
        parser.add_argument(f"--{flag.replace('_', '-')}", type=int, help=f"generate.{flag}")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND@DATE",
        help="inject a fault into a date of user_activity (repeatable; KIND: "
        f"{', '.join(FAULT_KINDS)}; added to generate.faults, where a fault's column, share "
        "and factor can be set too)",
    )


def run(ctx: JobContext, args: argparse.Namespace) -> dict:
    updates = {f: getattr(args, f) for f in SCALE_FLAGS if getattr(args, f) is not None}
    conf = ctx.config.generate.model_copy(update=updates)
    conf = type(conf).model_validate(conf.model_dump())
    conf = conf.model_copy(update={"faults": [*conf.faults, *map(_fault, args.fault)]})
    end = conf.end_date or ctx.run_date
    spark, catalog = ctx.spark, ctx.catalog
    world = geo.draw_world(conf, end)
    dates = set(world.days["date"])
    for i, fault in enumerate(conf.faults):
        if fault.date not in dates:
            raise ConfigError(f"generate.faults[{i}]: {fault.kind} on {fault.date}, a date "
                              f"outside the generated {min(dates)}..{max(dates)}")  # fmt: skip
    activity = faults.inject(geo.activity_frame(spark, world, conf), conf.faults, conf.seed)
    outputs = {
        "zones": geo.zones_frame(spark, world),
        # Clustered by date, as a daily upstream load writes it: one file per date (up to
        # tables.target_file_rows) instead of one per task and date.
        "user_activity": activity.repartition(conf.partitions, "date"),
        "vouchers": vouchers.vouchers_frame(spark, conf),
        "customers": _snapshots(spark, conf, end),
        "voucher_campaigns": vouchers.campaigns_frame(spark, conf, end),
    }
    summary: dict = {}
    for name, df in outputs.items():
        with step(f"writing {name}"):
            version = catalog.write(name, df, mode="overwrite")
        rows = catalog.rows_added(name, version)
        log.info("%s: %d rows (version %d)", name, rows, version)
        summary[name] = rows
    with step("computing the planted truth"):
        truth = {
            "seed": conf.seed,
            "config": conf.model_dump(mode="json"),
            "first_date": world.days["date"].iloc[0].isoformat(),
            "last_date": end.isoformat(),
            "geo": geo.geo_truth(spark, world, conf),
            "vouchers": vouchers.voucher_truth(conf),
        }
    truth_path = resolve_path(catalog.conf.base_path, TRUTH_FILE)
    fs, path = pafs.FileSystem.from_uri(truth_path)
    with fs.open_output_stream(path) as f:
        f.write(json.dumps(truth, indent=2).encode())
    summary["truth"] = truth_path
    if world.effect_start is not None:
        with step(f"registering the planted effect as experiment {geo.PLANTED_EXPERIMENT}"):
            spec, assignment = geo.planted_experiment(world, conf, ctx.config.design)
            row = experiment_row(
                spec, "accepted", "planted by the generator", end, len(assignment), {}
            )
            write_design(
                catalog,
                spec.experiment_id,
                assignment,
                pd.DataFrame(),
                row,
                ctx.config.maintain.vacuum_retention_hours,
            )
        summary["planted_experiment"] = spec.experiment_id
    summary["dates"] = f"{truth['first_date']}..{truth['last_date']}"
    if conf.faults:
        summary["faults"] = [f"{f.kind}@{f.date}" for f in conf.faults]
    return summary


def _fault(text: str) -> FaultConfig:
    """``--fault KIND@DATE``: the fault with its defaults."""
    kind, _, day = text.partition("@")
    try:
        return FaultConfig(kind=kind, date=dt.date.fromisoformat(day))  # type: ignore[arg-type]
    except ValueError as e:
        raise ConfigError(
            f"--fault {text}: expected KIND@YYYY-MM-DD with KIND one of {', '.join(FAULT_KINDS)}"
        ) from e


def _snapshots(spark: SparkSession, conf: GenerateConfig, end: dt.date) -> DataFrame:
    """The daily customers snapshots ending on ``end`` (features drift from day to day)."""
    days = [end - dt.timedelta(days=k) for k in range(conf.customer_snapshots)]
    frames = [vouchers.customers_frame(spark, conf, day) for day in sorted(days)]
    return functools.reduce(lambda a, b: a.unionByName(b), frames)
