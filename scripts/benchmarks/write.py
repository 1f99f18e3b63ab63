"""write: the table writers on the same frame, in the same Spark session.

Writers: native Delta (``Catalog`` with ``NativeBackend``), the delta-rs writer (``Catalog``
with ``DeltaRsBackend``) and Spark's own Parquet writer (``df.write.parquet``, same
partitioning), the peer. The frame is ``user_activity`` as the generator makes it (10
columns, clustered by date: ``repartition(partitions, "date")``), cached and counted before
anything is timed, so each timed write reads the same in-memory rows.

Per writer, ``--repeats`` times with the order rotated each repeat (each writer takes each
position once in 3 repeats), after one untimed warm-up write of one date per writer:
- full: a new table of all the frame's dates (Delta: ``mode="overwrite"`` of a new table);
- append: one more date partition to that table (Parquet: ``mode("append")``);
- replace: one existing date swapped for its rows (Delta: ``mode="replace"`` with
  ``replace_where``, as the nightly jobs do; Parquet: dynamic partition overwrite).
It prints the median wall time, rows/s, ratio to Parquet, data files and bytes written and
the peak RSS sampled during each writer's timed writes (driver Python + JVM + Python
workers, the latter also on their own: the delta-rs writer works in them), then PASS/MISS
for the target: native Delta full write within 1.3x of Parquet. Checked: every writer's
table holds the frame's rows plus the appended ones.

``--diagnose`` adds native Delta variants in the same session to find where its time goes:
Delta's Spark writer called directly (``df.write.format("delta")``, no ``Catalog``), without
file statistics (``spark.databricks.delta.stats.collect=false``), and with only
``--stats-cols`` columns indexed (``delta.dataSkippingNumIndexedCols``), and with Delta's
log replay (snapshot state, a Spark job on each new version) in 2 partitions instead of 50
(``spark.databricks.delta.snapshotPartitions``): what an append with an application
transaction (``txnAppId``) and a replace wait for.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import statistics
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from benchmarks.measure import same_work, timed, users_for
from sparklift.config import load_config
from sparklift.session import build_session
from sparklift.synthetic import geo
from sparklift.tables import Catalog
from sparklift.tables.backends import DeltaRsBackend
from sparklift.tables.native import NativeBackend

HELP = "native Delta, delta-rs and Spark's Parquet writer on the same cached frame"
TARGET = 1.3  # native Delta full write / Parquet full write
TABLE = "user_activity"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=56)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--diagnose", action="store_true", help="native Delta variants: stats off/few"
    )
    parser.add_argument("--stats-cols", type=int, default=4, help="indexed columns for --diagnose")


def run(args: argparse.Namespace, workdir: str) -> None:
    bench_write(args.rows, args.days, args.repeats, workdir, args.diagnose, args.stats_cols)


class Sampler:
    """Peak RSS of this process and its descendants (the JVM, the Python workers) over a
    window, and of the Python workers alone (descendants that are not the JVM)."""

    def __init__(self) -> None:
        self.peak = self.peak_workers = self.run_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.2):
            total = workers = 0
            for p in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    rss = p.memory_info().rss
                    total += rss
                    if p.pid != me.pid and p.name() != "java":
                        workers += rss
            self.peak = max(self.peak, total)
            self.peak_workers = max(self.peak_workers, workers)
            self.run_peak = max(self.run_peak, total)

    @contextlib.contextmanager
    def window(self):
        """Reset the window peaks; yield self (read ``peak``/``peak_workers`` after)."""
        self.peak = self.peak_workers = 0
        yield self

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Writer:
    name: str
    full: Callable[[str, DataFrame], None]
    append: Callable[[str, DataFrame], None]
    replace: Callable[[str, DataFrame, dt.date], None]
    times: dict[str, list[float]] = field(default_factory=dict)
    files: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # (files, bytes)
    peak: int = 0
    peak_workers: int = 0


def data_files(root: str) -> dict[str, int]:
    """Parquet data files under ``root`` (not the Delta log, not checksums): path -> bytes."""
    out = {}
    for d, dirs, names in os.walk(root):
        dirs[:] = [x for x in dirs if x != "_delta_log"]
        for n in names:
            if n.endswith(".parquet"):
                p = os.path.join(d, n)
                out[p] = os.path.getsize(p)
    return out


def delta_writer(spark: SparkSession, tables_conf, name: str, backend) -> Writer:
    def catalog(root: str) -> Catalog:
        return Catalog(spark, tables_conf.model_copy(update={"base_path": root}), backend=backend)

    def full(root: str, df: DataFrame) -> None:
        catalog(root).write(TABLE, df, mode="overwrite")

    def append(root: str, df: DataFrame) -> None:
        catalog(root).write(TABLE, df, mode="append")

    def replace(root: str, df: DataFrame, day: dt.date) -> None:
        catalog(root).write(TABLE, df, mode="replace", replace_where={"date": day})

    return Writer(name, full, append, replace)


def direct_delta_writer() -> Writer:
    """Delta's Spark writer without the Catalog (no schema checks, no version look-ups)."""

    def path(root: str) -> str:
        return os.path.join(root, TABLE)

    def full(root: str, df: DataFrame) -> None:
        df.write.format("delta").mode("overwrite").partitionBy("date").save(path(root))

    def append(root: str, df: DataFrame) -> None:
        df.write.format("delta").mode("append").save(path(root))

    def replace(root: str, df: DataFrame, day: dt.date) -> None:
        writer = df.write.format("delta").mode("overwrite")
        writer.option("replaceWhere", f"date IN ('{day}')").save(path(root))

    return Writer("native, direct (no Catalog)", full, append, replace)


