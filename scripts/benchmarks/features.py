"""features: generates N user_activity rows, then times the features job end to end (read
the Delta table, aggregate, check, write zone_day_features) and reports rows/second, and
times the delta-rs Delta writer against Spark's own Parquet writer on the same cached
frame. The driver's peak RSS (Python + its JVM) is sampled throughout.

Checked: the features job aggregated every generated row (its active_users add up to N)
and each writer wrote N rows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
from types import SimpleNamespace

from pyspark.sql import functions as F

from benchmarks.measure import PeakRss, same_work, timed, users_for
from sparklift.config import load_config
from sparklift.jobs import JobContext
from sparklift.jobs import features as features_job
from sparklift.jobs import generate as generate_job
from sparklift.session import build_session
from sparklift.tables import Catalog

HELP = "the features job and the Delta writer against Spark's Parquet writer"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=56)


def run(args: argparse.Namespace, workdir: str) -> None:
    bench_features(args.rows, args.days, workdir)


def bench_features(rows: int, days: int, workdir: str) -> None:
    users = users_for(rows, days)
    run_date = dt.date(2026, 10, 31)
    conf = load_config(
        None,
        [
            f"tables.base_path={workdir}",
            "spark.driver_memory=8g",
            "spark.log_level=ERROR",
            "generate.partitions=8",
        ],
    )
    with PeakRss() as rss:
        spark = build_session(conf.spark, conf.tables.backend)
        ctx = JobContext(spark, conf, Catalog(spark, conf.tables), run_date)
        print(f"generating ~{rows:,} activity rows ({users:,} users x {days} days) ...", flush=True)
        gen_args = SimpleNamespace(
            seed=None,
            users=users,
            zones=1000,
            days=days,
            customers=1000,
            vouchers=None,
            campaign_rows=1000,
            fault=[],
        )
        summary, t_gen = timed(lambda: generate_job.run(ctx, gen_args))
        n = summary["user_activity"]
        print(f"  generated {n:,} rows in {t_gen:.0f}s")
        start = run_date - dt.timedelta(days=days - 1)
        args = SimpleNamespace(start=start, end=run_date)
        runs = []
        for i in range(3):
            _, t = timed(lambda: features_job.run(ctx, args))
            runs.append(t)
            print(f"  features run {i + 1}: {t:.2f}s = {n / t / 1e6:.2f}M rows/s", flush=True)
        best = min(runs)
        aggregated = ctx.catalog.read("zone_day_features").agg(F.sum("active_users")).first()[0]
        same_work("features job, activity rows aggregated", int(aggregated), n)

        frame = ctx.catalog.read("user_activity").cache()
        same_work("writer benchmark, cached rows", frame.count(), n)
        out = os.path.join(workdir, "writer_bench")
        delta_t, parquet_t = [], []
        for i in range(3):
            shutil.rmtree(out, ignore_errors=True)
            _, t = timed(
                lambda: frame.write.mode("overwrite").partitionBy("date").parquet(out + "/pq")
            )
            parquet_t.append(t)
            same_work("spark parquet write, rows", spark.read.parquet(out + "/pq").count(), n)
            conf_i = conf.tables.model_copy(update={"base_path": f"{out}/d{i}"})
            cat = Catalog(spark, conf_i)
            version, t = timed(lambda: cat.write("user_activity", frame))  # noqa: B023
            delta_t.append(t)
            same_work("delta write, rows", cat.rows_added("user_activity", version), n)
            pq_s, dl_s = parquet_t[-1], delta_t[-1]
            print(
                f"  writer run {i + 1}: spark parquet {pq_s:.2f}s, delta-rs {dl_s:.2f}s", flush=True
            )
        frame.unpersist()
        spark.stop()
    ratio = min(delta_t) / min(parquet_t)
    print("\nRESULT features benchmark")
    print(f"  activity rows:             {n:,}")
    print(
        f"  features job (best of 3):  {best:.2f}s  -> {n / best / 1e6:.2f}M rows/s (target >= 2M)"
    )
    pq_best = min(parquet_t)
    print(f"  spark parquet write:       {pq_best:.2f}s  ({n / pq_best / 1e6:.2f}M rows/s)")
    print(
        f"  delta-rs delta write:      {min(delta_t):.2f}s  ({n / min(delta_t) / 1e6:.2f}M rows/s)"
    )
    print(f"  delta-rs / parquet ratio:  {ratio:.2f}x (target <= 1.3x)")
    print(f"  driver peak RSS (py+JVM):  {rss.peak / 2**30:.2f} GiB")
