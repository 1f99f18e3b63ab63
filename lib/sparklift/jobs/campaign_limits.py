"""A campaign's vouchers, budgets and caps, read from its file and the catalog's tables
(``vouchers``, ``campaign_budgets``, ``campaign_caps``) and checked by
:mod:`sparklift.allocation.limits` before any solve."""

from __future__ import annotations

from pyspark.sql import functions as F

from sparklift.allocation.campaign import CampaignConfig
from sparklift.allocation.limits import (
    budgets_from_rows,
    caps_from_rows,
    max_quantities,
    smaller_caps,
)
from sparklift.errors import InputError
from sparklift.jobs import JobContext, log


def active_vouchers(ctx: JobContext) -> list[str]:
    rows = ctx.catalog.read("vouchers").where(F.col("active")).select("voucher_id").collect()
    if not rows:
        raise InputError("table vouchers has no active voucher; nothing to allocate")
    return sorted(r[0] for r in rows)


def budgets(ctx: JobContext, campaign: CampaignConfig) -> dict[str, float]:
    if isinstance(campaign.budgets, dict):
        return dict(campaign.budgets)
    rows = _campaign_rows(ctx, "campaign_budgets", campaign.campaign_id, "budget_group", "budget")
    if not rows:
        raise InputError(
            f"table campaign_budgets has no rows for campaign {campaign.campaign_id}: "
            "one row per budget group expected"
        )
    return budgets_from_rows(rows, campaign.campaign_id)


def caps(ctx: JobContext, campaign: CampaignConfig, vouchers: list[str]) -> dict[str, int]:
    """Each voucher's cap: the smaller of the campaign's (its file, or table campaign_caps)
    and table vouchers' max_quantity (:mod:`.allocation.limits`)."""
    if isinstance(campaign.caps, dict):
        caps = dict(campaign.caps)
    else:
        rows = _campaign_rows(ctx, "campaign_caps", campaign.campaign_id, "voucher_id", "cap")
        if not rows:  # a voucher without a cap has no row: none has one
            log.info(
                "table campaign_caps has no rows for campaign %s: no caps", campaign.campaign_id
            )
        caps = caps_from_rows(rows, campaign.campaign_id)
    quantities = _max_quantities(ctx, vouchers)
    if quantities and campaign.solver == "exact":
        raise InputError(
            f"campaign {campaign.campaign_id} has solver: exact, but table vouchers caps "
            f"{quantities} (max_quantity): caps couple the groups; use solver: lagrangian"
        )
    return smaller_caps(caps, quantities)


def _max_quantities(ctx: JobContext, vouchers: list[str]) -> dict[str, int]:
    """max_quantity of the campaign's vouchers, from their few rows of table vouchers (a
    dimension table; none without it: a campaign that names its vouchers needs none)."""
    if not ctx.catalog.exists("vouchers"):
        return {}
    table = ctx.catalog.read("vouchers")
    missing = [c for c in ("voucher_id", "max_quantity") if c not in table.columns]
    if missing:
        raise InputError(f"table vouchers has no column(s) {missing} (max_quantity: null = no cap)")
    rows = table.where(F.col("voucher_id").isin(list(vouchers)))
    return max_quantities(tuple(r) for r in rows.select("voucher_id", "max_quantity").collect())


def _campaign_rows(ctx: JobContext, table: str, campaign_id: str, key: str, value: str) -> list:
    df = ctx.catalog.read(table)
    missing = [c for c in ("campaign_id", key, value) if c not in df.columns]
    if missing:
        raise InputError(f"table {table} has no column(s) {missing}")
    rows = df.where(F.col("campaign_id") == campaign_id).select(key, value).collect()
    return [tuple(r) for r in rows]
