"""Voucher caps: the rounds that move the cap multipliers mu towards the caps.

Each round histograms, per capped voucher, the margin by which each customer prefers it
at the current (lambda, mu) (:func:`cap_round`, one pass); every mu then moves at once
(synchronous coordinate descent) towards where the counts meet the caps, inside brackets
that the rounds narrow (:class:`CapSearch`). Then :func:`within_caps` leaves each capped
voucher to at most ``cap`` customers, those with the largest margin (:func:`margin`), so
the budget solve that follows holds the caps whatever the rounds reached.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from sparklift.allocation import layout as L
from sparklift.allocation.arms import tie_width

# A cap round whose step moves every mu by less than this share is the last; a target this
# close under a bracket's high end is taken as that end.
MU_RTOL = 1e-3


def net(n_opt: int, mu: np.ndarray, lam: Column) -> list[Column]:
    """Per option u - mu - lambda max(c, 0) where the option can be chosen (u > 0)."""
    return [
        F.when(
            F.col(L.objective(j)) > 0,
            F.col(L.objective(j)) - float(mu[j]) - lam * F.greatest(F.col(L.cost(j)), F.lit(0.0)),
        )
        for j in range(n_opt)
    ]


def margin(net: list[Column], j: int) -> Column:
    """How far option j beats the customer's best alternative (nothing = 0)."""
    others = [F.lit(0.0), *[a for k, a in enumerate(net) if k != j]]
    best_other = F.greatest(*others) if len(others) > 1 else others[0]
    return net[j] - best_other


def chosen_margin(n_opt: int, mu: np.ndarray) -> Column:
    """How far the chosen option (``_choice``) beats the customer's best alternative at
    (``lam``, mu)."""
    nets = net(n_opt, mu, F.col("lam"))
    return F.coalesce(*[F.when(F.col("_choice") == j, margin(nets, j)) for j in range(n_opt)])


def lambda_frame(env: DataFrame, lam: Mapping[str, float]) -> DataFrame:
    """Each budget group's lambda, to broadcast-join onto the customers."""
    return env.sparkSession.createDataFrame(
        [(g, float(v)) for g, v in lam.items()], "budget_group string, lam double"
    )


def cap_round(
    env: DataFrame,
    lam: Mapping[str, float],
    mu: np.ndarray,
    caps: Mapping[int, int],
    n_opt: int,
) -> tuple[dict[int, int], np.ndarray]:
    """Per capped option: how many customers take it at (lambda, mu), and the mu that
    brings that count to its cap given the others' mu. One pass over ``env``."""
    with_lam = env.join(F.broadcast(lambda_frame(env, lam)), "budget_group")
    nets = net(n_opt, mu, F.col("lam"))
    rows = [
        F.struct(
            F.lit(j).alias("option"),
            F.floor(F.log2(margin(nets, j)) * L.PER_OCTAVE).cast("long").alias("bucket"),
        )
        for j in caps
    ]
    hist = (
        with_lam.select(F.inline(F.array(*rows)))
        .where(F.col("bucket").isNotNull())
        .groupBy("option", "bucket")
        .count()
        .toPandas()
    )
    counts: dict[int, int] = {}
    new_mu = mu.copy()
    for j, cap in caps.items():
        h = hist[hist["option"] == j].sort_values("bucket", ascending=False)
        cum = h["count"].cumsum().to_numpy()
        counts[j] = int(cum[-1]) if len(cum) else 0
        over = np.flatnonzero(cum > cap)
        # The margins are net of mu: raised by the top of the crossing bucket, mu leaves
        # the option to those whose margin is above it (<= cap). Under the cap: towards 0.
        top = 2.0 ** ((h["bucket"].iloc[over[0]] + 1) / L.PER_OCTAVE) if len(over) else None
        new_mu[j] = mu[j] + top if top is not None else 0.0
    return counts, new_mu


