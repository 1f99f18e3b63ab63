"""The ROI forecast section of an experiment's page: the ``forecasts`` rows (raw, shrunk and
winner's-curse corrected) as a table and a chart."""

from __future__ import annotations

import pandas as pd

from sparklift.reports import charts
from sparklift.reports.page import Page, figure, note, table


def forecast_section(page: Page, f: pd.DataFrame) -> None:
    """The experiment's forecasts (``forecasts`` rows; empty: not concluded)."""
    heading = "ROI forecast"
    if f.empty:
        page.section(
            heading,
            note(
                "No forecast: the experiment has not concluded (sparklift "
                "forecast covers concluded experiments)."
            ),
            anchor="forecast",
        )
        return
    body = [
        note(
            "Revenue forecast = lift x platform factor x success probability x platform revenue"
            " x (1 - haircut), from the raw lift, the lift shrunk towards past experiments' "
            "effects (empirical Bayes; B is the weight kept on this experiment's lift), and the "
            "lift less its winner's-curse bias (a significant result overstates its effect)."
        ),
        table(
            f,
            {
                "metric": "metric",
                "variant": "variant",
                "lift": "lift",
                "lift_shrunk": "shrunk",
                "shrinkage_weight": "B",
                "prior_experiments": "other experiments",
                "lift_winners_curse": "curse-corrected",
                "forecast_raw": "forecast (raw)",
                "forecast_shrunk": "forecast (shrunk)",
                "forecast_winners_curse": "forecast (corrected)",
            },
        ),
    ]
    shown = f[f["forecast_raw"].notna()]
    if not shown.empty:
        labels = [f"{m} / {v}" for m, v in zip(shown["metric"], shown["variant"], strict=True)]
        svg = charts.bars(
            "Revenue forecast per metric",
            labels,
            {
                "raw": shown["forecast_raw"].to_numpy(),
                "shrunk": shown["forecast_shrunk"].to_numpy(),
                "winner's curse corrected": shown["forecast_winners_curse"].to_numpy(),
            },
            ylabel="revenue",
        )
        body.append(figure(svg))
    page.section(heading, *body, anchor="forecast")
