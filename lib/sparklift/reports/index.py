"""The index page: every experiment and campaign with its status, linked to its page."""

from __future__ import annotations

import datetime as dt
import html

import pandas as pd

from sparklift.reports.page import Page, fmt, note, status


def index_page(experiments: pd.DataFrame, campaigns: pd.DataFrame, as_of: dt.date) -> str:
    """``experiments``: experiment_id, status, start, end, decision, href; ``campaigns``:
    campaign_id, run_date, spent, objective, measured, href."""
    page = Page("sparklift reports", f"experiments and campaigns as of {as_of}")
    page.section(
        "Experiments",
        _rows(experiments, "experiment_id", ["status", "start", "end", "decision"]),
        anchor="experiments",
    )
    page.section(
        "Campaigns",
        _rows(campaigns, "campaign_id", ["run_date", "spent", "objective", "measured"]),
        anchor="campaigns",
    )
    return page.render()


def _rows(frame: pd.DataFrame, key: str, columns: list[str]) -> str:
    if frame.empty:
        return note("None yet.")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in [key, *columns])
    body = []
    for r in frame.to_dict("records"):
        cells = [f'<td><a href="{html.escape(r["href"])}">{html.escape(str(r[key]))}</a></td>']
        for c in columns:
            value = r.get(c)
            if c in ("status", "decision"):  # a badge; none yet (NaN or ""): "-"
                shown = status(value) if isinstance(value, str) and value else "-"
            else:
                shown = html.escape(fmt(value))
            cells.append(f"<td>{shown}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
