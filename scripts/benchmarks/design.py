"""design: generates G zones (long-tailed sizes), runs the features job for the lookback, then
times the design job end to end, and its driver steps against their peers on the same
input (PCA: scikit-learn; distances are scipy's cdist; the greedy grouping has no peer). Then the
acceptance figures: matched vs random within-group distance, and the AA rejection rate at
alpha 0.05 over 200 randomization seeds.

Checked: G zones generated; the timed driver steps ran on the design job's eligible zones
(eligible and not in the generator's planted experiment), as many as the job matched.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from types import SimpleNamespace

import numpy as np
import yaml
from sklearn.decomposition import PCA

from benchmarks.measure import PeakRss, same_work, timed
from sparklift.config import load_config
from sparklift.geo.design import design_checks, match_zones, randomize
from sparklift.geo.experiment import load_experiment
from sparklift.geo.matching import distances, greedy_groups, pca
from sparklift.geo.vectors import zone_vectors
from sparklift.jobs import JobContext
from sparklift.jobs import design as design_job
from sparklift.jobs import features as features_job
from sparklift.jobs import generate as generate_job
from sparklift.jobs.design import eligible_zones, history_cells
from sparklift.session import build_session
from sparklift.tables import Catalog

HELP = "the design job, its driver steps against their peers, and its acceptance figures"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--zones", type=int, default=5000)
    parser.add_argument("--users", type=int, default=400_000)


def run(args: argparse.Namespace, workdir: str) -> None:
    bench_design(args.zones, args.users, workdir)


def bench_design(zones: int, users: int, workdir: str) -> None:
    run_date, days = dt.date(2026, 10, 31), 42
    conf = load_config(
        None, [f"tables.base_path={workdir}", "spark.driver_memory=8g", "spark.log_level=ERROR"]
    )
    spec_path = os.path.join(workdir, "bench_exp.yaml")
    spec = {
        "experiment_id": "bench",
        "variants": ["control", "a", "b"],
        "zones_per_variant": 100,
        "start": str(run_date + dt.timedelta(days=7)),
        "end": str(run_date + dt.timedelta(days=20)),
        "metrics": [{"name": "orders"}, {"name": "gmv"}],
        "seed": 1,
    }
    with PeakRss() as rss:
        spark = build_session(conf.spark, conf.tables.backend)
        ctx = JobContext(spark, conf, Catalog(spark, conf.tables), run_date)
        print(f"generating {zones:,} zones, {users:,} users x {days} days ...", flush=True)
        gen = SimpleNamespace(
            seed=None, users=users, zones=zones, days=days, customers=1000, vouchers=None,
            campaign_rows=1000, fault=[],
        )  # fmt: skip
        summary, t_gen = timed(lambda: generate_job.run(ctx, gen))
        print(f"  {summary['user_activity']:,} activity rows in {t_gen:.0f}s", flush=True)
        same_work("generated zones", summary["zones"], zones)
        start = run_date - dt.timedelta(days=13)
        _, t_feat = timed(lambda: features_job.run(ctx, SimpleNamespace(start=start, end=run_date)))
        print(f"  features for 14 days in {t_feat:.1f}s", flush=True)
        with open(spec_path, "w") as f:
            yaml.safe_dump(spec, f)
        args = SimpleNamespace(experiment=spec_path, accept_anyway=True)
        runs = []
        for i in range(3):
            out, t = timed(lambda: design_job.run(ctx, args))
            runs.append(t)
            print(f"  design run {i + 1}: {t:.2f}s ({out['eligible']} eligible zones)", flush=True)

        # The driver steps, on the job's own input, against their peers.
        exp = load_experiment(spec_path, conf.design)
        zone_ids, _ = eligible_zones(ctx.catalog, exp)  # as the job chose them
        names = [f.name for f in conf.features.definitions]
        lookback = [start + dt.timedelta(days=i) for i in range(14)]
        vec, t_vec = timed(
            lambda: zone_vectors(ctx.catalog.read("zone_day_features"), zone_ids, names, lookback)
        )
        same_work("design job, eligible zones", out["eligible"], len(zone_ids))
        same_work("zone vectors, zones", len(vec), len(zone_ids))
        x = vec.to_numpy()
        fit, t_pca = timed(lambda: pca(x, 15))
        z = (x[:, fit.kept_columns] - x[:, fit.kept_columns].mean(0)) / x[:, fit.kept_columns].std(
            0
        )
        _, t_skl = timed(lambda: PCA(15, svd_solver="full").fit_transform(z))
        d, t_dist = timed(lambda: distances(fit.scores))
        _, t_greedy = timed(lambda: greedy_groups(d, 3))

        # Acceptance: matching quality and the AA test's size over 200 seeds.
        matching = match_zones(vec, 15, 2)
        ratio = matching.distance_ratio(seed=0)
        exp2 = exp.model_copy(update={"variants": ["control", "treat"], "zones_per_variant": 50})
        hist = [run_date - dt.timedelta(days=27 - i) for i in range(28)]
        cells = history_cells(ctx.catalog, exp2, [int(z) for z in matching.zone_ids], hist)
        pseudo = run_date - dt.timedelta(days=13)
        p = np.array(
            [
                design_checks(cells, randomize(matching, exp2.variants, 50, s), exp2, pseudo)[
                    "aa_p_value"
                ].to_numpy()
                for s in range(200)
            ]
        )
        spark.stop()
    rate = (p < 0.05).mean(axis=0)
    print("\nRESULT design benchmark")
    print(f"  zones (eligible):          {len(zone_ids):,} x {len(names)} features x 14 days")
    print(f"  design job (best of 3):    {min(runs):.2f}s (target < 60 s); runs {runs}")
    print(f"  zone vectors (Spark pivot): {t_vec:.2f}s")
    print(f"  PCA:        {t_pca:.2f}s vs scikit-learn {t_skl:.2f}s  ratio {t_pca / t_skl:.2f}")
    print(f"  distances (scipy cdist):   {t_dist:.2f}s")
    print(
        f"  greedy grouping (N=3):     {t_greedy:.2f}s  ({len(zone_ids) / t_greedy:,.0f} zones/s)"
    )
    print(f"  matched/random within-group distance: {ratio:.3f}")
    print(f"  AA rejection rate, 200 seeds, alpha 0.05 (orders, gmv): {rate}  (target 2-8%)")
    print(f"  driver peak RSS (py+JVM):  {rss.peak / 2**30:.2f} GiB")
