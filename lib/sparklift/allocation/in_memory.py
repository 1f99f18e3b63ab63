"""A small campaign solved in the driver's memory: the distributed solver's steps in NumPy.

Each Spark job costs a second or so whatever its size, and the distributed solver makes
three passes per cap round and four to finish: on 100,000 customers almost all of its
time is that overhead. A campaign whose score rows (counted from the Delta log, before
any pass) are at most ``driver_max_rows`` is therefore brought to the driver as Arrow in
one pass and solved there by the same rules:

- the rows pivoted to one per customer with the same input checks (:mod:`.layout`);
- per budget group, the exact multiplier, the rounded solution and the greedy fill from
  every breakpoint (:func:`.lagrange.solve_group`), or OR-Tools for ``exact`` groups;
- with caps, the same cutting-plane rounds (:class:`.cut_planes.CutSearch`), each
  round's counts from the options just above and below each budget's lambda
  (:func:`.cut_planes.crossing_counts`), then deferred acceptance at the best round's
  lambda and its mu lowered by 0.1% (:func:`_accepted`, the same steps as
  :func:`.acceptance.accepted`); then the budgets solved again within it.

The dual bound is the same: at the round's (lambda, mu) of smallest bound.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sparklift.allocation import layout as L
from sparklift.allocation.acceptance import MAX_STEPS, Cut
from sparklift.allocation.arms import Rule
from sparklift.allocation.budgets import TOTALS
from sparklift.allocation.cut_planes import ABOVE, SIDES, CutSearch, crossing_counts
from sparklift.allocation.envelope import NONE, envelope, taken
from sparklift.allocation.exact import solve_exact
from sparklift.allocation.lagrange import solve_group
from sparklift.allocation.sums import FLAGS
from sparklift.allocation.ties import TIE, TieOrder, rank_key

if TYPE_CHECKING:
    from sparklift.allocation.distributed import Problem


@dataclass
class Customers:
    """One row per customer: id (ascending), budget group, and the (n, J) objective and
    cost matrices (NaN: no usable score)."""

    ids: np.ndarray
    groups: np.ndarray  # object: str or None
    u: np.ndarray
    c: np.ndarray


@dataclass
class Solved:
    choice: np.ndarray  # (n,) option or NONE
    lam: dict[str, float]  # per group, the deferred acceptance's (the best bound's)
    dual: dict[str, float]  # value part of the bound (net of bound_mu), per group
    n_customers: dict[str, int]
    exact: list[str]  # the groups OR-Tools solved
    mu: np.ndarray  # the primal's (the deferred acceptance's)
    rounds: int
    final_lam: dict[str, float]  # the budget solve's within the caps (without caps: lam)
    cuts: dict[int, Cut]  # per capped option that refused: its last customer kept
    caps: dict[int, int]
    bound_mu: np.ndarray  # the multipliers of the best bound (without caps: 0)
    bound_lam: dict[str, float]  # per group, at bound_mu
    fill: dict[str, int]  # per group, the final solve's fill cut (:class:`.arms.Rule`)

    def rule(self, vouchers: Sequence[str]) -> Rule:
        """The policy's decision for a customer not solved for (:class:`.arms.Rule`)."""
        mu = {vouchers[j]: float(self.mu[j]) for j in self.caps}
        return Rule.of_caps(self.lam, self.final_lam, mu, self.cuts, vouchers, self.fill)


def customers(rows: pa.Table, vouchers: Sequence[str]) -> tuple[Customers, dict[str, np.ndarray]]:
    """Score rows on the driver (typed as :func:`.layout.typed` types them; other columns
    are left out) as one row per customer, with the defect counts
    (:data:`.sums.FLAGS`) per customer that :func:`totals` sums."""
    names = pa.array(list(vouchers), pa.string())
    rows = rows.select(list(L.TYPED))
    if rows.num_rows == 0:
        empty = np.empty((0, len(vouchers)))
        none = np.empty(0, dtype=np.int64)
        return Customers(none, np.empty(0, dtype=object), empty, empty), dict.fromkeys(FLAGS, none)
    vid = L.voucher_index(rows, names)
    rows = rows.append_column("_vid", pa.array(vid, pa.int64()))
    order = pc.sort_indices(rows, sort_keys=[("customer_id", "ascending"), ("_vid", "ascending")])
    rows = rows.take(order)
    inputs, flags, u, c = L.pivot(rows.drop_columns("_vid"), names, vid[order.to_numpy()])
    ids = inputs[0].to_numpy()
    groups = np.asarray(inputs[1].to_pylist(), dtype=object)
    return Customers(ids, groups, u, c), flags


