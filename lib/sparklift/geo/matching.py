"""Match similar zones: standardize their feature vectors, PCA, distances, greedy groups.

Runs on the driver: one row per zone (G x features*days, a few MB for 5,000 zones).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler


@dataclass(frozen=True)
class Pca:
    scores: np.ndarray  # zones x components
    explained_variance_ratio: np.ndarray  # per component, of the standardized total
    kept_columns: np.ndarray  # indexes of the input columns that vary (the others are dropped)


def pca(x: np.ndarray, n_components: int) -> Pca:
    """Standardize the columns of ``x`` (constant ones are dropped: scaling them is
    undefined) with scikit-learn's ``StandardScaler`` and project them on their first
    ``n_components`` principal components with its ``PCA`` (full SVD)."""
    sd = x.std(axis=0)
    kept = np.flatnonzero(sd > 1e-12 * np.maximum(1.0, np.abs(x).max(axis=0)))
    z = StandardScaler().fit_transform(x[:, kept])
    fit = PCA(n_components=min(n_components, *z.shape), svd_solver="full")
    scores = fit.fit_transform(z)
    return Pca(scores, fit.explained_variance_ratio_, kept)


def distances(scores: np.ndarray) -> np.ndarray:
    """Euclidean distances between all pairs of rows."""
    return cdist(scores, scores)


def greedy_groups(dist: np.ndarray, n: int) -> list[list[int]]:
    """Groups of ``n`` similar items, exactly as specified:

    start from the two closest unassigned items; add the unassigned item with the least
    sum of distances to the group's members (the least sum of pairwise distances within
    the group) until it has ``n``; repeat until fewer than ``n`` are left. Ties go to the
    lowest index. Each item's nearest unassigned neighbour is kept and refreshed only when
    that neighbour is taken, so a grouping costs O(G^2), not O(G^3).
    """
    if n < 2:
        raise ValueError(f"groups need at least 2 members, got n={n}")
    g = len(dist)
    d = np.array(dist, dtype=float)
    np.fill_diagonal(d, np.inf)
    free = np.ones(g, dtype=bool)
    nearest = d.argmin(axis=1)
    nearest_d = d[np.arange(g), nearest]
    groups: list[list[int]] = []
    while free.sum() >= n:
        i = int(np.argmin(np.where(free, nearest_d, np.inf)))
        group = [i, int(nearest[i])]
        free[group] = False
        cost = dist[group[0]] + dist[group[1]]
        while len(group) < n:
            c = int(np.argmin(np.where(free, cost, np.inf)))
            group.append(c)
            free[c] = False
            cost = cost + dist[c]
        d[:, group] = np.inf
        stale = np.flatnonzero(free & np.isin(nearest, group))
        if len(stale):
            nearest[stale] = d[stale].argmin(axis=1)
            nearest_d[stale] = d[stale, nearest[stale]]
        groups.append(group)
    return groups


def mean_within_group_distance(dist: np.ndarray, groups: list[list[int]]) -> float:
    """The mean distance between two members of the same group."""
    pair = [dist[a, b] for grp in groups for i, a in enumerate(grp) for b in grp[i + 1 :]]
    return float(np.mean(pair))
