"""score: trains the default learner (dr_gbm) on a generated history with 5 vouchers and 30
features (the generator's 7 and 23 noise columns), then for each size N writes a customers
snapshot of N customers and times the score job end to end (read, predict in Arrow
batches on 2 cores, write N x 5 rows to uplift_scores), sampling the peak memory of all
processes (driver JVM, Python workers). The peer is the same model's predict in one
pandas/scikit-learn process on the same 1M customers. It fits time = a + b N over the sizes
and extrapolates to 100M customers (target: under 20 minutes).

Checked: each run scored its N customers x 5 vouchers, and the peer predicted the same
snapshot's customers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from deltalake import DeltaTable
from pyspark.sql import functions as F

from benchmarks.measure import PeakRss, same_work, timed
from benchmarks.uplift import uplift_conf
from sparklift.jobs import JobContext, train_uplift
from sparklift.jobs import score as score_job
from sparklift.session import build_session
from sparklift.synthetic import vouchers
from sparklift.synthetic.rand import normal
from sparklift.tables import Catalog
from sparklift.uplift import model as artefact

HELP = "the score job at growing sizes, extrapolated to 100M customers, against one process"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="1e6,3e6,1e7", help="customers per run, comma-separated")


def run(args: argparse.Namespace, workdir: str) -> None:
    bench_score([int(float(x)) for x in args.sizes.split(",")], workdir)


def with_noise(df, n: int):
    """``n`` standard normal columns keyed by customer_id: features the model must ignore."""
    key = F.col("customer_id")
    return df.select("*", *[normal(11, f"noise{i}", key).alias(f"noise_{i:02d}") for i in range(n)])


def bench_score(sizes: list[int], workdir: str) -> None:
    run_date = dt.date(2026, 10, 31)
    conf = uplift_conf(workdir)
    spark = build_session(conf.spark, conf.tables.backend)
    catalog = Catalog(spark, conf.tables)
    gconf = conf.generate.model_copy(update={"vouchers": 5, "campaign_rows": 286_000})
    n_noise = 30 - len(vouchers.FEATURES)
    catalog.write(
        "vouchers", vouchers.vouchers_frame(spark, gconf).withColumn("active", F.lit(True))
    )
    history = with_noise(vouchers.campaigns_frame(spark, gconf, run_date), n_noise)
    catalog.write("voucher_campaigns", history)
    ctx = JobContext(spark, conf, catalog, run_date)
    print("training dr_gbm on 200k rows, 5 vouchers, 30 features ...", flush=True)
    model, t_train = timed(
        lambda: train_uplift.run(ctx, SimpleNamespace(learner=None, override_checks=False))
    )
    print(f"  trained {model['model_id']} in {t_train:.0f}s", flush=True)
    results = []
    for i, n in enumerate(sizes):
        snapshot = run_date - dt.timedelta(days=i)
        frame = vouchers.customers_frame(spark, gconf.model_copy(update={"customers": n}), snapshot)
        rows = with_noise(frame, n_noise)
        _, t_gen = timed(lambda: catalog.write("customers", rows))  # noqa: B023
        ctx_i = JobContext(spark, conf, catalog, snapshot)
        with PeakRss() as rss:
            out, t = timed(lambda: score_job.run(ctx_i, SimpleNamespace(model_id=None)))  # noqa: B023
        same_work("score job, customers scored", out["customers_scored"], n)
        same_work("score job, rows written", out["rows"], 5 * n)
        results.append((n, t, rss.peak))
        print(
            f"  {n:>11,} customers (x5 vouchers): {t:7.1f}s = {n / t:,.0f} customers/s "
            f"({n / t / 2:,.0f}/s per core); peak RSS, all processes {rss.peak / 2**30:.2f} GiB "
            f"(generated in {t_gen:.0f}s)",
            flush=True,
        )
    spark.stop()
    peer = _score_peer(workdir, model["artifact_path"], run_date, sizes[0])
    ns, ts = np.array([r[0] for r in results], float), np.array([r[1] for r in results])
    b, a = np.polyfit(ns, ts, 1)
    t100 = a + b * 100e6
    n_big, t_big, _ = results[-1]
    print("\nRESULT score benchmark (5 vouchers, 30 features, dr_gbm, 2 cores)")
    for n, t, peak in results:
        print(f"  {n:>11,} customers: {t:7.1f}s  {n / t / 2:>9,.0f} customers/s/core  "
              f"peak {peak / 2**30:.2f} GiB")  # fmt: skip
    print(f"  scaling fit: {a:.1f}s + {b * 1e6:.2f}s per 1M customers")
    print(f"  extrapolated 100M x 5: {t100 / 60:.1f} min (target < 20 min)")
    print(f"  peer (one pandas/scikit-learn process, {peer['n']:,} customers): predict "
          f"{peer['predict']:.1f}s + output {peer['output']:.1f}s = "
          f"{peer['n'] / (peer['predict'] + peer['output']):,.0f} customers/s, peak "
          f"{peer['peak'] / 2**30:.2f} GiB (load {peer['load']:.1f}s)")  # fmt: skip
    print(f"  sparklift at {n_big:,} vs peer: "
          f"{(n_big / t_big) / (peer['n'] / (peer['predict'] + peer['output'])):.2f}x the "
          "customers/s, end to end including read and the Delta write")  # fmt: skip


def _score_peer(workdir: str, artifact: str, snapshot: dt.date, n: int) -> dict:
    """The same model in one process: load the snapshot, predict, build the output frame."""
    with PeakRss() as rss:
        t0 = time.perf_counter()
        files = [
            f
            for f in DeltaTable(os.path.join(workdir, "customers")).file_uris()
            if f"snapshot_date={snapshot}" in f
        ]
        frame = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
        fitted = artefact.load(artifact, list(frame.columns), [])
        X = frame[fitted.features].to_numpy(dtype=np.float64)
        t1 = time.perf_counter()
        pred = fitted.predict(X)
        t2 = time.perf_counter()
        k = len(fitted.vouchers)
        out = pd.DataFrame(
            {
                "customer_id": np.repeat(frame["customer_id"].to_numpy(), k),
                "budget_group": np.repeat(frame["budget_group"].to_numpy(), k),
                "voucher_id": np.tile(np.array(fitted.vouchers, dtype=object), len(frame)),
                "uplift_objective": pred["objective"].ravel(),
                "uplift_cost": pred["cost"].ravel(),
            }
        )
        t3 = time.perf_counter()
    same_work("peer, customers predicted", len(frame), n)
    same_work("peer, rows built", len(out), n * k)
    return {"n": n, "load": t1 - t0, "predict": t2 - t1, "output": t3 - t2, "peak": rss.peak}
