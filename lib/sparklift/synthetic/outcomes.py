"""A campaign's outcomes, simulated from the voucher model of :mod:`.vouchers`.

Every customer of a campaign's allocation run (every arm) is given the objective and cost
of the measurement window, drawn as the randomized history is: objective ~ Geometric with
the mean of the voucher actually sent (the holdout: none), cost = what a redemption costs if
the customer transacts and redeems. With the planted effects (:func:`.vouchers.true_uplift`),
the truth of each arm and of the policy is known.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparklift.synthetic.rand import geometric, uniform
from sparklift.synthetic.vouchers import sent_model


def outcomes_frame(
    allocated: DataFrame,
    faces: dict[str, float],
    campaign_id: str,
    sent_date: dt.date,
    seed: int,
    effects: str,
) -> DataFrame:
    """campaign_outcomes (campaign_id, sent_date, customer_id, objective, cost) of
    ``allocated``: the allocations of the run of ``sent_date`` with the customers' feature
    columns, ``voucher_id`` the voucher
    sent (null: none), ``faces`` each voucher's face value, ``effects`` the generator's
    world of voucher effects."""
    sent = F.col("voucher_id")
    mean, redeem, face = sent_model(sent, faces, effects)
    cid = F.col("customer_id")
    send = f"{campaign_id}.{sent_date}"  # each send of a daily campaign has its own noise
    objective = geometric(mean, uniform(seed, f"outcome.{send}", cid))
    redeemed = (objective >= 1) & (uniform(seed, f"outcome.redeem.{send}", cid) < redeem)
    return allocated.select(
        F.lit(campaign_id).alias("campaign_id"),
        F.lit(sent_date).alias("sent_date"),
        cid.cast("long").alias("customer_id"),
        objective.cast("double").alias("objective"),
        F.when(redeemed & sent.isNotNull(), face).otherwise(0.0).alias("cost"),
    )
