"""A campaign's budgets and caps from the rows of their input tables, checked before any
solve: ``campaign_budgets`` (budget_group, budget), ``campaign_caps`` (voucher_id, cap) and
the ``vouchers`` table's ``max_quantity`` (null: no cap). A voucher's cap is the smaller of
the campaign's and its max_quantity, as both bound how many customers may get it."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence

from sparklift.errors import InputError

log = logging.getLogger("sparklift")


def budgets_from_rows(rows: Iterable[tuple], campaign_id: str) -> dict[str, float]:
    """campaign_budgets' (budget_group, budget) rows of ``campaign_id`` as its budgets:
    each group once, with a finite budget >= 0 (a null group or budget is refused, not
    read as the group "None" or a crash; an infinite one would make the bound NaN)."""
    where = f"table campaign_budgets, campaign {campaign_id}"
    budgets: dict[str, float] = {}
    for group, budget in rows:
        if group is None:
            raise InputError(
                f"{where}: a row has a null budget_group (budget {budget}): "
                "a budget group name expected"
            )
        if budget is None:
            raise InputError(
                f"{where}, budget_group {group}: column budget is null: a number >= 0 expected"
            )
        if str(group) in budgets:
            raise InputError(
                f"{where}: budget_group {group} is given twice: one row per budget_group expected"
            )
        if not (math.isfinite(float(budget)) and float(budget) >= 0):
            raise InputError(
                f"{where}, budget_group {group}: budgets must be >= 0, got {budget}: a finite "
                "number expected"
            )
        budgets[str(group)] = float(budget)
    return budgets


def caps_from_rows(rows: Iterable[tuple], campaign_id: str) -> dict[str, int]:
    """campaign_caps' (voucher_id, cap) rows of ``campaign_id`` as its caps: each voucher
    once, with a whole cap >= 0 (a null voucher_id or cap is refused)."""
    where = f"table campaign_caps, campaign {campaign_id}"
    caps: dict[str, int] = {}
    for voucher, cap in rows:
        if voucher is None:
            raise InputError(
                f"{where}: a row has a null voucher_id (cap {cap}): a voucher id expected"
            )
        if cap is None:
            raise InputError(
                f"{where}, voucher_id {voucher}: column cap is null: a count "
                ">= 0 expected (a voucher without a cap has no row)"
            )
        if str(voucher) in caps:
            raise InputError(
                f"table campaign_caps lists voucher {voucher} twice for "
                f"{campaign_id}: one row per voucher_id expected"
            )
        if not _count(cap):
            raise InputError(
                f"{where}, voucher_id {voucher}: caps must be >= 0, got {cap}: a whole number "
                "of customers expected"
            )
        caps[str(voucher)] = int(cap)
    return caps


def max_quantities(rows: Iterable[tuple]) -> dict[str, int]:
    """The vouchers table's (voucher_id, max_quantity) rows as caps: a null max_quantity is
    none; each voucher once, with a max_quantity >= 0."""
    seen: set[str] = set()
    caps: dict[str, int] = {}
    for voucher, quantity in rows:
        if voucher in seen:
            raise InputError(
                f"table vouchers lists voucher_id {voucher} twice: one row per voucher expected"
            )
        seen.add(voucher)
        if quantity is None:
            continue
        if not _count(quantity):
            raise InputError(
                f"table vouchers, voucher_id {voucher}: max_quantity must be >= 0 (null: no "
                f"cap), got {quantity}: a whole number of customers expected"
            )
        caps[str(voucher)] = int(quantity)
    return caps


def _count(value: object) -> bool:
    """Whether a cap is a whole number >= 0 (a float column's NaN, infinity or 2.5 is not)."""
    x = float(value)  # type: ignore[arg-type]
    return math.isfinite(x) and x >= 0 and x == int(x)


def smaller_caps(caps: Mapping[str, int], quantities: Mapping[str, int]) -> dict[str, int]:
    """Per voucher the smaller of its campaign cap and its max_quantity (either alone when
    the other is none)."""
    out = dict(caps)
    for voucher, quantity in quantities.items():
        out[voucher] = min(out.get(voucher, quantity), quantity)
    return out


def offered(
    vouchers: Sequence[str], caps: Mapping[str, int], campaign_id: str
) -> tuple[list[str], dict[str, int]]:
    """The vouchers the campaign offers, and their caps: one capped at 0 (the campaign's
    cap, or out of stock) is not offered, so the explore arm never draws a voucher it
    cannot send (feedback needs every offered voucher sent), with a warning."""
    out = [v for v in vouchers if caps.get(v) != 0]
    gone = [v for v in vouchers if v not in out]
    if not out:
        raise InputError(
            f"campaign {campaign_id}: every voucher {gone} has a cap of 0 (the campaign's caps "
            "or table vouchers' max_quantity): nothing to offer"
        )
    if gone:
        log.warning("campaign %s: vouchers %s have a cap of 0: not offered", campaign_id, gone)
    return out, {v: q for v, q in caps.items() if v not in gone}
