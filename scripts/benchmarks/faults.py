"""faults: the default checks of user_activity against the generator's faults, and their
false alarms on clean days.

A clean world of ``--days`` + 1 days after a warm-up (the generator's long-tailed zones,
weekly seasonality, trend, day-level shocks and noise) is checked day by day with the
default configuration: the first ``window_days + season_days`` days build the history (a
full window of weekly changes; ``check --start`` backfills it at once), and every failed
check on the ``--days`` clean days after them is a false alarm (those of the warm-up are
printed too). Then the last day is generated again with each fault of
``generate.faults`` injected (the generator is deterministic in its seed: the days before
are the same rows) and checked against the clean history: every fault must fail at least
one check. Prints each fault's failed checks and severities, and the false alarms per day.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import time
from collections import Counter
from types import SimpleNamespace

from pyspark.sql import functions as F

from benchmarks.measure import PeakRss
from sparklift.config import FAULT_KINDS, load_config
from sparklift.errors import InputError, InputNotReadyError
from sparklift.jobs import JobContext
from sparklift.jobs import check as check_job
from sparklift.jobs import generate as generate_job
from sparklift.session import build_session
from sparklift.tables import Catalog

HELP = "the default checks against injected faults, and false alarms over clean days"
END = dt.date(2026, 10, 31)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=200_000, help="generator users")
    parser.add_argument("--days", type=int, default=60, help="clean days counted")


def failures(ctx: JobContext, table: str) -> list[tuple[str, str]]:
    """Check the run date's partition; the failed checks and their severities."""
    with contextlib.suppress(InputError, InputNotReadyError):  # results are written anyway
        check_job.run(ctx, SimpleNamespace(table=table))
    rows = (
        ctx.catalog.read("quality_results", where=[("table_name", "=", table)])
        .where((F.col("run_date") == F.lit(ctx.run_date)) & (F.col("status") == "fail"))
        .select("check_name", "severity")
        .collect()
    )
    return sorted((r["check_name"], r["severity"]) for r in rows)


def run(args: argparse.Namespace, workdir: str) -> None:
    conf = load_config(None, [f"tables.base_path={workdir}", "spark.driver_memory=8g",
                              "spark.log_level=ERROR", "logging.level=WARNING"])  # fmt: skip
    warmup = conf.quality.window_days + conf.quality.season_days  # a full window of changes
    days = warmup + args.days + 1
    with PeakRss() as rss:
        spark = build_session(conf.spark, conf.tables.backend)
        catalog = Catalog(spark, conf.tables)
        ctx = JobContext(spark, conf, catalog, END)

        def generate(*faults: str) -> None:
            gen = SimpleNamespace(seed=None, users=args.users, zones=None, days=days,
                                  customers=1000, vouchers=None, campaign_rows=1000,
                                  fault=list(faults))  # fmt: skip
            generate_job.run(ctx, gen)

        t0 = time.perf_counter()
        generate()
        rows = catalog.read("user_activity").count()
        print(f"clean world: {rows:,} user_activity rows over {days} days to {END}", flush=True)
        first = END - dt.timedelta(days=days - 1)
        alarms: dict[dt.date, list[tuple[str, str]]] = {}
        for k in range(days - 1):
            day = first + dt.timedelta(days=k)
            failed = failures(JobContext(spark, conf, catalog, day), "user_activity")
            if k >= warmup:
                alarms[day] = failed
            if failed:
                print(f"  {day} {'clean' if k >= warmup else 'warm-up'}: {failed}", flush=True)
        t_clean = time.perf_counter() - t0
        caught = {}
        for kind in FAULT_KINDS:
            generate(f"{kind}@{END}")
            caught[kind] = failures(ctx, "user_activity")
            print(f"  {kind}@{END}: {caught[kind] or 'NOT CAUGHT'}", flush=True)
    false_days = [d for d, f in alarms.items() if f]
    checks = Counter(name for f in alarms.values() for name, _ in f)
    listed = ", ".join(f"{k}: {[n for n, _ in v]}" for k, v in caught.items())
    print(f"\nRESULT faults: {sum(bool(f) for f in caught.values())} of {len(FAULT_KINDS)} "
          f"caught by the default checks ({listed}); "
          f"false alarms on {len(false_days)} of {len(alarms)} clean days {dict(checks)}; "
          f"{rows:,} rows, clean days checked in {t_clean:.0f} s; "
          f"peak RSS {rss.peak / 2**30:.2f} GiB")  # fmt: skip
    spark.stop()
