"""The holdout's vouchers against the policy's, per budget group: statsmodels' Pearson
chi-square of the arms' table (none and each voucher), its two-proportion z-test with one
voucher, and the groups it flags."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.contingency_tables import Table
from statsmodels.stats.proportion import proportions_ztest

from sparklift.allocation.distributed import GroupSummary
from sparklift.allocation.match import mismatched, targeting


def group(name: str, customers: int, sent: dict[str, int]) -> GroupSummary:
    return GroupSummary(name, 100.0, 0.5, 10.0, customers, "lagrangian",
                        n_allocated=sum(sent.values()), voucher_counts=sent)  # fmt: skip


def counts(rows: list[tuple[str, str, str | None, int]]) -> pd.DataFrame:
    """The written rows' tally: budget_group, arm, policy_voucher_id, n."""
    frame = pd.DataFrame(rows, columns=["budget_group", "arm", "policy_voucher_id", "n"])
    return frame.assign(voucher_id=None, value=0.0, cost=0.0)


def test_one_voucher_is_the_two_proportion_z_test():
    """NL: 30.0% of 8,000 policy customers targeted against 29.0% of 2,000 held out (two
    rows of holdout targets, as a tally may split them): no mismatch. DE: 30% against 20%
    of 1,000: the rule misses a third of the policy's customers. FR: no held-out customer
    (p 1, no share)."""
    groups = [group("NL", 8000, {"V1": 2400}), group("DE", 4000, {"V1": 1200}),
              group("FR", 50, {"V1": 10})]  # fmt: skip
    tally = counts([("NL", "holdout", "V1", 300), ("NL", "holdout", "V1", 280),
                    ("NL", "holdout", None, 1420), ("DE", "holdout", "V1", 200),
                    ("DE", "holdout", None, 800), ("NL", "policy", "V1", 2400),
                    ("NL", "explore", None, 90)])  # fmt: skip
    got = targeting(groups, tally)
    for g, (w1, n1, w0, n0) in {
        "NL": (2400, 8000, 580, 2000),
        "DE": (1200, 4000, 200, 1000),
    }.items():
        _, p = proportions_ztest([w1, w0], [n1, n0])
        assert got[g]["p_value"] == pytest.approx(p, rel=1e-9)
        assert got[g]["policy_targeted_share"] == w1 / n1
        assert got[g]["holdout_targeted_share"] == w0 / n0
        assert got[g]["voucher_shares"] == {"V1": [w1 / n1, w0 / n0]}
    assert got["FR"]["holdout_targeted_share"] is None and got["FR"]["p_value"] == 1.0
    flagged = mismatched(got)
    assert len(flagged) == 1 and flagged[0].startswith("DE (the policy targets 30.0%")
    assert "rule 20.0% of the held-out" in flagged[0]


def test_a_wrong_mix_of_vouchers_is_flagged_at_the_same_targeted_share():
    """Both arms target 30% of their customers, but the rule gives V2 where the policy
    sent V1 to a third of them (an upgrade it misses): the targeted shares agree, the
    vouchers do not. The p is statsmodels' Pearson chi-square of the 2 x 4 table (none,
    V1, V2, V3; V3 sent to no one in either arm is left out: 2 x 3)."""
    groups = [group("NL", 8000, {"V1": 1600, "V2": 800, "V3": 0})]
    tally = counts([("NL", "holdout", "V1", 260), ("NL", "holdout", "V2", 340),
                    ("NL", "holdout", None, 1400)])  # fmt: skip
    got = targeting(groups, tally)["NL"]
    table = np.array([[5600, 1600, 800], [1400, 260, 340]])
    assert got["p_value"] == pytest.approx(Table(table).test_nominal_association().pvalue)
    assert got["p_value"] < 1e-6
    assert got["policy_targeted_share"] == pytest.approx(0.3)
    assert got["holdout_targeted_share"] == pytest.approx(0.3)
    assert got["voucher_shares"] == {"V1": [0.2, 0.13], "V2": [0.1, 0.17]}
    (flagged,) = mismatched({"NL": got})
    assert "V1: 20.0% of the policy's, 13.0% of the held-out" in flagged


def test_a_voucher_sent_a_handful_of_times_is_pooled():
    """The rule gave V3 to 4 of 2,000 held-out customers, the solve to none of 8,000 (the
    fill, say): Pearson's chi-square of the 2 x 3 table says p 3.3e-4, while the exact
    test says about 0.002, as V3's cells expect 3.2 and 0.8 customers. Pooled into the
    category of fewest customers (V1) by Cochran's rule, the p is statsmodels' of the 2 x 2
    table, and nothing is flagged."""
    groups = [group("NL", 8000, {"V1": 2000, "V3": 0})]
    tally = counts([("NL", "holdout", "V1", 500), ("NL", "holdout", "V3", 4),
                    ("NL", "holdout", None, 1496)])  # fmt: skip
    got = targeting(groups, tally)["NL"]
    raw = Table(np.array([[6000, 2000, 0], [1496, 500, 4]]), shift_zeros=False)
    raw = raw.test_nominal_association()
    assert raw.pvalue < 0.001  # unpooled: a false alarm
    pooled = Table(np.array([[6000, 2000], [1496, 504]])).test_nominal_association()
    assert got["p_value"] == pytest.approx(pooled.pvalue)
    assert got["voucher_shares"]["V3"] == [0.0, 0.002] and not mismatched({"NL": got})
