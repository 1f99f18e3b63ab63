"""A campaign's arms in the driver's memory, for a campaign solved there.

The rules are those of :mod:`.arms`, which the distributed path runs in Spark; here they
run in NumPy on the rows one pass collected (:func:`collect`), so that a small campaign
needs no further Spark job before its single write. The hash draws (each customer's
arm, an explore customer's voucher and its place in the queue) are Spark's own, computed
in that pass: both paths draw the same customers. The rest follows Spark's semantics
where the input is odd: a null cost counts as 0 and a NaN one is NaN (``greatest``); the
explore queue is a running sum in (order, customer) order per group, NaN poisoning the
rest of its group; the holdout's voucher is picked among the options tied with the best
finite margin, null margins left out. ``tests/test_arms_in_memory.py`` checks both paths on such
rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparklift.allocation import arms, ties
from sparklift.allocation import layout as L

ARM, PICK, ORDER, TIE = "arm", "_pick", "_order", "_tie"
ROWS = pa.schema(
    [
        ("customer_id", pa.int64()),
        ("budget_group", pa.string()),
        ("voucher_id", pa.string()),
        ("expected_uplift", pa.float64()),
        ("expected_cost", pa.float64()),
        ("arm", pa.string()),
        ("policy_voucher_id", pa.string()),
    ]
)
ArrowColumn = pa.Array | pa.ChunkedArray


def collect(scores: DataFrame, vouchers: Sequence[str], campaign_id: str, seed: int) -> pa.Table:
    """``scores`` (with their ``arm`` column) to the driver in one pass, typed as the
    solver reads them (:func:`.layout.typed`), with each row's arm and explore draws."""
    return L.typed(
        scores,
        F.col(ARM).cast("string").alias(ARM),
        arms.explore_pick(campaign_id, seed, len(vouchers)).alias(PICK),
        arms.explore_order(campaign_id, seed).alias(ORDER),
        ties.tie_draw(campaign_id, seed).alias(TIE),
    ).toArrow()


def of_arm(rows: pa.Table, arm: str) -> pa.Table:
    """The rows of one arm."""
    return rows.filter(pc.fill_null(pc.equal(rows[ARM], arm), False))


def explore(
    rows: pa.Table,
    vouchers: Sequence[str],
    slices: Mapping[str, float],
    caps: Mapping[str, int],
) -> pa.Table:
    """The explore customers sent a voucher (:data:`ROWS`), as :func:`.arms.explore_rows`:
    each customer's drawn voucher, a capped one only to the first of its ``caps`` in the
    queue over every group (a cap of 0: none), then sent in queue order while its group's
    running expected cost stays within its slice (no slice: 0)."""
    rows = of_arm(rows, arms.EXPLORE)
    drawn = np.asarray(vouchers, dtype=object)[rows[PICK].to_numpy()]
    named = np.asarray(rows["voucher_id"].to_numpy(zero_copy_only=False), dtype=object)
    rows = rows.filter(pa.array(named == drawn, pa.bool_()))
    rows = _within_caps(rows, {v: q for v, q in caps.items() if v in vouchers})
    if rows.num_rows == 0:
        return ROWS.empty_table()
    cost = _cost(rows["uplift_cost"])
    groups = np.asarray(rows["budget_group"].to_numpy(zero_copy_only=False), dtype=object)
    codes, names = pd.factorize(groups, use_na_sentinel=False)
    order = np.lexsort((rows["customer_id"].to_numpy(), rows[ORDER].to_numpy(), codes))
    keep = np.zeros(len(order), dtype=bool)
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    for start, stop in zip(starts, np.r_[starts[1:], len(order)], strict=True):
        at = order[start:stop]
        name = names[sorted_codes[start]]
        budget = float(slices.get(name, 0.0)) if isinstance(name, str) else 0.0
        keep[at] = np.cumsum(cost[at]) <= budget  # NaN: never, as in Spark
    sent = rows.filter(pa.array(keep))
    return _rows(sent, sent["voucher_id"], sent["uplift_objective"], cost[keep], arms.EXPLORE,
                 pa.nulls(sent.num_rows, pa.string()))  # fmt: skip


