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
    # X was designed without V02 (it lacks 150 expected rows), so the pooled test expects
    # its 400 rows at control 0.25 / V01 0.75, and only X's missing controls move the pool
    assert len(report.problems) == 1
    observed, expected = [4150, 3750, 2500], [3750 + 300, 3750, 2500 + 100]
    assert report.srm_p == pytest.approx(stats.chisquare(observed, expected).pvalue)


def test_a_voucher_added_in_a_later_campaign_is_no_pooled_mismatch():
    """C1 drew control and V01 at the configured 25/75 (one voucher: it gets the rest), C2
    every arm at 25/37.5/37.5: the pool is tested against the sum of the campaigns'
    expected rows (scipy's chi-square on them), not against 25/37.5/37.5 (p ~ 0 here)."""
    rng = np.random.default_rng(1)
    c1 = dict(zip(["control", "V01"], rng.multinomial(8000, [0.25, 0.75]).tolist(), strict=True))
    c2 = dict(zip(SHARES, rng.multinomial(12_000, list(SHARES.values())).tolist(), strict=True))
    report = check({"C1": c1, "C2": c2})
    observed = [c1["control"] + c2["control"], c1["V01"] + c2["V01"], c2["V02"]]
    expected = [0.25 * 20_000, 0.75 * 8000 + 0.375 * 12_000, 0.375 * 12_000]
    assert report.srm_p == pytest.approx(stats.chisquare(observed, expected).pvalue)
    assert report.srm_p > 0.001 > stats.chisquare(observed, [5000, 7500, 7500]).pvalue
    assert report.problems == [] and len(report.warnings) == 1  # C1 lacks V02: a warning
    assert report.expected_shares == pytest.approx(
        {"control": 0.25, "V01": 10_500 / 20_000, "V02": 4500 / 20_000}
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
