"""How to read the allocation tables consistently (their contracts:
:mod:`sparklift.contracts.vouchers`).

A run appends its allocations under a fresh ``run_id`` (a partition of its own), then
replaces the run date's and campaign's rows of ``allocation_summary`` (one commit: this
publishes the run). A reader that takes the allocations of the ``run_id`` named by the
summary (:func:`published_allocations`) therefore sees either the previous run or the
complete new one, never a mix and never allocations without their summary.

After publishing, a run removes the run it replaced and abandoned runs, never a concurrent
one (:mod:`sparklift.tables.publish`): runs that publish in turn each remove their
predecessor, and the last one's rows stay.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparklift.errors import InputNotReadyError
from sparklift.tables import Catalog, PartitionFilter


def summary_where(run_date: dt.date, campaign_id: str) -> list[PartitionFilter]:
    """The partition of ``allocation_summary`` (the commit point) of a date and campaign."""
    return [("run_date", "=", run_date), ("campaign_id", "=", campaign_id)]


@dataclass(frozen=True)
class PublishedRun:
    """The run ``allocation_summary`` publishes for a date and campaign, read in one query:
    its id, the vouchers it chose among (the keys of its summary's ``voucher_counts``, which
    count every one, 0 included; a summary written before that counted only those chosen;
    its explore arm drew from them) and its allocations (what campaign systems read)."""

    run_id: str
    offered: frozenset[str]
    allocations: DataFrame


def published_run(catalog: Catalog, run_date: dt.date, campaign_id: str) -> PublishedRun:
    """The published run of the date and campaign. Its id and vouchers come from one read of
    the summary, so a run publishing meanwhile cannot pair one run's id with another's
    vouchers."""
    where = summary_where(run_date, campaign_id)
    rows = []
    if catalog.exists("allocation_summary"):
        rows = (
            catalog.read("allocation_summary", where=where)
            .select("run_id", F.map_keys("voucher_counts").alias("vouchers"))
            .collect()  # one row per budget group of one run
        )
    if not rows:
        raise InputNotReadyError(
            f"allocation_summary has no run of campaign {campaign_id} on {run_date}"
        )
    run_id = rows[0]["run_id"]
    allocations = catalog.read(
        "allocations",
        where=[*where, ("run_id", "=", run_id)],
    )
    offered = frozenset(v for r in rows for v in (r["vouchers"] or ()))
    return PublishedRun(run_id, offered, allocations)


def published_allocations(catalog: Catalog, run_date: dt.date, campaign_id: str) -> DataFrame:
    """The allocations of the run that ``allocation_summary`` publishes for the date and
    campaign (what campaign systems should read)."""
    return published_run(catalog, run_date, campaign_id).allocations
