"""``sparklift simulate-outcomes --campaign conf/campaigns/<name>.yaml``: the generator's
stand-in for a campaign system's results. It reads the campaign's published allocation of
the run date (every arm) and the customers snapshot of that date, and writes that send's
``campaign_outcomes`` (replacing its earlier ones: ``sent_date`` the run date), drawn from
the generator's voucher model (:mod:`sparklift.synthetic.outcomes`)."""

from __future__ import annotations

import argparse

from sparklift.allocation.campaign import load_campaign
from sparklift.allocation.tables import published_allocations
from sparklift.jobs import JobContext, log, step
from sparklift.measure.campaign import check_snapshot
from sparklift.synthetic.outcomes import outcomes_frame

HELP = "simulate a campaign's outcomes (synthetic data: the generator's voucher model)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--campaign", required=True, help="conf/campaigns/<name>.yaml")


def run(ctx: JobContext, args: argparse.Namespace) -> dict:
    campaign = load_campaign(args.campaign, ctx.config.allocate)
    catalog, day = ctx.catalog, ctx.run_date
    allocated = published_allocations(catalog, day, campaign.campaign_id)
    customers = catalog.read("customers", where=[("snapshot_date", "=", day)]).drop(
        "snapshot_date", "budget_group"
    )
    check_snapshot(customers, day)  # a customer twice would draw two outcomes
    faces = {
        r[0]: float(r[1])
        for r in catalog.read("vouchers").select("voucher_id", "face_value").collect()
    }
    rows = allocated.select("customer_id", "voucher_id").join(customers, "customer_id")
    gen = ctx.config.generate
    out = outcomes_frame(rows, faces, campaign.campaign_id, day, gen.seed, gen.voucher_effects)
    with step(f"writing campaign_outcomes of {campaign.campaign_id} sent on {day}"):
        version = catalog.write(
            "campaign_outcomes", out, mode="replace",
            replace_where={"campaign_id": campaign.campaign_id, "sent_date": day},
        )  # fmt: skip
    n = catalog.rows_added("campaign_outcomes", version)
    log.info("campaign_outcomes: %d customers of %s (version %d)", n, campaign.campaign_id, version)
    return {"campaign_id": campaign.campaign_id, "customers": n, "version": version}
