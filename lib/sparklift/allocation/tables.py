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

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparklift.errors import InputNotReadyError
from sparklift.tables import Catalog, PartitionFilter
from sparklift.tables.publish import named_id


def summary_where(run_date: dt.date, campaign_id: str) -> list[PartitionFilter]:
    """The partition of ``allocation_summary`` (the commit point) of a date and campaign."""
    return [("run_date", "=", run_date), ("campaign_id", "=", campaign_id)]


def published_allocations(catalog: Catalog, run_date: dt.date, campaign_id: str) -> DataFrame:
    """The allocations of the run that ``allocation_summary`` publishes for the date and
    campaign (what campaign systems should read)."""
    run_id = named_id(catalog, "allocation_summary", "run_id", summary_where(run_date, campaign_id))
    if run_id is None:
        raise InputNotReadyError(
            f"allocation_summary has no run of campaign {campaign_id} on {run_date}"
        )
    return catalog.read(
        "allocations",
        where=[
            ("run_date", "=", run_date),
            ("campaign_id", "=", campaign_id),
            ("run_id", "=", run_id),
        ],
    )


def offered_vouchers(catalog: Catalog, run_date: dt.date, campaign_id: str) -> set[str]:
    """The vouchers the published run of the date and campaign chose among (its explore arm
    drew from them): the keys of its summary's ``voucher_counts``, which count every one,
    0 included (a summary written before that counted only the vouchers chosen)."""
    summary = catalog.read("allocation_summary", where=summary_where(run_date, campaign_id))
    keys = summary.select(F.explode(F.map_keys("voucher_counts"))).distinct().collect()
    return {r[0] for r in keys}
