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
    """The envelope of options (u, c) per row; ``mu`` (J,) are per-option cap multipliers.

    Works on one vector per option (J is small, n large): NumPy reductions along a short
    row are several times slower than the same comparisons between whole columns."""
    u = np.asarray(u, dtype=float)
    c = np.maximum(np.asarray(c, dtype=float), 0.0)
    n, n_opt = u.shape
    a = u - (0.0 if mu is None else np.asarray(mu, dtype=float)[None, :])
    valid = np.isfinite(u) & np.isfinite(c) & (u > 0) & (a > 0)
    a = np.where(valid, a, -np.inf)
    A = [np.ascontiguousarray(a[:, j]) for j in range(n_opt)]
    C = [np.ascontiguousarray(c[:, j]) for j in range(n_opt)]
    V = [np.ascontiguousarray(valid[:, j]) for j in range(n_opt)]

    # Choice at +inf: among zero-cost options (and "nothing"), the highest value; the
    # lowest index among equal values.
    best_a, best = np.full(n, -np.inf), np.full(n, NONE, dtype=np.int64)
    for j in range(n_opt):
        free_a = np.where(V[j] & (C[j] == 0), A[j], -np.inf)
        better = free_a > best_a
        best_a = np.where(better, free_a, best_a)
        best = np.where(better, j, best)
    has_free = best_a > 0
    base = np.where(has_free, best, NONE)
    base_value = np.where(has_free, best_a, 0.0)  # the base choice costs 0

    lam = np.full((n_opt, n), np.nan)  # by breakpoint k: rows, transposed at the end
    d_value = np.full((n_opt, n), np.nan)
    d_cost = np.full((n_opt, n), np.nan)
    to = np.full((n_opt, n), NONE, dtype=np.int64)
    # Only the customers that took every breakpoint so far can take another: the vectors
    # keep those (rows ``idx``), so later breakpoints cost what few customers reach them.
    idx, cur_a, cur_c, last = np.arange(n), base_value, np.zeros(n), np.full(n, np.inf)
    for k in range(n_opt):
        # Lines costlier than the current one overtake it at (a_j - a_cur) / (c_j - c_cur),
        # never above the previous breakpoint. The highest crossing wins; among lines
        # crossing at the same lambda the costliest (it dominates below), then the lowest j.
        top = np.full(len(idx), -np.inf)
        nxt = np.zeros(len(idx), dtype=np.int64)
        nxt_a, nxt_c = np.zeros(len(idx)), np.full(len(idx), -np.inf)
        for j in range(n_opt):
            dc = C[j] - cur_c
            with np.errstate(divide="ignore", invalid="ignore"):
                cross = np.where(V[j] & (dc > 0), (A[j] - cur_a) / dc, -np.inf)
            cross = np.minimum(cross, last)
            take = (cross > top) | ((cross == top) & (C[j] > nxt_c))
            top = np.where(take, cross, top)
            nxt = np.where(take, j, nxt)
            nxt_a = np.where(take, A[j], nxt_a)
            nxt_c = np.where(take, C[j], nxt_c)
        go = top > 0
        if not go.any():
            break
        if not go.all():
            idx, top, nxt, nxt_a, nxt_c = idx[go], top[go], nxt[go], nxt_a[go], nxt_c[go]
            cur_a, cur_c = cur_a[go], cur_c[go]
            A, C, V = [x[go] for x in A], [x[go] for x in C], [x[go] for x in V]
        lam[k, idx] = top
        d_value[k, idx] = nxt_a - cur_a
        d_cost[k, idx] = nxt_c - cur_c
        to[k, idx] = nxt
        cur_a, cur_c, last = nxt_a, nxt_c, top
    return Envelope(base, base_value, lam.T, d_value.T, d_cost.T, to.T)


def taken(env: Envelope, lam: float, above: bool) -> np.ndarray:
    """Each customer's option at multiplier ``lam`` (NONE: nothing): just above it
    (``above``: the breakpoints above ``lam``) or just below it (those at or above it). They
    differ for the customers whose breakpoint is ``lam``, where both options are optimal."""
    return after_steps(env, (env.lam > lam).sum(axis=1) if above else (env.lam >= lam).sum(axis=1))


def after_steps(env: Envelope, n: np.ndarray) -> np.ndarray:
    """Each customer's option after taking its first ``n`` breakpoints (0: its base)."""
    choice = env.base.copy()
    moved = n > 0
    choice[moved] = env.to[moved, n[moved] - 1]
    return choice
