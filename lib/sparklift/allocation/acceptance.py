"""Which customers keep a capped voucher: deferred acceptance at the primal's (lambda, mu).

Each customer asks for its best option not yet refused (u - lambda c - mu, positive by
more than a rounding; the lowest index among equals). A capped option with more askers
than its cap keeps the ``cap`` of largest lead over their next best (nothing = 0); among
equal leads (to :data:`.ties.TIE_GRID`'s step) those of larger net value (u - lambda c
- mu, to the same step), then by the campaign's hash of the customer and the option
(:class:`.ties.TieOrder`, the held-out customers' tie draw); and refuses the others, who
ask for their next best in the next step (a customer kept so far may be refused later,
for askers of larger lead). A cap once full stays full, and the steps end when no option
refuses anyone, or at :data:`MAX_STEPS` (whose cut then holds the caps). Then each capped
option is left only to the customers holding it; the budget solve within that
(:mod:`.distributed`) holds the caps by construction.

Why the net value among equal leads: a tree model's pooled final stage moves every
voucher by the same amount on every leaf, so nearly every asker of a cap leads its next
best by the same amount, and by the hash alone a cap kept a random sample of them,
customers whose every option is worth little among them; those lose nothing when
refused, while a customer of large net value refused by one cap and then another may end
with nothing. On ten such instances the allocation reached 0.9987-1.0000 of the LP
optimum by the hash alone, 1.0000 in every one with the net first (bench/RESULTS.md).

It replaced a cut of each capped voucher's choosers at the cap rounds' last mu, whose
refused customers could only take an uncapped voucher: a customer refused by one cap
could not fill another, and at the optimal mu, where blocks of tied customers are just
indifferent, caps were left unused (the demo reached 0.957 of its LP optimum; now
0.9998, bench/RESULTS.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.storagelevel import StorageLevel

from sparklift.allocation import layout as L
from sparklift.allocation.caps import lambda_frame, net
from sparklift.allocation.envelope import NONE
from sparklift.allocation.ties import TieOrder, rank_column, rounding

log = logging.getLogger("sparklift")
Cut = tuple[float, float, float]  # a cap's last customer kept: lead, net value, tie draw
MAX_STEPS = 30  # steps of asking: in practice a handful (the demo: 5)


@dataclass
class Accepted:
    """What deferred acceptance left: ``frame``, the input columns of the customer rows
    with each capped option left only to the customers holding it; per capped option that
    refused customers, its ``cut``: the lead and net value of the last one kept and the
    largest tie draw kept among those tied with it in both (:class:`.ties.TieOrder`), which
    the held-out customers' rule follows (:class:`.arms.Rule`); per capped option, the
    customers
    ``held`` by it; the last step's frame, cached (``step``; release it once ``frame`` is
    cached or dropped; None: no step refused anyone); and the ``passes`` made."""

    frame: DataFrame
    cuts: dict[int, Cut]
    held: dict[int, int]
    step: DataFrame | None
    passes: int

    def release(self) -> None:
        if self.step is not None:
            self.step.unpersist()


def _refused(j: int) -> str:
    return f"_refused_{j}"  # true once option j refused the customer (null: never)


def _state(
    df: DataFrame, n_opt: int, mu: np.ndarray, caps: Mapping[int, int], orders: Mapping[int, Column]
) -> DataFrame:
    """``df`` with each customer's ``_choice`` (its best option not refused, NONE),
    ``_top``, its net value for it, ``_lead`` over its next best and ``_order``, its tie
    order for that option (``orders`` per capped option; 0 for the others). An option
    whose net is within a rounding of 0 is not asked for (:func:`.ties.rounding`): the
    customers that set a budget's lambda have net 0, which the held-out customers' rule,
    computing it in another order, would read as a rounding above or below."""
    nets = [
        F.when(a > rounding(F.col(L.objective(j))), a)
        for j, a in enumerate(net(n_opt, mu, F.col("lam")))
    ]
    avail = [F.when(F.col(_refused(j)).isNull(), a) if j in caps else a for j, a in enumerate(nets)]
    best = F.greatest(*avail) if n_opt > 1 else avail[0]
    first = F.coalesce(*[F.when(a == F.col("_top"), F.lit(j)) for j, a in enumerate(avail)])
    others = [F.when(F.col("_choice") != j, a) for j, a in enumerate(avail)]
    order = F.coalesce(*[F.when(F.col("_choice") == j, o) for j, o in orders.items()], F.lit(0.0))
    return (
        df.withColumn("_top", best)
        .withColumn("_choice", F.when(F.col("_top") > 0, first).otherwise(F.lit(NONE)))
        .withColumn("_lead", F.col("_top") - F.greatest(F.lit(0.0), *others))
        .withColumn("_order", order)
    )


Last = tuple[int, int, float, int]  # the last kept: lead's and net's rank keys, order, id


def _last_kept(df: DataFrame, caps: Mapping[int, int]) -> dict[int, Last]:
    """Per capped option with more askers than its cap: the rank keys of the lead and net
    (:func:`_key`), tie order (``_order``) and id of the last one it keeps (its ``cap``-th
    by lead, then net, then order, then id). One pass over the askers of capped options."""
    binding = {j: q for j, q in caps.items() if q}
    if not binding:
        return {}
    quota = F.create_map(*[x for j, q in binding.items() for x in (F.lit(j), F.lit(q))])
    order = Window.partitionBy("_choice").orderBy(
        F.desc("_key"), F.desc("_nkey"), "_order", "customer_id"
    )
    rows = (
        df.where(F.col("_choice").isin(list(binding)))
        .select(
            "customer_id",
            "_choice",
            "_order",
            _key("_lead").alias("_key"),
            _key("_top").alias("_nkey"),
        )
        .withColumn("_rank", F.row_number().over(order))
        .where(F.col("_rank").between(quota[F.col("_choice")], quota[F.col("_choice")] + 1))
        .collect()
    )
    over = {r["_choice"] for r in rows if r["_rank"] == binding[r["_choice"]] + 1}
    return {
        r["_choice"]: (r["_key"], r["_nkey"], r["_order"], r["customer_id"])
        for r in rows
        if r["_choice"] in over and r["_rank"] == binding[r["_choice"]]
    }


def _outside(last: Mapping[int, Last], j: int) -> Column:
    """Whether a customer asking for capped option j is refused by this step's cut."""
    if j not in last:
        return F.lit(False)
    m, n, o, i = last[j]
    key, nkey, order, cid = _key("_lead"), _key("_top"), F.col("_order"), F.col("customer_id")
    after = (order > o) | ((order == o) & (cid > i))
    after = (nkey < n) | ((nkey == n) & after)
    return (F.col("_choice") == j) & ((key < m) | ((key == m) & after))


