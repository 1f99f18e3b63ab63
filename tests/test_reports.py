"""Report pages: built from hand-made rows of the result tables, every section present and
every number shown as the tables hold it; then opened in headless Chromium with the network
off (tests/browser.py): no console error, no request, every chart drawn, a screenshot each."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sparklift.config import load_config
from sparklift.errors import InputError
from sparklift.geo.forecast import forecasts
from sparklift.jobs import JobContext, write_records
from sparklift.jobs import report as report_job
from sparklift.reports.campaign import CampaignData, campaign_page
from sparklift.reports.experiment import ExperimentData, experiment_page
from sparklift.reports.index import index_page
from sparklift.reports.page import fmt
from sparklift.stats.power import power_at
from sparklift.tables import Catalog
from tests.browser import need_chromium, open_pages

START = dt.date(2026, 5, 1)
EXPERIMENT_SECTIONS = [
    "Status and decision",
    "Gates",
    "Design",
    "AA check, power and MDE",
    "Treated and control zones, day by day",
    "Event study",
    "Effect and lift",
    "ROI forecast",
]
CAMPAIGN_SECTIONS = [
    "Budget and spend",
    "Vouchers given",
    "The uplift model",
    "Predicted against realized",
]


def experiment() -> ExperimentData:
    rng = np.random.default_rng(1)
    e = {
        "experiment_id": "banner",
        "design_id": "d1",
        "status": "accepted",
        "reason": None,
        "start": START,
        "end": START + dt.timedelta(days=27),
        "pre_start": START - dt.timedelta(days=28),
        "pre_end": START - dt.timedelta(days=1),
        "variants": ["control", "treatment"],
        "metrics": ["orders", "gmv"],
        "alpha": 0.05,
        "look_dates": [START + dt.timedelta(days=d) for d in (9, 18, 27)],
        "n_eligible": 180,
        "pca_components": 4,
        "explained_variance": 0.83,
        "match_distance_ratio": 0.41,
    }
    assignment = pd.DataFrame(
        {
            "zone_id": range(40),
            "variant": ["control", "treatment"] * 20,
            "group_id": np.repeat(range(20), 2),
        }
    )
    checks = pd.DataFrame(
        [
            {
                "metric": m,
                "variant": "treatment",
                "primary": m == "orders",
                "baseline_mean": b,
                "aa_estimate": 0.001,
                "aa_se": se,
                "aa_p_value": 0.61,
                "tost_p": 0.004,
                "equivalent": True,
                "df": 19.0,
                "mde": 2.9 * se,
                "mde_relative": 2.9 * se / b,
                "power": power_at(0.05 * b, se, 0.05, 19.0),
                "zones_needed": 16,
                "variance_reduction": "none",
                "target_effect": 0.05,
                "sequential_mde": 3.7 * se,
                "sequential_power": 0.713,
                "expected_days_target": 17.25,
            }
            for m, b, se in (("orders", 0.31, 0.0041), ("gmv", 9.8, 0.21))
        ]
    )
    looks = [START + dt.timedelta(days=d) for d in (9, 18)]
    sequential = pd.DataFrame(
        [
            {
                "run_date": d,
                "metric": m,
                "variant": "treatment",
                "primary": m == "orders",
                "look": i + 1,
                "information_fraction": (i + 1) / 3,
                "z": z,
                "efficacy_bound": b,
                "futility_bound": None,
                "harm_bound": -b,
                "decision": "continue",
                "variant_decision": "continue",
                "reason": None,
                "rci_low": -0.01,
                "rci_high": 0.03,
                "gates": [
                    {"gate": "traffic_share", "statistic": 0.5, "p_value": 0.8, "threshold": 0.001},
                    {"gate": "pretrend", "statistic": 1.1, "p_value": 0.35, "threshold": 0.01},
                ],
            }
            for i, d in enumerate(looks)
            for m, z, b in (("orders", 1.2 + i, 3.7 - i), ("gmv", 0.4, 3.7 - i))
        ]
    )
    last = looks[-1]
    weeks = [
        {
            "run_date": last,
            "metric": m,
            "variant": "treatment",
            "term": "week",
            "event_week": w,
            "cov_type": c,
            "estimate": 0.002 * w,
            "se": 0.004,
            "ci_low": 0.002 * w - 0.008,
            "ci_high": 0.002 * w + 0.008,
            "pretrend_p": 0.42,
        }
        for m in ("orders", "gmv")
        for w in range(-4, 3)
        for c in ("zone", "zone+day")
    ]
    effects = [
        {
            "run_date": last,
            "metric": m,
            "variant": "treatment",
            "term": t,
            "event_week": None,
            "cov_type": c,
            "estimate": est,
            "se": 0.011,
            "ci_low": est - 0.02,
            "ci_high": est + 0.02,
            "p_value": 0.0312,
            "wild_p": 0.0407,
            "ri_p": 0.045,
            "pretrend_p": 0.42,
            "control_mean": 0.31,
        }
        for m in ("orders", "gmv")
        for t, est in (("att", 0.0162), ("lift", 0.0523))
        for c in ("zone", "zone+day")
    ]
    days = [START + dt.timedelta(days=d) for d in range(-28, 19)]
    daily = pd.DataFrame(
        [
            {"date": d, "variant": v, "metric": m, "value": base + rng.normal(0, 0.01)}
            for d in days
            for v in ("control", "treatment")
            for m, base in (("orders", 0.31), ("gmv", 9.8))
        ]
    )
    balance = pd.DataFrame(
        [
            {"feature": f, "variant": v, "mean": mu, "sd": 2.0}
            for f, mu in (("visits", 120.0), ("orders", 31.0))
            for v in ("control", "treatment")
        ]
    )
    lifts = pd.DataFrame(
        {
            "experiment_id": ["banner", "past1", "past2", "past3"],
            "metric": "gmv",
            "variant": "treatment",
            "concluded_on": last,
            "cov_type": "zone",
            "lift": [0.0523, 0.01, -0.004, 0.02],
            "lift_se": 0.011,
            "p_value": [0.0312, 0.4, 0.7, 0.08],
        }
    )
    conf = load_config(None, ["forecast.platform_revenue={gmv: 1000000}"]).forecast
    rows = forecasts(lifts, conf, dict.fromkeys(lifts["experiment_id"], 0.05))
    return ExperimentData(
        e,
        assignment,
        checks,
        pd.DataFrame(weeks + effects),
        sequential,
        daily,
        balance,
        last,
        rows[rows["experiment_id"] == "banner"],
    )


def campaign() -> CampaignData:
    curve = [float(x) for x in np.sqrt(np.linspace(0, 1, 101)) * 0.4]
    calibration = [
        {
            "bin": b + 1,
            "predicted": 0.5 - 0.05 * b,
            "observed": 0.45 - 0.05 * b,
            "observed_se": 0.03,
        }
        for b in range(10)
    ]
    metrics = {
        "vouchers": {
            v: {
                "objective": {
                    "qini": q,
                    "auuc": q / 2,
                    "average_effect": 0.2,
                    "qini_curve": curve,
                    "uplift_curve": curve,
                    "calibration": calibration,
                }
            }
            for v, q in (("V01", 0.031), ("V02", 0.018))
        }
    }
    summary = pd.DataFrame(
        [
            {
                "run_date": START,
                "budget_group": g,
                "budget": b,
                "spent": s,
                "objective": o,
                "objective_corrected": 0.8 * o,
                "dual_bound": o + 0.01,
                "gap_rel": 1e-6,
                "lambda": 0.71,
                "n_customers": 5000,
                "n_allocated": 900,
                "holdout_customers": 250,
                "explore_customers": 50,
                "voucher_counts": {"V01": 500, "V02": 400},
                "cap_multipliers": {"V01": 0.12},
                "passes": 9,
                "model_id": "m1",
            }
            for g, b, s, o in (("new", 5000.0, 4999.5, 812.25), ("loyal", 3000.0, 2999.0, 401.5))
        ]
    )
    rows = [
        {
            "run_date": START,
            "measured_on": START + dt.timedelta(days=14),
            "metric": "objective",
            "adjustment": a,
            "budget_group": "*",
            "voucher_id": "*",
            "decile": None,
            "n_policy": 1800,
            "n_holdout": 500,
            "estimate": 0.61,
            "se": se,
            "ci_low": 0.61 - 1.96 * se,
            "ci_high": 0.61 + 1.96 * se,
            "p_value": 0.0023,
            "incremental_total": 1098.0,
            "predicted": 0.6743,
            "decision": None,
        }
        for a, se in (("none", 0.2), ("cuped", 0.15))
    ]
    rows += [
        {
            "run_date": START,
            "measured_on": START + dt.timedelta(days=14),
            "metric": "objective",
            "adjustment": "none",
            "budget_group": "*",
            "voucher_id": "*",
            "decile": d,
            "n_policy": 180,
            "n_holdout": 50,
            "estimate": 1.2 - 0.1 * d,
            "se": 0.3,
            "ci_low": 0.6 - 0.1 * d,
            "ci_high": 1.8 - 0.1 * d,
            "p_value": 0.1,
            "incremental_total": None,
            "predicted": 1.3 - 0.1 * d,
            "decision": None,
        }
        for d in range(1, 11)
    ]
    money = [  # metric, group, estimate, CI, predicted
        ("cost", "*", 0.52, 0.47, 0.57, 0.49),
        ("return", "*", 1.173, 0.6, 1.9, 1.376),
        ("cost", "NL", 0.03, -0.01, 0.07, 0.04),
        ("return", "NL", 2.5, None, None, 1.2),
    ]
    rows += [
        {
            "run_date": START,
            "measured_on": START + dt.timedelta(days=14),
            "metric": m,
            "adjustment": "cuped",
            "budget_group": g,
            "voucher_id": "*",
            "decile": None,
            "estimate": e,
            "ci_low": lo,
            "ci_high": hi,
            "predicted": p,
        }
        for m, g, e, lo, hi, p in money
    ]
    model = {"model_id": "m1", "learner": "dr_gbm", "metrics": json.dumps(metrics)}
    return CampaignData(
        "winback", summary, model, pd.DataFrame(rows), START + dt.timedelta(days=14)
    )


def headings(html: str) -> list[str]:
    return re.findall(r"<h2>([^<]*)</h2>", html)


def cells(html: str) -> list[str]:
    return re.findall(r"<td>([^<]*)</td>", html)


def test_experiment_page_shows_every_section_and_the_tables_numbers():
    data = experiment()
    html = experiment_page(data)
    assert headings(html) == [h.replace(",", ",") for h in EXPERIMENT_SECTIONS]
    assert "<script" not in html and len(html.encode()) < 2_000_000
    shown = cells(html)
    for value in (0.0523, 0.0407, 0.045, 0.61, 0.004, 2.7, 0.35):  # lift, wild p, RI p, AA p,
        assert fmt(value) in shown, value  # TOST p, the efficacy bound, a gate's p
    # Charts: the z path and the power curve of the primary metric, the daily metric and
    # the event study of both, the lift: 7 inline SVGs, each titled.
    assert html.count('<figure class="chart">') == 8  # and the forecasts'
    forecast = data.forecasts.iloc[0]
    assert fmt(forecast["forecast_raw"]) == "52,300" and "<td>52,300</td>" in html
    assert f"<td>{fmt(forecast['forecast_shrunk'])}</td>" in html
    assert f"<td>{fmt(forecast['forecast_winners_curse'])}</td>" in html
    assert "Path of z: orders, treatment against control" in html
    # the sequential plan's MDE, power and expected days: what decisions are taken with
    assert all(fmt(v) in shown for v in (3.7 * 0.0041, 0.713, 17.25))
    assert "MDE, sequential plan" in html
    assert "std. diff treatment" in html  # the balance of features
    # the control is the experiment's first variant, whatever its name
    held = replace(
        data,
        experiment={**data.experiment, "variants": ["holdout", "treatment"]},
        balance=data.balance.replace({"variant": {"control": "holdout"}}),
    )
    renamed = experiment_page(held)
    assert "std. diff treatment" in renamed and "std. diff holdout" not in renamed
    assert "zones: control" in html and ">20<" in html


def test_a_designed_experiment_without_analysis_or_features_has_a_page():
    """Designed, not started: no result, look, daily feature or assignment yet: every
    section says so instead of failing; the index shows it without a decision."""
    full = experiment()
    empty = pd.DataFrame()
    data = ExperimentData(
        full.experiment | {"status": "designed"}, empty, empty, empty, empty, empty, empty, START
    )
    html = experiment_page(data)
    assert headings(html) == EXPERIMENT_SECTIONS and "<figure" not in html
    for said in (
        "No sequential look yet",
        "No daily features",
        "No event study yet",
        "No analysis yet",
        "has not concluded",
    ):
        assert said in html, said
    row = {
        "experiment_id": "banner",
        "status": "designed",
        "start": START,
        "end": START,
        "decision": float("nan"),
        "href": "experiments/banner.html",
    }
    index = index_page(pd.DataFrame([row]), pd.DataFrame(), START)
    assert "<td>-</td>" in index and "None yet." in index
    looked = index_page(pd.DataFrame([row | {"decision": ""}]), pd.DataFrame(), START)
    assert "<td>-</td>" in looked and "unknown" not in looked  # looks without a decision


def test_campaign_page_shows_budget_model_and_measurement():
    data = campaign()
    html = campaign_page(data)
    assert headings(html) == CAMPAIGN_SECTIONS
    shown = cells(html)
    for value in (4999.5, 2999.0, 0.71, 1098.0, 0.6743, 0.0023):
        assert fmt(value) in shown, value
    assert fmt(8000.0) in html and fmt(1213.75 * 0.8) in html  # the cards: sums of the groups
    assert fmt(0.6743 * 1800) in html  # the prediction of the measured customers, in total
    # budget bars, voucher bars, qini and uplift curves, 2 calibrations, the deciles
    assert html.count('<figure class="chart">') == 7
    # CUPED's interval, measure's headline, is the one shown; the deciles are unadjusted
    assert "adjustment cuped" in html and fmt(0.61 - 1.96 * 0.15) in shown
    assert fmt(0.61 - 1.96 * 0.2) not in html
    # the cost and the return per group, a return without a finite CI shown as '-'
    assert "Fieller" in html
    assert [fmt(v) for v in (0.52, 0.47, 0.57, 1.173, 0.6, 1.9, 1.376)] == shown[
        shown.index(fmt(0.52)) : shown.index(fmt(0.52)) + 7
    ]
    nl = shown.index(fmt(0.03))
    assert shown[nl - 2 : nl + 7] == [
        "NL",
        "*",
        *map(fmt, (0.03, -0.01, 0.07, 2.5)),
        "-",
        "-",
        "1.2",
    ]
    unadjusted = campaign_page(replace(data, results=data.results.query("adjustment == 'none'")))
    assert "adjustment none" in unadjusted and fmt(0.61 - 1.96 * 0.2) in cells(unadjusted)
    empty = campaign_page(CampaignData("c", data.summary, None, pd.DataFrame(), START))
    assert "Not measured yet" in empty and "model&#x27;s row was not found" in empty


def test_campaign_page_names_the_send_its_measurement_is_of():
    """The measurement's note names its look and the send (allocation run date) it
    measured, which may be another than the allocation the page's header names."""
    data = campaign()
    html = campaign_page(data)
    assert "Measured on 2026-05-15, of the send of 2026-05-01:" in html
    earlier = data.results.assign(run_date=START - dt.timedelta(days=7))
    html = campaign_page(replace(data, results=earlier))
    assert "allocation of 2026-05-01;" in html
    assert "Measured on 2026-05-15, of the send of 2026-04-24:" in html


