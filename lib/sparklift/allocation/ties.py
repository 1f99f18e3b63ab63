"""Ties at a cap: when two customers' leads (or net values) count as equal, and the draw
that orders tied customers.

A tree model gives whole leaves of customers the same scores, so at a cap's cut whole
blocks of customers tie; the policy's caps (:mod:`.acceptance`) and the held-out
customers' rule (:class:`.arms.Rule`) must read a tie the same way, on different engines,
and order the tied customers by the same draw, so that the rule gives each of the
policy's own customers what the policy gave it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from sparklift.synthetic.rand import uniform, uniform_of_ids, uniform_state, uniform_state_of

TIE = 1e-9  # a net value must pass 0 by this (times max(1, |u|)) to count as positive
# A cap ranks its askers by floor(lead x TIE_GRID), then floor(net x TIE_GRID), then the
# tie draw, and the held-out rule compares the same keys: leads equal to 1e-7 tie. A tree
# model's scores differ between vouchers by the same amount on many leaves, but only up
# to the rounding of its per-voucher offsets: on the demo the leads of two such leaves
# differed by 1.1e-8, so ranked to 1e-9 the marginal leaf (worth 0.0002 a customer) took
# V03 from customers worth 0.0107 more (0.9973 of the LP optimum; to 1e-7, 0.99999).
# Ranked by exact float lead, the demo's V03 once went to one leaf's customers and none
# of another's with the same lead.
TIE_GRID = 10**7  # the ranks' step: 1e-7


def rank_key(x: np.ndarray | float) -> np.ndarray:
    """A lead's or net value's rank at a cap, in NumPy: floor(x times :data:`TIE_GRID`)."""
    return np.floor(np.asarray(x) * TIE_GRID)


def rank_column(x: Column) -> Column:
    """The same rank in Spark (the same floats give the same keys)."""
    return F.floor(x * F.lit(TIE_GRID))


def rounding(u: Column) -> Column:
    """A rounding of a net value u - ... (:data:`TIE` times max(1, |u|)): a voucher is
    chosen only by more than this."""
    return F.lit(TIE) * F.greatest(F.lit(1.0), F.abs(u))


def _tie_salt(campaign_id: str) -> str:
    return f"tie.{campaign_id}"


def tie_draw(campaign_id: str, seed: int) -> Column:
    """A customer's tie draw for a voucher (``customer_id``, ``voucher_id``): the policy's
    caps rank tied customers by it (:func:`tie_order`), and the held-out customers' rule
    compares it with the draw of the cap's last customer kept. One per voucher: with one
    draw for all caps, a customer refused at one cap's tie is refused at the next one's
    too, which the policy and the rule both do, but it makes the kept customers of
    consecutive cut caps depend on each other."""
    return uniform(seed, _tie_salt(campaign_id), F.col("customer_id"), F.col("voucher_id"))


@dataclass(frozen=True)
class TieOrder:
    """The order in which a cap keeps the customers who tie at its cut (in lead and net
    value): a hash of the customer and the voucher (``seed``, ``salt``; :func:`tie_draw`),
    so that those kept are a random sample of the tied ones, and the held-out customers'
    rule keeps the same ones; not those of lowest id (ids often follow sign-up dates, and
    the policy's cell would then hold older customers than the holdout's). ``state``: the
    hash's state for NumPy (:func:`.uniform_state`)."""

    seed: int
    salt: str
    state: int

    def column(self, voucher: str) -> Column:
        """Each row's place (``customer_id``) at ``voucher``'s cap, in Spark."""
        return uniform(self.seed, self.salt, F.col("customer_id"), F.lit(voucher))

    def of_ids(self, ids: np.ndarray, voucher: str) -> np.ndarray:
        """The same places in NumPy, bit for bit."""
        return uniform_of_ids(self.state, ids, voucher)

    @classmethod
    def default(cls) -> TieOrder:
        """The solver's order for a problem that names none (seed 0, salt ``tie``)."""
        return cls(0, "tie", uniform_state_of(0, "tie"))


def tie_order(spark: SparkSession, campaign_id: str, seed: int) -> TieOrder:
    """The campaign's :class:`TieOrder`: its customers' :func:`tie_draw`."""
    salt = _tie_salt(campaign_id)
    return TieOrder(seed, salt, uniform_state(spark, seed, salt))
