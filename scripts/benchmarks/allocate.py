"""allocate: writes uplift_scores for N customers x 5 vouchers in 20 budget groups of
long-tailed sizes (customer sizes log-normal, weak noisy effects, some negative), then
in the same run times a plain Spark scan-and-write of that table (read, write Parquet)
and the allocate job end to end (read, solve, write allocations and summary), once with
the scores' files read without a shuffle (the default) and once shuffled by customer
(``score_reader: spark``), and prints passes, the ratios, the relative gap and peak
memory; both in Spark passes (``driver_max_rows: 0``). When the 5 N score rows are within
the default ``allocate.driver_max_rows``, also the same campaign solved in the driver's
memory. Then the same campaign with a binding cap (``--cap-share``: the voucher the
uncapped run gave most, capped at that share of its count), timed the same way, with its
cap rounds, passes and gaps. Then OR-Tools (SCIP) on one group of growing size, 5 minutes
each, against the Lagrangian solver on the same instance.

Checked: the scan-and-write copied all 5 N score rows and the allocation solved all N
customers.
"""

from __future__ import annotations

import argparse
import datetime as dt
from types import SimpleNamespace

import numpy as np
import yaml
from pyspark.sql import functions as F

from benchmarks.measure import PeakRss, same_work, timed
from sparklift.allocation.envelope import envelope
from sparklift.allocation.exact import solve_exact
from sparklift.allocation.lagrange import solve_group
from sparklift.config import load_config
from sparklift.jobs import JobContext
from sparklift.jobs import allocate as allocate_job
from sparklift.session import build_session
from sparklift.tables import Catalog

HELP = "the allocate job against a plain scan-and-write, and against OR-Tools on one group"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--customers", type=float, default=1e7)
    parser.add_argument("--exact-sizes", default="1e4,3e4,1e5", help="customers for OR-Tools")
    parser.add_argument(
        "--cap-share", type=float, default=0.5, help="the capped run's cap (0: no capped run)"
    )


def run(args: argparse.Namespace, workdir: str) -> None:
    sizes = [int(float(x)) for x in args.exact_sizes.split(",")]
    bench_allocate(int(args.customers), sizes, workdir, args.cap_share)


FACES = (5.0, 2.0, 10.0, 3.0, 8.0)


def _allocation_scores(spark, n: int, run_date: dt.date):
    """N customers x 5 vouchers, 20 budget groups (group k has share sqrt((k+1)/20) -
    sqrt(k/20): long-tailed), objective ~ size x sqrt(face) x U(0, 0.1) + noise."""
    base = spark.range(n).select(
        F.col("id").alias("customer_id"),
        F.concat(F.lit("G"), F.floor(F.pow(F.rand(5), 2) * 20).cast("string")).alias(
            "budget_group"
        ),
        F.exp(F.randn(1) * 0.8).alias("size"),
    )
    faces = F.array(*[F.struct(F.lit(f"V{j + 1:02d}").alias("v"), F.lit(f).alias("face"))
                      for j, f in enumerate(FACES)])  # fmt: skip
    rows = base.select("*", F.inline(faces))
    return rows.select(
        F.lit(run_date).alias("run_date"),
        "customer_id",
        "budget_group",
        F.col("v").alias("voucher_id"),
        (F.col("size") * F.sqrt("face") * 0.1 * F.rand(2) + F.randn(3) * 0.01).alias(
            "uplift_objective"
        ),
        (F.col("size") * F.col("face") * (0.2 + 0.3 * F.rand(4))).alias("uplift_cost"),
        F.lit("bench").alias("model_id"),
    )


def _capped_run(ctx: JobContext, catalog: Catalog, campaign: str, share: float):
    """The campaign again with its most given voucher capped at ``share`` of its count:
    (voucher, cap, uncapped count), (seconds, peak RSS, job summary), worst group gap."""
    written = catalog.read("allocations").where(F.col("arm") == "policy")
    top = written.groupBy("voucher_id").count().orderBy(F.desc("count")).first()
    voucher, count = top["voucher_id"], int(top["count"])
    cap = int(count * share)
    with open(campaign) as f:
        spec = yaml.safe_load(f)
    capped = campaign.replace(".yaml", "_capped.yaml")
    with open(capped, "w") as f:
        yaml.safe_dump({**spec, "campaign_id": "bench_capped", "caps": {voucher: cap}}, f)
    with PeakRss() as rss:
        out, t = timed(lambda: allocate_job.run(ctx, SimpleNamespace(campaign=capped)))
    rows = catalog.read("allocations").where(F.col("campaign_id") == "bench_capped")
    got = rows.where(F.col("voucher_id") == voucher).count()
    assert got <= cap, f"the cap on {voucher} ({cap}) was exceeded: {got}"
    summary = catalog.read("allocation_summary").where(F.col("campaign_id") == "bench_capped")
    worst = summary.agg(F.max("gap_rel")).first()[0]
    return (voucher, cap, count), (t, rss.peak, out), worst


