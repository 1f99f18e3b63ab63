"""An experiment's page: status and decision, gates, design, AA and power, the daily metric
of treated and control zones, the event study, and the effect and lift.

Pure: it takes the experiment's rows of its tables, already small and on the driver
(:class:`ExperimentData`, read by :mod:`sparklift.jobs.report`), and returns the page's
HTML. Every number shown comes from those tables; the power curve is the design's own test
(:func:`sparklift.stats.power.power_at` at the AA standard error and degrees of freedom),
so that it passes through the design's power at the target effect.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sparklift.reports import charts
from sparklift.reports.forecast import forecast_section
from sparklift.reports.page import Page, cards, figure, note, status, table
from sparklift.stats.power import power_at


@dataclass
class ExperimentData:
    """An experiment's rows: its ``geo_experiments`` row, the published design's
    assignment and checks, every ``geo_results`` and ``geo_sequential`` row, the daily
    mean per zone of each metric by variant (``date, variant, metric, value``) and the
    pre-period mean of each feature by variant (``feature, variant, mean, sd``), and its
    ``forecasts`` rows once concluded."""

    experiment: dict[str, Any]
    assignment: pd.DataFrame
    checks: pd.DataFrame
    results: pd.DataFrame
    sequential: pd.DataFrame
    daily: pd.DataFrame
    balance: pd.DataFrame
    as_of: dt.date
    forecasts: pd.DataFrame = field(default_factory=pd.DataFrame)  # its forecasts rows


def experiment_page(data: ExperimentData) -> str:
    """The page of one experiment."""
    e = data.experiment
    page = Page(
        f"Experiment {e['experiment_id']}",
        f"design {e.get('design_id')}, {_date(e.get('start'))} to {_date(e.get('end'))}; "
        f"report as of {data.as_of}",
    )
    _status(page, data)
    _gates(page, data)
    _design(page, data)
    _power(page, data)
    _daily(page, data)
    _event_study(page, data)
    _effects(page, data)
    forecast_section(page, data.forecasts)
    return page.render()


def _date(value: Any) -> str:
    return "-" if value is None else str(value)[:10]


def _latest(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return frame
    return frame[frame["run_date"] == frame["run_date"].max()]


def _status(page: Page, data: ExperimentData) -> None:
    e, seq = data.experiment, data.sequential
    latest = _latest(seq)
    figures = [
        ("status", e.get("status")),
        ("start", _date(e.get("start"))),
        ("end", _date(e.get("end"))),
        ("looks planned", len(e.get("look_dates") or [])),
    ]
    body = [
        f"<p>Status: {status(e.get('status'))}"
        + (f" — {e['reason']}" if e.get("reason") else "")
        + "</p>"
    ]
    if latest.empty:
        body.append(note("No sequential look yet: the first analysis writes one."))
        page.section("Status and decision", *body, cards(figures), anchor="status")
        return
    figures.append(("latest look", _date(latest["run_date"].iloc[0])))
    body.append(cards(figures))
    primary = latest[latest["primary"]] if "primary" in latest else latest
    for r in primary.to_dict("records"):
        body.append(
            f"<p>{r['metric']} / {r['variant']}: {status(r['variant_decision'])} "
            f"(this metric: {status(r['decision'])})"
            + (f" — {r['reason']}" if r.get("reason") else "")
            + "</p>"
        )
    body.append(
        table(
            latest,
            {
                "metric": "metric",
                "variant": "variant",
                "look": "look",
                "information_fraction": "information",
                "z": "z",
                "efficacy_bound": "efficacy bound",
                "futility_bound": "futility",
                "harm_bound": "harm",
                "decision": "decision",
                "rci_low": "RCI low",
                "rci_high": "RCI high",
            },
        )
    )
    for (metric, variant), path in seq.sort_values("run_date").groupby(["metric", "variant"]):
        if not path["primary"].any():
            continue
        series = {"z": path["z"].to_numpy(), "efficacy bound": path["efficacy_bound"].to_numpy()}
        for bound in ("futility_bound", "harm_bound"):
            if path[bound].notna().any():
                series[bound.replace("_", " ")] = path[bound].to_numpy()
        svg = charts.lines(
            f"Path of z: {metric}, {variant} against control",
            list(path["information_fraction"]),
            series,
            xlabel="information fraction",
            ylabel="z",
            dashed=[k for k in series if k != "z"],
        )
        body.append(figure(svg, "A decision is taken when z crosses a bound at a planned look."))
    page.section("Status and decision", *body, anchor="status")


def _gates(page: Page, data: ExperimentData) -> None:
    latest = _latest(data.sequential)
    rows = [
        {"metric": r["metric"], "variant": r["variant"], **g}
        for r in latest.to_dict("records")
        for g in (r["gates"] if r.get("gates") is not None else [])
    ]
    body = [
        note(
            "Checks a decision must pass before it is reported: the traffic share of the "
            "variants, the shift of the user mix, the pre-trend."
        )
    ]
    gates = pd.DataFrame(rows)
    if gates.empty:
        body.append(note("No gate evaluated yet (gates run at the planned looks)."))
    else:
        body.append(
            table(
                gates,
                {
                    "metric": "metric",
                    "variant": "variant",
                    "gate": "gate",
                    "statistic": "statistic",
                    "p_value": "p",
                    "threshold": "threshold",
                },
            )
        )
    page.section("Gates", *body, anchor="gates")


def _design(page: Page, data: ExperimentData) -> None:
    e, a = data.experiment, data.assignment
    per_variant = a.groupby("variant")["zone_id"].count() if not a.empty else pd.Series()
    figures = [(f"zones: {v}", n) for v, n in per_variant.items()]
    figures += [
        ("eligible zones", e.get("n_eligible")),
        ("PCA components", e.get("pca_components")),
        ("explained variance", e.get("explained_variance")),
        ("matched / random distance", e.get("match_distance_ratio")),
    ]
    body = [
        cards(figures),
        note(
            "Zones are matched into groups on the principal components of their features "
            "(a ratio of matched to random within-group distance below 1: better than "
            "random), then randomized within each group."
        ),
    ]
    b = data.balance
    if not b.empty:
        wide = b.pivot_table(index="feature", columns="variant", values="mean").reset_index()
        sd = b.groupby("feature")["sd"].mean()
        control = data.experiment["variants"][0]  # geo_experiments: the control first
        treated = [v for v in wide.columns if v not in ("feature", control)]
        if control in wide.columns:
            for v in treated:
                wide[f"std. diff {v}"] = (wide[v] - wide[control]) / wide["feature"].map(sd)
        body += ["<h3>Balance of features before the start (mean per zone-day)</h3>", table(wide)]
    page.section("Design", *body, anchor="design")


def _power(page: Page, data: ExperimentData) -> None:
    c = data.checks
    body = [
        note(
            "AA check: the design's pre-period as a pseudo experiment. TOST p below alpha: "
            "the arms are equivalent within the margin. MDE, power and zones needed: one "
            "test at the end, at the alpha per test (alpha over the comparisons), the level "
            "decisions are taken at. Decisions are taken at the looks, with the sequential "
            "boundaries: the sequential plan's MDE, power and expected days are the last "
            "columns, and the ones to plan by."
        )
    ]
    columns = {
        "metric": "metric",
        "variant": "variant",
        "primary": "primary",
        "aa_estimate": "AA estimate",
        "aa_se": "AA se",
        "aa_p_value": "AA p",
        "tost_p": "TOST p",
        "equivalent": "equivalent",
        "mde": "MDE",
        "mde_relative": "MDE (relative)",
        "power": "power",
        "zones_needed": "zones needed",
    }
    if "se_reduction" in c and c["variance_reduction"].ne("none").any():
        columns |= {
            "se_reduction": "se cut by adjustment",
            "mde_relative_unadjusted": "MDE unadjusted",
            "zones_needed_unadjusted": "zones unadjusted",
        }
    planned = {
        "sequential_mde": "MDE, sequential plan",
        "sequential_power": "power, sequential plan",
        "expected_days_target": "expected days at the target",
    }
    columns |= {k: v for k, v in planned.items() if k in c}
    body.append(table(c, columns))
    e = data.experiment  # the design's power figures are at the alpha per test
    known = [a for a in (e.get("alpha_per_test"), e.get("alpha")) if a is not None and pd.notna(a)]
    alpha = float(known[0]) if known else 0.05  # rows written before it have no alpha_per_test
    for r in c[c["primary"]].to_dict("records") if not c.empty else []:
        se, df, mde = r.get("aa_se"), r.get("df"), r.get("mde")
        if not se or not df or not mde or not np.isfinite(se):
            continue
        effects = np.linspace(0, 2.5 * mde, 60)
        base = r.get("baseline_mean") or 1.0
        curve = [power_at(x, se, alpha, df) for x in effects]  # the design's own test
        svg = charts.lines(
            f"Power against the true effect, one test at the end: {r['metric']}, {r['variant']}",
            list(100 * effects / base),
            {"power": curve},
            xlabel="true effect (% of the baseline mean)",
            ylabel="power",
            vline=100 * mde / base,
            vline_label="MDE",
        )
        body.append(figure(svg))
    page.section("AA check, power and MDE", *body, anchor="power")


def _daily(page: Page, data: ExperimentData) -> None:
    d, start = data.daily, data.experiment.get("start")
    body = [
        note(
            "Each metric per active user of the arm's zones, day by day: before the start "
            "the arms should move together."
        )
    ]
    if d.empty:
        body.append(note("No daily features for the assigned zones yet."))
        page.section("Treated and control zones, day by day", *body, anchor="daily")
        return
    for metric, rows in d.groupby("metric", sort=False):
        wide = rows.pivot_table(index="date", columns="variant", values="value").sort_index()
        svg = charts.lines(
            f"Daily {metric} per active user",
            list(wide.index),
            {v: wide[v].to_numpy() for v in wide.columns},
            ylabel=metric,
            vline=start,
            vline_label="start",
        )
        body.append(figure(svg))
    page.section("Treated and control zones, day by day", *body, anchor="daily")


def _event_study(page: Page, data: ExperimentData) -> None:
    r = _latest(data.results)
    weeks = r[r["term"] == "week"] if not r.empty else r
    body = [
        note(
            "The effect week by week, relative to the start (weeks before it should be "
            "zero: the pre-trend test)."
        )
    ]
    if weeks.empty:
        body.append(note("No event study yet."))
        page.section("Event study", *body, anchor="event-study")
        return
    cov = _main_cov(weeks)
    for (metric, variant), w in weeks[weeks["cov_type"] == cov].groupby(["metric", "variant"]):
        w = w.sort_values("event_week")
        pre = w["pretrend_p"].dropna()
        svg = charts.band(
            f"Event study: {metric}, {variant} ({cov} clusters)",
            list(w["event_week"]),
            w["estimate"],
            w["ci_low"],
            w["ci_high"],
            xlabel="week relative to the start",
            ylabel=f"effect on {metric}",
        )
        caption = f"pre-trend p = {pre.iloc[0]:.3g}" if len(pre) else ""
        body.append(figure(svg, caption))
    page.section("Event study", *body, anchor="event-study")


def _main_cov(frame: pd.DataFrame) -> str | None:
    """The covariance shown in charts: zone clusters if present, else the first."""
    if frame.empty:
        return None
    covs = list(dict.fromkeys(frame["cov_type"]))
    return "zone" if "zone" in covs else covs[0]


def _effects(page: Page, data: ExperimentData) -> None:
    level = f"{100 * (1 - float(data.experiment.get('alpha') or 0.05)):g}"  # the CIs' level
    r = _latest(data.results)
    body = []
    if r.empty:
        page.section("Effect and lift", note("No analysis yet."), anchor="effects")
        return
    main = r[r["term"].isin(["att", "lift"])].sort_values(["metric", "variant", "term", "cov_type"])
    body.append(
        note(
            f"As of {_date(r['run_date'].iloc[0])}: the effect on the treated (att, per "
            "user-day) and the lift (relative to the control mean), with their "
            f"{level}% "
            "confidence intervals; wild cluster bootstrap and randomization-inference "
            "p-values beside the analytic one."
        )
    )
    body.append(
        table(
            main,
            {
                "metric": "metric",
                "variant": "variant",
                "term": "term",
                "cov_type": "clusters",
                "estimate": "estimate",
                "se": "se",
                "ci_low": "CI low",
                "ci_high": "CI high",
                "p_value": "p",
                "wild_p": "wild p",
                "wild_ci_low": "wild CI low",
                "wild_ci_high": "wild CI high",
                "ri_p": "RI p",
                "control_mean": "control mean",
            },
        )
    )
    cov = _main_cov(main)
    lift = main[(main["term"] == "lift") & (main["cov_type"] == cov)]
    if not lift.empty:
        labels = [f"{m} / {v}" for m, v in zip(lift["metric"], lift["variant"], strict=True)]
        svg = charts.intervals(
            f"Lift with {level}% CI ({cov} clusters)",
            labels,
            100 * lift["estimate"],
            100 * lift["ci_low"],
            100 * lift["ci_high"],
            xlabel="lift (%)",
        )
        body.append(figure(svg))
    page.section("Effect and lift", *body, anchor="effects")
