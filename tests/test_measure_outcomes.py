"""A campaign's outcomes before measurement: refused when a customer has two rows, is not
in the allocation or has a null, NaN or infinite outcome; CUPED's customers table missing;
and the sample-ratio check of the arms' outcome coverage, against
statsmodels' two-proportion z-test (its square is the uncorrected chi-square); the
generator's outcomes of two sends are two draws."""

from __future__ import annotations

import datetime as dt
import logging
from types import SimpleNamespace

import numpy as np
import pytest
from pyspark.sql import functions as F
from statsmodels.stats.proportion import proportions_ztest

from sparklift.config import load_config
from sparklift.errors import InputError
from sparklift.jobs import measure as measure_job
from sparklift.measure.campaign import check_outcomes, check_snapshot, deciles, outcome_coverage
from sparklift.synthetic.outcomes import outcomes_frame
from sparklift.synthetic.vouchers import FACE_VALUES, customers_frame


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


def test_a_send_date_snapshot_with_a_customer_twice_is_refused(spark):
    """Joined to the campaign's customers it would count customer 2 twice (measure) or
    append it twice to voucher_campaigns (feedback)."""
    snap = spark.createDataFrame(
        [(1, 3.0), (2, 1.0), (2, 1.0), (4, 0.0)], "customer_id long, x double"
    )
    with pytest.raises(InputError, match=r"snapshot 2026-09-01: 1 customers have more than one "
                       r"row, e\.g\. \[2\]"):  # fmt: skip
        check_snapshot(snap, dt.date(2026, 9, 1))
    check_snapshot(snap.dropDuplicates(["customer_id"]), dt.date(2026, 9, 1))


@pytest.mark.parametrize(
    "objective, cost, message",
    [
        (None, 1.0, r"column objective: 1 rows, e\.g\. customer_id 3\)"),
        (float("nan"), 1.0, r"column objective: 1 rows, e\.g\. customer_id 3\)"),
        (2.0, float("inf"), r"column cost: 1 rows, e\.g\. customer_id 3\)"),
        (float("-inf"), None, r"column objective: 1 rows, .*; column cost: 1 rows, e\.g\. cus"),
    ],
)  # fmt: skip
def test_null_nan_and_infinite_outcomes_are_refused_naming_a_customer(
    spark, objective, cost, message
):
    """Such a row was filled with 0 (and counted as delivered) or, infinite, went into the
    estimates and (by feedback) into voucher_campaigns for good; the README promises exit 2.
    Customer 3 is the bad row among finite ones; a customer without a row stays fine."""
    allocations = spark.createDataFrame([(c,) for c in range(1, 6)], "customer_id long")
    rows = [(1, 1.0, 0.5), (2, 0.0, 0.0), (3, objective, cost), (5, -1.0, 2.0)]
    schema = "customer_id long, objective double, cost double"
    with pytest.raises(InputError, match=r"table campaign_outcomes, campaign c7: null, NaN or "
                       r"infinite outcomes \(" + message) as e:  # fmt: skip
        check_outcomes(spark.createDataFrame(rows, schema), allocations, "c7")
    assert e.value.exit_code == 2
    check_outcomes(spark.createDataFrame([rows[0], rows[3]], schema), allocations, "c7")


def test_cuped_covariates_without_a_customers_table_are_refused(caplog):
    """measure.covariates listed but no table customers at all: refused (exit 2), as for a
    table without the send date's snapshot; it was measured unadjusted without a word.
    Not listed (null: every numeric column): unadjusted, with a warning."""

    def ctx(covariates: list[str] | None) -> SimpleNamespace:
        catalog = SimpleNamespace(exists=lambda table: False)
        return SimpleNamespace(config=SimpleNamespace(measure=SimpleNamespace(
            covariates=covariates)), catalog=catalog)  # fmt: skip

    with pytest.raises(InputError) as e:
        measure_job._covariates(ctx(["tenure_days"]), dt.date(2026, 9, 1))
    assert str(e.value) == "no table customers: measure.covariates ['tenure_days'] cannot be read"
    assert e.value.exit_code == 2
    with caplog.at_level(logging.WARNING, logger="sparklift"):
        assert measure_job._covariates(ctx(None), dt.date(2026, 9, 1)) is None
    assert "no table customers: the campaign is measured without CUPED" in caplog.text


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


def test_each_send_of_a_campaign_draws_its_own_outcome_noise(spark):
    """Two sends of one allocation (the same customers, arms and vouchers): the same send
    drawn again is the same, another send's objectives are another draw (correlated only
    through the customers' means), so a daily campaign's sends are not copies."""
    conf = load_config(None, ["generate.customers=4000"]).generate
    customers = customers_frame(spark, conf, dt.date(2026, 9, 1))
    allocated = customers.withColumn("voucher_id", F.lit("V01"))
    faces = {"V01": FACE_VALUES[0]}

    def send(day: dt.date) -> np.ndarray:
        frame = outcomes_frame(allocated, faces, "c1", day, seed=3, effects="scaled")
        return frame.orderBy("customer_id").toPandas()["objective"].to_numpy()

    first, again, second = send(dt.date(2026, 9, 1)), send(dt.date(2026, 9, 1)), send(
        dt.date(2026, 9, 2))  # fmt: skip
    assert (first == again).all()
    assert (first != second).mean() > 0.3
    r = np.corrcoef(first, second)[0, 1]
    assert 0.05 < r < 0.9, r  # the means are shared, the noise is not
    assert abs(first.mean() - second.mean()) < 4 * np.sqrt(2 * first.var() / len(first))
