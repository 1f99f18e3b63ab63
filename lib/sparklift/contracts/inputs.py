"""The raw inputs: owned upstream; ``sparklift generate`` writes synthetic versions."""

from __future__ import annotations

from pyspark.sql.types import (
    BooleanType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
)

from sparklift.contracts.contract import TableContract, fields

USER_ACTIVITY = TableContract(
    "user_activity",
    fields(
        ("date", DateType()),
        ("user_id", LongType()),
        ("zone_id", IntegerType()),
        ("visits", LongType()),
        ("orders", LongType()),
        ("items", LongType()),
        ("gmv", DoubleType()),
        ("tenure_days", IntegerType()),
        ("prior_orders_28d", IntegerType()),
        ("prior_gmv_28d", DoubleType()),
    ),
    partition_by=("date",),
    key=("date", "user_id"),
    description="user x day with activity",
    extra="further numeric activity columns (metrics, covariates)",
)

ZONES = TableContract(
    "zones",
    fields(("zone_id", IntegerType()), ("region", StringType()), ("eligible", BooleanType())),
    partition_by=(),
    key=("zone_id",),
    description="zone",
)

CUSTOMERS = TableContract(
    "customers",
    fields(
        ("snapshot_date", DateType()),
        ("customer_id", LongType()),
        ("budget_group", StringType()),
    ),
    partition_by=("snapshot_date",),
    key=("snapshot_date", "customer_id"),
    description="customer x daily snapshot",
    extra="numeric feature columns",
)

VOUCHER_CAMPAIGNS = TableContract(
    "voucher_campaigns",
    fields(
        ("campaign_id", StringType()),
        ("sent_date", DateType()),
        ("customer_id", LongType()),
        ("treatment", StringType()),  # 'control' or a voucher_id
        ("objective", DoubleType()),
        ("cost", DoubleType()),
    ),
    partition_by=(),
    key=("campaign_id", "customer_id"),
    description="customer in a past randomized campaign",
    extra="numeric feature columns",
)

CAMPAIGN_OUTCOMES = TableContract(
    "campaign_outcomes",
    fields(
        ("campaign_id", StringType()),
        ("sent_date", DateType()),  # the allocation's run date: one send of a daily campaign
        ("customer_id", LongType()),
        ("objective", DoubleType()),  # over the campaign's measurement window
        ("cost", DoubleType()),  # the voucher's cost to the business (0 if not redeemed)
    ),
    partition_by=("campaign_id", "sent_date"),
    key=("campaign_id", "sent_date", "customer_id"),
    description="customer of a campaign's send (every arm); a missing customer counts as 0",
)

VOUCHERS = TableContract(
    "vouchers",
    fields(
        ("voucher_id", StringType()),
        ("face_value", DoubleType()),
        ("max_quantity", LongType()),  # null: no cap
        ("active", BooleanType()),
    ),
    partition_by=(),
    key=("voucher_id",),
    description="voucher",
)

CAMPAIGN_BUDGETS = TableContract(
    "campaign_budgets",
    fields(("campaign_id", StringType()), ("budget_group", StringType()), ("budget", DoubleType())),
    partition_by=(),
    key=("campaign_id", "budget_group"),
    description="optional campaign input: budget per budget group",
)

CAMPAIGN_CAPS = TableContract(
    "campaign_caps",
    fields(("campaign_id", StringType()), ("voucher_id", StringType()), ("cap", IntegerType())),
    partition_by=(),
    key=("campaign_id", "voucher_id"),
    description="optional campaign input: most customers per voucher",
)

CONTRACTS = (
    USER_ACTIVITY,
    ZONES,
    CUSTOMERS,
    VOUCHER_CAMPAIGNS,
    CAMPAIGN_OUTCOMES,
    VOUCHERS,
    CAMPAIGN_BUDGETS,
    CAMPAIGN_CAPS,
)
