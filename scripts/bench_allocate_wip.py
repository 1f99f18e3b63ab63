"""WIP: distributed allocation at scale (to become scripts/bench.py allocate)."""

import sys, time
from pyspark.sql import SparkSession, functions as F
from sparklift.allocation.distributed import Problem, solve, summarize

n = int(float(sys.argv[1]))
spark = (
    SparkSession.builder.master("local[2]")
    .config("spark.driver.memory", "8g")
    .config("spark.sql.shuffle.partitions", "16")
    .config("spark.ui.enabled", "false")
    .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    .getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")
V = [f"V{j:02d}" for j in range(1, 6)]
base = spark.range(n).select(
    F.col("id").alias("customer_id"),
    F.concat(F.lit("G"), (F.col("id") % 20).cast("string")).alias("budget_group"),
    F.exp(F.randn(1) * 0.8).alias("size"),
)
rows = base.select("*", F.explode(F.array(*[F.lit(v) for v in V])).alias("voucher_id"))
face = F.expr("cast(substring(voucher_id, 2) as double)")
rows = rows.select(
    "customer_id",
    "budget_group",
    "voucher_id",
    (F.col("size") * F.sqrt(face) * 0.1 * F.rand(2) + F.randn(3) * 0.01).alias("uplift_objective"),
    (F.col("size") * face * (0.2 + 0.3 * F.rand(4))).alias("uplift_cost"),
)
path = f"/tmp/alloc_scores_{n}"
rows.write.mode("overwrite").parquet(path)
scores = spark.read.parquet(path)
t = time.time()
scores.write.mode("overwrite").parquet(path + "_copy")
t_scan = time.time() - t
budgets = {f"G{g}": n / 20 * 0.5 for g in range(20)}
t = time.time()
sol = solve(scores, Problem(V, budgets))
sol.allocations.write.mode("overwrite").parquet(path + "_alloc")
t_solve = time.time() - t
summary = summarize(spark.read.parquet(path + "_alloc"), sol)
passes = sol.passes
gaps = [s.gap / s.objective for s in summary]
print(
    f"n={n:,}: passes {passes}, solve+write {t_solve:.1f}s, scan+write {t_scan:.1f}s, ratio {t_solve / t_scan:.2f}; max rel gap {max(gaps):.2e}, mean {sum(gaps) / len(gaps):.2e}; spent/budget max {max(s.spent / s.budget for s in summary):.6f}"
)
