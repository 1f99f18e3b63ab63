"""propensity: trains the default propensity model (``train-propensity``) on a generated world
of 200k users and 84 days, then for each size N generates a world of N users over the
model's history window and a day more, and times, each end to end on 2 cores:

- ``score-propensity`` from the activity rows (no ``user_history``: read the window's
  rows, one aggregation by user, predict in Arrow batches, write N rows);
- ``user-history`` rebuilt as of the day before (the window's rows, one aggregation);
- ``user-history`` updated to the run date from the day before's (3 days of rows and the
  stored state, one join): the nightly cost; its check of the day before's state (the
  commits of user_activity since the version the state counted, from the logs alone) is
  also timed alone;
- ``score-propensity`` from ``user_history`` (one row per customer): the scoring.

sampling the peak memory of all processes. The limit it is compared with, in the same
run: the same model's ``predict`` in one scikit-learn process on the 1M customers'
features (no read, no aggregation, no write). It fits time = a + b N over the sizes and
extrapolates to 100M customers (target: scoring under 5 minutes). ``--history-days``
(default 28) sets the model's history window: the activity rows' cost grows with it, the
update's and the scoring's from ``user_history`` do not.

Checked: each run scored every user active in its window, the state held them all, and
the two scorings' propensities agree on a sample.
"""

from __future__ import annotations

import argparse
import datetime as dt
from types import SimpleNamespace

import numpy as np
from pyspark.sql import functions as F

from benchmarks.measure import PeakRss, same_work, timed
from sparklift.config import load_config
from sparklift.jobs import (
    JobContext,
    propensity_io,
    score_propensity,
    train_propensity,
    user_history,
)
from sparklift.predict.propensity import model_features
from sparklift.predict.user_history import DAY, build, feature_inputs, feature_matrix
from sparklift.session import build_session
from sparklift.synthetic.geo import activity_frame, draw_world
from sparklift.tables import Catalog, changes

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
        size_conf = load_config(
            None,
            [
                *overrides,
                f"tables.names.user_activity=activity_{n}",
                f"tables.names.user_history=history_{n}",
                f"tables.names.propensity_scores=scores_{n}",
            ],
        )
        cat = Catalog(spark, size_conf.tables)
        world_conf = gen.model_copy(update={"users": n, "zones": 1000, "days": history + 1})
        world = draw_world(world_conf, RUN_DATE)
        _, t_gen = timed(
            lambda: cat.write("user_activity", activity_frame(spark, world, world_conf))  # noqa: B023
        )
        first = RUN_DATE - dt.timedelta(days=history - 1)
        window = cat.read("user_activity", where=[("date", ">=", first)])
        active = window.select("user_id").distinct().count()
        rows = window.count()
        runs = {}
        for name, job, day, args in (
            ("raw", score_propensity, RUN_DATE, SimpleNamespace(model_id=model["model_id"])),
            ("rebuild", user_history, RUN_DATE - DAY, _history_args(model)),
            ("update", user_history, RUN_DATE, _history_args(model)),
            ("score", score_propensity, RUN_DATE, SimpleNamespace(model_id=model["model_id"])),
        ):
            ctx_n = JobContext(spark, size_conf, cat, day)
            with PeakRss() as rss:
                out, t = timed(lambda: job.run(ctx_n, args))  # noqa: B023
            done = out.get("customers_scored", out.get("customers"))
            if name != "rebuild":
                same_work(f"{name}, customers", done, active)
            runs[name] = (t, rss.peak, out)
        assert runs["raw"][2]["features_from"].startswith("user_activity")
        assert runs["score"][2]["features_from"] == f"user_history as of {RUN_DATE}"
        assert runs["update"][2]["mode"] == "update"
        ctx_n = JobContext(spark, size_conf, cat, RUN_DATE)
        row = propensity_io.model_row(ctx_n, model["model_id"])
        windows = propensity_io.load(ctx_n, row)[0].windows
        source = cat.version("user_activity")
        assert source is not None

        def logs_check() -> str | None:  # as the job runs it: the table's id, then the logs
            source_id = changes.table_id(cat.path("user_activity"), source)  # noqa: B023
            return user_history.changed_since(ctx_n, windows, RUN_DATE - DAY, source, source_id)  # noqa: B023

        why, t = timed(logs_check)
        assert why is None, why  # the state counted the table's latest version
        runs["changes"] = (t, 0, {})
        agree(cat)
        results.append((n, active, rows, runs))
        print(f"  {n:>11,} users ({active:,} customers, {rows:,} activity rows in the window; "
              f"generated in {t_gen:.0f}s): " + ", ".join(
                  f"{k} {t:.1f}s (peak {peak / 2**30:.2f} GiB)" for k, (t, peak, _) in runs.items()
              ), flush=True)  # fmt: skip
    first_conf = load_config(None, [*overrides, f"tables.names.user_activity=activity_{sizes[0]}"])
    limit = predict_limit(spark, first_conf, model["model_id"], results[0][1])
    spark.stop()
    ns = np.array([r[1] for r in results], float)
    print(f"\nRESULT propensity benchmark ({history}-day history window, 2 cores)")
    print(f"  training: {t_train:.0f}s, {model['train_rows']:,} rows; ROC-AUC {m['roc_auc']:.4f}")
    labels = {
        "raw": "score-propensity from the activity rows",
        "rebuild": "user-history rebuilt from the window's rows",
        "update": "user-history updated from the day before",
        "changes": "  of which the logs' check of the day before's state",
        "score": "score-propensity from user_history",
    }
    fits = {}
    for key, label in labels.items():
        ts = np.array([r[3][key][0] for r in results])
        b, a = np.polyfit(ns, ts, 1)
        fits[key] = a + b * 100e6
        print(f"  {label}:")
        for n, active, _rows, runs in results:
            t, peak, _ = runs[key]
            print(f"    {n:>11,} users, {active:,} customers: {t:6.1f}s  "
                  f"{active / t:>9,.0f} customers/s  peak {peak / 2**30:.2f} GiB")  # fmt: skip
        print(f"    fit {a:.1f}s + {b * 1e6:.2f}s per 1M customers; 100M: {fits[key] / 60:.1f} min")
    print(f"  scoring 100M from user_history: {fits['score'] / 60:.1f} min (target < 5 min); "
          f"nightly update + scoring: {(fits['update'] + fits['score']) / 60:.1f} min; from the "
          f"activity rows: {fits['raw'] / 60:.1f} min")  # fmt: skip
    print(f"  limit (predict only, one process, {limit[0]:,} customers): {limit[1]:.1f}s = "
          f"{limit[0] / limit[1]:,.0f} customers/s; 100M at that rate: "
          f"{100e6 / (limit[0] / limit[1]) / 60:.1f} min")  # fmt: skip


