"""Two arms' shares of an outcome's categories compared: the sample-ratio checks' test."""

from __future__ import annotations

import numpy as np
from scipy import stats

MIN_EXPECTED = 5.0  # Cochran's rule: the chi-square's cells expect at least this many


def shares_p(counts: np.ndarray) -> float:
    """The chi-square p (Pearson's, without continuity correction) that two arms (rows of
    ``counts``, one column per category) share one distribution over the categories;
    categories neither arm has are left out, and it is 1 where an arm is empty or fewer
    than two categories are left (nothing varies). Of three or more categories, those
    where an arm expects fewer than :data:`MIN_EXPECTED` are pooled (and the pool, if
    still that rare, with the category of fewest customers), as the chi-square's
    approximation is poor there: a voucher the policy sent a handful of times would
    otherwise flag a mismatch."""
    table = np.asarray(counts, dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] > 2:
        table = _pooled(table)
    if table.shape[1] < 2 or not table.sum(axis=1).all():
        return 1.0
    return float(stats.chi2_contingency(table, correction=False).pvalue)


def _pooled(table: np.ndarray) -> np.ndarray:
    """``table`` with its rare categories pooled (:func:`shares_p`)."""
    rare = _expected(table).min(axis=0) < MIN_EXPECTED
    if not rare.any():
        return table
    kept, pool = table[:, ~rare], table[:, rare].sum(axis=1)
    if kept.shape[1] and _expected(np.column_stack([kept, pool])).min(axis=0)[-1] < MIN_EXPECTED:
        kept[:, int(np.argmin(kept.sum(axis=0)))] += pool
        return kept
    return np.column_stack([kept, pool])


def _expected(table: np.ndarray) -> np.ndarray:
    """Each cell's expected count when the arms share one distribution."""
    return np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()


def two_shares_p(yes1: int, n1: int, yes0: int, n0: int) -> float:
    """:func:`shares_p` of yes1 / n1 against yes0 / n0 (= the two-proportion z-test)."""
    return shares_p(np.array([[yes1, n1 - yes1], [yes0, n0 - yes0]]))