def _key(column: str) -> Column:
    """The rank of a customer's ``_lead`` or ``_top`` (net value) at a cap
    (:func:`.ties.rank_column`), as the driver's acceptance ranks it."""
    return rank_column(F.col(column))


def accepted(
    env: DataFrame,
    n_opt: int,
    lam: Mapping[str, float],
    mu: np.ndarray,
    caps: Mapping[int, int],
    tie_order: TieOrder,
    vouchers: Sequence[str],
) -> Accepted:
    """Deferred acceptance of ``env``'s customers (cached rows) at (``lam``, ``mu``).
    Each step is one pass for the cut of the capped options' askers, and one more to
    cache its refusals when it refused anyone. A zero cap refuses everyone from the
    start. Ties at a cut go by ``tie_order`` of the customer and the option's voucher (of
    ``vouchers``, in option order)."""
    nothing = F.lit(None).cast("boolean")
    if len(vouchers) != n_opt:
        raise ValueError(f"a tie order needs the {n_opt} options' vouchers, got {vouchers}")
    orders = {j: tie_order.column(vouchers[j]) for j in caps}
    df = env.join(F.broadcast(lambda_frame(env, lam)), "budget_group").withColumns(
        {_refused(j): nothing if q else F.lit(True) for j, q in caps.items()}
    )
    step, passes = None, 0
    for k in range(MAX_STEPS):
        state = _state(df, n_opt, mu, caps, orders)
        last = _last_kept(state, caps)
        passes += 1
        log.info("allocation: deferred acceptance, step %d: %d caps over", k + 1, len(last))
        if not last or k == MAX_STEPS - 1:  # run out: the last step's cut holds the caps
            break
        refusals = {
            _refused(j): F.when(_outside(last, j), F.lit(True)).otherwise(F.col(_refused(j)))
            for j in caps
        }
        previous = step
        step = state.withColumns(refusals).drop("_top", "_choice", "_lead", "_order")
        step = step.persist(StorageLevel.MEMORY_AND_DISK)
        step.count()
        passes += 1
        if previous is not None:
            previous.unpersist()
        df = step
    holds = {j: (F.col("_choice") == j) & ~_outside(last, j) for j in caps}
    masked = {}
    for j in caps:
        masked[L.objective(j)] = F.when(holds[j], F.col(L.objective(j)))
        masked[L.cost(j)] = F.when(holds[j], F.col(L.cost(j)))
    cuts, held, cut_passes = _cuts(state, holds, caps)
    frame = state.withColumns(masked).select(*L.input_columns(n_opt))
    return Accepted(frame, cuts, held, step, passes + cut_passes)


def _cuts(
    state: DataFrame, holds: Mapping[int, Column], caps: Mapping[int, int]
) -> tuple[dict[int, Cut], dict[int, int], int]:
    """Per capped option that refused customers, its :data:`Cut`: the lead of the last
    customer kept, the smallest net value kept among the holders of that lead's rank
    (:func:`_key`), and the largest tie order kept among those of that net's rank too;
    per capped option, the customers holding it; and the passes made (the holders and
    cuts, then the ties)."""
    aggs = [F.count_if(holds[j]) for j in caps]
    aggs += [F.min(F.when(holds[j], F.col("_lead"))) for j in caps]
    aggs += [F.count(F.col(_refused(j))) for j in caps]  # a zero cap's: all counted
    row = state.agg(*aggs).first()
    k = len(caps)
    held = {j: int(row[n]) for n, j in enumerate(caps)}
    cuts: dict[int, Cut] = {j: (np.inf, np.inf, 0.0) for j, q in caps.items() if not q}
    cut = {
        j: float(row[k + n])
        for n, j in enumerate(caps)
        if caps[j] and row[2 * k + n] and row[k + n] is not None
    }
    if not cut:
        return cuts, held, 1
    aggs = []
    for j, m in cut.items():
        last = holds[j] & (_key("_lead") == rank_column(F.lit(m)))
        # the smallest (net's rank, -order): the last one's net rank and its largest order
        aggs += [
            F.min(F.when(last, F.col("_top"))),
            F.min(F.when(last, F.struct(_key("_top").alias("n"), (-F.col("_order")).alias("o")))),
        ]
    ties = state.agg(*aggs).first()
    for n, (j, m) in enumerate(cut.items()):
        cuts[j] = (m, float(ties[2 * n]), -float(ties[2 * n + 1]["o"]))
    return cuts, held, 2