def _allocation_budgets(n: int) -> dict[str, float]:
    # Roughly a third of what giving everyone the cheapest voucher would cost.
    mean_cost = float(np.exp(0.8**2 / 2)) * 2.0 * 0.35
    share = lambda k: np.sqrt((k + 1) / 20) - np.sqrt(k / 20)  # noqa: E731
    return {f"G{k}": round(float(n * share(k) * mean_cost / 3), 2) for k in range(20)}


def bench_allocate(n: int, exact_sizes: list[int], workdir: str, cap_share: float) -> None:
    run_date = dt.date(2026, 11, 1)
    conf = load_config(
        overrides=[
            f"tables.base_path={workdir}/wh",
            "spark.driver_memory=8g",
            "spark.log_level=ERROR",
        ]
    )
    spark = build_session(conf.spark, conf.tables.backend)
    catalog = Catalog(spark, conf.tables)
    print(f"writing uplift_scores: {n:,} customers x 5 vouchers, 20 budget groups ...", flush=True)
    _, t_gen = timed(lambda: catalog.write("uplift_scores", _allocation_scores(spark, n, run_date)))
    print(f"  written in {t_gen:.0f}s", flush=True)
    budgets = _allocation_budgets(n)
    campaign, shuffled = f"{workdir}/campaign.yaml", f"{workdir}/campaign_shuffled.yaml"
    spec = {"campaign_id": "bench", "vouchers": [f"V{j + 1:02d}" for j in range(5)],
            "budgets": budgets}  # fmt: skip
    for path, reader in ((campaign, "auto"), (shuffled, "spark")):
        with open(path, "w") as f:
            yaml.safe_dump({**spec, "score_reader": reader, "driver_max_rows": 0}, f)
    in_memory = (
        f"{workdir}/campaign_in_memory.yaml" if 5 * n <= conf.allocate.driver_max_rows else None
    )
    if in_memory:
        with open(in_memory, "w") as f:
            yaml.safe_dump({**spec, "campaign_id": "bench_in_memory"}, f)
    ctx = JobContext(spark, conf, catalog, run_date)
    scan_times, runs, shuffled_runs, memory_runs = [], [], [], []
    for attempt in range(2):
        scores = catalog.read("uplift_scores", where=[("run_date", "=", run_date)])
        _, t_scan = timed(
            lambda: scores.write.mode("overwrite").parquet(f"{workdir}/scan_copy")  # noqa: B023
        )
        scan_times.append(t_scan)
        with PeakRss() as rss:
            out, t = timed(lambda: allocate_job.run(ctx, SimpleNamespace(campaign=shuffled)))
        shuffled_runs.append((t, rss.peak, out))
        with PeakRss() as rss:
            out, t = timed(lambda: allocate_job.run(ctx, SimpleNamespace(campaign=campaign)))
        runs.append((t, rss.peak, out))
        if in_memory:
            with PeakRss() as rss:
                job = SimpleNamespace(campaign=in_memory)
                memory_runs.append((*timed(lambda: allocate_job.run(ctx, job)), rss.peak))  # noqa: B023
        t_shuffled = shuffled_runs[-1][0]
        print(f"  run {attempt + 1}: scan-and-write {t_scan:.1f}s, allocate {t:.1f}s "
              f"({t / t_scan:.2f}x this round's scan; reader {out['reader']}), shuffled "
              f"{t_shuffled:.1f}s", flush=True)  # fmt: skip
    summary = catalog.read("allocation_summary").where(F.col("campaign_id") == "bench").toPandas()
    same_work("scan-and-write, rows", spark.read.parquet(f"{workdir}/scan_copy").count(), 5 * n)
    same_work("allocate job, customers solved", int(summary["n_customers"].sum()), n)
    if memory_runs:
        in_memory_summary = catalog.read("allocation_summary").where(
            F.col("campaign_id") == "bench_in_memory"
        )
        solved = int(in_memory_summary.agg(F.sum("n_customers")).first()[0])
        same_work("allocate in the driver's memory, customers solved", solved, n)
    t_scan, (t, peak, out) = min(scan_times), min(runs, key=lambda r: r[0])
    t_shuffled = min(r[0] for r in shuffled_runs)
    capped = _capped_run(ctx, catalog, campaign, cap_share) if cap_share > 0 else None
    spark.stop()
    rows = 5 * n
    print(f"\nallocate, {n:,} customers x 5 vouchers x 20 budget groups ({rows:,} score rows):")
    print(f"  passes over the scores:     {out['passes']} (target <= 4)")
    print(f"  allocate end to end:        {t:.1f}s = {rows / t:,.0f} score rows/s")
    print(f"  plain scan-and-write:       {t_scan:.1f}s = {rows / t_scan:,.0f} rows/s")
    print(f"  ratio:                      {t / t_scan:.2f}x (target <= 3x)")
    print(f"  reader:                     {out['reader']} (the scores' files, no shuffle)")
    print(f"  with score_reader: spark:   {t_shuffled:.1f}s = {t_shuffled / t_scan:.2f}x the scan "
          f"(shuffled by customer)")  # fmt: skip
    print(f"  relative gap, campaign:     {out['gap_rel']:.2e}")
    print(f"  relative gap, worst group:  {summary['gap_rel'].max():.2e}")
    print(f"  spent / budget, max:        {(summary['spent'] / summary['budget']).max():.9f}")
    print(f"  customers allocated:        {out['customers_allocated']:,}")
    print(f"  peak RSS, all processes:    {peak / 2**30:.2f} GiB (driver 8g)")
    if memory_runs:
        mem_out, t_mem, peak_mem = min(memory_runs, key=lambda r: r[1])
        print(f"  in the driver's memory:     {t_mem:.1f}s = {t_mem / t_scan:.2f}x the scan, "
              f"{t / t_mem:.1f}x faster (reader {mem_out['reader']}, {mem_out['passes']} pass); "
              f"gap {mem_out['gap_rel']:.2e}, objective "
              f"{mem_out['objective'] / out['objective']:.6f} of the passes'; peak RSS "
              f"{peak_mem / 2**30:.2f} GiB")  # fmt: skip
    if capped:
        (voucher, cap, count), (t_cap, peak_cap, out_cap), worst = capped
        print(f"\nthe same with a binding cap: {voucher} at {cap:,} ({cap_share:.0%} of its "
              f"uncapped {count:,} customers):")  # fmt: skip
        print(f"  cap rounds, passes:         {out_cap['cap_rounds']}, {out_cap['passes']}")
        print(f"  allocate end to end:        {t_cap:.1f}s = {t_cap / t_scan:.2f}x the scan")
        print(f"  relative gap, campaign:     {out_cap['gap_rel']:.2e}")
        print(f"  relative gap, worst group:  {worst:.2e}")
        print(f"  peak RSS, all processes:    {peak_cap / 2**30:.2f} GiB")

    print("\nOR-Tools SCIP (5 min limit) vs the Lagrangian solver, one budget group:")
    rng = np.random.default_rng(0)
    for m in exact_sizes:
        size = np.exp(rng.normal(0, 0.8, (m, 1)))
        face = np.array(FACES)
        u = size * np.sqrt(face) * 0.1 * rng.random((m, 5)) + rng.normal(0, 0.01, (m, 5))
        c = size * face * (0.2 + 0.3 * rng.random((m, 5)))
        budget = m * float(np.exp(0.32)) * 2.0 * 0.35 / 3
        res, t_lag = timed(lambda: solve_group(envelope(u, c), budget, np.arange(m)))  # noqa: B023
        try:
            (_, best, _), t_ex = timed(lambda: solve_exact(u, c, budget, time_limit_s=300))  # noqa: B023
        except Exception as e:  # report it and stop at the first size it fails
            print(f"  {m:>9,} customers: SCIP did not finish: {e}")
            break
        print(
            f"  {m:>9,} customers: SCIP {best:.4f} in {t_ex:.1f}s; Lagrangian {res.objective:.4f}"
            f" in {t_lag:.2f}s (bound {res.dual_bound:.4f}); optimum - ours = "
            f"{(best - res.objective) / best:.2e} relative",
            flush=True,
        )
