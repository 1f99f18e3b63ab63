"""Customers, vouchers and a randomized voucher history with known per-customer uplift.

For customer features x and voucher j with face value v_j (all closed form, see
:func:`true_uplift`):
- baseline transactions in 14 days: mu0(x) = 0.3 + 0.35 min(orders_28d, 10) + 0.2 app_user;
- effect on that mean: tau_j(x) = s_j (0.9 a (1 - min(orders_28d, 8) / 8) - 0.3 d), with
  a = discount_affinity (persuadables: keen on discounts, few recent orders), sure things
  (many recent orders) near zero, and d = 1 for long-tenured web users, who are put off
  (do-not-disturb); s_j = 0.25 sqrt(v_j / 5): bigger vouchers, diminishing returns;
- objective ~ Geometric with mean m = max(mu0 + tau_j, 0.02) (control: mu0);
- cost = v_j if the customer transacts and redeems (probability 0.3 + 0.4 a + 0.01 v_j),
  so the expected cost is v_j * m / (1 + m) * redeem_j(x), and 0 in control.
The true incremental objective is m - mu0 and the true incremental cost is the expected cost.

That world (``generate.voucher_effects: scaled``) gives every voucher one shape, so the
choice between vouchers is never personal. ``distinct`` gives each voucher the shape of a
kind of real voucher, by its position j (mod 3); its appeal is set by its kind and its
face value sets only its cost. With aov the average order value gmv_28d / orders_28d (0
without orders) and r = min(days_since_last_order, 60) / 60:
- free delivery (j = 0, 3, ...): app users who order often with small baskets,
  tau = 0.4 (0.9 a app_user (0.4 + 0.6 min(orders_28d, 6) / 6) (1 - 0.6 min(aov, 60) / 60)
  - 0.3 d); cost as above with redemption 0.5 + 0.3 app_user;
- a percentage off (j = 1, 4, ...): large baskets, tau = 0.4 (0.9 a min(aov, 80) / 80 - 0.3 d),
  paying v_j aov / 25 (at most 3 v_j) per redeemed order instead of v_j;
- a comeback credit (j = 2, 5, ...): lapsed customers, tau = 0.3 (0.9 (0.3 + 0.7 a) r - 0.3 d).
Each is then the best buy for customers of its own: at a budget of a third of what
helping everyone would cost, the best single voucher reaches about 80% of the value of
the best choice per customer (``scripts/bench.py personal``).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from sparklift.config import GenerateConfig
from sparklift.contracts.inputs import VOUCHERS
from sparklift.synthetic.rand import geometric, lognormal_mean_one, normal, uniform

FACE_VALUES = (5.0, 2.0, 10.0, 3.0, 8.0, 15.0, 4.0, 6.0, 12.0, 20.0)
BUDGET_GROUPS = (("NL", 0.4), ("DE", 0.3), ("BE", 0.2), ("FR", 0.1))
FEATURES = (
    "tenure_days",
    "orders_28d",
    "gmv_28d",
    "days_since_last_order",
    "sessions_28d",
    "app_user",
    "discount_affinity",
)


def voucher_ids(n: int) -> list[str]:
    return [f"V{j + 1:02d}" for j in range(n)]


def vouchers_frame(spark: SparkSession, conf: GenerateConfig) -> DataFrame:
    rows = []
    for j, vid in enumerate(voucher_ids(conf.vouchers)):
        cap = None if j == 0 else max(1, conf.customers // (5 * (j + 1)))
        rows.append((vid, FACE_VALUES[j], cap, not (conf.vouchers >= 4 and j == 3)))
    return spark.createDataFrame(rows, VOUCHERS.schema)


def _features(seed: int, salt: str, key: Column) -> list[Column]:
    """The customer feature columns, drawn from a latent activity level."""
    u = lambda name: uniform(seed, f"{salt}.{name}", key)  # noqa: E731
    z = lambda name: normal(seed, f"{salt}.{name}", key)  # noqa: E731
    orders = geometric(1.5 * lognormal_mean_one(0.8, z("activity")), u("orders")).cast("double")
    return [
        F.floor(F.exp(F.log(F.lit(400.0)) + 1.0 * z("tenure"))).cast("double").alias(FEATURES[0]),
        orders.alias(FEATURES[1]),
        F.round(orders * 25.0 * lognormal_mean_one(0.3, z("aov")), 2).alias(FEATURES[2]),
        F.when(orders > 0, F.floor(u("recency") * 28))
        .otherwise(28 + geometric(F.lit(40.0), u("lapsed")))
        .cast("double")
        .alias(FEATURES[3]),
        (3 * orders + geometric(F.lit(4.0), u("sessions"))).cast("double").alias(FEATURES[4]),
        F.when(u("app") < 0.6, 1.0).otherwise(0.0).alias(FEATURES[5]),
        F.round(F.pow(u("affinity"), 0.7), 4).alias(FEATURES[6]),
    ]


def _budget_group(seed: int, key: Column) -> Column:
    u = uniform(seed, "budget_group", key)
    expr, acc = None, 0.0
    for name, share in BUDGET_GROUPS[:-1]:
        acc += share
        expr = F.when(u < acc, name) if expr is None else expr.when(u < acc, name)
    return expr.otherwise(BUDGET_GROUPS[-1][0])  # type: ignore[union-attr]


def customers_frame(spark: SparkSession, conf: GenerateConfig, snapshot: dt.date) -> DataFrame:
    cid = F.col("customer_id")
    return (
        spark.range(1, conf.customers + 1, numPartitions=conf.partitions)
        .withColumnRenamed("id", "customer_id")
        .select(
            F.lit(snapshot).alias("snapshot_date"),
            cid,
            _budget_group(conf.seed, cid).alias("budget_group"),
            *_features(conf.seed, f"customer.{snapshot.isoformat()}", cid),
        )
    )


def baseline() -> Column:
    return 0.3 + 0.35 * F.least(F.col("orders_28d"), F.lit(10.0)) + 0.2 * F.col("app_user")


def _scale(face_value: float) -> float:
    return 0.25 * (face_value / 5.0) ** 0.5


def _kind(voucher_id: str) -> int:
    """The distinct world's kind of a voucher V<n>: free delivery, percentage, comeback."""
    return (int(voucher_id[1:]) - 1) % 3


