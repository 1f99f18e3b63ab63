"""The contracts of the geo tables sparklift owns (DESIGN.md), as Spark schemas."""

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
    StructField,
    StructType,
    TimestampType,
)


def _schema(*fields: tuple[str, object]) -> StructType:
    return StructType([StructField(name, kind) for name, kind in fields])  # type: ignore[arg-type]


GEO_EXPERIMENTS = _schema(
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
)

GEO_ASSIGNMENTS = _schema(
    ("experiment_id", StringType()),
    ("design_id", StringType()),
    ("zone_id", IntegerType()),
    ("variant", StringType()),
    ("group_id", IntegerType()),
)

GEO_DESIGN_CHECKS = _schema(
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
    ("cov_type", StringType()),
)

GEO_RESULTS = _schema(
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
    ("cov_type", StringType()),  # zone | zone+day | robust | unadjusted
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
)
