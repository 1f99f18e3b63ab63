"""uplift: trains every built-in learner on the generator's history (200k training rows,
3 vouchers) and reports, against the planted per-customer effects of 100k customers,
correlation and RMSE of the objective and cost effects, and the true value captured by
treating the top 20% by predicted uplift as a share of the oracle's.

Checked: each learner scored all 100k customers x 3 vouchers, and every scored row was
compared with its planted effect.
"""

from __future__ import annotations

import argparse
import datetime as dt
from types import SimpleNamespace

from benchmarks.measure import same_work, timed
from sparklift.config import Config, load_config
from sparklift.jobs import JobContext, train_uplift
from sparklift.jobs import generate as generate_job
from sparklift.jobs import score as score_job
from sparklift.session import build_session
from sparklift.synthetic import vouchers
from sparklift.tables import Catalog
from sparklift.uplift.registry import BUILT_IN

HELP = "every built-in learner against the planted per-customer effects"
CUSTOMERS, VOUCHERS = 100_000, 3
HISTORY = 286_000  # randomized history rows (70% to train)
RUN_DATE = dt.date(2026, 10, 31)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, workdir: str) -> None:
    bench_uplift(workdir)


def uplift_conf(workdir: str, *extra: str) -> Config:
    """The uplift benchmarks' configuration: tables and models under ``workdir``."""
    return load_config(
        None,
        [
            f"tables.base_path={workdir}",
            f"tables.model_path={workdir}/models",
            "spark.driver_memory=4g",
            "spark.log_level=ERROR",
            *extra,
        ],
    )


def generated_world(workdir: str, *sets: str, history: int = HISTORY) -> JobContext:
    """A job context (and its session) over a freshly generated voucher world: CUSTOMERS
    customers and ``history`` randomized history rows, run date 2026-10-31 (``sets``:
    config overrides, e.g. the world's effects and seed)."""
    conf = uplift_conf(workdir, *sets)
    spark = build_session(conf.spark, conf.tables.backend)
    ctx = JobContext(spark, conf, Catalog(spark, conf.tables), RUN_DATE)
    gen = SimpleNamespace(
        seed=None, users=1000, zones=10, days=7, customers=CUSTOMERS, vouchers=None,
        campaign_rows=history, fault=[],
    )  # fmt: skip
    generate_job.run(ctx, gen)
    return ctx


def bench_uplift(workdir: str) -> None:
    ctx = generated_world(workdir)
    conf, spark = ctx.config, ctx.spark
    faces = {v: vouchers.FACE_VALUES[j] for j, v in enumerate(vouchers.voucher_ids(3))}
    effects = conf.generate.voucher_effects
    truth = vouchers.true_uplift(ctx.catalog.read("customers"), faces, effects).select(
        "customer_id", "voucher_id", "tau_objective", "tau_cost"
    )
    rows, train_rows = [], set()
    for learner in BUILT_IN:
        args = SimpleNamespace(learner=learner, override_checks=False)
        model, t_train = timed(lambda: train_uplift.run(ctx, args))  # noqa: B023
        train_rows.add(model["train_rows"])
        out = score_job.run(ctx, SimpleNamespace(model_id=model["model_id"]))
        same_work(f"{learner}: customers scored", out["customers_scored"], CUSTOMERS)
        same_work(f"{learner}: rows scored", out["rows"], CUSTOMERS * VOUCHERS)
        scored = ctx.catalog.read("uplift_scores").join(truth, ["customer_id", "voucher_id"])
        pdf = scored.toPandas()
        same_work(f"{learner}: scored rows compared with the truth", len(pdf), out["rows"])
        report = vouchers.truth_report(pdf)
        for voucher, r in report.items():
            rows.append((learner, voucher, t_train, r))
            print(f"  {learner} {voucher}: {r}", flush=True)
    spark.stop()
    trained = " / ".join(f"{r:,}" for r in sorted(train_rows))
    print(f"\nRESULT uplift learners vs the planted truth ({trained} training rows, "
          f"{CUSTOMERS:,} customers)")  # fmt: skip
    print("  learner    voucher  train_s  corr_obj  rmse_obj  corr_cost  rmse_cost  captured@20%")
    for learner, voucher, t, r in rows:
        print(f"  {learner:10s} {voucher:7s} {t:7.1f}  {r['corr_objective']:8.3f}  "
              f"{r['rmse_objective']:8.4f}  {r['corr_cost']:9.3f}  {r['rmse_cost']:9.4f}  "
              f"{r['captured']:12.3f}")  # fmt: skip
