"""The voucher tables: uplift models and scores, allocations and their summaries."""

from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    TimestampType,
)

from sparklift.contracts.contract import TableContract, fields

UPLIFT_MODELS = TableContract(
    "uplift_models",
    fields(
        ("model_id", StringType()),
        ("run_date", DateType()),
        ("trained_at", TimestampType()),
        ("learner", StringType()),
        ("vouchers", ArrayType(StringType())),
        ("features", ArrayType(StringType())),
        ("train_rows", LongType()),
        ("holdout_rows", LongType()),
        ("metrics", StringType()),  # randomization checks and held-out metrics, JSON
        ("artifact_path", StringType()),
        ("artifact_sha256", StringType()),  # of model.pkl, checked before unpickling
    ),
    partition_by=("model_id",),
    key=("model_id",),
    description="trained model",
)

UPLIFT_SCORES = TableContract(
    "uplift_scores",
    fields(
        ("run_date", DateType()),
        ("customer_id", LongType()),
        ("budget_group", StringType()),
        ("voucher_id", StringType()),
        ("uplift_objective", DoubleType()),
        ("uplift_cost", DoubleType()),
        ("model_id", StringType()),
    ),
    partition_by=("run_date",),
    key=("run_date", "customer_id", "voucher_id"),
    description="customer x voucher of a run date's customers snapshot",
)

ALLOCATIONS = TableContract(
    "allocations",
    fields(
        ("run_date", DateType()),
        ("campaign_id", StringType()),
        ("run_id", StringType()),
        ("customer_id", LongType()),
        ("budget_group", StringType()),
        ("voucher_id", StringType()),  # what to send; null: send nothing (holdout)
        ("expected_uplift", DoubleType()),
        ("expected_cost", DoubleType()),
        ("model_id", StringType()),
        ("arm", StringType()),  # policy | holdout | explore
        ("policy_voucher_id", StringType()),  # the policy's choice (null for explore)
    ),
    partition_by=("run_date", "campaign_id", "run_id"),
    key=("run_date", "campaign_id", "run_id", "customer_id"),
    description="customer of a run: sent voucher_id, or held out (the published run is the "
    "one allocation_summary names)",
)

ALLOCATION_SUMMARY = TableContract(
    "allocation_summary",
    fields(
        ("run_date", DateType()),
        ("campaign_id", StringType()),
        ("run_id", StringType()),
        ("budget_group", StringType()),
        ("budget", DoubleType()),
        ("spent", DoubleType()),
        ("objective", DoubleType()),
        ("dual_bound", DoubleType()),
        ("gap", DoubleType()),
        ("gap_rel", DoubleType()),
        ("lambda", DoubleType()),
        ("n_customers", LongType()),
        ("n_allocated", LongType()),
        ("voucher_counts", MapType(StringType(), LongType())),  # every voucher offered (0: none)
        ("cap_multipliers", MapType(StringType(), DoubleType())),
        ("solver", StringType()),
        ("passes", LongType()),
        ("model_id", StringType()),
        ("computed_at", TimestampType()),
        ("holdout_customers", LongType()),  # held out that the policy would have targeted
        ("explore_customers", LongType()),  # sent a random voucher
        ("explore_spent", DoubleType()),  # their expected cost, from the explore slice
        # objective and spent x realized / predicted of past measured campaigns (null:
        # none measured; sparklift.measure.calibration), and how many measured sends that
        # ratio pools (each campaign's sends as one point)
        ("objective_corrected", DoubleType()),
        ("spent_corrected", DoubleType()),
        ("calibration_runs", LongType()),
    ),
    partition_by=("run_date", "campaign_id"),
    key=("run_date", "campaign_id", "budget_group"),
    description="run date x campaign x budget group (the commit point: it names run_id)",
)

CAMPAIGN_RESULTS = TableContract(
    "campaign_results",
    fields(
        ("campaign_id", StringType()),
        ("run_date", DateType()),  # the allocation run measured
        ("measured_on", DateType()),  # the look: the day the outcomes were read
        ("budget_group", StringType()),  # '*' for the campaign
        ("voucher_id", StringType()),  # '*' for every voucher of the group
        ("metric", StringType()),  # objective | cost | return (objective / cost)
        ("adjustment", StringType()),  # none | cuped
        ("decile", IntegerType()),  # of the predicted uplift (1-10; null: not a decile row)
        ("n_policy", LongType()),
        ("n_holdout", LongType()),
        ("mean_policy", DoubleType()),
        ("mean_holdout", DoubleType()),
        ("estimate", DoubleType()),  # incremental per targeted customer
        # heteroskedasticity-robust (HC2, = Neyman unadjusted); return: the delta method's
        ("se", DoubleType()),
        # return rows: Fieller's CI (null where unbounded), and no p_value, total or z
        ("ci_low", DoubleType()),
        ("ci_high", DoubleType()),
        ("p_value", DoubleType()),
        ("incremental_total", DoubleType()),  # estimate x policy customers
        ("predicted", DoubleType()),  # the allocation's expected uplift / cost per customer
        ("look", IntegerType()),  # this look's number among the run's looks (1 = the first)
        ("information_fraction", DoubleType()),  # days since the send / window (1: final)
        ("z", DoubleType()),  # estimate / se
        ("z_bound", DoubleType()),  # the look's two-sided group sequential bound on |z|
        ("rci_low", DoubleType()),  # repeated CI: estimate -+ z_bound x se, valid at any look
        ("rci_high", DoubleType()),
        ("decision", StringType()),  # campaign rows: efficacy|harm|continue|no_effect
        ("computed_at", TimestampType()),
    ),
    partition_by=("campaign_id", "run_date", "measured_on"),
    key=(
        "campaign_id",
        "run_date",
        "measured_on",
        "budget_group",
        "voucher_id",
        "metric",
        "adjustment",
        "decile",
    ),
    nullable_key=("decile",),  # of the decile rows only
    description="campaign x look x budget group x voucher x metric x adjustment (and decile of "
    "the predicted uplift): the policy against the holdout",
)

CONTRACTS = (UPLIFT_MODELS, UPLIFT_SCORES, ALLOCATIONS, ALLOCATION_SUMMARY, CAMPAIGN_RESULTS)
