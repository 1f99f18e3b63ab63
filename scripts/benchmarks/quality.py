"""quality: ``sparklift check --table user_activity`` on N rows of the run date's partition
(the day before checked first, as a nightly run finds it), against the limit it is
compared with: one plain aggregation reading every column of the same partition once (a
sum per column). Also the check's metrics alone, its aggregation
of sums and its sketches' (on the first day, which computes the PSI edges, and on later
days, which count bins with the stored edges), and its exact unique-key count alone (as
the check runs it, with bitmaps of the dense user ids, and grouped by the key columns as
before), to show where the time goes; and a ``count()`` (the issue's target: the check
within 1.5x of it). Best of 3 runs each; rows per second and the driver's peak RSS.

Checked: the check counted every row of the partition, as the plain scan did; the user
ids are dense enough for the bitmaps; and with 1% of the rows delivered twice the bitmaps
counted the duplicate keys the grouping did.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
from types import SimpleNamespace

from pyspark.sql import functions as F

from benchmarks.measure import PeakRss, same_work, timed, users_for
from sparklift.config import load_config
from sparklift.jobs import JobContext
from sparklift.jobs import check as check_job
from sparklift.jobs import generate as generate_job
from sparklift.quality.metrics import bitmaps_fit, compute, duplicate_keys, key_stats
from sparklift.quality.spec import psi_edges, table_spec
from sparklift.session import build_session
from sparklift.tables import Catalog

HELP = "the data quality check of a partition against one plain scan of it"
RUN_DATE = dt.date(2026, 10, 31)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the run date")


def best(label: str, fn, n: int) -> float:
    times = []
    for _ in range(3):
        _, t = timed(fn)
        times.append(t)
    t = min(times)
    print(f"  {label:44s} {t:7.2f} s  {n / t / 1e6:6.2f}M rows/s", flush=True)
    return t


def run(args: argparse.Namespace, workdir: str) -> None:
    days = 2
    conf = load_config(None, [f"tables.base_path={workdir}", "spark.driver_memory=8g",
                              "spark.log_level=ERROR", "generate.partitions=8",
                              "logging.level=WARNING"])  # fmt: skip
    with PeakRss() as rss:
        spark = build_session(conf.spark, conf.tables.backend)
        ctx = JobContext(spark, conf, Catalog(spark, conf.tables), RUN_DATE)
        users = users_for(args.rows * days, days)
        gen = SimpleNamespace(seed=None, users=users, zones=1000, days=days, customers=1000,
                              vouchers=None, campaign_rows=1000, fault=[])  # fmt: skip
        generate_job.run(ctx, gen)
        part = ctx.catalog.read("user_activity").where(F.col("date") == F.lit(RUN_DATE))
        n = part.count()
        print(f"user_activity of {RUN_DATE}: {n:,} rows")
        numeric = [c for c in part.columns if c != "date"]
        scan = best("plain scan (a sum of every column)",
                    lambda: part.agg(*[F.sum(c) for c in numeric]).first(), n)  # fmt: skip
        spec = table_spec("user_activity", conf.quality)
        refs = {"zone_id": ctx.catalog.read("zones").select("zone_id")}
        metrics = {}

        def aggregation():
            metrics.update(compute(dataclasses.replace(spec, key=()), part, refs, {}, bins))

        bins = conf.quality.psi_bins
        one = best("the metrics: sums and sketches, first day", aggregation, n)
        same_work("rows counted by the check's aggregation", int(metrics["row_count"]), n)
        edges = {"gmv": psi_edges(metrics, "gmv", bins)}  # the later days' path: bins only

        def daily():
            metrics.update(compute(dataclasses.replace(spec, key=()), part, refs, edges, bins))

        binned = best("the same with stored PSI edges (daily)", daily, n)

        def grouped(frame=part) -> float:
            repeats = frame.groupBy(*spec.key).count().where(F.col("count") > 1)
            return float(repeats.agg(F.sum(F.col("count") - 1)).first()[0] or 0)

        row = part.agg(F.count(F.lit(1)), *key_stats("user_id")).first()
        if not row[1] or not bitmaps_fit([(row[1], row[2], row[3])]):
            raise SystemExit(f"user_id's values {tuple(row)} are not dense: no bitmaps would run")
        stats = (row[0], row[1], row[2], row[3])  # as the check's first aggregation gives them
        group = best("the unique-key count grouped by (date, user_id) (before 2026-12-05)",
                     grouped, n)  # fmt: skip
        key = best("the unique-key count as the check runs it (bitmaps of user_id)",
                   lambda: duplicate_keys(part, ["user_id"], stats), n)  # fmt: skip
        twice = part.unionByName(part.sample(fraction=0.01, seed=1))  # 1% delivered twice
        found = duplicate_keys(twice, ["user_id"])
        same_work("duplicate keys, 1% of the rows twice: bitmaps against grouping",
                  int(found), int(grouped(twice)))  # fmt: skip
        if found == 0:
            raise SystemExit("no duplicate key found in a partition with 1% of its rows twice")
        print(f"  1% of the rows twice: {int(found):,} duplicate keys, as the grouping counts")
        counted = best("count()", part.count, n)
        table = SimpleNamespace(table="user_activity")
        # The day before checked first, as the nightly run finds it: the run date's check
        # then reads its PSI edges from the history, not from a sketch of its own.
        check_job.run(dataclasses.replace(ctx, run_date=RUN_DATE - dt.timedelta(days=1)), table)
        job = best("sparklift check (read history, both, write)",
                   lambda: check_job.run(ctx, table), n)  # fmt: skip
    print(f"\nRESULT quality check of {n:,} rows: job {job / scan:.2f}x a plain scan "
          f"(the metrics {one / scan:.2f}x, {binned / scan:.2f}x with stored PSI edges; "
          f"the unique key {key / scan:.2f}x, grouped {group / scan:.2f}x); "
          f"{job / counted:.1f}x a count(); "
          f"{n / job / 1e6:.2f}M rows/s; peak RSS {rss.peak / 2**30:.2f} GiB")  # fmt: skip
    spark.stop()
