"""Voucher caps in Spark: each round's count of the customers that choose each capped
voucher at (lambda, mu), from the options just above and below each budget's lambda, and
a histogram of the margins by which they prefer it (:func:`cap_round`, one pass). The
counts give the dual bound's subgradient, which the cutting planes use to move mu
(:mod:`.cut_planes`); deferred acceptance then leaves each capped voucher to at most
``cap`` customers (:mod:`.acceptance`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from sparklift.allocation import layout as L
from sparklift.allocation.cut_planes import ABOVE, SIDES, crossing_counts


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


def side_choice(n_opt: int, above: bool) -> tuple[Column, Column]:
    """A customer's option and its cost just above its group's lambda (column ``lam``;
    ``above``: the breakpoints above it) or just below (those at or above it), from its
    envelope (as :func:`.envelope.taken`)."""
    choice, cost = F.col(L.BASE_OPTION), F.lit(0.0)
    for k in range(n_opt):
        lam_k = F.col(L.step_lambda(k))
        step = (lam_k > F.col("lam")) if above else (lam_k >= F.col("lam"))
        choice = F.when(step, F.col(L.step_option(k))).otherwise(choice)
        cost = cost + F.when(step, F.col(L.step_cost(k))).otherwise(0.0)
    return choice, cost


def cap_round(
    env: DataFrame,
    lam: Mapping[str, float],
    mu: np.ndarray,
    caps: Mapping[int, int],
    n_opt: int,
    budgets: Mapping[str, float],
) -> tuple[dict[int, float], np.ndarray]:
    """Per capped option: its customers in the relaxed solution at (lambda, mu) that
    spends each budget (:func:`.cut_planes.crossing_counts`), and the mu that brings the
    count of those that prefer it to its cap given the others' mu. One pass over ``env``."""
    with_lam = env.join(F.broadcast(lambda_frame(env, lam)), "budget_group")
    nets = net(n_opt, mu, F.col("lam"))
    rows = [
        F.struct(
            F.lit(None).cast("string").alias("budget_group"),
            F.lit(None).cast("string").alias("side"),
            F.lit(j).alias("option"),
            F.floor(F.log2(margin(nets, j)) * L.PER_OCTAVE).cast("long").alias("bucket"),
            F.lit(0.0).alias("cost"),
        )
        for j in caps
    ]
    for side in SIDES:
        choice, cost = side_choice(n_opt, side == ABOVE)
        rows.append(
            F.struct(
                F.col("budget_group"),
                F.lit(side).alias("side"),
                choice.alias("option"),
                F.lit(None).cast("long").alias("bucket"),
                cost.alias("cost"),
            )
        )
    hist = (
        with_lam.select(F.inline(F.array(*rows)))
        .where(F.col("bucket").isNotNull() | F.col("side").isNotNull())
        .groupBy("budget_group", "side", "option", "bucket")
        .agg(F.count(F.lit(1)).alias("n"), F.sum("cost").alias("cost"))
        .toPandas()
    )
    counts = crossing_counts(hist[hist["side"].notna()], budgets, caps)
    margins = hist[hist["side"].isna()]
    new_mu = mu.copy()
    for j, cap in caps.items():
        h = margins[margins["option"] == j].sort_values("bucket", ascending=False)
        cum = h["n"].cumsum().to_numpy()
        over = np.flatnonzero(cum > cap)
        # The margins are net of mu: raised by the top of the crossing bucket, mu leaves
        # the option to those whose margin is above it (<= cap). Under the cap: towards 0.
        top = 2.0 ** ((h["bucket"].iloc[over[0]] + 1) / L.PER_OCTAVE) if len(over) else None
        new_mu[j] = mu[j] + top if top is not None else 0.0
    return counts, new_mu
