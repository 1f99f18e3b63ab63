"""The campaign files of ``pipeline.campaigns`` a run date allocates: the allocate step's
targets, one per active campaign; files and patterns that cannot be read are targets of
their own, so that each fails its own step and no other."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from sparklift.allocation.campaign import load_campaign
from sparklift.errors import InputError, SparkliftError
from sparklift.jobs import JobContext, log


def active_campaigns(ctx: JobContext) -> dict[str, tuple[str, ...]]:
    """The pipeline's allocations of the run date: the campaign files matched by
    ``pipeline.campaigns`` that are active on it (campaign_id -> its ``--campaign``). A
    file that does not load is kept under its file name, so that it fails its own step;
    so is a pattern that matches no file (a driver started where it finds none would
    otherwise allocate nothing and succeed)."""
    seen: dict[str, str] = {}
    active: dict[str, tuple[str, ...]] = {}
    for pattern in ctx.config.pipeline.campaigns:
        paths = sorted(glob.glob(pattern)) if is_glob(pattern) else [pattern]
        if not paths:
            log.error("%s", unmatched(pattern))
            paths = [pattern]
        for path in paths:
            try:
                campaign = load_campaign(path, ctx.config.allocate)
            except SparkliftError:  # a broken file fails its own step, not the run
                active[Path(path).stem] = ("--campaign", path)
                continue
            if campaign.campaign_id in seen:
                raise InputError(
                    f"campaign {campaign.campaign_id} is defined twice: "
                    f"{seen[campaign.campaign_id]} and {path}"
                )
            seen[campaign.campaign_id] = path
            if campaign.active_on(ctx.run_date):
                active[campaign.campaign_id] = ("--campaign", path)
    return active


def is_glob(pattern: str) -> bool:
    """Whether ``pattern`` has glob characters (else it names one file)."""
    return any(c in pattern for c in "*?[")


def unmatched(pattern: str) -> str:
    """What a ``pipeline.campaigns`` pattern that matches no file says."""
    searched = os.path.abspath(os.path.dirname(pattern))
    return (
        f"pipeline.campaigns: {pattern!r} matches no campaign file in {searched} (a relative "
        "pattern is searched from the directory of the config file that sets it, else from "
        "the working directory); give the files' path, or set pipeline.campaigns=[] to "
        "allocate nothing"
    )
