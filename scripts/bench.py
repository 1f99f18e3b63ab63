"""Benchmarks. ``python scripts/bench.py features [--rows N]``.

features: generates N user_activity rows, then times the features job end to end (read
the Delta table, aggregate, check, write zone_day_features) and reports rows/second, and
times the delta-rs Delta writer against Spark's own Parquet writer on the same cached
frame. The driver's peak RSS (Python + its JVM) is sampled throughout.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import sys
import tempfile
import threading
import time
from types import SimpleNamespace

import psutil

from sparklift.config import load_config
from sparklift.jobs import JobContext
from sparklift.jobs import features as features_job
from sparklift.jobs import generate as generate_job
from sparklift.session import build_session
from sparklift.tables import Catalog

ACTIVE_SHARE = 0.228  # active user-days per user-day in the generator, measured


class PeakRss:
    """Peak resident memory of this process and its children (the local JVM)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.2):
            procs = [me, *me.children(recursive=True)]
            total = 0
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            self.peak = max(self.peak, total)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def bench_features(rows: int, days: int, workdir: str) -> None:
    users = int(rows / (days * ACTIVE_SHARE))
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
        spark = build_session(conf.spark)
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

        frame = ctx.catalog.read("user_activity").cache()
        frame.count()
        out = os.path.join(workdir, "writer_bench")
        delta_t, parquet_t = [], []
        for i in range(3):
            shutil.rmtree(out, ignore_errors=True)
            _, t = timed(
                lambda: frame.write.mode("overwrite").partitionBy("date").parquet(out + "/pq")
            )
            parquet_t.append(t)
            conf_i = conf.tables.model_copy(update={"base_path": f"{out}/d{i}"})
            cat = Catalog(spark, conf_i)
            _, t = timed(lambda: cat.write("user_activity", frame, partition_by=["date"]))  # noqa: B023
            delta_t.append(t)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="bench", required=True)
    f = sub.add_parser("features")
    f.add_argument("--rows", type=int, default=10_000_000)
    f.add_argument("--days", type=int, default=56)
    f.add_argument("--workdir", default=None)
    args = parser.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    workdir = args.workdir or tempfile.mkdtemp(prefix="sparklift-bench-")
    try:
        bench_features(args.rows, args.days, workdir)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
