"""Argument checks shared by the sequential modules, each raising a ``ValueError`` that names
the argument and what was expected (a bad design should fail at planning, not mid-analysis)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def fractions(t: ArrayLike, name: str = "t") -> np.ndarray:
    """Information fractions as a float array: non-empty, finite, > 0, strictly increasing."""
    arr = np.atleast_1d(np.asarray(t, dtype=float))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-d sequence of information fractions")
    if not np.all(np.isfinite(arr)) or arr[0] <= 0:
        raise ValueError(f"{name}: information fractions must be finite and > 0, got {arr}")
    if np.any(np.diff(arr) <= 0):
        raise ValueError(f"{name}: information fractions must be strictly increasing, got {arr}")
    return arr


def alpha_level(alpha: float) -> float:
    """The type I error rate, in (0, 0.5]."""
    if not 0 < alpha <= 0.5:
        raise ValueError(f"alpha: expected a level in (0, 0.5], got {alpha}")
    return float(alpha)


def beta_level(beta: float, alpha: float) -> float:
    """The type II error rate, in (0, 1 - alpha) so that power exceeds the type I error."""
    if not 0 < beta < 1 - alpha:
        raise ValueError(f"beta: expected a level in (0, 1 - alpha) = (0, {1 - alpha}), got {beta}")
    return float(beta)


def sides_count(sides: int) -> int:
    """1 (one-sided) or 2 (symmetric two-sided)."""
    if sides not in (1, 2):
        raise ValueError(f"sides: expected 1 or 2, got {sides}")
    return int(sides)


def look(k_stop: int, n_looks: int) -> int:
    """A look number counted from 1, at most the number of looks."""
    if not 1 <= k_stop <= n_looks:
        raise ValueError(f"k_stop: expected a look number in 1..{n_looks}, got {k_stop}")
    return int(k_stop)
