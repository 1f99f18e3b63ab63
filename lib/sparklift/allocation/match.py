"""Whether the holdout is the policy's match: the share of customers each arm targets.

The held-out customers get the policy's decision rule (:class:`.arms.Rule`), so that the
ones it targets are a random sample of the customers the policy would pick: ``measure``
compares each voucher's policy customers with them. Both arms are random draws of the
scored customers of each budget group, so the share the policy targets (its solve's
customers over its arm's) and the share the rule targets in the holdout differ only by
sampling noise, and by the customers the solve's greedy fill adds at its margin. Those
are few unless many customers' scores tie with the budget's multiplier (a tree model
gives whole leaves one score): the fill then takes part of the tied block, in customer
order, and the rule, whose margin for them is 0, none of its held-out twins. A larger
difference means the holdout is no longer the policy's match (that tied block, or scores
that differ between the arms), and every measurement of the campaign would be biased:
the sample-ratio check of the matched control, per group, the chi-square test of the two
shares (= the two-proportion z-test). It sees the targeted share only, not the mix of
vouchers within it.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from sparklift.allocation.arms import HOLDOUT
from sparklift.allocation.distributed import GroupSummary
from sparklift.stats.proportions import two_shares_p

MISMATCH_P = 0.001  # as measure's sample-ratio check of the outcomes


def targeting(groups: Iterable[GroupSummary], counts: pd.DataFrame) -> dict[str, dict]:
    """Per budget group: the share of its policy customers the solve targets, the share
    of its held-out customers the rule targets (``counts``: the written rows'
    :func:`.distributed.tally` by arm and targeted), and the chi-square p of their
    difference (1 where either arm has no customer or no share varies)."""
    held = counts[counts["arm"] == HOLDOUT].groupby(["budget_group", "targeted"])["n"].sum()
    out = {}
    for s in groups:
        n0 = int(held.get(s.budget_group, pd.Series(dtype=int)).sum())
        w0 = int(held.get((s.budget_group, True), 0))
        n1, w1 = s.n_customers, s.n_allocated
        out[s.budget_group] = {
            "policy_targeted_share": w1 / n1 if n1 else None,
            "holdout_targeted_share": w0 / n0 if n0 else None,
            "p_value": two_shares_p(w1, n1, w0, n0),
        }
    return out


def mismatched(balance: dict[str, dict]) -> list[str]:
    """The groups of ``balance`` (:func:`targeting`) whose shares differ at p <
    :data:`MISMATCH_P`, described for a warning."""
    return [
        f"{g} (the policy targets {b['policy_targeted_share']:.1%} of its customers, the "
        f"rule {b['holdout_targeted_share']:.1%} of the held-out; p {b['p_value']:.2g})"
        for g, b in balance.items()
        if b["p_value"] < MISMATCH_P
    ]
