"""One self-contained HTML page: inline style, inline SVG charts, tables; no script and no
request at view time, so a page opens from a file, an e-mail or an artefact store alike.

A page is a list of sections; every value shown is escaped. Numbers are formatted to 4
significant digits (a p-value to 3), never in scientific notation above 1e-4.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d1d1f;
margin:0;background:#f6f7f9}
main{max-width:980px;margin:0 auto;padding:24px}
header{background:#fff;border-bottom:1px solid #e3e5e8;padding:16px 24px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;color:#555}
section{background:#fff;border:1px solid #e3e5e8;border-radius:8px;padding:16px 20px;
margin:16px 0} h2{font-size:17px;margin:0 0 8px} h3{font-size:14px;margin:12px 0 6px}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0;width:100%}
th,td{border-bottom:1px solid #eceef1;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#fafbfc;font-weight:600} td:first-child,th:first-child{text-align:left}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #e3e5e8;border-radius:6px;padding:8px 12px;min-width:120px}
.card b{display:block;font-size:18px} .card span{color:#555;font-size:12px}
.status{display:inline-block;border-radius:10px;padding:1px 10px;font-weight:600}
.good{background:#e3f4e6;color:#1b6b2a} .bad{background:#fbe4e4;color:#a11b1b}
.neutral{background:#eceef1;color:#333} .note{color:#555;font-size:12.5px}
figure{margin:8px 0} svg{max-width:100%;height:auto} .scroll{overflow-x:auto}
a{color:#0b5cad}
"""
GOOD = {"efficacy", "accepted", "concluded", "pass", "measured"}
BAD = {"harm", "invalid", "rejected", "fail", "futility"}


@dataclass
class Page:
    """A page under construction: a title, a subtitle and sections of HTML."""

    title: str
    subtitle: str = ""
    parts: list[str] = field(default_factory=list)

    def section(self, heading: str, *body: str, anchor: str | None = None) -> None:
        """A section: a heading and its body's HTML fragments, in order."""
        ident = f' id="{html.escape(anchor)}"' if anchor else ""
        self.parts.append(
            f"<section{ident}><h2>{html.escape(heading)}</h2>{''.join(body)}</section>"
        )

    def render(self) -> str:
        """The whole page as text."""
        return (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            "style-src 'unsafe-inline'; img-src data:\">"
            f"<title>{html.escape(self.title)}</title><style>{STYLE}</style></head><body>"
            f"<header><h1>{html.escape(self.title)}</h1><p>{html.escape(self.subtitle)}</p>"
            f"</header><main>{''.join(self.parts)}</main></body></html>"
        )


def fmt(value: Any, digits: int = 4) -> str:
    """A value for a cell: numbers to ``digits`` significant digits, dates ISO, None '-'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int,)) or (
        isinstance(value, float) and value.is_integer() and abs(value) < 1e15
    ):
        return f"{int(value):,}"
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-4:
            return f"{value:.2e}"
        if abs(float(f"{value:.{digits}g}")) >= 10**digits:  # 9999.6 too, not 1e+04
            return f"{value:,.0f}"
        return f"{value:,.{digits}g}" if abs(value) >= 1 else f"{value:.{digits}g}"
    if isinstance(value, (dt.date, pd.Timestamp)):
        return value.strftime("%Y-%m-%d")
    return str(value)


def table(frame: pd.DataFrame, columns: Mapping[str, str] | None = None) -> str:
    """A table of ``frame``'s columns (``columns``: column -> header, in order; those the
    frame lacks, e.g. of a table written by an older release, are left out)."""
    columns = {c: h for c, h in (columns or {c: c for c in frame.columns}).items()
               if c in frame.columns}  # fmt: skip
    head = "".join(f"<th>{html.escape(h)}</th>" for h in columns.values())
    rows = []
    for record in frame[list(columns)].to_dict("records"):
        cells = "".join(f"<td>{html.escape(fmt(_plain(v)))}</td>" for v in record.values())
        rows.append(f"<tr>{cells}</tr>")
    if not rows:
        return '<p class="note">No rows.</p>'
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _plain(value: Any) -> Any:
    """A NumPy or pandas scalar as a Python one."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (ValueError, AttributeError):
            return value
    if value is pd.NaT:
        return None
    return value


def cards(items: Iterable[tuple[str, Any]]) -> str:
    """Key figures as cards: (label, value)."""
    body = "".join(
        f'<div class="card"><b>{html.escape(fmt(_plain(v)))}</b><span>{html.escape(k)}</span></div>'
        for k, v in items
    )
    return f'<div class="cards">{body}</div>'


def status(value: str | None) -> str:
    """A status as a coloured badge (green: good news, red: bad, grey: neither)."""
    text = value or "unknown"
    kind = "good" if text in GOOD else "bad" if text in BAD else "neutral"
    return f'<span class="status {kind}">{html.escape(text)}</span>'


def figure(svg: str, caption: str = "") -> str:
    """A chart with an optional caption."""
    cap = f'<figcaption class="note">{html.escape(caption)}</figcaption>' if caption else ""
    return f'<figure class="chart">{svg}{cap}</figure>'


def note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'
