"""Two arms' shares of a yes/no outcome compared: the sample-ratio checks' test."""

from __future__ import annotations

import numpy as np
from scipy import stats


def two_shares_p(yes1: int, n1: int, yes0: int, n0: int) -> float:
    """The chi-square p (without continuity correction, = the two-proportion z-test) of
    yes1 / n1 against yes0 / n0; 1 where an arm is empty or neither share varies."""
    table = np.array([[yes1, n1 - yes1], [yes0, n0 - yes0]])
    if not (n1 and n0 and table.sum(axis=0).all()):
        return 1.0
    return float(stats.chi2_contingency(table, correction=False).pvalue)