def _within_caps(rows: pa.Table, caps: Mapping[str, int]) -> pa.Table:
    """``rows`` (one per explore customer: its drawn voucher) but each capped voucher's past
    its cap in queue order (order draw, then customer id) over every group."""
    if not caps or rows.num_rows == 0:
        return rows
    named = np.asarray(rows["voucher_id"].to_numpy(zero_copy_only=False), dtype=object)
    queue = np.lexsort((rows["customer_id"].to_numpy(), rows[ORDER].to_numpy()))
    keep = np.ones(rows.num_rows, dtype=bool)
    for v, cap in caps.items():
        keep[queue[named[queue] == v][max(int(cap), 0) :]] = False
    return rows.filter(pa.array(keep))


def spend(rows: pa.Table) -> dict[str, float]:
    """Each budget group's summed ``expected_cost`` of ``rows`` (:data:`ROWS`)."""
    frame = rows.select(["budget_group", "expected_cost"]).to_pandas()
    return {
        str(g): float(v) for g, v in frame.groupby("budget_group")["expected_cost"].sum().items()
    }


def sends(rows: pa.Table) -> dict[str, int]:
    """Each voucher's number of ``rows`` (:data:`ROWS`)."""
    named = pd.Series(rows["voucher_id"].to_numpy(zero_copy_only=False), dtype=object)
    return {str(v): int(n) for v, n in named.value_counts().items()}


def holdout(rows: pa.Table, rule: arms.Rule) -> pa.Table:
    """Every held-out customer (:data:`ROWS`), as :func:`.arms.holdout_rows`: the voucher
    the policy's ``rule`` gives it (:func:`_pick`), recorded with its expected uplift and
    cost; nulls where it gives none."""
    rows = of_arm(rows, arms.HOLDOUT)
    if rows.num_rows == 0:
        return ROWS.empty_table()
    groups = np.asarray(rows["budget_group"].to_numpy(zero_copy_only=False), dtype=object)
    named = np.asarray(rows["voucher_id"].to_numpy(zero_copy_only=False), dtype=object)
    cost = _cost(rows["uplift_cost"])
    uplift = rows["uplift_objective"].to_numpy(zero_copy_only=False).astype(float)
    ids = rows["customer_id"].to_numpy()
    group = pd.factorize(groups, use_na_sentinel=False)[0]
    rank = pd.Series(named).rank(method="dense", na_option="bottom").to_numpy()
    allowed = np.ones(len(ids), dtype=bool)
    if rule.mu:  # the cap step: deferred acceptance, walked for each customer
        draw = rows[TIE].to_numpy(zero_copy_only=False).astype(float)
        allowed = _walk(rule, draw, uplift, cost, groups, named, group, ids)
    margin = _margin(uplift, cost, groups, named, rule.final_lam, {})
    margin = np.where(allowed, margin, np.nan)
    customer = _Best(margin, rank, group, ids)
    pick, targeted = _pick(margin, cost, uplift, rank, customer, groups, ids, rule.fill)
    best = rows.take(pa.array(pick))
    untargeted = pa.array(~targeted)

    def when(values: pa.Array) -> pa.Array:
        """``values`` where the customer is targeted, null elsewhere."""
        return pc.if_else(untargeted, pa.nulls(len(values), values.type), values)

    return _rows(best, pa.nulls(best.num_rows, pa.string()),
                 when(best["uplift_objective"].combine_chunks()),
                 when(pa.array(cost[pick], pa.float64())), arms.HOLDOUT,
                 when(best["voucher_id"].combine_chunks()))  # fmt: skip