def _shape(voucher_id: str, effects: str) -> Column:
    """The effect's shape (before the scale s_j), by the world ``effects``."""
    a, orders, app = F.col("discount_affinity"), F.col("orders_28d"), F.col("app_user")
    put_off = ((F.col("tenure_days") > 1000) & (app == 0)).cast("double")
    if effects == "scaled":
        persuadable = 0.9 * a * (1 - F.least(orders, F.lit(8.0)) / 8.0)
    elif _kind(voucher_id) == 0:
        often = 0.4 + 0.6 * F.least(orders, F.lit(6.0)) / 6.0
        persuadable = 0.9 * a * app * often * (1 - 0.6 * F.least(_aov(), F.lit(60.0)) / 60.0)
    elif _kind(voucher_id) == 1:
        persuadable = 0.9 * a * F.least(_aov(), F.lit(80.0)) / 80.0
    else:
        lapsed = F.least(F.col("days_since_last_order"), F.lit(60.0)) / 60.0
        persuadable = 0.9 * (0.3 + 0.7 * a) * lapsed
    return persuadable - 0.3 * put_off


def _aov() -> Column:
    orders = F.col("orders_28d")
    return F.when(orders > 0, F.col("gmv_28d") / orders).otherwise(0.0)


DISTINCT_SCALES = (0.4, 0.4, 0.3)  # by kind: free delivery, percentage off, comeback credit


def _treated_mean(voucher_id: str, face_value: float, effects: str) -> Column:
    scale = _scale(face_value) if effects == "scaled" else DISTINCT_SCALES[_kind(voucher_id)]
    tau = scale * _shape(voucher_id, effects)
    return F.greatest(baseline() + tau, F.lit(0.02))


def _redeem(voucher_id: str, face_value: float, effects: str) -> Column:
    if effects == "distinct" and _kind(voucher_id) == 0:
        return 0.5 + 0.3 * F.col("app_user")
    return 0.3 + 0.4 * F.col("discount_affinity") + 0.01 * face_value


def _paid(voucher_id: str, face_value: float, effects: str) -> Column:
    """What one redemption costs: the face value, or a percentage of the basket."""
    if effects == "distinct" and _kind(voucher_id) == 1:
        return F.least(face_value * _aov() / 25.0, F.lit(3.0 * face_value))
    return F.lit(face_value)


def sent_model(
    sent: Column, faces: dict[str, float], effects: str
) -> tuple[Column, Column, Column]:
    """The outcome model of each row given the voucher ``sent`` (anything else: none) in
    the world ``effects``: the objective's mean, the redemption probability and what a
    redemption costs."""
    mean, redeem, paid = baseline(), F.lit(0.0), F.lit(0.0)
    for vid, fv in faces.items():
        hit = sent == vid
        mean = F.when(hit, _treated_mean(vid, fv, effects)).otherwise(mean)
        redeem = F.when(hit, _redeem(vid, fv, effects)).otherwise(redeem)
        paid = F.when(hit, _paid(vid, fv, effects)).otherwise(paid)
    return mean, redeem, paid


