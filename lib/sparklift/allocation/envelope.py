"""Each customer's choice as a function of the budget multiplier: the upper envelope.

With multiplier lambda >= 0, customer i takes argmax_j (u_j - mu_j - lambda c_j) if it is
positive, else nothing. Each option is a line in lambda; "nothing" is the line 0. As
lambda falls from +inf to 0 the choice moves to ever costlier options at breakpoints:
the upper envelope of the lines. This module computes, for a batch of customers at once
(options as the columns of (n, J) matrices, NaN = no such option), the choice at
lambda = +inf and the breakpoints below it: (lambda_k, delta objective, delta cost, new
option), at most J per customer, lambda_k > 0 and strictly decreasing per customer.

Conventions (documented for users): options with u <= 0 are never chosen; options with
c <= 0 and u > 0 are free: they count as cost 0 (a predicted negative incremental cost is
model noise; counting 0 keeps the budget safe) and the best free option replaces
"nothing" as the choice at lambda = +inf. Ties are broken by the lower cost, then the
lower option index, so equal inputs give equal outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NONE = -1  # "no voucher"


@dataclass
class Envelope:
    """Per customer (rows): the choice at lambda=+inf and up to J breakpoints (columns,
    NaN-padded): lam (descending), d_value, d_cost, to (the option chosen below lam).
    Values are net of the cap multipliers (u - mu), which is what the dual bound needs."""

    base: np.ndarray  # (n,) option index or NONE
    base_value: np.ndarray  # (n,) u - mu of the base choice (0 for NONE)
    lam: np.ndarray  # (n, J)
    d_value: np.ndarray  # (n, J)
    d_cost: np.ndarray  # (n, J)
    to: np.ndarray  # (n, J) int, NONE where padded


def envelope(u: np.ndarray, c: np.ndarray, mu: np.ndarray | None = None) -> Envelope:
    """The envelope of options (u, c) per row; ``mu`` (J,) are per-option cap multipliers."""
    u = np.asarray(u, dtype=float)
    c = np.maximum(np.asarray(c, dtype=float), 0.0)
    n, n_opt = u.shape
    a = u - (0.0 if mu is None else np.asarray(mu, dtype=float)[None, :])
    valid = np.isfinite(u) & np.isfinite(c) & (u > 0) & (a > 0)
    a = np.where(valid, a, -np.inf)
    rows = np.arange(n)

    # Choice at +inf: among zero-cost options (and "nothing"), the highest value.
    free = valid & (c == 0)
    free_a = np.where(free, a, -np.inf)
    best_free = np.argmax(free_a, axis=1)  # the first (lowest index) among equal values
    has_free = free_a[rows, best_free] > 0
    cur = np.where(has_free, best_free, NONE)
    cur_a = np.where(has_free, free_a[rows, best_free], 0.0)
    cur_c = np.zeros(n)
    base, base_value = cur.copy(), cur_a.copy()  # the base choice costs 0

    lam = np.full((n, n_opt), np.nan)
    d_value = np.full((n, n_opt), np.nan)
    d_cost = np.full((n, n_opt), np.nan)
    to = np.full((n, n_opt), NONE, dtype=np.int64)
    last = np.full(n, np.inf)
    for k in range(n_opt):
        # Lines costlier than the current one overtake it at (a_j - a_cur) / (c_j - c_cur).
        dc = c - cur_c[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            cross = np.where(valid & (dc > 0), (a - cur_a[:, None]) / dc, -np.inf)
        cross = np.minimum(cross, last[:, None])  # can't cross above the previous breakpoint
        top = cross.max(axis=1)
        # Among lines crossing at the same lambda, the costliest dominates below it.
        tied = np.where(cross == top[:, None], c, -np.inf)
        nxt = np.argmax(tied, axis=1)
        go = top > 0
        if not go.any():
            break
        r = rows[go]
        j = nxt[go]
        lam[r, k] = top[go]
        d_value[r, k] = a[r, j] - cur_a[r]
        d_cost[r, k] = c[r, j] - cur_c[r]
        to[r, k] = j
        cur[r], cur_a[r], cur_c[r] = j, a[r, j], c[r, j]
        last[r] = top[go]
        last[~go] = 0.0
    return Envelope(base, base_value, lam, d_value, d_cost, to)
