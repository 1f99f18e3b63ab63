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
    StructField,
    StructType,
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
        ("status", StringType()),  # accepted | rejected | accepted_anyway | concluded
        ("reason", StringType()),  # why rejected, or each variant's sequential decision
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
        ("sequential", StringType()),  # the sequential plan, JSON (null: a fixed horizon)
        ("alpha_per_test", DoubleType()),  # alpha / (treatments x primary metrics)
        ("look_dates", ArrayType(DateType())),  # the planned looks; the end is the last
        ("concluded_on", DateType()),  # the look at which every treatment had stopped
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
        # the design without the variance reduction (equal to the above with none)
        ("variance_reduction", StringType()),  # none | cuped | cupac: what aa_se .. used
        ("aa_se_unadjusted", DoubleType()),
        ("se_reduction", DoubleType()),  # 1 - aa_se / aa_se_unadjusted
        ("mde_relative_unadjusted", DoubleType()),
        ("zones_needed_unadjusted", IntegerType()),
        ("df", DoubleType()),
        ("n_obs", LongType()),
        ("n_zones", IntegerType()),
        ("n_days", IntegerType()),
        ("cov_type", StringType()),  # zone: aa_se, mde, power (convention: geo_experiments')
        ("max_information", DoubleType()),  # 1 / se^2 of decisions at the planned duration
        ("planned_fractions", ArrayType(DoubleType())),  # (se_K / se_k)^2 at each look
        ("planned_upper", ArrayType(DoubleType())),  # efficacy z bound per look
        ("planned_lower", ArrayType(DoubleType())),  # futility (or -upper) per look; null: none
        ("inflation", DoubleType()),  # I_max / I_fixed of the plan
        ("decision_df", DoubleType()),  # t reference of decisions: G - 1 (jackknife) or G* - 1
        ("sequential_mde", DoubleType()),  # effect the plan detects with the design's power
        ("sequential_power", DoubleType()),  # power of the plan at target_effect
        ("expected_days_h0", DoubleType()),  # expected duration with no effect
        ("expected_days_target", DoubleType()),  # expected duration at target_effect
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
        ("decision_point", BooleanType()),  # the run date is a look of the sequential plan
        ("computed_at", TimestampType()),
    ),
    partition_by=("experiment_id", "run_date"),
    key=("experiment_id", "run_date", "metric", "variant", "term", "event_week", "cov_type"),
    nullable_key=("event_week",),  # of term week only
    description="experiment x run date x metric x variant x term (att, lift, week) x covariance",
)

GATE = StructType(
    [
        StructField("gate", StringType()),  # traffic | mix:<name> | pretrend
        StructField("statistic", DoubleType()),
        StructField("p_value", DoubleType()),
        StructField("threshold", DoubleType()),  # fails when p_value < threshold
    ]
)

GEO_SEQUENTIAL = TableContract(
    "geo_sequential",
    fields(
        ("experiment_id", StringType()),
        ("run_date", DateType()),
        ("design_id", StringType()),
        ("metric", StringType()),
        ("variant", StringType()),
        ("primary", BooleanType()),
        ("decision_point", BooleanType()),  # a look of the plan (else: the daily path)
        ("look", IntegerType()),  # 1, 2, ... among the looks made
        ("information_fraction", DoubleType()),  # at a look the one spent at; else observed
        ("estimate", DoubleType()),
        ("se", DoubleType()),  # the decisions' (sequential.inference: jackknife by default)
        ("z", DoubleType()),  # the t statistic on the normal scale
        ("efficacy_bound", DoubleType()),
        ("harm_bound", DoubleType()),  # two-sided plans
        ("futility_bound", DoubleType()),  # plans with futility
        ("alpha_spent", DoubleType()),  # cumulative, of this comparison's alpha_per_test
        ("decision", StringType()),  # continue|efficacy|harm|futility|no_effect|invalid|stopped
        ("variant_decision", StringType()),  # the variant's, from its primary metrics
        ("reason", StringType()),
        ("rci_low", DoubleType()),  # repeated confidence interval
        ("rci_high", DoubleType()),
        ("final_p", DoubleType()),  # stage-wise ordering p-value, at a stop
        ("median_unbiased", DoubleType()),  # median unbiased estimate, at a stop
        ("gates", ArrayType(GATE)),
        ("computed_at", TimestampType()),
    ),
    partition_by=("experiment_id", "run_date"),
    key=("experiment_id", "run_date", "metric", "variant"),
    description="experiment x run date x metric x variant: the sequential look",
)

FORECASTS = TableContract(
    "forecasts",
    fields(
        ("experiment_id", StringType()),
        ("metric", StringType()),
        ("variant", StringType()),
        ("concluded_on", DateType()),
        ("cov_type", StringType()),  # the covariance of the lift used
        ("lift", DoubleType()),  # the final relative lift, as analysed
        ("lift_se", DoubleType()),
        ("p_value", DoubleType()),
        ("significant", BooleanType()),  # at the experiment's alpha
        ("prior_mean", DoubleType()),  # of the other concluded experiments' lifts (null: fewer
        ("prior_sd", DoubleType()),  # than forecast.min_experiments)
        ("prior_experiments", IntegerType()),
        ("shrinkage_weight", DoubleType()),  # B: the weight kept on the lift
        ("lift_shrunk", DoubleType()),  # empirical Bayes posterior mean
        ("winners_curse_bias", DoubleType()),  # Lee and Shen's estimated selection bias
        ("lift_winners_curse", DoubleType()),  # the lift less that bias
        ("platform_revenue", DoubleType()),
        ("platform_factor", DoubleType()),
        ("success_probability", DoubleType()),
        ("haircut", DoubleType()),
        ("forecast_raw", DoubleType()),  # lift x factor x probability x revenue x (1 - haircut)
        ("forecast_shrunk", DoubleType()),
        ("forecast_winners_curse", DoubleType()),
        ("computed_at", TimestampType()),
    ),
    partition_by=("experiment_id",),
    key=("experiment_id", "metric", "variant"),
    description="concluded experiment x metric x variant: revenue forecast, shrunk lift",
)

CONTRACTS = (
    ZONE_DAY_FEATURES,
    GEO_EXPERIMENTS,
    GEO_ASSIGNMENTS,
    GEO_DESIGN_CHECKS,
    GEO_RESULTS,
    GEO_SEQUENTIAL,
    FORECASTS,
)
