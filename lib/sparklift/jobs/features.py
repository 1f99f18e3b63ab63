"""``sparklift features``: user_activity -> zone_day_features for a date or a range."""

from __future__ import annotations

import argparse
import datetime as dt

from sparklift.errors import InputError
from sparklift.features.zone_day import (
    aggregate_activity,
    check_activity_schema,
    check_aggregates,
    complete_grid,
    date_range,
)
from sparklift.jobs import JobContext, log, step
from sparklift.pipeline.registry import PipelineStep
from sparklift.quality.spec import table_spec

HELP = "compute zone/day features for the run date or a --start/--end range"
STEP = PipelineStep(
    "features", order=10, checks=("user_activity", "zones"), outputs=("zone_day_features",)
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--start", type=dt.date.fromisoformat, help="first date of a backfill")
    parser.add_argument("--end", type=dt.date.fromisoformat, help="last date of a backfill")


def run(ctx: JobContext, args: argparse.Namespace) -> dict:
    if (args.start is None) != (args.end is None):
        raise InputError("--start and --end go together (a backfill range); give both or none")
    start, end = (args.start, args.end) if args.start else (ctx.run_date, ctx.run_date)
    dates = date_range(start, end)
    defs = ctx.config.features.definitions
    catalog = ctx.catalog
    activity = catalog.read("user_activity", where=[("date", ">=", start), ("date", "<=", end)])
    zones = catalog.read("zones")
    check_activity_schema(activity, defs)
    spec = table_spec("user_activity", ctx.config.quality)
    with step(f"aggregating user_activity {start}..{end} ({len(dates)} days)"):
        agg = aggregate_activity(activity, defs, spec).cache()
        check_aggregates(agg, activity, zones, dates, spec)
    with step("writing zone_day_features"):
        out = complete_grid(ctx.spark, agg, zones, dates, defs)
        version = catalog.write(
            "zone_day_features", out, mode="replace", replace_where={"date": dates}
        )
    agg.unpersist()
    rows = catalog.rows_added("zone_day_features", version)
    log.info("zone_day_features version %d: %d rows", version, rows)
    return {
        "table": catalog.path("zone_day_features"),
        "version": version,
        "dates": f"{start}..{end}",
        "rows": rows,
        "features": len(defs),
    }
