"""``sparklift feedback --campaign conf/campaigns/<name>.yaml``: a sent campaign's explore
arm, with its holdout as control and their outcomes, appended to ``voucher_campaigns`` as a
randomized campaign, so that the next ``train-uplift`` learns from old and new history.

It reads the campaign's published allocation (the same run ``measure`` reads: by default
the latest whose measurement window is over), that send's ``campaign_outcomes`` and the send
date's customers snapshot (the features, as of the send). The appended campaign is
``<campaign_id>@<send date>``, subsampled per budget group to the history's configured arm
shares (:mod:`sparklift.measure.feedback`). Appending is once per campaign: a second run
finds it there and writes nothing, another send of the campaign is refused (its arms repeat
the first's customers and vouchers), and two runs at once append one send once: both
write under one idempotency key, the campaign's id with the version after the last
one the history applied for it (read with the check, so another campaign's commit
in between changes nothing; rows of the label deleted on purpose are appended again).
"""

from __future__ import annotations

import argparse
import datetime as dt

from pyspark.sql import functions as F
from pyspark.sql.types import NumericType

from sparklift.allocation.campaign import CampaignConfig, load_campaign
from sparklift.allocation.tables import published_run
from sparklift.contracts.inputs import VOUCHER_CAMPAIGNS
from sparklift.errors import InputError
from sparklift.jobs import JobContext, campaign_limits, log, step
from sparklift.jobs.measure import measured_run, send_outcomes
from sparklift.measure import feedback
from sparklift.measure.campaign import check_outcomes, check_snapshot
from sparklift.tables.commit import txn_version
from sparklift.uplift.arms import CONTROL, expected_shares

HELP = "append a sent campaign's explore arm (and holdout) to voucher_campaigns"
HISTORY = "voucher_campaigns"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--campaign", required=True, help="conf/campaigns/<name>.yaml")
    parser.add_argument(
        "--allocated-on",
        type=dt.date.fromisoformat,
        help="the allocation run fed back (default: the latest whose window is over)",
    )


def run(ctx: JobContext, args: argparse.Namespace) -> dict:
    campaign = load_campaign(args.campaign, ctx.config.allocate)
    catalog, cid, conf = ctx.catalog, campaign.campaign_id, ctx.config.uplift
    sent = measured_run(ctx, cid, args.allocated_on, interim=False)
    label = f"{cid}@{sent}"
    app_id = f"sparklift.feedback:{cid}"  # per campaign: two of its sends at once append one
    exists = catalog.exists(HISTORY)
    # the key before the sends: a run committing between the two reads then takes it
    key = (app_id, (applied(ctx, app_id) if exists else -1) + 1)
    sends = fed_back_sends(ctx, cid) if exists else []
    if label in sends:
        log.info("%s already has campaign %s: nothing to append", HISTORY, label)
        return {"campaign_id": label, "appended": 0, "already_there": True}
    other = _other_send(sends, cid, sent, nightly=args.allocated_on is None)
    if other:
        return other
    published = published_run(catalog, sent, cid)  # its id and vouchers in one read
    allocations = published.allocations
    rows = feedback.arm_rows(allocations)
    counts = {
        (r["budget_group"], r["treatment"]): int(r["count"])
        for r in rows.groupBy("budget_group", "treatment").count().collect()
    }
    sent_vouchers = sorted({a for _, a in counts} - {CONTROL})
    if not sent_vouchers or CONTROL not in {a for _, a in counts}:
        lacks = "no explore customers sent a voucher" if not sent_vouchers else "no holdout"
        raise InputError(
            f"campaign {cid} sent on {sent} has {lacks}: nothing randomized to feed back "
            "(allocate it with explore_share and holdout_share > 0)"
        )
    # The explore arm drew among the vouchers the run offered: the shares are over all of
    # them. The run's summary and the campaign file name them: a voucher named by either
    # that the explore arm never sent refuses the send (wrong shares would be silent),
    # but for one capped at 0, which allocate does not offer.
    offered = published.offered | _named(ctx, campaign, published.offered)
    vouchers = sorted(offered | set(sent_vouchers))
    unsent = sorted(set(vouchers) - set(sent_vouchers))
    if unsent:
        raise InputError(
            f"campaign {cid} sent on {sent}: its explore arm never sent {unsent}, so its rows "
            "cannot stand for a draw among all its vouchers; nothing is fed back (a larger "
            "explore_share or explore_budget_share sends every voucher)"
        )
    shares = expected_shares([CONTROL, *vouchers], conf.control_share, conf.arm_shares)
    keep = feedback.keep_shares(counts, shares)
    outcomes = send_outcomes(ctx, cid, sent)
    check_outcomes(outcomes, allocations, cid)  # a duplicate would be appended for good
    snapshot = catalog.read("customers", where=[("snapshot_date", "=", sent)])
    if snapshot.limit(1).count() == 0:
        raise InputError(f"table customers has no snapshot of {sent}: the send date's features")
    check_snapshot(snapshot, sent)
    features = _features(ctx, snapshot)
    with step(f"appending campaign {label} to {HISTORY} ({len(features)} features)"):
        out = feedback.history_rows(
            feedback.kept(rows, keep, campaign.seed, label), outcomes, snapshot, features,
            label, sent,
        )  # fmt: skip
        out = out.persist()
        try:
            by_arm = {r[0]: int(r[1]) for r in out.groupBy("treatment").count().collect()}
            # Once per campaign and run even when two runs race past the check above: both
            # write under one key, and Delta applies it once (the other run is skipped, or
            # fails with a conflict, exit 4, and its re-run finds the rows).
            catalog.write(HISTORY, out, mode="append", txn=key)
        finally:
            out.unpersist()
    # another send of the campaign may have taken the key first
    other = _other_send(fed_back_sends(ctx, cid), cid, sent, nightly=args.allocated_on is None)
    if other:
        return other
    log.info("appended %s: %s rows per arm (target shares %s)", label, by_arm, shares)
    return {
        "campaign_id": label,
        "appended": sum(by_arm.values()),
        "rows_per_arm": by_arm,
        "target_shares": shares,
        "already_there": False,
    }


