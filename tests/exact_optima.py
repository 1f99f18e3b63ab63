"""Stored exact optima of the allocation tests' fixed instances, so that no test solves a MIP
live under a wall-clock limit (a loaded machine made SCIP miss it). Each optimum is stored
with a fingerprint of its instance: a changed generator fails clearly instead of comparing
against a stale optimum. scripts/exact_optima.py recomputes the file."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).with_name("fixtures") / "exact_optima.json"
RECOMPUTE = "recompute with scripts/exact_optima.py"


@dataclass(frozen=True)
class Instance:
    """One multiple-choice knapsack as ``solve_exact`` takes it, keyed by its parameters."""

    key: str
    u: np.ndarray
    c: np.ndarray
    budget: float | Mapping[str, float]
    groups: np.ndarray | None = None
    caps: tuple[float, ...] | None = None

    def fingerprint(self) -> dict[str, float]:
        """Numbers that change when any input does: sums and position-weighted sums (row
        order) of u and c, absent options, budgets, caps, and which rows are in each group."""
        weight = np.arange(1, self.u.size + 1).reshape(self.u.shape) / self.u.size
        out: dict[str, float] = {"rows": self.u.shape[0], "options": self.u.shape[1]}
        out["absent"] = int(np.isnan(self.u).sum())
        for name, x in (("u", self.u), ("c", self.c)):
            out[f"{name}_sum"] = float(np.nansum(x))
            out[f"{name}_weighted"] = float(np.nansum(x * weight))
        budgets = self.budget if isinstance(self.budget, Mapping) else {"all": self.budget}
        out |= {f"budget_{g}": float(b) for g, b in budgets.items()}
        if self.groups is not None:
            for g in budgets:
                rows = np.flatnonzero(self.groups == g)
                out[f"rows_{g}"], out[f"row_index_sum_{g}"] = len(rows), int(rows.sum())
        out |= {f"cap_{j}": float(q) for j, q in enumerate(self.caps or ()) if np.isfinite(q)}
        return out


def by_group(
    name: str, u: np.ndarray, c: np.ndarray, group: np.ndarray, budgets: Mapping[str, float]
) -> dict[str, Instance]:
    """One instance per budget group: without caps the groups are independent."""
    return {g: Instance(f"{name}/{g}", u[group == g], c[group == g], b) for g, b in budgets.items()}


@cache
def _stored() -> dict[str, dict]:
    return json.loads(FIXTURE.read_text())["optima"]


def stored_optimum(instance: Instance) -> float:
    """The stored optimum of ``instance``; fails if there is none or the instance changed."""
    entry = _stored().get(instance.key)
    if entry is None:
        raise AssertionError(f"no stored optimum for {instance.key!r}: {RECOMPUTE}")
    got, want = instance.fingerprint(), entry["instance"]
    changed = sorted(
        k
        for k in got.keys() | want.keys()
        if k not in got
        or k not in want
        or not math.isclose(got[k], want[k], rel_tol=1e-9, abs_tol=1e-9)
    )
    if changed:
        raise AssertionError(
            f"{instance.key!r} is not the instance whose optimum is stored "
            f"({', '.join(changed)} differ): {RECOMPUTE}"
        )
    return entry["optimum"]


def lp_optimum(instance: Instance) -> float:
    """The LP relaxation's optimum of a joint instance (budgets per group, caps), by HiGHS:
    each customer at most one option, fractions allowed. It bounds the integer optimum
    from above, and the Lagrangian dual bound's best value equals it."""
    import scipy.sparse as sp
    from scipy.optimize import linprog

    u = np.nan_to_num(instance.u, nan=0.0)
    c = np.maximum(np.nan_to_num(instance.c, nan=0.0), 0.0)
    n, n_opt = u.shape
    budgets = dict(instance.budget) if isinstance(instance.budget, Mapping) else {}
    groups = instance.groups if instance.groups is not None else np.full(n, "all")
    if not budgets:
        budgets = {"all": float(instance.budget)}
    idx = np.flatnonzero((u > 0).ravel())  # the options a solver may choose
    i, j = np.divmod(idx, n_opt)
    cols = np.arange(len(idx))
    names = list(budgets)
    g = np.array([names.index(x) for x in groups])[i]
    caps = [(k, q) for k, q in enumerate(instance.caps or ()) if np.isfinite(q)]
    rows = [
        sp.csr_matrix((np.ones(len(idx)), (i, cols)), shape=(n, len(idx))),
        sp.csr_matrix((c.ravel()[idx], (g, cols)), shape=(len(names), len(idx))),
    ]
    for k, _ in caps:
        rows.append(sp.csr_matrix(((j == k).astype(float), (np.zeros(len(idx)), cols)),
                                  shape=(1, len(idx))))  # fmt: skip
    b = np.r_[np.ones(n), [budgets[x] for x in names], [q for _, q in caps]]
    out = linprog(-u.ravel()[idx], A_ub=sp.vstack(rows).tocsr(), b_ub=b, bounds=(0, 1),
                  method="highs")  # fmt: skip
    assert out.status == 0, out.message
    return float(-out.fun)