class CapSearch:
    """Each capped voucher's multiplier, moved inside a bracket that the rounds narrow.

    A round that finds voucher j over its cap at mu_j learns that mu_j is too low (the
    bracket's low end); one that finds it under its cap, that mu_j is high enough (the high
    end). Then per voucher:

    - over its cap: to the round's target (the mu that leaves the option to ``cap``
      customers given the others' mu, :func:`cap_round`), or to the bracket's middle when
      the target is not below the high end by MU_RTOL (a tied block of margins at the cap
      puts the target there: stepping to it would repeat a round);
    - within ``tolerance`` under its cap (or under it at mu = 0): it stays;
    - further under: to the middle of the bracket (half of mu while no low end is known).

    So every mu converges by bisection once its count has crossed the cap. The others'
    moves and the budgets' re-settle shift each count a little: a bracket end that a
    later round contradicts is dropped. Without the bracket, a voucher that met its cap
    was pulled back towards 0 while another still moved, and the rounds could cycle.
    """

    def __init__(self, n_opt: int, caps: Mapping[int, int], tolerance: float) -> None:
        self.caps = dict(caps)
        self.tolerance = tolerance
        self.low = np.zeros(n_opt)  # the largest mu seen with too many customers
        self.high = np.full(n_opt, np.inf)  # the smallest mu seen with few enough
        self.over = np.full(n_opt, np.nan)  # the last mu seen with too many (kept)
        self.last_counts: Mapping[int, int] | None = None
        self.retreated = False  # the one round back over a cap left unused has run

    def met(self, j: int, count: int, mu: float) -> bool:
        """Whether voucher j's count meets its cap: at most the cap, and within the
        tolerance of it unless mu is 0 (the cap does not bind)."""
        q = self.caps[j]
        return count <= q and (mu == 0 or count >= (1 - self.tolerance) * q)

    def advance(
        self, mu: np.ndarray, counts: Mapping[int, int], target: np.ndarray, last_round: bool
    ) -> np.ndarray | None:
        """The next round's mu after a round at ``mu`` found ``counts`` (and ``target``,
        as :meth:`step` takes it), or None when the search is done. It ends when every cap
        is met, when a round leaves every capped count as it was or the step would move no
        mu by MU_RTOL (a block of near-tied margins at the cap: the counts then only jitter
        with the budgets' settle), or at ``last_round``; once, an end that leaves a cap
        unused runs one more round back over it (:meth:`retreat`)."""
        if self.retreated:
            return None
        tight = all(self.met(j, counts[j], mu[j]) for j in self.caps)
        new = self.step(mu, counts, target)
        stalled = counts == self.last_counts or np.allclose(new, mu, rtol=MU_RTOL, atol=0.0)
        self.last_counts = dict(counts)
        if not (tight or stalled or last_round):
            return new
        back = self.retreat(mu, counts)
        self.retreated = back is not None
        return back

    def step(self, mu: np.ndarray, counts: Mapping[int, int], target: np.ndarray) -> np.ndarray:
        new = mu.copy()
        for j, q in self.caps.items():
            if counts[j] > q:
                self.over[j] = mu[j]
                if mu[j] >= self.high[j]:  # contradicted by the others' moves
                    self.high[j] = np.inf
                self.low[j] = max(self.low[j], mu[j])
                top = self.high[j]
                # A target at the high end (within MU_RTOL) would repeat a round already
                # known to leave the voucher under its cap: bisect instead.
                inside = target[j] < top * (1 - MU_RTOL)
                new[j] = target[j] if inside else (mu[j] + top) / 2
            elif not self.met(j, counts[j], mu[j]):
                if mu[j] <= self.low[j]:
                    self.low[j] = 0.0
                self.high[j] = min(self.high[j], mu[j])
                new[j] = (self.low[j] + mu[j]) / 2
        return new

    def retreat(self, mu: np.ndarray, counts: Mapping[int, int]) -> np.ndarray | None:
        """The rounds' last mu with each voucher that it leaves under its cap by more than
        the tolerance (mu > 0: the cap had bound) moved back to the last mu that left it
        over its cap; None when there is none. The search can end just past a jump of the
        count (a block of customers tied at the cap, or rounds run out): taken as it is,
        the cap is left unused, while from a mu over it :func:`within_caps` keeps the
        ``cap`` choosers of largest margin, the ones the exact multiplier would keep
        (cutting through a tied block). The last mu over the cap, not the bracket's low
        end: a contradiction by the others' moves resets that end to 0, which would pull
        the customers of other capped vouchers to this one."""
        under = [
            j
            for j, q in self.caps.items()
            if counts[j] < (1 - self.tolerance) * q and self.over[j] < mu[j]  # False: NaN
        ]
        if not under:
            return None
        back = mu.copy()
        back[under] = self.over[under]
        return back


