"""Looks at a campaign during its measurement window, kept valid by alpha spending.

Outcomes accrue over the ``window_days`` after the send, so a look on day d of the window
has about d / window_days of the information the final look will have: the standard
error of a cumulative outcome's difference in means shrinks relative to its effect as
days are added. The information fraction of a look is therefore calendar time,
t = days since the send / window_days (the geo monitor's rule for experiments without a
design). Each look spends the Lan-DeMets function at its own t (two-sided: efficacy above,
harm below, alpha = 1 - measure.confidence), given the earlier looks of the same
allocation run recorded in ``campaign_results``; a look whose t does not exceed the
previous one's by :data:`MIN_STEP` is taken at the previous t + MIN_STEP. The look at or
after the window's end is final: it spends all alpha left, so with no earlier look its
bound is the fixed-sample one. Repeated CIs, estimate +- bound x se, cover the effect at
every look at once with probability 1 - alpha (Jennison and Turnbull 2000, ch. 9).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sparklift.stats.sequential import efficacy_bounds, spending

MIN_STEP = 1e-3


@dataclass(frozen=True)
class Look:
    """One look: its number (1 = the first), information fraction, |z| bound, finality."""

    number: int
    fraction: float
    bound: float
    final: bool


def fraction(sent: dt.date, measured_on: dt.date, window_days: int) -> float:
    """Calendar information fraction of a look on ``measured_on`` (module docstring)."""
    return (measured_on - sent).days / window_days


def look(
    prior: Sequence[float],
    t_now: float,
    alpha: float,
    spending_name: str,
    param: float | None = None,
) -> Look:
    """The look at fraction ``t_now`` after looks at ``prior`` (increasing, each < 1; a
    final look's fraction 1 among them is left out by the caller)."""
    final = t_now >= 1.0
    if not final:
        t_now = max(t_now, prior[-1] + MIN_STEP if prior else MIN_STEP)
        final = t_now >= 1.0
    t_all = [*prior, 1.0 if final else t_now]
    upper = efficacy_bounds(t_all, alpha, spending(spending_name, param), sides=2)
    return Look(len(t_all), t_all[-1], float(upper[-1]), final)


def decision(z: float, bound: float, final: bool) -> str:
    """efficacy (z >= bound), harm (z <= -bound), else continue, or no_effect at the final
    look."""
    if z >= bound:
        return "efficacy"
    if z <= -bound:
        return "harm"
    return "no_effect" if final else "continue"


def with_look(results: pd.DataFrame, at: Look) -> pd.DataFrame:
    """``results`` (rows with estimate and se) with the look's columns: look,
    information_fraction, z, z_bound, the repeated CI, and the decision of the campaign's
    rows (budget group and voucher ``*``, no decile; the other rows share the bound, with
    no correction for their number)."""
    out = results.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        z = out["estimate"] / out["se"]
    out["z"] = z.where(np.isfinite(z))
    out["look"] = at.number
    out["information_fraction"] = at.fraction
    out["z_bound"] = at.bound
    out["rci_low"] = out["estimate"] - at.bound * out["se"]
    out["rci_high"] = out["estimate"] + at.bound * out["se"]
    campaign = (out["budget_group"] == "*") & (out["voucher_id"] == "*") & out["decile"].isna()
    out["decision"] = [
        decision(v, at.bound, at.final) if c and pd.notna(v) else None
        for v, c in zip(out["z"], campaign, strict=True)
    ]
    return out
