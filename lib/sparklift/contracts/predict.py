"""The predicted-metric tables: propensity models and the customers' propensity scores."""

from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    TimestampType,
)

from sparklift.contracts.contract import TableContract, fields

PROPENSITY_MODELS = TableContract(
    "propensity_models",
    fields(
        ("model_id", StringType()),
        ("run_date", DateType()),
        ("trained_at", TimestampType()),
        ("learner", StringType()),
        ("features", ArrayType(StringType())),
        ("horizon_days", IntegerType()),
        ("train_snapshots", ArrayType(DateType())),
        ("validation_snapshot", DateType()),
        ("trained_through", DateType()),  # the last day any training label saw
        ("train_rows", LongType()),
        ("validation_rows", LongType()),
        ("metrics", StringType()),  # validation: ROC-AUC, PR-AUC, recall@precision, Brier, JSON
        ("reliability", StringType()),  # validation reliability table (quantile bins), JSON
        ("artifact_path", StringType()),
        ("artifact_sha256", StringType()),  # of model.pkl, checked before unpickling
    ),
    partition_by=("model_id",),
    key=("model_id",),
    description="trained propensity model",
)

PROPENSITY_SCORES = TableContract(
    "propensity_scores",
    fields(
        ("run_date", DateType()),
        ("customer_id", LongType()),  # a user of user_activity active in the history window
        ("propensity", DoubleType()),  # P(an order on one of the next horizon_days days)
        ("horizon_days", IntegerType()),
        ("model_id", StringType()),
    ),
    partition_by=("run_date",),
    key=("run_date", "customer_id"),
    description="customer (user active in the model's history window) of a run date",
)

USER_HISTORY = TableContract(
    "user_history",
    fields(
        ("as_of", DateType()),
        ("user_id", LongType()),  # a user active in the history window ending on as_of
        ("history_days", IntegerType()),  # W: the window [as_of - W + 1, as_of]
        ("recent_days", IntegerType()),  # R: the recent window [as_of - R + 1, as_of]
        ("w_active_days", LongType()),  # days with a user_activity row in the history window
        ("w_last_active", DateType()),
        ("r_active_days", LongType()),  # the same in the recent window (0: none)
        ("r_last_active", DateType()),
    ),
    partition_by=("as_of",),
    key=("as_of", "user_id"),
    description="customer (user active in the history window) as of a day",
    extra="w_sum__<column> and r_sum__<column> (double): each summarized column's sum over "
    "the history and the recent window",
)

CONTRACTS = (PROPENSITY_MODELS, PROPENSITY_SCORES, USER_HISTORY)