def parquet_writer() -> Writer:
    def path(root: str) -> str:
        return os.path.join(root, TABLE)

    return Writer(
        "parquet",
        full=lambda root, df: df.write.mode("overwrite").partitionBy("date").parquet(path(root)),
        append=lambda root, df: df.write.mode("append").partitionBy("date").parquet(path(root)),
        replace=lambda root, df, d: (
            df.write.mode("overwrite")
            .option("partitionOverwriteMode", "dynamic")
            .partitionBy("date")
            .parquet(path(root))
        ),
    )


@contextlib.contextmanager
def spark_conf(spark: SparkSession, settings: dict[str, str]):
    old = {k: spark.conf.get(k, None) for k in settings}
    for k, v in settings.items():
        spark.conf.set(k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                spark.conf.unset(k)
            else:
                spark.conf.set(k, v)


def with_conf(writer: Writer, spark: SparkSession, name: str, settings: dict[str, str]) -> Writer:
    """``writer`` run with session ``settings`` set during each of its writes."""

    def wrap(fn):
        def run(*a):
            with spark_conf(spark, settings):
                fn(*a)

        return run

    return Writer(name, wrap(writer.full), wrap(writer.append), wrap(writer.replace))


def source_frame(spark: SparkSession, conf, rows: int, days: int, end: dt.date) -> DataFrame:
    """user_activity rows as the generator writes them (clustered by date)."""
    users = users_for(rows, days)
    gconf = conf.generate.model_copy(
        update={"users": users, "zones": 1000, "days": days, "end_date": end, "partitions": 8}
    )
    world = geo.draw_world(gconf, end)
    return geo.activity_frame(spark, world, gconf).repartition(gconf.partitions, "date")


def _fmt_bytes(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def bench_write(
    rows: int, days: int, repeats: int, workdir: str, diagnose: bool, stats_cols: int
) -> None:
    end = dt.date(2026, 10, 31)
    conf = load_config(
        None,
        [
            f"tables.base_path={workdir}",
            "spark.driver_memory=8g",
            "spark.log_level=ERROR",
            "tables.backend=native",
        ],
    )
    with Sampler() as sampler:
        spark = build_session(conf.spark, conf.tables.backend)
        print(f"building ~{rows:,} user_activity rows ({days} days), caching ...", flush=True)
        frame = source_frame(spark, conf, rows, days, end).cache()
        n, t_gen = timed(frame.count)
        print(f"  {n:,} rows cached in {t_gen:.0f}s", flush=True)
        # One date to append (a day after the last, the last day's rows) and one to replace.
        replace_day = end - dt.timedelta(days=days // 2)
        last_rows = frame.where(F.col("date") == F.lit(end)).cache()
        day_rows = frame.where(F.col("date") == F.lit(replace_day)).cache()
        n_append, n_replace = last_rows.count(), day_rows.count()
        print(f"  append: {n_append:,} rows a date; replace: {n_replace:,} rows", flush=True)

        writers = [
            delta_writer(spark, conf.tables, "native Delta", NativeBackend(spark)),
            delta_writer(
                spark, conf.tables, "delta-rs", DeltaRsBackend(spark, conf.tables.target_file_rows)
            ),
            parquet_writer(),
        ]
        if diagnose:
            native = writers[0]
            writers += [
                direct_delta_writer(),
                with_conf(
                    native,
                    spark,
                    "native, no stats",
                    {"spark.databricks.delta.stats.collect": "false"},
                ),
                with_conf(
                    native,
                    spark,
                    f"native, stats on {stats_cols} cols",
                    {
                        "spark.databricks.delta.properties.defaults.dataSkippingNumIndexedCols": (
                            str(stats_cols)
                        )
                    },
                ),
                with_conf(
                    native,
                    spark,
                    "native, snapshotPartitions=2",
                    {"spark.databricks.delta.snapshotPartitions": "2"},
                ),
            ]
        out = os.path.join(workdir, "writers")
        roots = {w.name: os.path.join(out, f"w{i}") for i, w in enumerate(writers)}

        # Warm-up (untimed): one date per writer, so no writer pays the JIT alone.
        for w in writers:
            w.full(roots[w.name] + "-warm", day_rows)
            shutil.rmtree(roots[w.name] + "-warm", ignore_errors=True)

        def run(kind: str, w: Writer, root: str, fn: Callable[[], object]) -> float:
            before = data_files(root)
            with sampler.window():
                _, t = timed(fn)
            w.peak = max(w.peak, sampler.peak)
            w.peak_workers = max(w.peak_workers, sampler.peak_workers)
            after = data_files(root)
            new = [p for p in after if p not in before]
            w.times.setdefault(kind, []).append(t)
            w.files.setdefault(kind, []).append((len(new), sum(after[p] for p in new)))
            return t

        for i in range(repeats):
            order = writers[i % len(writers) :] + writers[: i % len(writers)]
            line = []
            for w in order:
                root = roots[w.name] + ("" if i == 0 else f"-r{i}")
                t = run("full", w, root, lambda w=w, root=root: w.full(root, frame))
                if i > 0:
                    shutil.rmtree(root, ignore_errors=True)
                line.append(f"{w.name} {t:.2f}s")
            print(f"  full write, repeat {i + 1}: " + ", ".join(line), flush=True)

        # Append one more date, then replace one date, on each writer's first table.
        for i in range(repeats):
            order = writers[i % len(writers) :] + writers[: i % len(writers)]
            new_day = end + dt.timedelta(days=i + 1)
            appended = last_rows.withColumn("date", F.lit(new_day))
            line = []
            for w in order:
                root = roots[w.name]
                ta = run("append", w, root, lambda w=w, root=root, a=appended: w.append(root, a))
                tr = run(
                    "replace",
                    w,
                    root,
                    lambda w=w, root=root: w.replace(root, day_rows, replace_day),
                )
                line.append(f"{w.name} {ta:.2f}s / {tr:.2f}s")
            print(f"  append / replace, repeat {i + 1}: " + ", ".join(line), flush=True)

        # The written tables hold what was written: the frame, then the appended dates.
        for w in writers:
            path = os.path.join(roots[w.name], TABLE)
            read = spark.read.parquet if w.name == "parquet" else spark.read.format("delta").load
            same_work(f"{w.name} table, rows", read(path).count(), n + repeats * n_append)
        frame.unpersist()
        spark.stop()

    sizes = {"full": n, "append": n_append, "replace": n_replace}
    pq = next(w for w in writers if w.name == "parquet")
    median = {w.name: {k: statistics.median(v) for k, v in w.times.items()} for w in writers}
    print(
        f"\nRESULT write benchmark: {n:,} user_activity rows, 10 columns, {days} date "
        f"partitions; median of {repeats} (order rotated); local[*] on 2 cores, driver 8g"
    )
    for kind in ("full", "append", "replace"):
        label = {
            "full": f"full write ({days} dates)",
            "append": "append of one more date",
            "replace": "replace of one date (replace_where)",
        }[kind]
        print(f"  {label}, {sizes[kind]:,} rows:")
        for w in writers:
            t = median[w.name][kind]
            ratio = t / median["parquet"][kind]
            files, nbytes = w.files[kind][0]
            runs = " / ".join(f"{x:.2f}" for x in w.times[kind])
            print(
                f"    {w.name:28s} {t:6.2f}s  {sizes[kind] / t / 1e6:5.2f}M rows/s  "
                f"x{ratio:.2f} parquet  {files:3d} files  {_fmt_bytes(nbytes):>12s}  "
                f"(runs {runs})"
            )
    print("  peak RSS during each writer's timed writes (all processes / Python workers):")
    for w in writers:
        print(f"    {w.name:28s} {w.peak / 2**30:.2f} GiB / {w.peak_workers / 2**30:.2f} GiB")
    print(f"  peak RSS of the whole run:     {sampler.run_peak / 2**30:.2f} GiB")
    ratio = median["native Delta"]["full"] / median[pq.name]["full"]
    verdict = "PASS" if ratio <= TARGET else "MISS"
    print(f"  native Delta / Parquet, full write: {ratio:.2f}x (target <= {TARGET}x): {verdict}")
