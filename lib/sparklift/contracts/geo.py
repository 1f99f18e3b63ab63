"""The geo tables: zone/day features, experiment designs and their analyses."""

from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    TimestampType,
)

from sparklift.contracts.contract import TableContract, fields

ZONE_DAY_FEATURES = TableContract(
    "zone_day_features",
    fields(("date", DateType()), ("zone_id", IntegerType())),
    partition_by=("date",),
    key=("date", "zone_id"),
    description="zone x day (every zone of zones on every computed date)",
    extra="one numeric column per features.definitions entry, in its order",
)


GEO_EXPERIMENTS = TableContract(
    "geo_experiments",
    fields(
        ("experiment_id", StringType()),
        ("design_id", StringType()),  # the design run whose assignments and checks are current
        ("status", StringType()),  # accepted | rejected | accepted_anyway
        ("reason", StringType()),
        ("variants", ArrayType(StringType())),  # the control first
        ("zones_per_variant", IntegerType()),
        ("pre_start", DateType()),
        ("pre_end", DateType()),
        ("start", DateType()),
        ("end", DateType()),
        ("metrics", ArrayType(StringType())),
        ("primary_metrics", ArrayType(StringType())),
        ("covariates", ArrayType(StringType())),
        ("margin", DoubleType()),
        ("alpha", DoubleType()),
        ("power", DoubleType()),
        ("target_effect", DoubleType()),
        ("seed", LongType()),
        ("convention", StringType()),
        ("n_eligible", IntegerType()),
        ("left_out", MapType(StringType(), IntegerType())),  # reason -> zones left out
        ("pca_components", IntegerType()),
        ("explained_variance", DoubleType()),  # share of the standardized variance kept
        ("match_distance_ratio", DoubleType()),  # matched / random mean within-group distance
        ("design_run_date", DateType()),
        ("designed_at", TimestampType()),
        ("spec", StringType()),  # the validated experiment file, JSON
    ),
    partition_by=("experiment_id",),
    key=("experiment_id",),
    description="experiment (the commit point that publishes a design: it names design_id)",
)

GEO_ASSIGNMENTS = TableContract(
    "geo_assignments",
    fields(
        ("experiment_id", StringType()),
        ("design_id", StringType()),
        ("zone_id", IntegerType()),
        ("variant", StringType()),
        ("group_id", IntegerType()),
    ),
    partition_by=("experiment_id", "design_id"),
    key=("experiment_id", "design_id", "zone_id"),
    description="experiment x design x zone",
)

GEO_DESIGN_CHECKS = TableContract(
    "geo_design_checks",
    fields(
        ("experiment_id", StringType()),
        ("design_id", StringType()),
        ("metric", StringType()),
        ("variant", StringType()),
        ("primary", BooleanType()),
        ("baseline_mean", DoubleType()),
        ("aa_estimate", DoubleType()),
        ("aa_se", DoubleType()),
        ("aa_p_value", DoubleType()),
        ("margin_abs", DoubleType()),
        ("tost_p", DoubleType()),
        ("equivalent", BooleanType()),
        ("mde", DoubleType()),
        ("mde_relative", DoubleType()),
        ("target_effect", DoubleType()),
        ("power", DoubleType()),
        ("zones_needed", IntegerType()),
        ("df", DoubleType()),
        ("n_obs", LongType()),
        ("n_zones", IntegerType()),
        ("n_days", IntegerType()),
        ("cov_type", StringType()),  # zone (the convention: geo_experiments.convention)
    ),
    partition_by=("experiment_id", "design_id"),
    key=("experiment_id", "design_id", "metric", "variant"),
    description="experiment x design x metric x variant: AA check and power",
)

GEO_RESULTS = TableContract(
    "geo_results",
    fields(
        ("experiment_id", StringType()),
        ("run_date", DateType()),
        ("metric", StringType()),
        ("variant", StringType()),
        ("term", StringType()),  # att (the DiD effect) | lift (att / control mean) | week
        ("event_week", IntegerType()),  # weeks since the start, for term = week
        ("estimate", DoubleType()),
        ("se", DoubleType()),
        ("t", DoubleType()),
        ("p_value", DoubleType()),
        ("ci_low", DoubleType()),
        ("ci_high", DoubleType()),
        ("cov_type", StringType()),  # a label of analysis.covariances, e.g. zone | zone+day
        ("psd_fixed", BooleanType()),  # two-way covariance had negative eigenvalues set to 0
        ("wild_p", DoubleType()),
        ("wild_ci_low", DoubleType()),
        ("wild_ci_high", DoubleType()),
        ("ri_p", DoubleType()),
        ("pretrend_p", DoubleType()),
        ("control_mean", DoubleType()),
        ("n_obs", LongType()),
        ("n_zones", IntegerType()),
        ("n_days", IntegerType()),
        ("computed_at", TimestampType()),
    ),
    partition_by=("experiment_id", "run_date"),
    key=("experiment_id", "run_date", "metric", "variant", "term", "event_week", "cov_type"),
    description="experiment x run date x metric x variant x term (att, lift, week) x covariance",
)

CONTRACTS = (ZONE_DAY_FEATURES, GEO_EXPERIMENTS, GEO_ASSIGNMENTS, GEO_DESIGN_CHECKS, GEO_RESULTS)
