"""Campaigns as strata of a voucher history: the rows of each arm per campaign, each
row's randomized propensities, and the weights that give one arm's rows another's mix of
campaigns. Campaigns randomize at their own arm shares, so a learner that pools them must
compare a voucher's rows with controls of the same campaigns, in the same mix."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_consistent_length, column_or_1d


def strata_counts(
    arm: np.ndarray, n_vouchers: int, strata: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """(S, J + 1) rows of each arm per stratum, and each row's stratum 0..S-1 (one stratum
    without strata)."""
    if strata is None:
        stratum = np.zeros(len(arm), dtype=np.int64)
    else:
        strata = column_or_1d(strata)
        check_consistent_length(arm, strata)
        # hashed, not sorted: fast on millions of campaign ids
        stratum = pd.factorize(strata, use_na_sentinel=False)[0]
    counts = np.zeros((stratum.max() + 1, n_vouchers + 1))
    np.add.at(counts, (stratum, arm), 1)
    return counts, stratum


def propensities(counts: np.ndarray, stratum: np.ndarray) -> np.ndarray:
    """(n, J + 1): each row's chance of each arm, the arm's share of the row's stratum
    (:func:`strata_counts`): the randomized propensity, known by design."""
    return (counts / counts.sum(axis=1, keepdims=True))[stratum]


def control_weights(counts: np.ndarray, voucher: int) -> np.ndarray:
    """Per stratum, the weight of a control row that gives the controls of the strata with
    ``voucher`` and control the voucher's mix of strata, ``(n_j,c / n_j) / (n_0,c / n_0)``
    (0 where a stratum lacks either)."""
    treated = np.where(counts[:, 0] > 0, counts[:, voucher], 0.0)
    control = np.where(treated > 0, counts[:, 0], 0.0)
    return np.divide(
        treated / treated.sum(),
        control / control.sum(),
        out=np.zeros(len(counts)),
        where=control > 0,
    )


def undrawn(counts: np.ndarray) -> list[int]:
    """The vouchers (1..J) no stratum drew together with control: none of their rows can
    be compared with a control row of their own campaign."""
    both = (counts[:, 1:] > 0) & (counts[:, [0]] > 0)
    return [j + 1 for j in np.flatnonzero(~both.any(axis=0))]
