"""Counter-based random numbers as Spark expressions.

Every draw is a hash of (seed, salt, keys), so a value depends only on its row's keys:
the output is identical whatever the partitioning, executor count or retry.
"""

from __future__ import annotations

import math

from pyspark.sql import Column
from pyspark.sql import functions as F

_MASK = (1 << 53) - 1


def uniform(seed: int | Column, salt: str, *keys: Column | str) -> Column:
    """U(0, 1), open at both ends. ``seed`` may be an int column (one seed per row), which
    draws what F.lit(seed) would for seeds of 32 bits."""
    h = F.xxhash64(seed if isinstance(seed, Column) else F.lit(seed), F.lit(salt), *keys)
    return (h.bitwiseAND(F.lit(_MASK)).cast("double") + 0.5) / float(_MASK + 1)


def normal(seed: int | Column, salt: str, *keys: Column | str) -> Column:
    """N(0, 1) by Box-Muller from two independent uniforms."""
    u1 = uniform(seed, salt + ".1", *keys)
    u2 = uniform(seed, salt + ".2", *keys)
    return F.sqrt(-2.0 * F.log(u1)) * F.cos(2.0 * math.pi * u2)


def lognormal_mean_one(sigma: float, z: Column) -> Column:
    """A log-normal multiplier with mean exactly 1: exp(sigma z - sigma^2 / 2)."""
    return F.exp(F.lit(sigma) * z - sigma * sigma / 2.0)


def geometric(mean: Column, u: Column) -> Column:
    """A count >= 0 with the given mean and variance mean (1 + mean): overdispersed like
    real activity counts. Inverse CDF of the geometric distribution on {0, 1, ...}."""
    q = mean / (mean + 1.0)
    return F.when(mean <= 0, F.lit(0)).otherwise(F.floor(F.log(u) / F.log(q))).cast("long")


def stochastic_round(x: Column, u: Column) -> Column:
    """floor(x + u): an integer with expectation exactly x."""
    return F.floor(x + u).cast("long")
