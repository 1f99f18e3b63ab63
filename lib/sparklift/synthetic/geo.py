"""Zones, users and their daily activity, with a planted geo treatment effect.

The model, per user i in zone g on day t (all draws hashed from the seed):
- every zone is one of a few archetypes (dense centre, suburb, campus, ...) that set its
  typical size, activity, conversion, prices and weekend pattern; a zone departs from its
  archetype by its own noise, so similar zones exist (what geo matching looks for) but no
  two are alike;
- zone sizes are log-normal (sigma ~1.3 overall): a long tail of small zones, a few big ones;
- user i is active on day t with probability
  min(0.95, p_i * act_g * weekday_t * weekend_gt * trend_t * shock_t * shock_gt * newness_it),
  with a zone-day shock shock_gt shared by the zone's users (clustering by zone x day);
- visits = 1 + Geometric(intensity_i); orders = floor(visits * p_conv + U), with
  p_conv = conv_i * conv_g * (1 + lift_g 1[g treated, t >= start]) so the treatment moves
  the intensive margin only and E[orders | visits] is known exactly;
- items = orders + Geometric(0.8 orders); gmv = items * price_i * price_g * noise.
The expected additive effect of treatment on a treated post-period user-day is therefore
visits * conv_i * conv_g * lift_g for orders and 1.8 * price_i * price_g times that for gmv; the
generator averages these over the treated rows and records them as the true ATT.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StructField,
    StructType,
)

from sparklift.config import DesignConfig, GenerateConfig
from sparklift.contracts.inputs import ZONES
from sparklift.geo.experiment import ExperimentConfig
from sparklift.synthetic.rand import (
    geometric,
    lognormal_mean_one,
    normal,
    stochastic_round,
    uniform,
)

WEEKDAY_FACTOR = (0.92, 0.88, 0.9, 0.95, 1.08, 1.22, 1.05)  # Monday .. Sunday
TREND_PER_DAY = 0.0015
ARCHETYPES = 8
PLANTED_EXPERIMENT = "synthetic_geo"  # the planted effect, registered as an experiment


@dataclass(frozen=True)
class GeoWorld:
    """The small dimension tables of the world, drawn on the driver with NumPy."""

    # zone_id, region, eligible, users, user_offset, archetype, activity, conv, price,
    # weekend, lift, treated
    zones: pd.DataFrame
    days: pd.DataFrame  # date, day_index, day_factor
    effect_start: dt.date | None


def draw_world(conf: GenerateConfig, end_date: dt.date) -> GeoWorld:
    rng = np.random.default_rng(conf.seed)
    n = conf.zones
    # Archetype parameters: log size, activity, conversion, price, weekend uplift.
    arch = rng.integers(0, ARCHETYPES, n)
    a_size, a_act, a_conv, a_price = (
        rng.normal(0.0, s, ARCHETYPES) for s in (0.8, 0.25, 0.25, 0.2)
    )
    a_weekend = rng.uniform(-0.1, 0.25, ARCHETYPES)
    weight = np.exp(a_size[arch] + rng.normal(0.0, 1.0, n))
    users = np.maximum(1, np.round(conf.users * weight / weight.sum())).astype(np.int64)
    zones = pd.DataFrame(
        {
            "zone_id": np.arange(1, n + 1, dtype=np.int32),
            "region": [f"R{i % conf.regions + 1:02d}" for i in range(n)],
            "eligible": rng.uniform(size=n) > 0.05,
            "users": users,
            "user_offset": np.concatenate([[0], np.cumsum(users)[:-1]]),
            "archetype": arch,
            "activity": np.exp(a_act[arch] + rng.normal(0.0, 0.1, n)),
            "conv": np.exp(a_conv[arch] + rng.normal(0.0, 0.12, n) - 0.04),
            "price": np.exp(a_price[arch] + rng.normal(0.0, 0.08, n)),
            "weekend": a_weekend[arch] + rng.normal(0.0, 0.03, n),
            "lift": 0.0,
            "treated": False,
        }
    )
    effect = conf.geo_effect
    effect_start = None
    if effect.zones > 0 and effect.lift != 0 and effect.start_offset_days < conf.days:
        # At most half the eligible zones, so small worlds keep untreated zones to compare.
        candidates = zones.index[zones["eligible"]].to_numpy()
        k = min(effect.zones, len(candidates) // 2)
        chosen = rng.choice(candidates, size=k, replace=False)
        zones.loc[chosen, "treated"] = True
        zones.loc[chosen, "lift"] = effect.lift * rng.uniform(0.4, 1.6, k)
        effect_start = end_date - dt.timedelta(days=conf.days - 1 - effect.start_offset_days)
    dates = [end_date - dt.timedelta(days=conf.days - 1 - i) for i in range(conf.days)]
    shock = np.exp(rng.normal(0.0, 0.04, conf.days))
    days = pd.DataFrame(
        {
            "date": dates,
            "day_index": np.arange(conf.days, dtype=np.int32),
            "day_factor": [
                WEEKDAY_FACTOR[d.weekday()] * (1 + TREND_PER_DAY * i) * shock[i]
                for i, d in enumerate(dates)
            ],
        }
    )
    return GeoWorld(zones, days, effect_start)


def zones_frame(spark: SparkSession, world: GeoWorld) -> DataFrame:
    z = world.zones
    return spark.createDataFrame(
        list(zip(z["zone_id"].tolist(), z["region"], z["eligible"].tolist(), strict=True)),
        ZONES.schema,
    )


_USER_FIELDS = [
    StructField("zone_id", IntegerType()),
    StructField("users", LongType()),
    StructField("user_offset", LongType()),
    StructField("zone_activity", DoubleType()),
    StructField("zone_conv", DoubleType()),
    StructField("zone_price", DoubleType()),
    StructField("zone_weekend", DoubleType()),
    StructField("lift", DoubleType()),
]
_ZONE_COLUMNS = ["zone_id", "users", "user_offset", "activity", "conv", "price", "weekend", "lift"]


def _users(
    spark: SparkSession, zones: pd.DataFrame, seed: int | Column, n_days: int, partitions: int
) -> DataFrame:
    """One row per user with its drawn traits; ``zones`` has a ``seed`` column when ``seed``
    is that column (several worlds at once)."""
    fields, cols, keys = list(_USER_FIELDS), list(_ZONE_COLUMNS), ["zone_id"]
    if isinstance(seed, Column):
        fields, cols, keys = (
            [StructField("seed", IntegerType()), *fields],
            ["seed", *cols],
            ["seed", "zone_id"],
        )
    rows = list(zip(*(zones[c].tolist() for c in cols), strict=True))
    uid = F.col("user_id")
    zone_cols = [*keys, "zone_activity", "zone_conv", "zone_price", "zone_weekend", "lift"]
    return (
        spark.createDataFrame(rows, StructType(fields))
        .repartition(partitions, *keys)
        .select(
            *zone_cols,
            "user_offset",
            F.explode(F.sequence(F.lit(1), F.col("users"))).alias("_i"),
        )
        .select(*zone_cols, (F.col("user_offset") + F.col("_i")).alias("user_id"))
        .select(
            "*",
            (
                (0.02 + 0.55 * F.pow(uniform(seed, "p_active", uid), 1.6)) * F.col("zone_activity")
            ).alias("p_active"),
            (0.3 + 1.2 * uniform(seed, "intensity", uid)).alias("intensity"),
            F.least(F.lit(0.8), 0.1 * lognormal_mean_one(0.6, normal(seed, "conv", uid))).alias(
                "user_conv"
            ),
            (
                12.0 * F.col("zone_price") * lognormal_mean_one(0.35, normal(seed, "price", uid))
            ).alias("price"),
            # 88% signed up before the window (tenure log-normal, median ~300 days),
            # the rest during it: they bring new users into every zone.
            F.when(
                uniform(seed, "new", uid) < 0.12,
                F.floor(uniform(seed, "signup", uid) * n_days),
            )
            .otherwise(
                -F.least(
                    F.lit(3650.0),
                    F.floor(F.exp(F.log(F.lit(300.0)) + 1.1 * normal(seed, "tenure", uid))),
                )
            )
            .cast("int")
            .alias("signup_index"),
        )
    )


def _days(world: GeoWorld) -> pd.DataFrame:
    """The world's days with their ``post`` flag (on or after the effect's start)."""
    post = [world.effect_start is not None and d >= world.effect_start for d in world.days["date"]]
    return world.days.assign(post=post)


def activity_frame(
    spark: SparkSession,
    world: GeoWorld,
    conf: GenerateConfig,
    zone_ids: list[int] | None = None,
    with_truth: bool = False,
) -> DataFrame:
    """user_activity rows (users x days, kept where active); optionally with the expected
    treatment effects ``effect_orders``/``effect_gmv`` of each row and a ``post`` flag."""
    z = world.zones if zone_ids is None else world.zones[world.zones["zone_id"].isin(zone_ids)]
    users = _users(spark, z, conf.seed, conf.days, conf.partitions)
    return _activity(spark, users, _days(world), conf.seed, with_truth)


def worlds_activity_frame(
    spark: SparkSession, worlds: Sequence[tuple[GeoWorld, GenerateConfig]]
) -> DataFrame:
    """``activity_frame(..., with_truth=True)`` of several worlds (seeds) in one plan, with
    a ``seed`` column: the rows of each world are exactly its own activity_frame's, and
    hundreds of simulated worlds cost one Spark job instead of hundreds of plans."""
    confs = [c for _, c in worlds]
    if len({c.days for c in confs}) > 1 or len({c.seed for c in confs}) < len(confs):
        raise ValueError("worlds need distinct seeds and the same number of days")
    if not all(-(2**31) <= c.seed < 2**31 for c in confs):
        raise ValueError("seeds of a worlds frame must fit in 32 bits")
    zones = pd.concat([w.zones.assign(seed=c.seed) for w, c in worlds], ignore_index=True)
    days = pd.concat([_days(w).assign(seed=c.seed) for w, c in worlds], ignore_index=True)
    seed = F.col("seed")
    users = _users(spark, zones, seed, confs[0].days, sum(c.partitions for c in confs))
    return _activity(spark, users, days, seed, with_truth=True)


def _p_active(seed: int | Column) -> Column:
    """The probability that a signed-up user is active on a day (users x days columns)."""
    zone_day_shock = lognormal_mean_one(0.08, normal(seed, "zday", "zone_id", "day_index"))
    tenure = F.col("day_index") - F.col("signup_index")
    newness = F.when(tenure < 14, 1.5).otherwise(1.0)
    weekend = F.when(F.col("weekend_day"), 1 + F.col("zone_weekend")).otherwise(1.0)
    return F.least(
        F.lit(0.95),
        F.col("p_active") * F.col("day_factor") * weekend * zone_day_shock * newness,
    )


def _activity(
    spark: SparkSession, users: DataFrame, days: pd.DataFrame, seed: int | Column, with_truth: bool
) -> DataFrame:
    """Users x days, kept where active, with the day's activity drawn from hashed uniforms."""
    many = isinstance(seed, Column)
    day_rows = spark.createDataFrame(days).select(
        *([F.col("seed").cast("int")] if many else []),
        F.col("date").cast(DateType()),
        "day_index",
        "day_factor",
        "post",
        (F.dayofweek("date").isin(1, 7)).alias("weekend_day"),
    )
    key = (F.col("user_id"), F.col("day_index"))
    tenure = F.col("day_index") - F.col("signup_index")
    joined = (
        users.join(F.broadcast(day_rows), "seed")
        if many
        else users.crossJoin(F.broadcast(day_rows))
    )
    rows = joined.where(tenure >= 0).where(uniform(seed, "active", *key) < _p_active(seed))
    conv = F.col("user_conv") * F.col("zone_conv")
    lift = F.when(F.col("post"), F.col("lift")).otherwise(0.0)
    visits = 1 + geometric(F.col("intensity"), uniform(seed, "visits", *key))
    rows = rows.select(
        "*",
        visits.alias("visits"),
        tenure.cast("int").alias("tenure_days"),
    )
    orders = stochastic_round(F.col("visits") * conv * (1 + lift), uniform(seed, "orders", *key))
    rows = rows.select("*", orders.alias("orders"))
    items = F.col("orders") + geometric(0.8 * F.col("orders"), uniform(seed, "items", *key))
    rows = rows.select("*", items.alias("items"))
    gmv = F.round(
        F.col("items") * F.col("price") * lognormal_mean_one(0.25, normal(seed, "gmv", *key)), 2
    )
    prior_mean = 28 * F.col("p_active") * (1 + F.col("intensity")) * conv
    prior_orders = geometric(prior_mean, uniform(seed, "prior", *key))
    prior_gmv = F.round(
        prior_orders * 1.8 * F.col("price") * lognormal_mean_one(0.3, normal(seed, "pgmv", *key)),
        2,
    )
    cols = [
        *(["seed"] if many else []),
        "date",
        "user_id",
        "zone_id",
        "visits",
        "orders",
        "items",
        gmv.alias("gmv"),
        "tenure_days",
        prior_orders.cast("int").alias("prior_orders_28d"),
        prior_gmv.alias("prior_gmv_28d"),
    ]
    if with_truth:
        effect_orders = F.col("visits") * conv * lift
        cols += [
            "post",
            effect_orders.alias("effect_orders"),
            (effect_orders * 1.8 * F.col("price")).alias("effect_gmv"),
        ]
    return rows.select(*cols)