def test_a_campaign_report_shows_one_send_s_measurement_as_of_its_date(spark, tmp_path):
    """Two sends measured on one day (the first's final look, the second's interim) and,
    after the report's date, a third allocation and a later look: the page of that date
    shows the allocation of the second send, and the measurement of that day of the
    second send only (the latest send measured on the latest look up to the date)."""
    config = load_config(None, [f"tables.base_path={tmp_path / 'wh'}"])
    catalog = Catalog(spark, config.tables)
    first, second, third = (START + dt.timedelta(days=d) for d in (0, 7, 19))
    look, later = START + dt.timedelta(days=14), START + dt.timedelta(days=21)
    as_of = START + dt.timedelta(days=15)
    write_records(catalog, "allocation_summary", [
        {"run_date": d, "campaign_id": "winback", "run_id": f"r{i}", "budget_group": "NL",
         "budget": 100.0 * (i + 1), "spent": 90.0 * (i + 1), "n_allocated": 10, "passes": 1,
         "model_id": "m1"}
        for i, d in enumerate((first, second, third))
    ])  # fmt: skip
    measured = [(first, look, 0.5), (second, look, 0.7), (second, later, 0.9)]
    write_records(catalog, "campaign_results", [
        {"campaign_id": "winback", "run_date": sent, "measured_on": on, "budget_group": g,
         "voucher_id": "*", "metric": "objective", "adjustment": "none", "estimate": e}
        for sent, on, e in measured for g in ("*", "NL")
    ])  # fmt: skip
    data = report_job.campaign_data(JobContext(spark, config, catalog, as_of), "winback")
    assert list(data.summary["run_date"]) == [second] and list(data.summary["budget"]) == [200.0]
    r = data.results
    assert len(r) == 2 and set(r["run_date"]) == {second} and set(r["measured_on"]) == {look}
    assert sorted(r["estimate"]) == [0.7, 0.7]
    html = campaign_page(data)
    assert "allocation of 2026-05-08;" in html
    assert "Measured on 2026-05-15, of the send of 2026-05-08:" in html


