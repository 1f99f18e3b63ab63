"""codegen: the generator's activity rows (users x days, about 14 hashed draws per row in
one wide projection), every column computed and folded into a checksum (a count and a sum
of a hash of all columns), with ``spark.sql.codegen.hugeMethodLimit`` at Spark's default
(65535) and at sparklift's 8000, toggled in one session. HotSpot never JIT-compiles a
method over 8000 bytes, so under the default the stage's fused method runs interpreted;
the limit makes Spark fall back to per-expression code HotSpot compiles. A ``count()`` of
the same rows, which prunes the projection, is the limit it is compared with. Best of 2
each, after a warm-up of each.

Checked: both limits count the rows the count counted and give the same checksum.
"""

from __future__ import annotations

import argparse
import datetime as dt

from pyspark.sql import functions as F

from benchmarks.measure import PeakRss, same_work, timed
from sparklift.config import load_config
from sparklift.session import build_session
from sparklift.synthetic import geo

HELP = "the generator's wide projection with HotSpot-sized whole-stage code and without"
END = dt.date(2026, 8, 31)
LIMITS = ("65535", "8000")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=60_000)
    parser.add_argument("--zones", type=int, default=300)
    parser.add_argument("--days", type=int, default=56)


def run(args: argparse.Namespace, workdir: str) -> None:
    sizes = [f"generate.users={args.users}", f"generate.zones={args.zones}",
             f"generate.days={args.days}"]  # fmt: skip
    conf = load_config(None, [f"tables.base_path={workdir}", "spark.log_level=ERROR", *sizes])
    with PeakRss() as rss:
        spark = build_session(conf.spark, conf.tables.backend)
        rows = geo.activity_frame(spark, geo.draw_world(conf.generate, END), conf.generate)
        n, count_s = min((timed(rows.count) for _ in range(3)), key=lambda r: r[1])
        print(f"{n:,} activity rows of {args.users:,} users x {args.days} days; "
              f"count() {count_s:.2f} s", flush=True)  # fmt: skip
        checksum = rows.agg(F.count("*"), F.sum(F.xxhash64(*rows.columns) % 1_000_003))
        best, sums = {}, {}
        for limit in LIMITS:
            spark.conf.set("spark.sql.codegen.hugeMethodLimit", limit)
            checksum.first()  # warm-up: this limit's code compiled once
            runs = [timed(checksum.first) for _ in range(2)]
            (counted, sums[limit]), best[limit] = runs[0][0], min(t for _, t in runs)
            same_work(f"rows at hugeMethodLimit {limit}", counted, n)
            print(f"  hugeMethodLimit {limit:>5s}: every column {best[limit]:6.2f} s, "
                  f"{n / best[limit] / 1e6:.2f}M rows/s, {best[limit] / count_s:.1f}x the count",
                  flush=True)  # fmt: skip
        if len(set(sums.values())) != 1:
            raise SystemExit(f"the limits computed different rows: checksums {sums}")
    print(f"\nRESULT codegen: the wide projection {best['65535'] / best['8000']:.1f}x faster "
          f"with hugeMethodLimit 8000 ({best['8000']:.2f} s against {best['65535']:.2f} s for "
          f"{n:,} rows); peak RSS {rss.peak / 2**30:.2f} GiB")  # fmt: skip
    spark.stop()