def geo_truth(spark: SparkSession, world: GeoWorld, conf: GenerateConfig) -> dict:
    """The planted geo effect and its true ATT per treated post-period user-day."""
    treated = world.zones[world.zones["treated"]]
    if treated.empty:
        return {"treated_zones": [], "effect_start": None}
    rows = activity_frame(spark, world, conf, treated["zone_id"].tolist(), with_truth=True)
    agg = (
        rows.where("post")
        .agg(
            F.count("*").alias("n"),
            F.avg("effect_orders").alias("att_orders"),
            F.avg("effect_gmv").alias("att_gmv"),
            F.avg(F.col("orders") - F.col("effect_orders")).alias("base_orders"),
            F.avg(F.col("gmv") - F.col("effect_gmv")).alias("base_gmv"),
        )
        .first()
    )
    return {
        "treated_zones": treated["zone_id"].tolist(),
        "zone_lift": dict(zip(treated["zone_id"].tolist(), treated["lift"].tolist(), strict=True)),
        "mean_lift": conf.geo_effect.lift,
        "effect_start": world.effect_start.isoformat() if world.effect_start else None,
        "metric_scope": "per treated user-day in the post period (intensive margin)",
        "treated_post_rows": agg["n"],
        "att": {"orders": agg["att_orders"], "gmv": agg["att_gmv"]},
        "relative_att": {
            "orders": agg["att_orders"] / agg["base_orders"] if agg["base_orders"] else None,
            "gmv": agg["att_gmv"] / agg["base_gmv"] if agg["base_gmv"] else None,
        },
    }


