"""A campaign's outcomes before measurement: refused when a customer has two rows or is not
in the allocation, and the sample-ratio check of the arms' outcome coverage, against
statsmodels' two-proportion z-test (its square is the uncorrected chi-square)."""

from __future__ import annotations

import pytest
from statsmodels.stats.proportion import proportions_ztest

from sparklift.errors import InputError
from sparklift.measure.campaign import check_outcomes, deciles, outcome_coverage


def test_duplicated_and_unknown_customers_are_refused_naming_them(spark):
    allocations = spark.createDataFrame([(c,) for c in range(1, 6)], "customer_id long")
    rows = [(c, 1.0) for c in (1, 1, 2, 3, 3, 3, 4)]
    dupes = spark.createDataFrame(rows, "customer_id long, objective double")
    with pytest.raises(
        InputError, match=r"c7: 2 customers have more than one row, e\.g\. \[1, 3\]"
    ):
        check_outcomes(dupes, allocations, "c7")
    strangers = spark.createDataFrame([(2, 1.0), (99, 1.0), (7, 0.0)], dupes.schema)
    with pytest.raises(InputError, match=r"2 customers are not in .* e\.g\. \[7, 99\]"):
        check_outcomes(strangers, allocations, "c7")
    check_outcomes(dupes.dropDuplicates(["customer_id"]), allocations, "c7")  # clean: passes


@pytest.mark.parametrize("holdout_with", [92, 60])
def test_outcome_coverage_is_the_chi_square_of_the_arms_shares(spark, holdout_with):
    """400 policy units (380 with outcomes) and 100 held out (``holdout_with`` with)."""
    units = [(1, int(i < 380)) for i in range(400)] + [
        (0, int(i < holdout_with)) for i in range(100)
    ]
    rows = spark.createDataFrame(units, "treated int, has_outcome int")
    got = outcome_coverage(rows)
    _, p = proportions_ztest([380, holdout_with], [400, 100])
    assert got["policy_share"] == 0.95 and got["holdout_share"] == holdout_with / 100
    assert got["p_value"] == pytest.approx(p, rel=1e-9)
    assert (got["p_value"] < 0.001) == (holdout_with == 60)  # the job's SRM warning


def test_deciles_without_held_out_units_are_an_empty_frame(spark):
    """The rule targeted none of the held-out customers (a small holdout): no decile has
    both arms, so the predicted-against-realized table is empty, not an error."""
    schema = "customer_id long, expected_uplift double, treated int, objective double"
    policy = spark.createDataFrame([(c, c / 10, 1, 1.0) for c in range(50)], schema)
    for rows in (policy, policy.limit(0)):
        frame = deciles(rows)
        assert frame.empty and {"decile", "estimate", "se", "predicted"} <= set(frame.columns)
