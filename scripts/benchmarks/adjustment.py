"""adjustment: the acceptance simulation of CUPED and CUPAC (issue 18) on W generated worlds.

Each world has 56 days: days 1-14 CUPAC's training features, days 15-28 its training target
and the covariate window (CUPED's mean, CUPAC's application features), days 29-42 the
pre-period and days 43-56 the post period, with the generator's planted effect (mean
relative lift ``--lift`` on a quarter of the zones, heterogeneous by zone). All worlds are
one Spark plan (zone and user ids offset by world); the covariates are computed by
sparklift's own :func:`~sparklift.geo.adjustment.user_covariates` over all worlds at once
(so CUPAC's model is trained on a sample of every world's users, on days 1-28 only), then
one aggregation to cell statistics; the fits run on the driver.

Per world, metric (orders, gmv) and adjustment (none, cuped, cupac) it fits the DiD as
``sparklift analyze`` does (zone-clustered, linearmodels convention) and records whether
the 95% CI covers the world's true ATT, whether a placebo (half of the untreated zones
"treated", the treated zones left out) rejects at 0.05, and the standard errors. It prints
coverage and A/A rejection (targets 92-98% and 2-8%), the median SE ratio to ``none`` and
the median MDE with and without, rows per second and peak memory; it exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import numpy as np
import pandas as pd
from pyspark.sql import functions as F

from benchmarks.measure import PeakRss
from sparklift.config import load_config
from sparklift.geo.adjustment import (
    NO_HISTORY,
    covariate_column,
    metric_covariates,
    user_covariates,
)
from sparklift.geo.cells import cell_stats
from sparklift.geo.experiment import ExperimentConfig
from sparklift.session import build_session
from sparklift.stats.power import mde
from sparklift.stats.twfe import TwfeFit
from sparklift.synthetic.geo import draw_world, worlds_activity_frame

HELP = "CUPED/CUPAC over generated worlds: coverage, A/A rejection, SE reduction"
DAYS = 56
END = dt.date(2026, 11, 29)
FIRST = END - dt.timedelta(days=DAYS - 1)
PRE_START = FIRST + dt.timedelta(days=28)
START = FIRST + dt.timedelta(days=42)
OFFSET = 1000  # zone id offset per world (zones < 1000)
USER_OFFSET = 10**8  # user id offset per world
METRICS = ("orders", "gmv")
METHODS = ("none", "cuped", "cupac")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--worlds", type=int, default=200)
    parser.add_argument("--zones", type=int, default=120)
    parser.add_argument("--users", type=int, default=12_000)
    parser.add_argument("--lift", type=float, default=0.1)


def run(args: argparse.Namespace, workdir: str) -> None:
    with PeakRss() as peak:
        misses = bench_adjustment(args.worlds, args.zones, args.users, args.lift, workdir)
    print(f"  peak memory (driver, JVM and workers): {peak.peak / 2**30:.2f} GiB")
    if misses:
        raise SystemExit("acceptance missed:\n  " + "\n  ".join(misses))


def specs(defaults: dict) -> dict[str, ExperimentConfig]:
    """The experiment of every world under each adjustment."""
    base = defaults | {
        "experiment_id": "adjustment_bench",
        "variants": ["control", "treatment"],
        "zones_per_variant": 1,
        "start": START,
        "end": END,
        "pre_days": 14,
        "metrics": [{"name": m} for m in METRICS],
        "seed": 1,
        "covariate_window": {"days": 14},
        "cupac": defaults["cupac"] | {"horizon_days": 14},
    }
    return {m: ExperimentConfig.model_validate(base | {"variance_reduction": m}) for m in METHODS}


def bench_adjustment(n: int, zones: int, users: int, lift: float, workdir: str) -> list[str]:
    conf = load_config(
        None, [f"tables.base_path={workdir}", "spark.driver_memory=4g", "spark.log_level=ERROR"]
    )
    spark = build_session(conf.spark, conf.tables.backend)
    gen = load_config(
        None,
        [
            f"generate.users={users}",
            f"generate.zones={zones}",
            f"generate.days={DAYS}",
            "generate.partitions=1",
            f"generate.geo_effect.zones={zones // 4}",
            "generate.geo_effect.start_offset_days=42",
            f"generate.geo_effect.lift={lift}",
        ],
    ).generate
    worlds = [
        (draw_world(c, END), c) for c in (gen.model_copy(update={"seed": s}) for s in range(n))
    ]
    index = F.col("seed").cast("long")
    rows = worlds_activity_frame(spark, worlds).select(
        (F.col("zone_id") + F.col("seed") * OFFSET).alias("zone_id"),
        (F.col("user_id") + index * USER_OFFSET).alias("user_id"),
        "date",
        "visits",
        "orders",
        "gmv",
        "tenure_days",
        "prior_orders_28d",
        "prior_gmv_28d",
        "effect_orders",
        "effect_gmv",
    )

    def read(first: dt.date, last: dt.date):
        return rows.where((F.col("date") >= F.lit(first)) & (F.col("date") <= F.lit(last)))

    zone_ids = [int(z) + s * OFFSET for s in range(n) for z in worlds[s][0].zones["zone_id"]]
    zone_frame = spark.createDataFrame([(z,) for z in zone_ids], "zone_id int")
    spec = specs(conf.design.model_dump())
    print(f"{n} worlds of {zones} zones, {users:,} users, {DAYS} days ...", flush=True)
    t0 = time.perf_counter()
    with (
        user_covariates(read, spec["cuped"], zone_frame, PRE_START) as cuped,
        user_covariates(read, spec["cupac"], zone_frame, PRE_START) as cupac,
    ):
        joined = cuped.join(read(PRE_START, END)).withColumnRenamed(NO_HISTORY, "cuped_flag")
        joined = cupac.join(joined)
        columns = [
            *METRICS,
            *(covariate_column(m, x) for m in ("cuped", "cupac") for x in METRICS),
            NO_HISTORY,
            "cuped_flag",
            "effect_orders",
            "effect_gmv",
        ]
        cells = cell_stats(joined, columns)
        r2 = cupac.fit_r2
    t_spark = time.perf_counter() - t0
    n_rows = int(cells.n.sum())
    flags = cells.sums[:, [cells.index(NO_HISTORY), cells.index("cuped_flag")]]
    assert np.array_equal(flags[:, 0], flags[:, 1]), "CUPED and CUPAC flag different users"
    share = 1 - flags[:, 0].sum() / n_rows
    print(f"  covariates and cell statistics: {n_rows:,} analysis rows in {len(cells.n):,} "
          f"cells, {t_spark:.0f}s ({n_rows / t_spark / 1e6:.2f}M rows/s); CUPAC held-out "
          f"R^2 {', '.join(f'{k} {v:.3f}' for k, v in r2.items())}; {share:.1%} of "
          "user-days with history", flush=True)  # fmt: skip
    t0 = time.perf_counter()
    out = pd.DataFrame(
        [r for s, (w, _) in enumerate(worlds) for r in world_fits(cells, s, w, spec)]
    )
    print(f"  {len(out):,} fits on the driver: {time.perf_counter() - t0:.0f}s")
    spark.stop()
    return report(out, n)


def world_fits(cells, s: int, world, spec: dict[str, ExperimentConfig]) -> list[dict]:
    """The fits of world ``s``: per metric and adjustment, the effect and a placebo."""
    z = world.zones[world.zones["eligible"]]
    c = cells.select(((cells.zone // OFFSET) == s) & np.isin(cells.zone % OFFSET, z["zone_id"]))
    post = np.array([d >= START for d in c.day])
    treated = np.isin(c.zone % OFFSET, z.loc[z["treated"], "zone_id"])
    d = (treated & post).astype(float)[:, None]
    control = z.loc[~z["treated"], "zone_id"].to_numpy()
    fake = np.random.default_rng(s).permutation(control)[: len(control) // 2]
    cp = c.select(~treated)
    d0 = (np.isin(cp.zone % OFFSET, fake) & np.array([x >= START for x in cp.day])).astype(float)
    tp = treated & post
    out = []
    for metric in METRICS:
        truth = c.sums[tp, c.index(f"effect_{metric}")].sum() / c.n[tp].sum()
        cpost = (~treated) & post
        mean = c.sums[cpost, c.index(metric)].sum() / c.n[cpost].sum()
        for method in METHODS:
            covs = metric_covariates(spec[method], metric, c)
            est = TwfeFit(c, d, ["att"], metric, covs).result("zone")
            aa = TwfeFit(
                cp, d0[:, None], ["p"], metric, metric_covariates(spec[method], metric, cp)
            )
            placebo = aa.result("zone")
            out.append(
                {
                    "world": s,
                    "metric": metric,
                    "method": method,
                    "covered": est["att"].ci_low <= truth <= est["att"].ci_high,
                    "se": est["att"].se,
                    "mde_relative": mde(est["att"].se, 0.05, 0.8, est.df) / mean,
                    "rejected": placebo["p"].p_value < 0.05,
                    "placebo_se": placebo["p"].se,
                }
            )
    return out


def report(out: pd.DataFrame, n: int) -> list[str]:
    misses = []
    print("\nRESULT adjustment benchmark (zone-clustered, 95% CIs; targets: coverage 0.92-0.98, "
          "A/A rejection 0.02-0.08)")  # fmt: skip
    base = out[out["method"] == "none"].set_index(["world", "metric"])
    for (metric, method), g in out.groupby(["metric", "method"], sort=False):
        cov, rej = g["covered"].mean(), g["rejected"].mean()
        g = g.set_index(["world", "metric"])
        ratio = (g["se"] / base.loc[g.index, "se"]).median()
        pratio = (g["placebo_se"] / base.loc[g.index, "placebo_se"]).median()
        print(f"  {metric:6s} {method:5s}: coverage {cov:.3f} (MC se "
              f"{np.sqrt(cov * (1 - cov) / n):.3f}), A/A rejection {rej:.3f} (MC se "
              f"{np.sqrt(rej * (1 - rej) / n):.3f}); SE / none's {ratio:.4f} (median; "
              f"placebo {pratio:.4f}), MDE {g['mde_relative'].median():.4f} relative "
              "(median)")  # fmt: skip
        if not 0.92 <= cov <= 0.98:
            misses.append(f"{metric}/{method}: coverage {cov:.3f} outside 0.92-0.98")
        if not 0.02 <= rej <= 0.08:
            misses.append(f"{metric}/{method}: A/A rejection {rej:.3f} outside 0.02-0.08")
    return misses
