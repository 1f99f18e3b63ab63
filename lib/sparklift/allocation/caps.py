"""Voucher caps in Spark: each round's count of the customers that choose each capped
voucher at (lambda, mu), from a histogram of the margins by which they prefer it
(:func:`cap_round`, one pass). The counts give the dual bound's subgradient, which the
cutting planes use to move mu (:mod:`.cut_planes`); deferred acceptance then leaves each
capped voucher to at most ``cap`` customers (:mod:`.acceptance`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from sparklift.allocation import layout as L


def net(n_opt: int, mu: np.ndarray, lam: Column) -> list[Column]:
    """Per option u - mu - lambda max(c, 0) where the option can be chosen (u > 0)."""
    return [
        F.when(
            F.col(L.objective(j)) > 0,
            F.col(L.objective(j)) - float(mu[j]) - lam * F.greatest(F.col(L.cost(j)), F.lit(0.0)),
        )
        for j in range(n_opt)
    ]


def margin(net: list[Column], j: int) -> Column:
    """How far option j beats the customer's best alternative (nothing = 0)."""
    others = [F.lit(0.0), *[a for k, a in enumerate(net) if k != j]]
    best_other = F.greatest(*others) if len(others) > 1 else others[0]
    return net[j] - best_other


def lambda_frame(env: DataFrame, lam: Mapping[str, float]) -> DataFrame:
    """Each budget group's lambda, to broadcast-join onto the customers."""
    return env.sparkSession.createDataFrame(
        [(g, float(v)) for g, v in lam.items()], "budget_group string, lam double"
    )


def cap_round(
    env: DataFrame,
    lam: Mapping[str, float],
    mu: np.ndarray,
    caps: Mapping[int, int],
    n_opt: int,
) -> tuple[dict[int, int], np.ndarray]:
    """Per capped option: how many customers take it at (lambda, mu), and the mu that
    brings that count to its cap given the others' mu. One pass over ``env``."""
    with_lam = env.join(F.broadcast(lambda_frame(env, lam)), "budget_group")
    nets = net(n_opt, mu, F.col("lam"))
    rows = [
        F.struct(
            F.lit(j).alias("option"),
            F.floor(F.log2(margin(nets, j)) * L.PER_OCTAVE).cast("long").alias("bucket"),
        )
        for j in caps
    ]
    hist = (
        with_lam.select(F.inline(F.array(*rows)))
        .where(F.col("bucket").isNotNull())
        .groupBy("option", "bucket")
        .count()
        .toPandas()
    )
    counts: dict[int, int] = {}
    new_mu = mu.copy()
    for j, cap in caps.items():
        h = hist[hist["option"] == j].sort_values("bucket", ascending=False)
        cum = h["count"].cumsum().to_numpy()
        counts[j] = int(cum[-1]) if len(cum) else 0
        over = np.flatnonzero(cum > cap)
        # The margins are net of mu: raised by the top of the crossing bucket, mu leaves
        # the option to those whose margin is above it (<= cap). Under the cap: towards 0.
        top = 2.0 ** ((h["bucket"].iloc[over[0]] + 1) / L.PER_OCTAVE) if len(over) else None
        new_mu[j] = mu[j] + top if top is not None else 0.0
    return counts, new_mu