def within_caps(
    env: DataFrame, n_opt: int, mu: np.ndarray, caps: Mapping[int, int]
) -> tuple[DataFrame, dict[int, tuple[float, float]]]:
    """The input columns of ``env`` (customers with their ``lam`` and ``_choice``, see
    :func:`sparklift.allocation.choices.with_choice`) with each capped option left only to
    the customers that choose it at (lambda, mu), and of those to the ``cap`` with the
    largest margin (ties by customer id): a problem every solution of which holds the caps,
    so a budget solve of it spends what the trimmed customers free; and, per capped option
    with at least as many choosers as its cap, the margin of its last customer kept and
    the share kept of the choosers tied with it (the cut a held-out customer is measured
    against, :class:`.arms.Rule`: one more chooser below it would be cut). Two passes over
    the choosers of the capped options, ranked: each cap's last customer kept, then the
    choosers tied with it."""
    df = env.withColumn("_margin", chosen_margin(n_opt, mu))
    capped = df.where(F.col("_choice").isin(list(caps))).select("customer_id", "_choice", "_margin")
    rank = F.row_number().over(
        Window.partitionBy("_choice").orderBy(F.desc("_margin"), "customer_id")
    )
    quota = F.array(*[F.lit(caps.get(j, 0)) for j in range(n_opt)])
    cap = F.element_at(quota, F.col("_choice") + 1)
    ranked = capped.withColumn("_rank", rank)
    last = {
        r["_choice"]: (r["_margin"], r["customer_id"])
        for r in ranked.where(F.col("_rank") == cap).collect()
    }
    masked = {}
    for j, q in caps.items():
        keep = F.col("_choice") == j if q > 0 else F.lit(False)
        if j in last:  # more choosers than the cap: the first cap of them by margin
            m, i = last[j]
            first = (F.col("_margin") > m) | ((F.col("_margin") == m) & (F.col("customer_id") <= i))
            keep = keep & first
        masked[L.objective(j)] = F.when(keep, F.col(L.objective(j)))
        masked[L.cost(j)] = F.when(keep, F.col(L.cost(j)))
    cuts = _tie_shares(ranked, {j: m for j, (m, _) in last.items()}, caps)
    cuts |= {j: (np.inf, 0.0) for j, q in caps.items() if not q}
    return df.withColumns(masked).select(*L.input_columns(n_opt)), cuts


def _tie_shares(
    ranked: DataFrame, cut: Mapping[int, float], caps: Mapping[int, int]
) -> dict[int, tuple[float, float]]:
    """Per cut option: its cut and the share of its choosers tied with it (``ranked``:
    the choosers with their ``_margin`` and ``_rank``) that the cap kept."""
    if not cut:
        return {}
    sums = []
    for j, m in cut.items():
        tied = (F.col("_choice") == j) & (F.abs(F.col("_margin") - m) <= tie_width(m))
        sums += [F.count_if(tied), F.count_if(tied & (F.col("_rank") <= caps[j]))]
    row = ranked.agg(*sums).first()
    return {
        j: (float(m), row[2 * k + 1] / row[2 * k] if row[2 * k] else 1.0)
        for k, (j, m) in enumerate(cut.items())
    }
