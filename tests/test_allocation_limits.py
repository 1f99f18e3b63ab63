"""A campaign's budgets and caps from their tables' rows: nulls refused naming the table,
column and campaign; each voucher's cap the smaller of the campaign's and the vouchers
table's max_quantity (null: none)."""

from __future__ import annotations

import pyarrow as pa
import pytest
import yaml

from sparklift.allocation.campaign import load_campaign
from sparklift.allocation.distributed import Problem, solve_collected
from sparklift.allocation.limits import (
    budgets_from_rows,
    caps_from_rows,
    max_quantities,
    offered,
    smaller_caps,
)
from sparklift.config import load_config
from sparklift.errors import ConfigError, InputError


def test_budget_and_cap_rows_are_read():
    assert budgets_from_rows([("NL", 120), ("DE", 0.0)], "c1") == {"NL": 120.0, "DE": 0.0}
    assert caps_from_rows([("V02", 5), ("V03", 0)], "c1") == {"V02": 5, "V03": 0}


@pytest.mark.parametrize(
    "rows, message",
    [
        ([("NL", None)], "campaign_budgets, campaign c1, budget_group NL: column budget is null"),
        ([(None, 5.0)], "table campaign_budgets, campaign c1: a row has a null budget_group"),
        ([("NL", -1.0)], "campaign c1, budget_group NL: budgets must be >= 0, got -1.0"),
        ([("NL", float("nan"))], "budget_group NL: budgets must be >= 0, got nan"),
        ([("NL", 5.0), ("DE", float("inf"))],
         "campaign c1, budget_group DE: budgets must be >= 0, got inf: a finite number"),
        ([("NL", 1.0), ("NL", 2.0)], "budget_group NL is given twice"),
    ],
)  # fmt: skip
def test_bad_budget_rows_are_refused_by_name(rows, message):
    with pytest.raises(InputError) as e:
        budgets_from_rows(rows, "c1")
    assert message in str(e.value) and e.value.exit_code == 2


@pytest.mark.parametrize(
    "rows, message",
    [
        ([("V02", None)], "table campaign_caps, campaign c1, voucher_id V02: column cap is null"),
        ([(None, 5)], "table campaign_caps, campaign c1: a row has a null voucher_id"),
        ([("V02", -1)], "voucher_id V02: caps must be >= 0, got -1"),
        ([("V02", float("inf"))], "voucher_id V02: caps must be >= 0, got inf: a whole number"),
        ([("V02", float("nan"))], "voucher_id V02: caps must be >= 0, got nan: a whole number"),
        ([("V02", 2.5)], "voucher_id V02: caps must be >= 0, got 2.5: a whole number"),
        ([("V02", 1), ("V02", 2)], "lists voucher V02 twice for c1"),
    ],
)  # fmt: skip
def test_bad_cap_rows_are_refused_by_name(rows, message):
    with pytest.raises(InputError) as e:
        caps_from_rows(rows, "c1")
    assert message in str(e.value)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"budgets": {"NL": 5.0, "DE": float("inf")}},
         "budgets must be >= 0 and finite, got {'DE': inf}"),
        ({"budgets": {"NL": 5.0}, "vouchers": []}, "vouchers: [] names no voucher"),
    ],
)  # fmt: skip
def test_an_infinite_budget_or_an_empty_voucher_list_in_a_campaign_file_is_refused(
    tmp_path, spec, message
):
    """An infinite budget passed (the bound came out NaN); `vouchers: []` meant every
    active voucher. Both exit 2, the message naming the group or the key."""
    path = tmp_path / "c1.yaml"
    path.write_text(yaml.safe_dump({"campaign_id": "c1", **spec}))
    with pytest.raises(ConfigError) as e:
        load_campaign(path, load_config(None, []).allocate)
    assert message in str(e.value) and e.value.exit_code == 2


def test_an_infinite_budget_is_refused_by_the_solver():
    """The solver's own check, whatever the budgets' source: an infinite budget gave a
    NaN dual bound and gap."""
    problem = Problem(["V01", "V02"], {"NL": 5.0, "DE": float("inf")})
    with pytest.raises(InputError, match="budget of group 'DE' must be a finite number >= 0"):
        solve_collected(pa.table({}), None, problem)  # refused before any row is read


def test_a_cap_is_the_smaller_of_the_campaigns_and_max_quantity():
    """V01: max_quantity 4 alone; V02: the campaign's 5 under max_quantity 30; V03: the
    campaign's 7 alone (max_quantity null); V04: max_quantity 0 sends none."""
    quantities = max_quantities([("V01", 4), ("V02", 30), ("V03", None), ("V04", 0)])
    assert quantities == {"V01": 4, "V02": 30, "V04": 0}
    merged = smaller_caps({"V02": 5, "V03": 7}, quantities)
    assert merged == {"V01": 4, "V02": 5, "V03": 7, "V04": 0}
    assert smaller_caps({"V02": 50}, {"V02": 30}) == {"V02": 30}


@pytest.mark.parametrize(
    "rows, message",
    [
        ([("V01", -2)], "table vouchers, voucher_id V01: max_quantity must be >= 0"),
        (
            [("V01", float("inf"))],
            "voucher_id V01: max_quantity must be >= 0 (null: no cap), got inf: a whole number",
        ),
        ([("V01", 3), ("V01", None)], "table vouchers lists voucher_id V01 twice"),
    ],
)
def test_bad_max_quantities_are_refused_by_name(rows, message):
    with pytest.raises(InputError) as e:
        max_quantities(rows)
    assert message in str(e.value)


def test_a_voucher_capped_at_0_is_not_offered(caplog):
    """Out of stock (or capped at 0 by the campaign): not drawn by the explore arm either,
    so feedback finds every offered voucher sent; a cap naming no campaign voucher stays
    for the solver's check to refuse."""
    assert offered(["V01", "V02", "V03"], {"V02": 0, "V03": 7, "V09": 1}, "c1") == (
        ["V01", "V03"],
        {"V03": 7, "V09": 1},
    )
    assert "campaign c1: vouchers ['V02'] have a cap of 0: not offered" in caplog.text
    with pytest.raises(InputError, match=r"campaign c1: every voucher \['V01'\] has a cap of 0"):
        offered(["V01"], {"V01": 0}, "c1")