def _named(ctx: JobContext, campaign: CampaignConfig, offered: frozenset[str]) -> set[str]:
    """The campaign file's vouchers less those the run did not offer as they are capped at 0
    (the campaign's caps or table vouchers' max_quantity): the explore arm never draws
    those, so they cannot count as unsent."""
    named = set(campaign.vouchers or ())
    absent = sorted(named - offered)
    caps = campaign_limits.caps(ctx, campaign, absent) if absent else {}
    zero = sorted(v for v in absent if caps.get(v) == 0)
    if zero:
        log.info(
            "campaign %s: vouchers %s are capped at 0, not offered: left out",
            campaign.campaign_id,
            zero,
        )
    return named - set(zero)


def applied(ctx: JobContext, app_id: str) -> int:
    """The last version of idempotency key ``app_id`` the history applied (-1: none)."""
    return txn_version(ctx.catalog.path(HISTORY), app_id)


def _other_send(sends: list[str], cid: str, sent: dt.date, nightly: bool) -> dict | None:
    """None unless the history holds another send of campaign ``cid`` than ``sent``: then,
    for a nightly run (no --allocated-on), the summary of a run that finds it there;
    for a send named, refused."""
    if not sends or f"{cid}@{sent}" in sends:
        return None
    if not nightly:
        raise _another_send(cid, sends[0], sent)
    log.info("%s already has campaign %s as %s (one send per campaign): nothing to append",
             HISTORY, cid, sends[0])  # fmt: skip
    return {"campaign_id": sends[0], "appended": 0, "already_there": True}


def _another_send(campaign_id: str, there: str, sent: dt.date) -> InputError:
    return InputError(
        f"table {HISTORY} already holds campaign {campaign_id} as {there}: every send of a "
        f"campaign draws its arms and explore vouchers from (seed, campaign_id, customer), "
        f"so the send of {sent} repeats those customers with the same vouchers and would "
        "count them twice; nothing is fed back (feed back other campaigns; a new "
        "campaign_id draws new arms)"
    )


def fed_back_sends(ctx: JobContext, campaign_id: str) -> list[str]:
    """The labels (``<campaign_id>@<send date>``) of the campaign's sends in the history."""
    rows = ctx.catalog.read(HISTORY).where(F.col("campaign_id").startswith(f"{campaign_id}@"))
    return sorted(r[0] for r in rows.select("campaign_id").distinct().collect())


def _features(ctx: JobContext, snapshot) -> list[str]:
    """The history's feature columns (its numeric columns past the contract's), which the
    snapshot must have; for a new history, the snapshot's numeric columns."""
    keys = {"snapshot_date", "customer_id", "budget_group", *VOUCHER_CAMPAIGNS.columns}
    numeric = [
        f.name
        for f in snapshot.schema.fields
        if isinstance(f.dataType, NumericType) and f.name not in keys
    ]
    if not ctx.catalog.exists(HISTORY):
        return numeric
    schema = ctx.catalog.schema(HISTORY)
    wanted = [f.name for f in schema.fields if f.name not in VOUCHER_CAMPAIGNS.columns]
    missing = sorted(set(wanted) - set(snapshot.columns))
    if missing:
        raise InputError(
            f"table customers has no column(s) {missing} on the send date: {HISTORY} has them "
            "as features"
        )
    return wanted
