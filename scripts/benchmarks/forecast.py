"""forecast: the forecast error of the raw, shrunk and winner's-curse corrected lifts against
the planted truth, over simulated portfolios of experiments; with ``--worlds W``, over one
portfolio of W experiments on the generator's own worlds.

Each portfolio has ``--experiments`` concluded experiments whose true lifts are weak and
heterogeneous (normal, mean ``--mean``, sd ``--spread``) and whose estimates carry the
standard errors of geo experiments (uniform in ``--se-low``..``--se-high``: what the
demo's designs give at 20-60 zones per arm). ``sparklift.geo.forecast.forecasts`` runs on
them as the job does (each experiment's prior from the others). Prints, per portfolio and
over all: the root mean squared forecast error of each lift, and among the significant
results the mean error (the winner's curse) and the RMSE, raw against corrected. No Spark:
the forecasts are driver-side arithmetic over a few rows per experiment.

With ``--worlds W``: W generated worlds (``--zones``, ``--users``; 28 pre and 28 post days),
each with its own planted lift drawn from N(``--mean``, ``--spread``) on a quarter of its
zones (heterogeneous by zone, as the generator plants it), all in one Spark plan, one
aggregation to cell statistics; per world and metric the DiD is fitted as ``sparklift
analyze`` does (zone-clustered), and its relative lift is the ATT over the control zones'
post-period mean (its SE scaled alike), the truth the planted ATT over the same mean. The
forecasts then run on that portfolio (each world's prior from the other worlds).
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import numpy as np
import pandas as pd
from pyspark.sql import functions as F
from scipy import stats

from benchmarks.measure import PeakRss
from sparklift.config import load_config
from sparklift.geo.cells import cell_stats
from sparklift.geo.forecast import forecasts
from sparklift.session import build_session
from sparklift.stats.twfe import TwfeFit
from sparklift.synthetic.geo import draw_world, worlds_activity_frame

HELP = "forecast error of raw, shrunk and curse-corrected lifts against the planted truth"
DAYS, POST = 56, 28
END = dt.date(2026, 11, 29)
START = END - dt.timedelta(days=POST - 1)
OFFSET = 1000  # zone id offset per world (zones < 1000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--portfolios", type=int, default=20)
    parser.add_argument("--experiments", type=int, default=200)
    parser.add_argument("--mean", type=float, default=0.01)
    parser.add_argument("--spread", type=float, default=0.015)
    parser.add_argument("--se-low", type=float, default=0.005)
    parser.add_argument("--se-high", type=float, default=0.03)
    parser.add_argument("--worlds", type=int, default=0, help="generator worlds (0: simulate)")
    parser.add_argument("--zones", type=int, default=120)
    parser.add_argument("--users", type=int, default=12_000)


def run(args: argparse.Namespace, workdir: str) -> None:
    if args.worlds:
        worlds(args, workdir)
        return
    conf = load_config(None, ["forecast.platform_revenue={gmv: 1.0}"]).forecast
    out = []
    t0 = time.perf_counter()
    for seed in range(args.portfolios):
        rng = np.random.default_rng(1000 + seed)
        n = args.experiments
        truth = rng.normal(args.mean, args.spread, n)
        se = rng.uniform(args.se_low, args.se_high, n)
        x = truth + se * rng.standard_normal(n)
        lifts = pd.DataFrame(
            {
                "experiment_id": [f"e{i}" for i in range(n)],
                "metric": "gmv",
                "variant": "treatment",
                "concluded_on": None,
                "cov_type": "zone",
                "lift": x,
                "lift_se": se,
                "p_value": 2 * stats.norm.sf(np.abs(x) / se),
            }
        )
        rows = forecasts(lifts, conf, {f"e{i}": 0.05 for i in range(n)})
        sig = rows["significant"].to_numpy()
        err = {
            k: rows[f"forecast_{k}"].to_numpy() - truth for k in ("raw", "shrunk", "winners_curse")
        }
        out.append(
            {
                "seed": seed,
                "significant": int(sig.sum()),
                "rmse_raw": rms(err["raw"]),
                "rmse_shrunk": rms(err["shrunk"]),
                "sig_bias_raw": err["raw"][sig].mean(),
                "sig_bias_corrected": err["winners_curse"][sig].mean(),
                "sig_rmse_raw": rms(err["raw"][sig]),
                "sig_rmse_corrected": rms(err["winners_curse"][sig]),
                "sig_rmse_shrunk": rms(err["shrunk"][sig]),
            }
        )
    frame = pd.DataFrame(out)
    print(frame.round(5).to_string(index=False))
    m = frame.mean(numeric_only=True)
    print(
        f"\n{args.portfolios} portfolios of {args.experiments} experiments "
        f"({time.perf_counter() - t0:.1f} s), lifts in relative units:"
    )
    print(
        f"  RMSE over all: raw {m.rmse_raw:.5f}, shrunk {m.rmse_shrunk:.5f} "
        f"({m.rmse_shrunk / m.rmse_raw - 1:+.0%}); shrunk better in "
        f"{(frame.rmse_shrunk < frame.rmse_raw).sum()}/{len(frame)}"
    )
    print(
        f"  significant results ({m.significant:.0f} per portfolio): mean error raw "
        f"{m.sig_bias_raw:+.5f}, corrected {m.sig_bias_corrected:+.5f}; RMSE raw "
        f"{m.sig_rmse_raw:.5f}, corrected {m.sig_rmse_corrected:.5f}, shrunk "
        f"{m.sig_rmse_shrunk:.5f}; corrected better in "
        f"{(frame.sig_rmse_corrected < frame.sig_rmse_raw).sum()}/{len(frame)}"
    )


def rms(v: np.ndarray) -> float:
    return float(np.sqrt(np.mean(v**2)))


def worlds(args: argparse.Namespace, workdir: str) -> None:
    """One portfolio of generated worlds: the forecast errors per metric."""
    conf = load_config(
        None,
        [
            f"tables.base_path={workdir}",
            "spark.driver_memory=4g",
            "spark.log_level=ERROR",
            "forecast.platform_revenue={gmv: 1.0, orders: 1.0}",
        ],
    )
    spark = build_session(conf.spark, conf.tables.backend)
    gen = load_config(
        None,
        [
            f"generate.users={args.users}",
            f"generate.zones={args.zones}",
            f"generate.days={DAYS}",
            "generate.partitions=1",
            f"generate.geo_effect.zones={args.zones // 4}",
            f"generate.geo_effect.start_offset_days={DAYS - POST}",
        ],
    ).generate
    planted = np.random.default_rng(7).normal(args.mean, args.spread, args.worlds)
    confs = [
        gen.model_copy(
            update={
                "seed": s,
                "geo_effect": gen.geo_effect.model_copy(update={"lift": float(max(lift, -0.5))}),
            }
        )
        for s, lift in enumerate(planted)
    ]
    pairs = [(draw_world(c, END), c) for c in confs]
    t0, peak = time.perf_counter(), PeakRss()
    with peak:
        rows = worlds_activity_frame(spark, pairs).select(
            (F.col("zone_id") + F.col("seed") * OFFSET).alias("zone_id"),
            "date",
            "orders",
            "gmv",
            "effect_orders",
            "effect_gmv",
        )
        cells = cell_stats(rows, ["orders", "gmv", "effect_orders", "effect_gmv"])
    n_rows = int(cells.n.sum())
    t_spark = time.perf_counter() - t0
    fits = pd.DataFrame([f for s, (w, _) in enumerate(pairs) for f in _fits(cells, s, w)])
    spark.stop()
    lifts = fits.assign(
        experiment_id=lambda f: "w" + f["world"].astype(str),
        variant="treatment",
        concluded_on=None,
        cov_type="zone",
    )
    rows_out = forecasts(lifts, conf.forecast, dict.fromkeys(lifts["experiment_id"], 0.05))
    print(
        f"{args.worlds} worlds of {args.zones} zones, {args.users:,} users: {n_rows:,} user-days "
        f"in {t_spark:.0f} s ({n_rows / t_spark / 1e6:.2f}M rows/s), "
        f"peak {peak.peak / 2**30:.2f} GiB; "
        f"planted lifts N({args.mean}, {args.spread})"
    )
    for metric, g in rows_out.groupby("metric"):
        truth = fits.loc[fits["metric"] == metric, "truth"].to_numpy()
        sig = g["significant"].to_numpy()
        err = {k: g[f"forecast_{k}"].to_numpy() - truth for k in ("raw", "shrunk", "winners_curse")}
        print(
            f"  {metric}: RMSE raw {rms(err['raw']):.5f}, shrunk {rms(err['shrunk']):.5f} "
            f"({rms(err['shrunk']) / rms(err['raw']) - 1:+.0%}); {int(sig.sum())} significant: "
            f"mean error raw {err['raw'][sig].mean():+.5f}, corrected "
            f"{err['winners_curse'][sig].mean():+.5f}; RMSE raw {rms(err['raw'][sig]):.5f}, "
            f"corrected {rms(err['winners_curse'][sig]):.5f}, shrunk "
            f"{rms(err['shrunk'][sig]):.5f}; median se {g['lift_se'].median():.4f}"
        )


def _fits(cells, s: int, world) -> list[dict]:
    """World ``s``'s DiD per metric: relative lift, its SE and p, and the planted truth."""
    z = world.zones[world.zones["eligible"]]
    c = cells.select(((cells.zone // OFFSET) == s) & np.isin(cells.zone % OFFSET, z["zone_id"]))
    post = np.array([d >= START for d in c.day])
    treated = np.isin(c.zone % OFFSET, z.loc[z["treated"], "zone_id"])
    d = (treated & post).astype(float)[:, None]
    out = []
    for metric in ("orders", "gmv"):
        tp, cpost = treated & post, (~treated) & post
        mean = c.sums[cpost, c.index(metric)].sum() / c.n[cpost].sum()
        truth = c.sums[tp, c.index(f"effect_{metric}")].sum() / c.n[tp].sum()
        est = TwfeFit(c, d, ["att"], metric, []).result("zone")["att"]
        out.append(
            {
                "world": s,
                "metric": metric,
                "lift": est.estimate / mean,
                "lift_se": est.se / mean,
                "p_value": est.p_value,
                "truth": truth / mean,
            }
        )
    return out
