"""The randomization checks per campaign, on the per-(campaign, arm) aggregates the one
Spark pass returns (built here by hand): pooled shares can hide campaigns that confound the
arms; a pilot too small to expect every arm is not evidence of a mismatch."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from sparklift.uplift.checks import check_history
from sparklift.uplift.strata import control_weights

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


def test_a_voucher_added_in_another_season_is_compared_with_its_campaign_s_controls():
    """x has mean 0 in C1 (control, V01) and 0.5 in C2 (control, V01, V02), variance 1 in
    both: against the pooled controls (mean 0.3, variance 1.06) V02's SMD would be
    (0.5 - 0.3) / sqrt(1.03) = 0.197, above max_smd. Each arm is compared with the controls
    of the campaigns that drew it, weighed by its rows in each: V02 with C2's (SMD 0), V01
    with 6000/10500 of C1's and 4500/10500 of C2's (SMD 0 too). A shift within a campaign
    is still one."""

    def rows(campaign: str, arm: str, n: int, mu: float, shift: float = 0.0) -> dict:
        m = mu + shift
        return {"campaign_id": campaign, "treatment": arm, "rows": n, "n0": n, "s0": n * m,
                "q0": n * (1 + m * m), "bad_objective": 0, "null_cost": 0,
                "negative_cost": 0}  # fmt: skip

    def report(shift: float):
        history = [rows("C1", "control", 2000, 0.0), rows("C1", "V01", 6000, 0.0),
                   rows("C2", "control", 3000, 0.5), rows("C2", "V01", 4500, 0.5),
                   rows("C2", "V02", 4500, 0.5, shift)]  # fmt: skip
        return check_history(
            history, "voucher_campaigns", ["x"], {"V01", "V02"}, min_arm_rows=1,
            control_share=0.25, arm_shares={}, srm_alpha=0.001, max_smd=0.1,
        )  # fmt: skip

    aligned = report(0.0)
    assert aligned.problems == []
    assert aligned.smd["V02"]["x"] == pytest.approx(0.0, abs=1e-9)
    assert aligned.smd["V01"]["x"] == pytest.approx(0.0, abs=1e-9)
    pooled_var = (2000 * 1 + 3000 * 1.25) / 5000 - 0.3**2  # the old reference's variance
    old = (0.5 - 0.3) / np.sqrt((1 + pooled_var) / 2)
    assert old > 0.1  # what the pooled controls would have refused
    shifted = report(0.2)  # V02 shifted by 0.2 within C2 (sample variances n / (n - 1))
    assert shifted.smd["V02"]["x"] == pytest.approx(0.2 / np.sqrt((4500 / 4499 + 3000 / 2999) / 2))
    assert shifted.problems == [
        "covariate imbalance in arm V02: standardized mean differences {'x': 0.2} exceed "
        "uplift.max_smd=0.1"
    ]


def test_a_campaign_of_controls_only_is_expected_to_hold_controls_only():
    """A pure holdout campaign H (1,000 controls, designed without vouchers): its rows are
    expected in control alone (the configured shares over its one arm), not at 25%, which
    would leave the expected counts short of the observed ones."""
    report = check({"A": {"control": 2460, "V01": 3790, "V02": 3750}, "H": {"control": 1000}})
    observed, expected = [3790, 3750, 3460], [3750, 3750, 2500 + 1000]
    assert report.srm_p == pytest.approx(stats.chisquare(observed, expected).pvalue)
    assert report.problems == [] and report.warnings[0].startswith(
        "campaigns without every voucher of the history: H (1000 rows, lacks ['V01', 'V02'])"
    )


def test_controls_worth_few_once_weighed_to_a_vouchers_campaigns_are_warned_of():
    """Campaign A draws V01 alone (250 controls, 750 V01), B draws V01..V10 (2,500
    controls, 750 each), both at the configured shares. V01 is drawn 750 times in each,
    but weighed to its mix of campaigns A's 250 controls carry half the weight, so the
    2,750 count as about 909 (Kish's effective size of the learners' own row weights,
    strata.control_weights). V02, drawn in B alone, keeps all of B's."""
    vouchers = [f"V{j:02d}" for j in range(1, 11)]
    campaigns = {"A": {"control": 250, "V01": 750},
                 "B": {"control": 2500, **dict.fromkeys(vouchers, 750)}}  # fmt: skip
    report = check_history(
        aggregates(campaigns), "voucher_campaigns", ["x"], set(vouchers), min_arm_rows=1,
        control_share=0.25, arm_shares={}, srm_alpha=0.001, max_smd=0.1,
    )  # fmt: skip
    assert report.problems == []  # every campaign at the configured shares
    arms = ["control", *vouchers]
    counts = np.array([[c.get(a, 0) for a in arms] for c in campaigns.values()], dtype=float)
    for j, voucher in ((1, "V01"), (2, "V02")):
        w = control_weights(counts, j)
        rows = np.repeat(w, counts[:, 0].astype(int))  # each control row's weight
        rows = rows[rows > 0]
        kish = rows.sum() ** 2 / (rows**2).sum() / len(rows)
        assert report.control_ess[voucher] == pytest.approx(kish, rel=1e-12)
    assert report.control_ess["V01"] == pytest.approx(2750 / (250 * 5.5**2 + 2500 * 0.55**2))
    assert report.control_ess["V02"] == pytest.approx(1.0)
    (warning,) = [w for w in report.warnings if w.startswith("vouchers whose controls")]
    assert "{'V01': '33.1%'}" in warning
    assert report.as_dict()["control_ess_share"] == report.control_ess
    even = check({"A": {"control": 2500, "V01": 3750, "V02": 3750}})
    assert even.control_ess == {"V01": 1.0, "V02": 1.0}
    assert not any(w.startswith("vouchers whose controls") for w in even.warnings)
