"""propensity: trains the default propensity model (``train-propensity``) on a generated world
of 200k users and 84 days, then for each size N generates a world of N users over the
model's history window and times the ``score-propensity`` job end to end (read the
window's ``user_activity``, one aggregation by user, predict in Arrow batches on 2 cores,
write N rows to ``propensity_scores``), sampling the peak memory of all processes. The
limit it is compared with, in the same run: the same model's ``predict`` in one
scikit-learn process on the 1M customers' features (no read, no aggregation, no write).
It fits time = a + b N over the sizes and extrapolates to 100M customers (target: under
5 minutes). ``--history-days`` (default 28) sets the model's history window: the scoring
cost is the window's rows, about 0.23 x N x days.

Checked: each run scored every user active in its window, and the limit predicted the
same number of customers.
"""

from __future__ import annotations

import argparse
import datetime as dt
from types import SimpleNamespace

import numpy as np

from benchmarks.measure import PeakRss, same_work, timed
from sparklift.config import load_config
from sparklift.jobs import JobContext, score_propensity, train_propensity
from sparklift.predict.propensity import model_features, snapshot_frame
from sparklift.session import build_session
from sparklift.synthetic.geo import activity_frame, draw_world
from sparklift.tables import Catalog

HELP = "score-propensity at growing sizes, extrapolated to 100M customers, against predict"
RUN_DATE = dt.date(2026, 10, 31)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="1e6,3e6,1e7", help="customers per run, comma-separated")
    parser.add_argument("--history-days", type=int, default=28)


def run(args: argparse.Namespace, workdir: str) -> None:
    bench_propensity([int(float(x)) for x in args.sizes.split(",")], args.history_days, workdir)


def bench_propensity(sizes: list[int], history: int, workdir: str) -> None:
    overrides = [
        f"tables.base_path={workdir}",
        f"tables.model_path={workdir}/models",
        "spark.driver_memory=4g",
        "spark.log_level=ERROR",
        f"propensity.history_days={history}",
    ]
    conf = load_config(None, overrides)
    spark = build_session(conf.spark, conf.tables.backend)
    days = history + 7 * (conf.propensity.train_snapshots + 1)
    gen = conf.generate.model_copy(update={"users": 200_000, "zones": 300, "days": days})
    catalog = Catalog(spark, conf.tables)
    world = draw_world(gen, RUN_DATE)
    _, t_gen = timed(lambda: catalog.write("user_activity", activity_frame(spark, world, gen)))
    print(f"training world: 200,000 users x {days} days written in {t_gen:.0f}s", flush=True)
    ctx = JobContext(spark, conf, catalog, RUN_DATE)
    with PeakRss() as rss:
        model, t_train = timed(lambda: train_propensity.run(ctx, SimpleNamespace(learner=None)))
    m = model["metrics"]
    print(f"  train-propensity: {t_train:.0f}s on {model['train_rows']:,} customer-snapshots, "
          f"peak {rss.peak / 2**30:.2f} GiB; validation ROC-AUC {m['roc_auc']:.4f}, PR-AUC "
          f"{m['pr_auc']:.4f}, Brier {m['brier']:.4f}", flush=True)  # fmt: skip
    results = []
    for n in sizes:
        size_conf = load_config(None, [*overrides, f"tables.names.user_activity=activity_{n}"])
        cat = Catalog(spark, size_conf.tables)
        world_conf = gen.model_copy(update={"users": n, "zones": 1000, "days": history})
        world = draw_world(world_conf, RUN_DATE)
        _, t_gen = timed(
            lambda: cat.write("user_activity", activity_frame(spark, world, world_conf))  # noqa: B023
        )
        active = cat.read("user_activity").select("user_id").distinct().count()
        ctx_n = JobContext(spark, size_conf, cat, RUN_DATE)
        args = SimpleNamespace(model_id=model["model_id"])
        with PeakRss() as rss:
            out, t = timed(lambda: score_propensity.run(ctx_n, args))  # noqa: B023
        same_work("score-propensity, customers scored", out["customers_scored"], active)
        rows = cat.read("user_activity").count()
        results.append((n, active, rows, t, rss.peak))
        print(f"  {n:>11,} users ({active:,} active, {rows:,} activity rows): {t:6.1f}s = "
              f"{active / t:,.0f} customers/s; peak {rss.peak / 2**30:.2f} GiB (generated "
              f"in {t_gen:.0f}s)", flush=True)  # fmt: skip
    first = load_config(None, [*overrides, f"tables.names.user_activity=activity_{sizes[0]}"])
    limit = predict_limit(spark, first, model["model_id"], results[0][1])
    spark.stop()
    ns = np.array([r[1] for r in results], float)
    ts = np.array([r[3] for r in results])
    b, a = np.polyfit(ns, ts, 1)
    t100 = a + b * 100e6
    print(f"\nRESULT propensity benchmark ({history}-day history window, 2 cores)")
    print(f"  training: {t_train:.0f}s, {model['train_rows']:,} rows; ROC-AUC {m['roc_auc']:.4f}")
    for n, active, rows, t, peak in results:
        print(f"  {n:>11,} users, {active:,} customers ({rows:,} rows): {t:6.1f}s  "
              f"{active / t:>9,.0f} customers/s  {rows / t / 1e6:.2f}M rows/s  "
              f"peak {peak / 2**30:.2f} GiB")  # fmt: skip
    print(f"  scaling fit: {a:.1f}s + {b * 1e6:.2f}s per 1M customers")
    print(f"  extrapolated 100M customers: {t100 / 60:.1f} min (target < 5 min)")
    print(f"  limit (predict only, one process, {limit[0]:,} customers): {limit[1]:.1f}s = "
          f"{limit[0] / limit[1]:,.0f} customers/s; 100M at that rate: "
          f"{100e6 / (limit[0] / limit[1]) / 60:.1f} min")  # fmt: skip


def predict_limit(spark, conf, model_id: str, n: int) -> tuple[int, float]:
    """The model's predict on the first size's features in this process (both cores)."""
    catalog = Catalog(spark, conf.tables)
    ctx = JobContext(spark, conf, catalog, RUN_DATE)
    model, _ = score_propensity.load(ctx, score_propensity.model_row(ctx, model_id))
    windows = model.windows
    first = RUN_DATE - dt.timedelta(days=windows.history_days - 1)
    activity = catalog.read("user_activity", where=[("date", ">=", first)])
    frame = snapshot_frame(activity, RUN_DATE, windows, labelled=False).toPandas()
    X = frame[model_features(windows)].to_numpy(dtype=np.float64)
    _, t = timed(lambda: model.predict(X, RUN_DATE))
    same_work("limit, customers predicted", len(X), n)
    return len(X), t