def test_pages_render_in_a_real_browser_offline(tmp_path: Path):
    """Every page opened in headless Chromium without network: no console error, no
    request, every chart drawn with marks, the sections named, a screenshot each."""
    need_chromium()
    (tmp_path / "experiments").mkdir()
    (tmp_path / "campaigns").mkdir()
    pages = {
        tmp_path / "experiments" / "banner.html": experiment_page(experiment()),
        tmp_path / "campaigns" / "winback.html": campaign_page(campaign()),
    }
    ex = pd.DataFrame(
        [
            {
                "experiment_id": "banner",
                "status": "accepted",
                "start": START,
                "end": START,
                "decision": "continue",
                "href": "experiments/banner.html",
            }
        ]
    )
    ca = pd.DataFrame(
        [
            {
                "campaign_id": "winback",
                "run_date": START,
                "spent": 7998.5,
                "objective": 1213.75,
                "measured": True,
                "href": "campaigns/winback.html",
            }
        ]
    )
    pages[tmp_path / "index.html"] = index_page(ex, ca, START)
    for path, html in pages.items():
        path.write_text(html)
    seen = open_pages(list(pages), "unit")
    for path, html in pages.items():
        s = seen[path]
        assert s.errors == [] and s.requests == [], (path, s)
        assert len(s.charts) == html.count('<figure class="chart">')
        assert all(w > 100 and h > 50 and marks > 10 for w, h, marks in s.charts), s.charts
        assert s.screenshot.stat().st_size > 10_000 and s.width <= 1100
    assert seen[tmp_path / "experiments" / "banner.html"].sections == EXPERIMENT_SECTIONS
    assert seen[tmp_path / "campaigns" / "winback.html"].sections == CAMPAIGN_SECTIONS
    assert seen[tmp_path / "index.html"].sections == ["Experiments", "Campaigns"]


