"""The holdout's targeted share against the policy's, per budget group: statsmodels'
two-proportion z-test, and the groups it flags."""

from __future__ import annotations

import pandas as pd
import pytest
from statsmodels.stats.proportion import proportions_ztest

from sparklift.allocation.distributed import GroupSummary
from sparklift.allocation.match import mismatched, targeting


def group(name: str, customers: int, allocated: int) -> GroupSummary:
    return GroupSummary(name, 100.0, 0.5, 10.0, customers, "lagrangian", n_allocated=allocated)


def counts(rows: list[tuple[str, str, bool, int]]) -> pd.DataFrame:
    """The written rows' tally: budget_group, arm, targeted, n (vouchers apart)."""
    frame = pd.DataFrame(rows, columns=["budget_group", "arm", "targeted", "n"])
    return frame.assign(voucher_id=None, value=0.0, cost=0.0)


def test_shares_and_p_values_are_the_two_proportion_z_test():
    """NL: 30.0% of 8,000 policy customers targeted against 29.0% of 2,000 held out (two
    rows of holdout targets, as a tally splits them by voucher): no mismatch. DE: 30% against
    20% of 1,000: the rule misses a third of the policy's customers. FR: no held-out
    customer (p 1, no share)."""
    groups = [group("NL", 8000, 2400), group("DE", 4000, 1200), group("FR", 50, 10)]
    tally = counts([("NL", "holdout", True, 300), ("NL", "holdout", True, 280),
                    ("NL", "holdout", False, 1420), ("DE", "holdout", True, 200),
                    ("DE", "holdout", False, 800), ("NL", "policy", True, 2400),
                    ("NL", "explore", False, 90)])  # fmt: skip
    got = targeting(groups, tally)
    for g, (w1, n1, w0, n0) in {
        "NL": (2400, 8000, 580, 2000),
        "DE": (1200, 4000, 200, 1000),
    }.items():
        _, p = proportions_ztest([w1, w0], [n1, n0])
        assert got[g]["p_value"] == pytest.approx(p, rel=1e-9)
        assert got[g]["policy_targeted_share"] == w1 / n1
        assert got[g]["holdout_targeted_share"] == w0 / n0
    assert got["FR"] == {"policy_targeted_share": 0.2, "holdout_targeted_share": None,
                         "p_value": 1.0}  # fmt: skip
    flagged = mismatched(got)
    assert len(flagged) == 1 and flagged[0].startswith("DE (the policy targets 30.0%")
    assert "rule 20.0% of the held-out" in flagged[0]
