"""A campaign's specification: ``conf/campaigns/<name>.yaml`` over the ``allocate`` defaults."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field, model_validator

from sparklift.config import AllocateConfig, load_spec
from sparklift.errors import SparkliftError


class CampaignConfig(AllocateConfig):
    campaign_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    vouchers: list[str] | None = None  # null = every active voucher in table vouchers
    # Budget per budget group, or "table": the campaign's rows of table campaign_budgets.
    budgets: dict[str, float] | str
    # Max customers per voucher across groups, or "table": rows of table campaign_caps.
    caps: dict[str, int] | str = Field(default_factory=dict)
    # The run dates on which `sparklift pipeline` allocates it (null = open-ended).
    start: dt.date | None = None
    end: dt.date | None = None
    # Arms (see sparklift.allocation.arms): random shares of each budget group's customers
    # kept without a voucher (holdout: what measure compares the policy with) or sent a
    # random voucher (explore: randomized history for the next model), paid from
    # explore_budget_share of each group's budget; the draw is a hash of (seed, campaign,
    # customer), so a customer keeps its arm from run to run.
    holdout_share: float = Field(default=0.0, ge=0, lt=1)
    explore_share: float = Field(default=0.0, ge=0, lt=1)
    explore_budget_share: float = Field(default=0.0, ge=0, le=1)
    seed: int = 0

    def active_on(self, day: dt.date) -> bool:
        return (self.start is None or self.start <= day) and (self.end is None or day <= self.end)

    @model_validator(mode="after")
    def _consistent(self) -> CampaignConfig:
        for key in ("budgets", "caps"):
            value = getattr(self, key)
            if isinstance(value, str) and value != "table":
                raise ValueError(f"{key} must be a mapping or the word 'table', got {value!r}")
        if isinstance(self.budgets, dict):
            bad = {g: b for g, b in self.budgets.items() if not (math.isfinite(b) and b >= 0)}
            if bad:
                raise ValueError(f"budgets must be >= 0 and finite, got {bad}")
            if not self.budgets:
                raise ValueError("budgets: give at least one budget group")
        if isinstance(self.caps, dict):
            negative = {v: q for v, q in self.caps.items() if q < 0}
            if negative:
                raise ValueError(f"caps must be >= 0, got {negative}")
        if self.solver == "exact" and self.caps:
            raise ValueError(
                "solver: exact solves each budget group alone, but caps couple the groups; "
                "use solver: lagrangian with caps"
            )
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        if self.holdout_share + self.explore_share >= 1:
            raise ValueError(
                f"holdout_share {self.holdout_share} + explore_share {self.explore_share} "
                "leaves no customer to target: their sum must be below 1"
            )
        if self.holdout_share > 0 and self.solver == "exact":
            raise ValueError(
                "holdout_share needs solver: lagrangian (the holdout gets the policy's "
                "decision rule, its multipliers; the exact solver has none)"
            )
        if (self.explore_share > 0) != (self.explore_budget_share > 0):
            raise ValueError(
                "explore_share and explore_budget_share go together: an explore arm needs "
                f"a slice of the budget and a slice needs the arm (got {self.explore_share} "
                f"and {self.explore_budget_share})"
            )
        if self.vouchers == []:
            raise ValueError(
                "vouchers: [] names no voucher: list the campaign's vouchers, or leave "
                "vouchers out (null) for every active voucher of table vouchers"
            )
        if self.vouchers is not None and len(set(self.vouchers)) != len(self.vouchers):
            raise ValueError(f"vouchers are listed twice: {self.vouchers}")
        return self


def load_campaign(path: str | Path, defaults: AllocateConfig) -> CampaignConfig:
    """Validate the campaign file at ``path`` merged over the allocate defaults."""
    return load_spec(path, defaults, CampaignConfig, "campaign file")


def falls_back(args: Sequence[str], defaults: AllocateConfig) -> bool:
    """Whether the campaign of the job arguments ``--campaign F`` sets ``fallback`` (a file
    that does not load has none: it fails its own step)."""
    try:
        return (
            load_campaign(args[list(args).index("--campaign") + 1], defaults).fallback is not None
        )
    except (SparkliftError, ValueError, IndexError):
        return False
