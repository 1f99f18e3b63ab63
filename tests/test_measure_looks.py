"""A campaign's looks during its measurement window: the bounds each look gets, against
gsDesign's published two-sided O'Brien-Fleming-type bounds, and the fixed-sample bound of
a single final look."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sparklift.measure.looks import MIN_STEP, fraction, look, with_look

# gsDesign(k=3, test.type=2, alpha=0.025, timing=c(.5,.75), sfu=sfLDOF): 5% over both sides.
GSDESIGN_OBF = [2.963, 2.359, 2.014]


def test_looks_one_at_a_time_get_gsdesign_bounds():
    sent = dt.date(2026, 9, 1)
    days = [4, 6, 8]  # an 8-day window: t = 0.5, 0.75, then final
    prior: list[float] = []
    for k, (d, expected) in enumerate(zip(days, GSDESIGN_OBF, strict=True)):
        at = look(prior, fraction(sent, sent + dt.timedelta(days=d), 8), 0.05, "obf")
        assert at.number == k + 1 and at.final == (d == 8)
        assert at.bound == pytest.approx(expected, abs=1e-3)
        prior.append(at.fraction)
    assert prior == [0.5, 0.75, 1.0]


def test_a_single_final_look_is_the_fixed_sample_test():
    at = look([], 14 / 14, 0.05, "obf")
    assert at.final and at.fraction == 1.0
    assert at.bound == pytest.approx(stats.norm.ppf(0.975), abs=1e-6)
    later = look([], 20 / 14, 0.05, "pocock")  # measured after the window: still final
    assert later.final and later.bound == pytest.approx(stats.norm.ppf(0.975), abs=1e-6)


def test_a_look_that_repeats_the_last_fraction_moves_past_it():
    at = look([0.5], 0.5, 0.05, "obf")
    assert at.fraction == pytest.approx(0.5 + MIN_STEP) and not at.final
    # It spends almost nothing: its bound lies just above the previous look's (2.963).
    assert GSDESIGN_OBF[0] < at.bound < GSDESIGN_OBF[0] + 0.1


def test_decisions_are_read_on_the_campaign_rows_only():
    rows = pd.DataFrame(
        {
            "budget_group": ["*", "*", "NL", "*"],
            "voucher_id": ["*", "*", "V01", "*"],
            "decile": [np.nan, np.nan, np.nan, 3.0],
            "estimate": [0.3, -0.3, 0.3, 0.3],
            "se": [0.1, 0.1, 0.1, 0.1],
        }
    )
    out = with_look(rows, look([], 0.5, 0.05, "obf"))  # bound 2.963 at t = 0.5
    assert out["decision"].tolist() == ["efficacy", "harm", None, None]
    np.testing.assert_allclose(out["rci_low"], rows["estimate"] - 0.1 * out["z_bound"])
    assert out["decision"].iloc[0] == "efficacy" and out["z"].iloc[0] == pytest.approx(3.0)
    continued = with_look(rows.assign(estimate=0.2), look([], 0.5, 0.05, "obf"))
    assert continued["decision"].iloc[0] == "continue"
    final = with_look(rows.assign(estimate=0.1), look([0.5], 1.0, 0.05, "obf"))
    assert final["decision"].iloc[0] == "no_effect"