def totals(cust: Customers, flags: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """The distributed histogram's per-group totals rows (customers and defect counts),
    for :func:`.budgets.check_input`."""
    frame = pd.DataFrame({"budget_group": cust.groups, "n": 1, **flags})
    out = frame.groupby("budget_group", dropna=False, as_index=False).sum()
    return out.assign(bucket=TOTALS)


def solve_in_memory(cust: Customers, problem: Problem) -> Solved:
    """The allocation of ``cust`` under ``problem``'s budgets and caps (module docstring)."""
    vouchers = list(problem.vouchers)
    n_opt = len(vouchers)
    caps = {vouchers.index(v): int(q) for v, q in problem.caps.items()}
    members = {g: np.flatnonzero(cust.groups == g) for g in problem.budgets}
    search = CutSearch(caps, problem.cap_tolerance)
    mu = search.start(n_opt)
    rounds = 0
    best: tuple[float, np.ndarray, dict[str, float], dict[str, float]] | None = None
    while True:
        choice, lam, dual, exact, sides, fill = _budgets(
            cust, cust.u, cust.c, mu, members, problem, not caps
        )
        if not caps:
            break
        bound = sum(dual.values()) + search.cap_term(mu)
        if best is None or bound < best[0]:
            best = (bound, mu, lam, dual)
        counts = crossing_counts(sides, problem.budgets, caps)
        margins = _margins(cust, mu, lam)
        target = mu.copy()
        for j, q in caps.items():
            chosen = np.sort(margins[:, j][margins[:, j] > 0])[::-1]
            # mu raised by the (q + 1)-th margin leaves j to those above it: at most q.
            target[j] = mu[j] + chosen[q] if len(chosen) > q else 0.0
        rounds += 1
        mu = search.advance(mu, bound, counts, target, rounds >= problem.max_cap_rounds)
        if mu is None:
            break
    final_lam, bound_mu, bound_lam, cuts = lam, np.zeros(n_opt), lam, {}
    if caps:  # deferred acceptance at the best lambda, then the budgets within it
        _, bound_mu, bound_lam, dual = best
        mu, lam = search.primal_mu(), bound_lam
        while True:  # again, lower, while it leaves a binding cap short
            u, c, cuts = _accepted(cust, mu, lam, caps, problem.tie_order, problem.vouchers)
            lowered = search.lower({j: int(np.isfinite(u[:, j]).sum()) for j in caps})
            if lowered is None:
                break
            mu = lowered
        choice, final_lam, _, _, _, fill = _budgets(cust, u, c, None, members, problem, False)
    n = {g: len(i) for g, i in members.items()}
    return Solved(
        choice, lam, dual, n, exact, mu, rounds, final_lam, cuts, caps, bound_mu, bound_lam, fill
    )


def allocations(cust: Customers, solved: Solved, vouchers: Sequence[str]) -> pd.DataFrame:
    """The allocations' columns: customer_id, budget_group, voucher_id, expected_uplift,
    expected_cost, one row per customer sent a voucher."""
    rows = np.flatnonzero(solved.choice != NONE)
    j = solved.choice[rows]
    return pd.DataFrame(
        {
            "customer_id": cust.ids[rows].astype(np.int64),
            "budget_group": cust.groups[rows],
            "voucher_id": np.asarray(vouchers, dtype=object)[j],
            "expected_uplift": cust.u[rows, j],
            "expected_cost": np.maximum(cust.c[rows, j], 0.0),
        }
    )


def _budgets(
    cust: Customers,
    u: np.ndarray,
    c: np.ndarray,
    mu: np.ndarray | None,
    members: Mapping[str, np.ndarray],
    problem: Problem,
    exact_ok: bool,
) -> tuple[np.ndarray, dict[str, float], dict[str, float], list[str], pd.DataFrame, dict[str, int]]:
    """Every group solved for its budget at cap multipliers ``mu``: choices, lambda, the
    bound's value part, the groups solved exactly, the options just above and below each
    lambda (the ``sides`` of :func:`.cut_planes.crossing_counts`) and the fill's cuts
    (:meth:`.settle.Settled.fill_cut`)."""
    choice = np.full(len(cust.ids), NONE, dtype=np.int64)
    lam: dict[str, float] = {}
    dual: dict[str, float] = {}
    exact: list[str] = []
    sides = []
    fill: dict[str, int] = {}
    for g, rows in members.items():
        budget = float(problem.budgets[g])
        if exact_ok and 0 < len(rows) <= problem.exact_max_customers:
            done = solve_exact(u[rows], c[rows], budget, time_limit_s=problem.exact_time_limit_s)
            choice[rows], dual[g] = done.choice, done.bound  # SCIP's bound, not its incumbent
            lam[g] = 0.0
            exact.append(g)
            continue
        env = envelope(u[rows], c[rows], mu)
        done = solve_group(env, budget, cust.ids[rows])
        choice[rows], lam[g], dual[g] = done.choice, done.lam, done.dual_bound
        if done.fill_cut is not None:
            fill[g] = done.fill_cut
        sides += [_side(g, side, taken(env, done.lam, side == ABOVE), c[rows]) for side in SIDES]
    columns = ["budget_group", "side", "option", "n", "cost"]
    sides_frame = pd.concat(sides) if sides else pd.DataFrame(columns=columns)
    return choice, lam, dual, exact, sides_frame, fill


def _side(group: str, side: str, choice: np.ndarray, c: np.ndarray) -> pd.DataFrame:
    """One side of a group's lambda (:func:`.cut_planes.crossing_counts`): per option
    (NONE included) its customers in ``choice`` and their spend (costs ``c``)."""
    n_opt = c.shape[1]
    spend = np.where(choice == NONE, 0.0, np.maximum(c[np.arange(len(c)), choice], 0.0))
    return pd.DataFrame(
        {
            "budget_group": group,
            "side": side,
            "option": np.arange(NONE, n_opt),
            "n": np.bincount(choice - NONE, minlength=n_opt + 1),
            "cost": np.bincount(choice - NONE, weights=spend, minlength=n_opt + 1),
        }
    )


def _net(cust: Customers, mu: np.ndarray, lam: Mapping[str, float]) -> np.ndarray:
    """Per customer and option u - mu - lambda max(c, 0) at its group's lambda; NaN where
    the option cannot be chosen (u not positive, or a score missing)."""
    lam_i = np.array([lam.get(g, 0.0) for g in cust.groups], dtype=float)[:, None]
    with np.errstate(invalid="ignore"):
        net = cust.u - mu[None, :] - lam_i * np.maximum(cust.c, 0.0)
        return np.where((cust.u > 0) & np.isfinite(cust.c), net, np.nan)


def _margins(cust: Customers, mu: np.ndarray, lam: Mapping[str, float]) -> np.ndarray:
    """Per customer and option: how far it beats the customer's best alternative (nothing
    = 0) at its group's lambda and ``mu``; NaN where the option cannot be chosen (as
    :func:`.caps.margin`)."""
    net = _net(cust, mu, lam)
    out = np.full_like(net, np.nan)
    for j in range(net.shape[1]):
        best_other = np.fmax(np.delete(net, j, axis=1), 0.0).max(axis=1, initial=0.0)
        out[:, j] = net[:, j] - best_other
    return out


def _accepted(
    cust: Customers,
    mu: np.ndarray,
    lam: Mapping[str, float],
    caps: Mapping[int, int],
    tie_order: TieOrder,
    vouchers: Sequence[str],
) -> tuple[np.ndarray, np.ndarray, dict[int, Cut]]:
    """Objectives and costs with each capped option left only to the customers deferred
    acceptance gives it at (lambda, mu), and per capped option that turned customers away
    its :data:`.acceptance.Cut` (as :func:`.acceptance.accepted`).

    Each customer asks for its best option not yet refused (u - lambda c - mu, positive;
    the lowest index among equals); a capped option over its cap keeps the ``cap`` askers
    of largest lead over their next best (nothing = 0), among equal leads (to
    :data:`.ties.TIE_GRID`) those of larger net value, then by ``tie_order`` of the
    customer and the option's voucher (of ``vouchers``), and refuses the others, who ask
    for their next best in the next step; until none is refused, or for
    :data:`.acceptance.MAX_STEPS` steps (the last one's cut then holds the caps)."""
    net = _net(cust, mu, lam)
    with np.errstate(invalid="ignore"):  # within a rounding of 0: not asked for
        ok = np.isfinite(net) & (net > TIE * np.maximum(1.0, np.abs(cust.u)))
    net = np.where(ok, net, -np.inf)
    refused = np.zeros(net.shape, dtype=bool)
    refused[:, [j for j, q in caps.items() if not q]] = True  # a zero cap: from the start
    rows = np.arange(len(net))
    place = np.zeros(net.shape)
    for j in caps:
        place[:, j] = tie_order.of_ids(cust.ids, vouchers[j])
    for step in range(MAX_STEPS):
        avail = np.where(refused, -np.inf, net)
        best = np.argmax(avail, axis=1)
        top = avail[rows, best]
        choice = np.where(top > 0, best, NONE)
        others = avail.copy()
        others[rows, best] = -np.inf
        lead = top - np.maximum(others.max(axis=1, initial=-np.inf), 0.0)
        kept = np.ones(len(net), dtype=bool)
        for j, q in caps.items():
            askers = np.flatnonzero(choice == j)
            rank = (
                cust.ids[askers],
                place[askers, j],
                -rank_key(top[askers]),
                -rank_key(lead[askers]),
            )
            order = askers[np.lexsort(rank)]
            kept[order[q:]] = False
        if kept.all() or step == MAX_STEPS - 1:  # run out: this step's cut holds the caps
            break
        refused[~kept, choice[~kept]] = True
    u, c = cust.u.copy(), cust.c.copy()
    cuts = {}
    for j, q in caps.items():
        holds = (choice == j) & kept
        u[~holds, j] = np.nan
        c[~holds, j] = np.nan
        if not q:
            cuts[j] = (np.inf, np.inf, 0.0)
        elif refused[:, j].any():  # it turned customers away: full
            m = float(lead[holds].min())
            # the last one's lead rank, then net rank
            last = holds & (rank_key(lead) == rank_key(m))
            n = float(top[last].min())
            cuts[j] = (m, n, float(place[last & (rank_key(top) == rank_key(n)), j].max()))
    return u, c, cuts
