"""The generator's planted purchase probability: the oracle the propensity model is judged by.

From the activity and order model of :mod:`sparklift.synthetic.geo` on the days ahead (its
zone-day shocks included), so it is exactly the probability the generator draws with.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from sparklift.config import GenerateConfig
from sparklift.synthetic.geo import GeoWorld, _days, _p_active, _users


def _p_order(conv: Column, intensity: Column) -> Column:
    """P(orders >= 1 | active) for orders = floor(visits c + U), visits = 1 + Geometric
    with mean ``intensity`` (q = i / (1 + i)): sum_k (1 - q) q^k min(1, (k + 1) c)
    = c (1 - (m + 1) q^m + m q^(m + 1)) / (1 - q) + q^m, m = ceil(1 / c) - 1."""
    q = intensity / (1 + intensity)
    m = F.greatest(F.ceil(1 / conv) - 1, F.lit(0)).cast("double")
    qm = F.pow(q, m)
    below = conv * (1 - (m + 1) * qm + m * qm * q) / (1 - q)
    return F.when(conv >= 1, 1.0).otherwise(F.least(F.lit(1.0), below + qm))


def purchase_probability(
    spark: SparkSession, world: GeoWorld, conf: GenerateConfig, after: dt.date, horizon: int
) -> DataFrame:
    """The planted probability that each user orders at least once on the ``horizon`` days
    after ``after`` (user_id, p_purchase), from the generator's own activity and order
    model on those days (its zone-day shocks included): 1 - prod_t (1 - P(active_t)
    P(order | active_t)), a user not yet signed up on a day being inactive."""
    days = _days(world)
    days = days[(days["date"] > after) & (days["date"] <= after + dt.timedelta(days=horizon))]
    if len(days) < horizon:
        raise ValueError(f"the world's days end before {after} + {horizon} days")
    users = _users(spark, world.zones, conf.seed, conf.days, conf.partitions)
    day_rows = spark.createDataFrame(days).select(
        "day_index", "day_factor", "post", F.dayofweek("date").isin(1, 7).alias("weekend_day")
    )
    signed_up = F.col("day_index") >= F.col("signup_index")
    lift = F.when(F.col("post"), F.col("lift")).otherwise(0.0)
    c = F.col("user_conv") * F.col("zone_conv") * (1 + lift)
    pi = F.when(signed_up, _p_active(conf.seed) * _p_order(c, F.col("intensity"))).otherwise(0.0)
    return (
        users.crossJoin(F.broadcast(day_rows))
        .groupBy("user_id")
        .agg((1 - F.exp(F.sum(F.log1p(-F.least(pi, F.lit(1 - 1e-15)))))).alias("p_purchase"))
    )
