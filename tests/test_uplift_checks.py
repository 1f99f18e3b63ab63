"""The randomization checks per campaign, on the per-(campaign, arm) aggregates the one
Spark pass returns (built here by hand): pooled shares can hide campaigns that confound the
arms; a pilot too small to expect every arm is not evidence of a mismatch."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from sparklift.uplift.checks import check_history

SHARES = {"control": 0.25, "V01": 0.375, "V02": 0.375}


def aggregates(counts: dict[str, dict[str, int]]) -> list[dict]:
    """Rows of arm_aggregates for one feature x ~ N(0, 1) (its moments at n, 0, n)."""
    return [
        {"campaign_id": c, "treatment": a, "rows": n, "n0": n, "s0": 0.0, "q0": float(n),
         "bad_objective": 0, "null_cost": 0, "negative_cost": 0}
        for c, arms in counts.items() for a, n in arms.items()
    ]  # fmt: skip


def check(counts: dict[str, dict[str, int]]):
    return check_history(
        aggregates(counts), "voucher_campaigns", ["x"], {"V01", "V02"}, min_arm_rows=1,
        control_share=0.25, arm_shares={}, srm_alpha=0.001, max_smd=0.1,
    )  # fmt: skip


def test_campaigns_that_pool_to_the_shares_but_confound_the_arms_are_found():
    """Control shares 0.10 and 0.40 pool to the configured 0.25: the pooled test passes,
    each campaign's fails (its p from scipy's chi-square on its own counts)."""
    a = {"control": 1000, "V01": 4500, "V02": 4500}
    b = {"control": 4000, "V01": 3000, "V02": 3000}
    report = check({"A": a, "B": b})
    assert report.srm_p == pytest.approx(1.0)
    expected = stats.chisquare([1000, 4500, 4500], [2500, 3750, 3750]).pvalue
    assert report.campaign_srm_p["A"] == pytest.approx(expected)
    (problem,) = report.problems
    assert problem.startswith("sample ratio mismatch within campaigns (chi-square, Bonferroni "
                              "over 2 campaign(s) at 0.001): campaign A: arm shares")  # fmt: skip


def test_a_pilot_too_small_to_expect_every_arm_is_not_tested():
    rng = np.random.default_rng(0)
    big = dict(zip(SHARES, rng.multinomial(100_000, list(SHARES.values())), strict=True))
    report = check({"MAIN": big, "PILOT": {"V01": 4, "V02": 2}})
    assert report.problems == [] and set(report.campaign_srm_p) == {"MAIN"}


def test_a_campaign_large_enough_to_expect_controls_but_without_any_is_a_problem():
    report = check({"MAIN": {"control": 2500, "V01": 3750, "V02": 3750}, "X": {"V01": 400}})
    assert report.problems[-1] == (
        "campaigns without a control arm: X (400 rows, arms ['V01']): their treated rows "
        "would be compared with other campaigns' controls"
    )
    # the pooled shares moved too; every share in the messages is a plain number
    assert report.problems[0].startswith(
        "sample ratio mismatch: arm shares {'V01': 0.399, 'V02': 0.3606, 'control': 0.2404}"
    )


def test_campaigns_that_each_test_one_voucher_are_warned_of():
    """A tests V01 and B tests V02, each at the configured shares of its own arms, and the
    pool has the configured shares: every sample-ratio test passes, yet V01's rows are all
    A's while the controls are half B's, so B's base rate would read as V01's effect. A
    voucher added in a later campaign is the same case, and common, so it is a warning
    (in the job's summary and the model's metrics), not a refusal."""
    a, b = {"control": 2500, "V01": 7500}, {"control": 2500, "V02": 7500}
    report = check({"A": a, "B": b})
    assert report.srm_p == pytest.approx(1.0)
    assert report.campaign_srm_p == {"A": pytest.approx(1.0), "B": pytest.approx(1.0)}
    assert report.problems == []
    (warning,) = report.warnings
    assert warning.startswith(
        "campaigns without every voucher of the history: A (10000 rows, lacks ['V02']), "
        "B (10000 rows, lacks ['V01']): a voucher drawn in some campaigns only"
    )
    assert report.as_dict()["warnings"] == [warning]