def true_uplift(df: DataFrame, vouchers: dict[str, float], effects: str) -> DataFrame:
    """``df`` (with the feature columns) x vouchers, with the true ``tau_objective`` and
    ``tau_cost`` of each voucher against no voucher in the world ``effects``."""
    per_voucher = []
    for vid, face in vouchers.items():
        m1 = _treated_mean(vid, face, effects)
        cost = _paid(vid, face, effects) * m1 / (1 + m1) * _redeem(vid, face, effects)
        per_voucher.append(
            F.struct(
                F.lit(vid).alias("voucher_id"),
                (m1 - baseline()).alias("tau_objective"),
                cost.alias("tau_cost"),
            )
        )
    return df.select("*", F.explode(F.array(*per_voucher)).alias("_t")).select(
        *df.columns, "_t.voucher_id", "_t.tau_objective", "_t.tau_cost"
    )


def campaigns_frame(spark: SparkSession, conf: GenerateConfig, end_date: dt.date) -> DataFrame:
    """Past randomized campaigns: arm drawn per row with the control share, the rest split
    evenly over the vouchers; outcomes drawn from the model above."""
    seed, ids = conf.seed, voucher_ids(conf.vouchers)
    rid = F.col("id")
    campaign = (rid % conf.campaigns).cast("int")
    u_arm = uniform(seed, "arm", rid)
    arm_index = F.floor((u_arm - conf.control_share) / (1 - conf.control_share) * len(ids))
    treatment = F.when(u_arm < conf.control_share, F.lit("control"))
    for j, vid in enumerate(ids):
        treatment = treatment.when(arm_index == j, F.lit(vid))
    base = spark.range(conf.campaign_rows, numPartitions=conf.partitions).select(
        rid,
        F.concat(F.lit("C"), F.lpad((campaign + 1).cast("string"), 3, "0")).alias("campaign_id"),
        # two weeks apart, each one's outcomes (14 days) final at least 14 days before the end
        F.date_sub(F.lit(end_date), 14 * (campaign + 2)).alias("sent_date"),
        (1 + F.floor(uniform(seed, "who", rid) * conf.customers)).cast("long").alias("customer_id"),
        treatment.otherwise(F.lit(ids[-1])).alias("treatment"),
        *_features(seed, "history", rid),
    )
    faces = {vid: FACE_VALUES[j] for j, vid in enumerate(ids)}
    mean, redeem, face = sent_model(F.col("treatment"), faces, conf.voucher_effects)
    objective = geometric(mean, uniform(seed, "objective", rid))
    redeemed = (objective >= 1) & (uniform(seed, "redeem", rid) < redeem)
    return base.select(
        "campaign_id",
        "sent_date",
        "customer_id",
        "treatment",
        *FEATURES,
        objective.cast("double").alias("objective"),
        F.when(redeemed, face).otherwise(0.0).alias("cost"),
    )


def voucher_truth(conf: GenerateConfig) -> dict:
    ids = voucher_ids(conf.vouchers)
    return {
        "function": "sparklift.synthetic.vouchers.true_uplift",
        "features": list(FEATURES),
        "face_values": {v: FACE_VALUES[j] for j, v in enumerate(ids)},
        "effect_scale": {
            v: _scale(FACE_VALUES[j])
            if conf.voucher_effects == "scaled"
            else DISTINCT_SCALES[_kind(v)]
            for j, v in enumerate(ids)
        },
        "effects": conf.voucher_effects,
        "control_share": conf.control_share,
        "model": __doc__.split("For customer features", 1)[1].strip() if __doc__ else "",
    }


def truth_report(scored: pd.DataFrame, top: float = 0.2) -> dict[str, dict[str, float]]:
    """Per voucher, predictions (``uplift_objective``, ``uplift_cost``) against the planted
    truth (``tau_objective``, ``tau_cost``): correlation, RMSE, and the true objective
    captured by treating the top ``top`` by predicted uplift as a share of the oracle's
    (the top ``top`` by true uplift)."""
    out = {}
    for voucher, g in scored.groupby("voucher_id"):
        k = max(1, int(top * len(g)))
        best = g["tau_objective"].nlargest(k).sum()
        out[str(voucher)] = {
            "corr_objective": float(np.corrcoef(g["uplift_objective"], g["tau_objective"])[0, 1]),
            "corr_cost": float(np.corrcoef(g["uplift_cost"], g["tau_cost"])[0, 1]),
            "rmse_objective": float(
                np.sqrt(((g["uplift_objective"] - g["tau_objective"]) ** 2).mean())
            ),
            "rmse_cost": float(np.sqrt(((g["uplift_cost"] - g["tau_cost"]) ** 2).mean())),
            "captured": float(g.nlargest(k, "uplift_objective")["tau_objective"].sum() / best),
        }
    return out
