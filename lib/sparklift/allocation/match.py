"""Whether the holdout is the policy's match: the vouchers each arm is given, and none.

The held-out customers get the policy's decision rule (:class:`.arms.Rule`), so that the
ones it gives a voucher are a random sample of the customers the policy would send it:
``measure`` compares each voucher's policy customers with them. Both arms are random
draws of the scored customers of each budget group, so the shares of the policy's arm
that its solve sends each voucher, and of the holdout that the rule gives each voucher,
differ only by sampling noise, and by the few customers the solve's greedy fill adds
below its margin (the tied block at the margin the rule follows: :class:`.arms.Rule`'s
``fill``). A larger difference means the holdout is no longer the policy's match (scores
that differ between the arms, an upgrade the rule misses), and every measurement of the
campaign would be biased: the sample-ratio check of the matched control, per group, the
chi-square test of the two arms' distributions over none and each voucher (with one
voucher, the two-proportion z-test of the targeted shares; vouchers an arm would expect
fewer than 5 customers of, pooled).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from sparklift.allocation.arms import HOLDOUT
from sparklift.allocation.distributed import GroupSummary
from sparklift.stats.proportions import shares_p

MISMATCH_P = 0.001  # as measure's sample-ratio check of the outcomes


def targeting(groups: Iterable[GroupSummary], counts: pd.DataFrame) -> dict[str, dict]:
    """Per budget group: the share of its policy customers the solve targets and the share
    of its held-out customers the rule targets, each voucher's share of both arms
    (``voucher_shares``: voucher -> [policy, holdout]), and the chi-square p that the arms
    share one distribution over none and the vouchers (:func:`.proportions.shares_p`; 1
    where either arm has no customer or nothing varies). ``counts``: the written rows'
    :func:`.distributed.tally` by arm and policy_voucher_id; the policy's own counts are
    the summaries'."""
    held = counts[counts["arm"] == HOLDOUT]
    out = {}
    for s in groups:
        mine = held[held["budget_group"] == s.budget_group]
        given = mine["policy_voucher_id"].notna()
        ruled = mine[given].groupby("policy_voucher_id")["n"].sum()
        sent = {v: n for v, n in s.voucher_counts.items() if n}
        vouchers = sorted(set(sent) | set(ruled.index))
        table = np.array(
            [[s.n_customers - s.n_allocated, *(sent.get(v, 0) for v in vouchers)],
             [int(mine.loc[~given, "n"].sum()), *(int(ruled.get(v, 0)) for v in vouchers)]]
        )  # fmt: skip
        n = table.sum(axis=1)
        share = [table[a] / n[a] if n[a] else np.full(table.shape[1], None) for a in (0, 1)]
        targeted = [table[a, 1:].sum() / n[a] if n[a] else None for a in (0, 1)]
        out[s.budget_group] = {
            "policy_targeted_share": targeted[0],
            "holdout_targeted_share": targeted[1],
            "voucher_shares": {
                v: [share[0][k + 1], share[1][k + 1]] for k, v in enumerate(vouchers)
            },
            "p_value": shares_p(table),
        }
    return out


def mismatched(balance: dict[str, dict]) -> list[str]:
    """The groups of ``balance`` (:func:`targeting`) whose arms differ at p <
    :data:`MISMATCH_P`, described for a warning: the targeted shares, and the voucher
    whose shares differ most."""
    out = []
    for g, b in balance.items():
        if b["p_value"] >= MISMATCH_P:
            continue
        text = (
            f"{g} (the policy targets {b['policy_targeted_share']:.1%} of its customers, the "
            f"rule {b['holdout_targeted_share']:.1%} of the held-out"
        )
        gaps = {v: abs(x - y) for v, (x, y) in b["voucher_shares"].items()}
        if len(gaps) > 1:
            v = max(gaps, key=gaps.__getitem__)
            x, y = b["voucher_shares"][v]
            text += f"; {v}: {x:.1%} of the policy's, {y:.1%} of the held-out"
        out.append(text + f"; p {b['p_value']:.2g})")
    return out