def _history_args(model: dict) -> SimpleNamespace:
    return SimpleNamespace(model_id=model["model_id"], rebuild=False)


def agree(catalog: Catalog) -> None:
    """The two scorings (versions 0 and 1 of propensity_scores) agree on a sample."""
    raw = catalog.read("propensity_scores", version=0).sample(0.001, seed=1)
    state = catalog.read("propensity_scores", version=1).select(
        "customer_id", F.col("propensity").alias("from_state")
    )
    joined = raw.join(state, "customer_id").select(
        F.max(F.abs(F.col("propensity") - F.col("from_state"))).alias("gap"), F.count("*")
    )
    gap, count = joined.first()
    if count == 0 or gap > 1e-9:
        raise AssertionError(f"the two scorings disagree: max gap {gap} over {count} customers")


def predict_limit(spark, conf, model_id: str, n: int) -> tuple[int, float]:
    """The model's predict on the first size's features in this process (both cores)."""
    catalog = Catalog(spark, conf.tables)
    ctx = JobContext(spark, conf, catalog, RUN_DATE)
    model, _ = propensity_io.load(ctx, propensity_io.model_row(ctx, model_id))
    windows = model.windows
    first = RUN_DATE - dt.timedelta(days=windows.history_days - 1)
    activity = catalog.read("user_activity", where=[("date", ">=", first)])
    state = build(activity, windows, RUN_DATE).select(*feature_inputs(windows)).toArrow()
    X = feature_matrix(state, windows, RUN_DATE, model_features(windows))
    _, t = timed(lambda: model.predict(X, RUN_DATE))
    same_work("limit, customers predicted", len(X), n)
    return len(X), t
