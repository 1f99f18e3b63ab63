"""Charts as inline SVG, drawn by matplotlib: a report page then needs no script, no font
and no network to show them, prints as it looks, and stays small (a chart is 20-60 kB).

Each function takes plain arrays and returns one ``<svg>`` element as text. Text stays
text in the SVG (``svg.fonttype: none``), so a browser's find and a test can read labels.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt
import numpy as np

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
STYLE = {
    "svg.fonttype": "none",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.hashsalt": "sparklift",  # the same figure gives the same file
}


def _svg(fig: plt.Figure, title: str) -> str:
    """The figure as an ``<svg>`` element with a title for screen readers."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    start = text.index("<svg")
    body = text[start:]
    head, rest = body.split(">", 1)
    return f'{head} role="img" aria-label="{_escape(title)}"><title>{_escape(title)}</title>{rest}'


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def lines(
    title: str,
    x: Sequence,
    series: Mapping[str, Sequence[float]],
    *,
    xlabel: str = "",
    ylabel: str = "",
    vline: object | None = None,
    vline_label: str = "",
    dashed: Sequence[str] = (),
) -> str:
    """Lines over a shared x (dates or numbers); ``vline`` marks e.g. an experiment's start;
    series named in ``dashed`` are drawn dashed (bounds)."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7, 3))
        for i, (name, y) in enumerate(series.items()):
            style = "--" if name in dashed else "-"
            ax.plot(
                x,
                y,
                style,
                label=name,
                color=PALETTE[i % len(PALETTE)],
                marker=".",
                markersize=4,
                linewidth=1.4,
            )
        if vline is not None:
            ax.axvline(vline, color="#555", linestyle=":", linewidth=1)
            if vline_label:
                ax.annotate(
                    vline_label,
                    (vline, 1),
                    xycoords=("data", "axes fraction"),
                    xytext=(3, -10),
                    textcoords="offset points",
                    color="#555",
                )
        ax.set_title(title, loc="left")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(frameon=False, fontsize=8)
        if len(x) and isinstance(x[0], (dt.date, np.datetime64)):
            fig.autofmt_xdate()
        return _svg(fig, title)


def intervals(
    title: str,
    labels: Sequence[str],
    estimate: Sequence[float],
    low: Sequence[float],
    high: Sequence[float],
    *,
    xlabel: str = "",
    reference: float | None = 0.0,
) -> str:
    """Point estimates with their intervals, one row each (a forest plot); ``reference``
    draws a line (no effect)."""
    n = len(labels)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7, 0.9 + 0.35 * n))
        y = np.arange(n)[::-1]
        est = np.asarray(estimate, float)
        err = np.vstack([est - np.asarray(low, float), np.asarray(high, float) - est])
        ax.errorbar(est, y, xerr=err, fmt="o", color=PALETTE[0], capsize=3, markersize=4)
        if reference is not None:
            ax.axvline(reference, color="#555", linestyle=":", linewidth=1)
        ax.set_yticks(y, labels)
        ax.set_xlabel(xlabel)
        ax.set_title(title, loc="left")
        return _svg(fig, title)


def band(
    title: str,
    x: Sequence[float],
    estimate: Sequence[float],
    low: Sequence[float],
    high: Sequence[float],
    *,
    xlabel: str = "",
    ylabel: str = "",
) -> str:
    """An estimate over x with its confidence band (an event study), 0 marked."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7, 3))
        ax.fill_between(x, low, high, color=PALETTE[0], alpha=0.2, linewidth=0)
        ax.plot(x, estimate, "o-", color=PALETTE[0], markersize=4, linewidth=1.4)
        ax.axhline(0, color="#555", linestyle=":", linewidth=1)
        ax.set_title(title, loc="left")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        return _svg(fig, title)


def bars(
    title: str,
    categories: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    ylabel: str = "",
) -> str:
    """Grouped bars: one group per category, one bar per series."""
    k = max(len(series), 1)
    x = np.arange(len(categories))
    width = 0.8 / k
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7, 3))
        for i, (name, values) in enumerate(series.items()):
            ax.bar(
                x + (i - (k - 1) / 2) * width,
                values,
                width,
                label=name,
                color=PALETTE[i % len(PALETTE)],
            )
        ax.set_xticks(x, categories)
        ax.set_ylabel(ylabel)
        ax.set_title(title, loc="left")
        if len(series) > 1:
            ax.legend(frameon=False, fontsize=8)
        return _svg(fig, title)


def scatter_diagonal(
    title: str,
    x: Sequence[float],
    y: Sequence[float],
    yerr: Sequence[float] | None = None,
    *,
    xlabel: str = "",
    ylabel: str = "",
) -> str:
    """Points against the diagonal y = x (predicted against observed), with 2-SE bars."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.5, 4))
        xs, ys = np.asarray(x, float), np.asarray(y, float)
        err = None if yerr is None else 2 * np.asarray(yerr, float)
        ax.errorbar(xs, ys, yerr=err, fmt="o", color=PALETTE[0], capsize=2, markersize=4)
        finite = np.concatenate([xs[np.isfinite(xs)], ys[np.isfinite(ys)]])
        if finite.size:
            lo, hi = float(finite.min()), float(finite.max())
            ax.plot([lo, hi], [lo, hi], ":", color="#555", linewidth=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, loc="left")
        return _svg(fig, title)