@pytest.mark.parametrize(
    "value, shown",
    [
        (0.0523, "0.0523"),
        (1213.75, "1,214"),
        (47_500.12, "47,500"),
        (3, "3"),
        (None, "-"),
        (float("nan"), "-"),
        (2.5e-7, "2.50e-07"),
        (True, "yes"),
        (START, "2026-05-01"),
    ],
)
def test_numbers_are_formatted_for_reading(value, shown):
    assert fmt(value) == shown


@pytest.mark.parametrize(
    "value, shown",
    [(9999.6, "10,000"), (-9999.7, "-10,000"), (12345.6, "12,346"), (1234.56, "1,235"),
     (0.0123456, "0.01235"), (3e-5, "3.00e-05"), (7.0, "7")],
)  # fmt: skip
def test_numbers_are_never_in_scientific_notation_above_1e_4(value, shown):
    assert fmt(value) == shown


def test_a_backfill_s_experiment_page_and_index_show_what_was_known_then(spark, tmp_path):
    """geo_experiments keeps only the current status: an experiment concluded after the
    report's date shows its design's status then (with its conclusion's date: e's primary
    metric failed its AA check, so accepted_anyway; g's passed: accepted), without the forecast
    made at its conclusion; the index takes the decision of the last look and the latest
    allocation up to that date, and marks a campaign measured only once it was; an
    experiment designed, or a campaign allocated, after that date is not there yet."""
    config = load_config(None, [f"tables.base_path={tmp_path / 'wh'}"])
    catalog = Catalog(spark, config.tables)
    look, concluded = START + dt.timedelta(days=10), START + dt.timedelta(days=20)
    as_of = START + dt.timedelta(days=15)
    experiment = {"experiment_id": "e", "design_id": "d", "status": "concluded",
                  "reason": "t1: efficacy", "concluded_on": concluded, "start": START,
                  "end": concluded, "design_run_date": START}  # fmt: skip
    future = experiment | {"experiment_id": "f", "status": "accepted", "concluded_on": None,
                           "design_run_date": concluded}  # fmt: skip
    passed = experiment | {"experiment_id": "g"}
    write_records(catalog, "geo_experiments", [experiment, future, passed])
    design = {"experiment_id": "e", "design_id": "d"}
    write_records(catalog, "geo_assignments", [design | {"zone_id": 1, "variant": "t1"}])
    write_records(catalog, "geo_design_checks", [
        {"experiment_id": e, "design_id": "d", "metric": m, "variant": "t1",
         "primary": m == "gmv", "equivalent": m != "gmv" or e == "g"}
        for e in ("e", "g") for m in ("gmv", "orders")
    ])  # fmt: skip
    write_records(catalog, "geo_sequential", [
        {"experiment_id": "e", "run_date": d, "metric": "gmv", "variant": "t1", "primary": True,
         "variant_decision": decision}
        for d, decision in ((look, "continue"), (concluded, "efficacy"))
    ], {"experiment_id": ["e"]})  # fmt: skip
    write_records(catalog, "forecasts", [
        {"experiment_id": "e", "metric": "gmv", "variant": "t1", "concluded_on": concluded,
         "lift": 0.03, "forecast_raw": 1000.0}
    ], {"experiment_id": ["e"]})  # fmt: skip
    write_records(catalog, "allocation_summary", [
        {"run_date": d, "campaign_id": c, "run_id": f"r{i}", "budget_group": "NL",
         "budget": 100.0, "spent": spent, "n_allocated": 10, "passes": 1, "model_id": "m1"}
        for i, (d, spent, c) in enumerate(
            ((START, 90.0, "winback"), (concluded, 50.0, "winback"), (concluded, 5.0, "later"))
        )
    ])  # fmt: skip
    write_records(catalog, "campaign_results", [
        {"campaign_id": "winback", "run_date": START, "measured_on": concluded,
         "budget_group": "*", "voucher_id": "*", "metric": "objective", "adjustment": "none",
         "estimate": 1.0}
    ])  # fmt: skip
    ctx = JobContext(spark, config, catalog, as_of)
    data = report_job.experiment_data(ctx, "e")
    assert data.experiment["status"] == "accepted_anyway"
    assert data.experiment["reason"] == "as of 2026-05-16; concluded on 2026-05-21"
    assert data.forecasts.empty and list(data.sequential["run_date"]) == [look]
    with pytest.raises(InputError, match="'f' was designed on 2026-05-21, after the report's"):
        report_job.experiment_data(ctx, "f")
    assert report_job._experiment_ids(ctx) == ["e", "g"]
    assert report_job._campaign_ids(ctx) == ["winback"]
    with pytest.raises(InputError, match="'later' was first allocated on 2026-05-21, after"):
        report_job.campaign_data(ctx, "later")
    out = tmp_path / "site"
    for page in ("experiments/e.html", "experiments/f.html", "experiments/g.html",
                 "campaigns/winback.html"):  # fmt: skip
        (out / page).parent.mkdir(parents=True, exist_ok=True)
        (out / page).write_text("")
    experiments, campaigns = report_job._index_rows(ctx, out)
    shown = experiments.set_index("experiment_id")
    assert shown["status"].to_dict() == {"e": "accepted_anyway", "g": "accepted"}
    assert shown.loc["e", "decision"] == "continue"
    assert campaigns[["run_date", "spent", "measured"]].values.tolist() == [[START, 90.0, False]]
    later = report_job.experiment_data(replace(ctx, run_date=concluded), "e")
    assert later.experiment["status"] == "concluded" and len(later.forecasts) == 1
