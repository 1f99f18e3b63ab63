"""A voucher history's arms by campaign: the configured share of each arm, the rows each
campaign was designed to draw, and the per-campaign sample-ratio tests
(:func:`sparklift.uplift.checks.check_history` reads them from the one aggregation)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from sparklift.errors import InputError, few

CONTROL = "control"


def expected_shares(
    arms: Sequence[str], control_share: float, arm_shares: Mapping[str, float]
) -> dict[str, float]:
    """The configured share of each arm: explicit ``arm_shares``, else ``control_share``
    for control and the rest split evenly over the vouchers (all of it to control when
    there is no voucher: a campaign of controls only)."""
    if arm_shares:
        unknown = sorted(set(arms) - set(arm_shares))
        if unknown:
            raise InputError(f"uplift.arm_shares has no share for arms {unknown} of the history")
        total = sum(arm_shares[a] for a in arms)
        return {a: arm_shares[a] / total for a in arms}
    vouchers = [a for a in arms if a != CONTROL]
    if not vouchers:
        return dict.fromkeys(arms, 1.0)
    return {a: control_share if a == CONTROL else (1 - control_share) / len(vouchers) for a in arms}


MIN_EXPECTED = 5  # rows expected in each arm for a campaign's chi-square to be read


def campaign_ratios(
    rows: list[dict[str, Any]],
    control_share: float,
    arm_shares: Mapping[str, float],
    srm_alpha: float,
    problems: list[str],
    warnings: list[str],
) -> dict[str, float]:
    """The sample-ratio test of each campaign's arms against the configured shares of the
    arms it has (Bonferroni over the campaigns tested), appending its failures to
    ``problems``. Pooled counts can match the shares while campaigns with different shares
    and base rates confound the arms (the DR learners take each campaign's own shares; the
    T-learners weigh controls to each voucher's mix only where a campaign lacks an arm, so
    they rely on this test where every campaign drew every arm).
    A campaign too small to expect ``MIN_EXPECTED`` rows in each of its arms is not tested
    (a chance of missing an arm is no evidence). One large enough to expect that many rows
    of an arm of the history it lacks: without control, a problem (its treated rows would
    be compared with other campaigns' controls only); without a voucher, a warning (a
    learner that pools every campaign's controls, as one's own whose fit takes no strata
    may, reads the campaigns' differences as that voucher's effect; the built-in learners
    and the held-out evaluation compare it with the controls of the campaigns that drew
    it: a voucher added later is the usual case)."""
    campaigns = campaign_arms(rows)
    history = sorted({a for arms in campaigns.values() for a in arms} | {CONTROL})
    everyone = expected_shares(history, control_share, arm_shares)
    tested: dict[str, dict[str, int]] = {}
    no_control, lacking = [], []
    for c, arms in sorted(campaigns.items()):
        n = sum(arms.values())
        missing = _lacked(arms, history, everyone)
        if CONTROL in missing:
            no_control.append(f"{c} ({n} rows, arms {sorted(arms)})")
            continue
        if missing:
            lacking.append(f"{c} ({n} rows, lacks {missing})")
        if CONTROL in arms and len(arms) > 1:
            shares = expected_shares(sorted(arms), control_share, arm_shares)
            if n * min(shares.values()) >= MIN_EXPECTED:
                tested[c] = arms
    if no_control:
        problems.append(
            f"campaigns without a control arm: {few(no_control)}: their treated rows would be "
            "compared with other campaigns' controls"
        )
    if lacking:
        warnings.append(
            f"campaigns without every voucher of the history: {few(lacking)}: a voucher drawn "
            "in some campaigns only is measured against the controls of the campaigns that "
            "drew it by the built-in learners, but against every campaign's controls by your "
            "own learners whose fit takes no strata, so a difference between the campaigns "
            "(their customers, their season) would read as its effect there; give yours a "
            "strata argument, or train on campaigns with the same arms (uplift.campaigns)"
        )
    p_values: dict[str, float] = {}
    failed = []
    for c, arms in tested.items():
        names = sorted(arms)
        shares = expected_shares(names, control_share, arm_shares)
        counts = np.array([arms[a] for a in names], dtype=float)
        p = float(
            stats.chisquare(counts, counts.sum() * np.array([shares[a] for a in names])).pvalue
        )
        p_values[c] = p
        if p < srm_alpha / len(tested):
            observed = {a: round(float(arms[a] / counts.sum()), 4) for a in names}
            expected = {a: round(shares[a], 4) for a in names}
            failed.append(
                f"campaign {c}: arm shares {observed} vs configured {expected} (p = {p:.2g})"
            )
    if failed:
        problems.append(
            f"sample ratio mismatch within campaigns (chi-square, Bonferroni over "
            f"{len(tested)} campaign(s) at {srm_alpha}): {few(failed, sep='; ')}"
        )
    return p_values


def campaign_arms(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Each campaign's rows per arm, from the aggregation's rows (none without
    campaign_id)."""
    campaigns: dict[str, dict[str, int]] = {}
    for r in rows:
        if "campaign_id" in r:
            campaigns.setdefault(str(r["campaign_id"]), {})[str(r["treatment"])] = int(r["rows"])
    return campaigns


def _lacked(
    arms: Mapping[str, int], history: Sequence[str], everyone: Mapping[str, float]
) -> list[str]:
    """The arms of the history a campaign lacks though large enough to expect
    ``MIN_EXPECTED`` rows of each: not drawn by design (a smaller one's missing arm is
    chance)."""
    n = sum(arms.values())
    return [a for a in history if a not in arms and n * everyone[a] >= MIN_EXPECTED]


def expected_rows(
    campaigns: Mapping[str, Mapping[str, int]],
    names: Sequence[str],
    control_share: float,
    arm_shares: Mapping[str, float],
) -> np.ndarray:
    """Each arm's expected rows in the pooled history: per campaign, its rows times the
    configured shares of the arms it was designed with (those it has, control, and those it
    lacks by chance; :func:`_lacked`)."""
    everyone = expected_shares(names, control_share, arm_shares)
    out = dict.fromkeys(names, 0.0)
    for arms in campaigns.values():
        lacked = set(_lacked(arms, names, everyone)) - {CONTROL}
        drawn = [a for a in names if a not in lacked]
        shares = expected_shares(drawn, control_share, arm_shares)
        for a in drawn:
            out[a] += sum(arms.values()) * shares[a]
    return np.array([out[a] for a in names])