def _pick(
    margin: np.ndarray,
    cost: np.ndarray,
    uplift: np.ndarray,
    rank: np.ndarray,
    customer: _Best,
    groups: np.ndarray,
    ids: np.ndarray,
    fill: Mapping[str, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Per customer: the row of the voucher the rule gives it and whether it gives one,
    as :func:`.arms.holdout_rows` picks among the options tied with the best margin
    (none among them, at margin 0, when the best is not positive by more than its
    rounding):
    the costliest up to the group's ``fill`` cut, else the cheapest, then the greatest
    voucher ``rank``."""
    key = customer.key
    valid = np.isfinite(margin)
    tolerance = ties.TIE * np.maximum(1.0, np.abs(uplift))
    with np.errstate(invalid="ignore"):
        best = (margin == customer.value[key]) & (margin > tolerance)
        positive = np.bincount(key, weights=best, minlength=len(customer.rows)) > 0
        floor = np.maximum(np.nan_to_num(customer.value, nan=0.0), 0.0)[key]
        tied = valid & (margin >= floor - tolerance) & (positive[key] | (cost > 0))
    costliest = _last(key, tied, np.where(tied, cost, 0.0), rank)
    cheapest = _last(key, tied, np.where(tied, -cost, 0.0), rank)
    filled = np.zeros(len(customer.rows), dtype=bool)
    if fill:
        first = customer.rows  # any row of each customer: its id and group
        codes, names = pd.factorize(groups[first], use_na_sentinel=False)
        has = np.array([g in fill for g in names], dtype=bool)[codes]
        cut = np.array([fill.get(g, 0) for g in names], dtype=np.int64)[codes]
        filled = has & (ids[first] <= cut)
    pick = np.where(filled, costliest, cheapest)
    return pick, tied[pick] & (filled | positive)


def _last(key: np.ndarray, first: np.ndarray, then: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Per customer (``key``): its row greatest in (``first``, ``then``, ``rank``)."""
    order = np.lexsort((rank, then, first, key))
    ends = np.r_[np.flatnonzero(np.diff(key[order])), len(order) - 1]
    return order[ends]


def _walk(
    rule: arms.Rule,
    draw: np.ndarray,
    uplift: np.ndarray,
    cost: np.ndarray,
    groups: np.ndarray,
    named: np.ndarray,
    group: np.ndarray,
    ids: np.ndarray,
) -> np.ndarray:
    """Per row: whether its voucher is left to the customer after the cap step, as
    :func:`.arms._allowed` walks it (``draw``: each row's tie draw, per customer and
    voucher): each customer asks for its best voucher not refused (the first in
    ``rule.order`` among equal nets); an uncapped one ends its walk, a capped one keeps it
    past the cut (lead, then net value, then draw) or refuses it."""
    net = _margin(uplift, cost, groups, named, rule.lam, rule.mu)
    with np.errstate(invalid="ignore"):
        net = np.where(net > ties.TIE * np.maximum(1.0, np.abs(uplift)), net, np.nan)
    first = -pd.Series(named).map({v: i for i, v in enumerate(rule.order)}).fillna(np.inf)
    first = first.to_numpy(dtype=float)
    cut = pd.Series(named).map(dict(rule.cut)).fillna(0.0).to_numpy(dtype=float)
    cut = ties.rank_key(cut)  # rank keys, as the acceptance's (inf: a zero cap)
    tie = pd.Series(named).map(dict(rule.tie)).fillna(1.0).to_numpy(dtype=float)
    cut_net = pd.Series(named).map(dict(rule.cut_net)).to_numpy(dtype=float)  # NaN: a tie
    cut_net = ties.rank_key(cut_net)
    capped = pd.Series(named).isin(list(rule.mu)).to_numpy()
    held = np.zeros(len(ids), dtype=bool)
    walking = None  # per customer (as _Best orders them): still asking
    for _ in range(len(rule.order)):  # a customer asks for each voucher at most once
        best = _Best(net, first, group, ids)
        if walking is None:
            walking = np.ones(len(best.rows), dtype=bool)
        walking &= np.isfinite(best.value)  # nothing left to ask for: done
        row = best.rows[walking]
        next_best = np.maximum(np.nan_to_num(best.runner_up[walking], nan=0.0), 0.0)
        lead = net[row] - next_best
        lead = ties.rank_key(lead)
        value = ties.rank_key(net[row])
        last = np.where(np.isnan(cut_net[row]), value, cut_net[row])
        tied = (value == last) & (draw[row] <= tie[row])
        past = (lead > cut[row]) | ((lead == cut[row]) & ((value > last) | tied))
        keeps = capped[row] & past
        held[row[keeps]] = True
        net[row[capped[row] & ~past]] = np.nan  # refused: the next best is asked for
        walking[np.flatnonzero(walking)[~capped[row] | keeps]] = False
        if not walking.any():
            break
    return ~capped | held


def union(policy: pd.DataFrame, holdout: pa.Table | None, explore: pa.Table | None) -> pa.Table:
    """The arms' rows in one table (:data:`ROWS`), as :func:`.arms.union`: the solver's
    allocations (:func:`.in_memory.allocations`) as the policy's, then the others."""
    t = pa.Table.from_pandas(policy, preserve_index=False)
    t = _rows(t, t["voucher_id"], t["expected_uplift"], t["expected_cost"], arms.POLICY,
              t["voucher_id"])  # fmt: skip
    return pa.concat_tables([t, *(x for x in (holdout, explore) if x is not None)])


def tally(rows: pa.Table) -> pd.DataFrame:
    """:func:`.distributed.tally` of ``rows`` by arm and policy_voucher_id, in pandas."""
    frame = rows.to_pandas()
    by = ["budget_group", "voucher_id", "arm", "policy_voucher_id"]
    out = frame.groupby(by, dropna=False).agg(
        n=("customer_id", "size"), value=("expected_uplift", "sum"), cost=("expected_cost", "sum")
    )
    return out.reset_index()


def _margin(
    uplift: np.ndarray,
    cost: np.ndarray,
    groups: np.ndarray,
    named: np.ndarray,
    lam: Mapping[str, float],
    mu: Mapping[str, float],
) -> np.ndarray:
    """Per row u - mu - lambda c, in the acceptance's order of operations (the same floats,
    so the same rank keys); NaN where not finite: no choice."""
    lam_i = pd.Series(groups).map(dict(lam)).fillna(0.0).to_numpy(dtype=float)
    mu_i = pd.Series(named).map(dict(mu)).fillna(0.0).to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        margin = uplift - mu_i - lam_i * cost
    return np.where(np.isfinite(margin), margin, np.nan)


class _Best:
    """Per customer (id and budget group) of long rows: the row of greatest finite
    ``margin`` (then greatest voucher ``rank``; one of them if none is finite), its value
    (NaN: none finite) and the greatest finite margin of the customer's other rows
    (``runner_up``, NaN: none), and each row's customer (``key``)."""

    def __init__(self, margin: np.ndarray, rank: np.ndarray, group: np.ndarray, ids: np.ndarray):
        valid = np.isfinite(margin)
        order = np.lexsort((rank, np.where(valid, margin, -np.inf), valid, group, ids))
        k_ids, k_group = ids[order], group[order]
        start = np.r_[True, (k_ids[1:] != k_ids[:-1]) | (k_group[1:] != k_group[:-1])]
        last = np.r_[np.flatnonzero(start)[1:] - 1, len(order) - 1]
        self.rows = order[last]
        self.value = np.where(valid[self.rows], margin[self.rows], np.nan)
        second = order[np.maximum(last - 1, 0)]
        has = ~start[last] & valid[second]
        self.runner_up = np.where(has, margin[second], np.nan)
        self.key = np.empty(len(order), dtype=np.int64)
        self.key[order] = np.cumsum(start) - 1


def _cost(costs: pa.ChunkedArray) -> np.ndarray:
    """Spark's greatest(cost, 0): a null cost is 0, a NaN one stays NaN."""
    values = pc.fill_null(costs, 0.0).to_numpy().astype(float)
    return np.where(np.isnan(values), values, np.maximum(values, 0.0))


def _rows(
    rows: pa.Table,
    voucher: ArrowColumn,
    uplift: ArrowColumn,
    cost: np.ndarray | ArrowColumn,
    arm: str,
    policy_voucher: ArrowColumn,
) -> pa.Table:
    """A :data:`ROWS` table of ``rows``' customers and groups and the given columns."""
    columns = [
        rows["customer_id"],
        rows["budget_group"],
        voucher,
        uplift,
        pa.array(cost, pa.float64()) if isinstance(cost, np.ndarray) else cost,
        pa.array([arm] * rows.num_rows, pa.string()),
        policy_voucher,
    ]
    return pa.Table.from_arrays(columns, names=ROWS.names).cast(ROWS)
