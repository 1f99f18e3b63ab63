"""Counter-based random numbers as Spark expressions.

Every draw is a hash of (seed, salt, keys), so a value depends only on its row's keys:
the output is identical whatever the partitioning, executor count or retry.
"""

from __future__ import annotations

import math

import numpy as np
from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

_MASK = (1 << 53) - 1
_M64 = (1 << 64) - 1
_P1, _P2, _P3 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9
_P4, _P5 = 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5


def uniform(seed: int | Column, salt: str, *keys: Column | str) -> Column:
    """U(0, 1), open at both ends. ``seed`` may be an int column (one seed per row), which
    draws what F.lit(seed) would for seeds of 32 bits."""
    h = F.xxhash64(seed if isinstance(seed, Column) else F.lit(seed), F.lit(salt), *keys)
    return (h.bitwiseAND(F.lit(_MASK)).cast("double") + 0.5) / float(_MASK + 1)


def uniform_state(spark: SparkSession, seed: int, salt: str) -> int:
    """The hash state :func:`uniform` reaches before its last key (Spark's ``xxhash64``
    of the seed and salt, computed by Spark): the seed of :func:`uniform_of_ids`."""
    return int(spark.range(1).select(F.xxhash64(F.lit(seed), F.lit(salt))).first()[0])


def uniform_state_of(seed: int, salt: str) -> int:
    """:func:`uniform_state` without Spark, bit for bit: Spark's ``xxhash64`` (seed 42) of
    a 32-bit seed (``hashInt``), then of the salt's UTF-8 bytes."""
    if not -(2**31) <= seed < 2**31:
        raise ValueError(f"a seed of 32 bits is needed, got {seed}")
    h = (42 + _P5 + 4) & _M64
    h ^= ((seed & 0xFFFFFFFF) * _P1) & _M64
    h = (_rotl_int(h, 23) * _P2 + _P3) & _M64
    with np.errstate(over="ignore"):
        state = _hash_bytes(_fmix(np.array([h], dtype=np.uint64)), salt.encode())
    value = int(state[0])
    return value - 2**64 if value >= 2**63 else value  # Spark's long


def _rotl_int(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M64


def uniform_of_ids(state: int, ids: np.ndarray, key: str | None = None) -> np.ndarray:
    """:func:`uniform` (seed, salt, one long key[, one string key]) in NumPy, bit for bit:
    Spark's XXH64 of a long (``hashLong``) seeded with :func:`uniform_state`, then of the
    string's UTF-8 bytes (``hashUnsafeBytes``) seeded with that, for readers that see the
    ids outside Spark."""
    with np.errstate(over="ignore"):
        x = np.asarray(ids, dtype=np.int64).view(np.uint64)
        h = np.uint64((state + _P5 + 8) & (2**64 - 1))
        k = _rotl(x * np.uint64(_P2), 31) * np.uint64(_P1)
        h = _fmix(_rotl(h ^ k, 27) * np.uint64(_P1) + np.uint64(_P4))
        if key is not None:
            h = _hash_bytes(h, key.encode())
    return ((h & np.uint64(_MASK)).astype(np.float64) + 0.5) / float(_MASK + 1)


def _hash_bytes(seeds: np.ndarray, data: bytes) -> np.ndarray:
    """XXH64 of ``data`` under each of ``seeds``, as Spark's ``hashUnsafeBytes``
    (little-endian words; inputs of 32 bytes or more through the four-lane stripe loop)."""
    p1, p2, p3, p4, p5 = (np.uint64(p) for p in (_P1, _P2, _P3, _P4, _P5))
    end = len(data) - len(data) % 32
    if end:
        lanes = [seeds + p1 + p2, seeds + p2, seeds + np.uint64(0), seeds - p1]
        for at in range(0, end, 32):
            for n in range(4):
                word = np.uint64(int.from_bytes(data[at + 8 * n : at + 8 * n + 8], "little"))
                lanes[n] = _rotl(lanes[n] + word * p2, 31) * p1
        h = _rotl(lanes[0], 1) + _rotl(lanes[1], 7) + _rotl(lanes[2], 12) + _rotl(lanes[3], 18)
        for v in lanes:
            h = (h ^ (_rotl(v * p2, 31) * p1)) * p1 + p4
    else:
        h = seeds + p5
    h = h + np.uint64(len(data))
    words = len(data) - len(data) % 8
    for at in range(end, words, 8):
        k = _rotl(np.uint64(int.from_bytes(data[at : at + 8], "little")) * p2, 31) * p1
        h = _rotl(h ^ k, 27) * p1 + p4
    if words + 4 <= len(data):
        h ^= np.uint64(int.from_bytes(data[words : words + 4], "little")) * p1
        h = _rotl(h, 23) * p2 + p3
        words += 4
    for b in data[words:]:
        h ^= np.uint64(b) * p5
        h = _rotl(h, 11) * p1
    return _fmix(h)


def _fmix(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(_P2)
    h = h ^ (h >> np.uint64(29))
    h = h * np.uint64(_P3)
    return h ^ (h >> np.uint64(32))


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


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