def planted_experiment(
    world: GeoWorld, conf: GenerateConfig, defaults: DesignConfig
) -> tuple[ExperimentConfig, pd.DataFrame]:
    """The planted geo effect as a designed experiment (spec and assignment), so that
    ``sparklift analyze`` can measure it: the treated zones against up to twice as many
    untreated eligible zones drawn at random (the other zones stay free for new designs),
    one randomization group, from the first generated day to the last."""
    eligible = world.zones[world.zones["eligible"]]
    untreated = eligible.index[~eligible["treated"]].to_numpy()
    n_control = min(len(untreated), 2 * int(eligible["treated"].sum()))
    control = np.random.default_rng(conf.seed + 1).choice(untreated, n_control, replace=False)
    z = eligible[eligible["treated"] | eligible.index.isin(control)]
    first, last = world.days["date"].iloc[0], world.days["date"].iloc[-1]
    spec = ExperimentConfig.model_validate(
        defaults.model_dump()
        | {
            "experiment_id": PLANTED_EXPERIMENT,
            "variants": ["control", "treatment"],
            "zones_per_variant": int(z["treated"].sum()),
            "start": world.effect_start,
            "end": last,
            "pre_days": (world.effect_start - first).days,
            "metrics": [{"name": "orders"}, {"name": "gmv"}, {"name": "visits", "primary": False}],
            "covariates": ["tenure_days", "prior_orders_28d"],
            "seed": conf.seed,
        }
    )
    assignment = pd.DataFrame(
        {
            "zone_id": z["zone_id"].astype(int),
            "variant": np.where(z["treated"], "treatment", "control"),
            "group_id": 1,
        }
    )
    return spec, assignment
