"""A campaign's page: budget against spend per group with the solver's certificate (lambda,
dual bound, gap), the vouchers given, the model's held-out Qini and uplift curves and
calibration, and predicted against realized incrementality once measured.

Pure: it takes the campaign's small rows (:class:`CampaignData`, read by
:mod:`sparklift.jobs.report`) and returns the page's HTML.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from sparklift.measure.ratio import RETURN
from sparklift.reports import charts
from sparklift.reports.page import Page, cards, figure, note, table

EVERY = "*"  # campaign_results' label of all groups or all vouchers


@dataclass
class CampaignData:
    """A campaign's published ``allocation_summary`` rows of its latest run date, the
    ``uplift_models`` row of the model it used (None: not found) and its
    ``campaign_results`` rows of one measurement, of one send (empty: not measured)."""

    campaign_id: str
    summary: pd.DataFrame
    model: dict[str, Any] | None
    results: pd.DataFrame
    as_of: dt.date


def campaign_page(data: CampaignData) -> str:
    """The page of one campaign."""
    s = data.summary
    run_date = str(s["run_date"].iloc[0])[:10] if not s.empty else "-"
    page = Page(
        f"Campaign {data.campaign_id}", f"allocation of {run_date}; report as of {data.as_of}"
    )
    _budget(page, s)
    _vouchers(page, s)
    _model(page, data.model)
    _measured(page, data.results)
    return page.render()


def _budget(page: Page, s: pd.DataFrame) -> None:
    if s.empty:
        page.section("Budget and spend", note("No published allocation."), anchor="budget")
        return

    def total(c: str) -> float | None:
        """The groups' sum of a column (None when no group has a value)."""
        return float(s[c].sum()) if c in s and s[c].notna().any() else None

    figures = [
        ("budget", total("budget")),
        ("spent", total("spent")),
        ("predicted objective", total("objective")),
        ("corrected for selection", total("objective_corrected")),
        ("dual bound", total("dual_bound")),
        (
            "relative gap",
            (total("dual_bound") - total("objective")) / abs(total("dual_bound"))
            if total("dual_bound")
            else None,
        ),
        ("customers allocated", int(s["n_allocated"].sum())),
        ("passes", int(s["passes"].max())),
    ]
    svg = charts.bars(
        "Budget and spend per budget group",
        list(s["budget_group"]),
        {"budget": s["budget"].to_numpy(), "spent": s["spent"].to_numpy()},
        ylabel="currency",
    )
    body = [
        cards(figures),
        figure(svg),
        note(
            "The solver's certificate: lambda is the price of a unit of budget, the dual "
            "bound caps any allocation's objective, and the gap between them bounds how "
            "far this one can be from the best."
        ),
        table(
            s,
            {
                "budget_group": "group",
                "budget": "budget",
                "spent": "spent",
                "objective": "objective",
                "objective_corrected": "corrected",
                "dual_bound": "dual bound",
                "gap_rel": "relative gap",
                "lambda": "lambda",
                "n_customers": "customers",
                "n_allocated": "allocated",
                "holdout_customers": "holdout",
                "explore_customers": "explore",
            },
        ),
    ]
    page.section("Budget and spend", *body, anchor="budget")


def _vouchers(page: Page, s: pd.DataFrame) -> None:
    counts: dict[str, int] = {}
    for m in s.get("voucher_counts", pd.Series(dtype=object)):
        for v, n in dict(m or {}).items():
            counts[v] = counts.get(v, 0) + int(n)
    if not any(counts.values()):  # every offered voucher is counted, 0 when not given
        page.section("Vouchers given", note("No voucher given."), anchor="vouchers")
        return
    names = sorted(counts)
    svg = charts.bars(
        "Customers per voucher (policy arm)", names, {"customers": [counts[v] for v in names]}
    )
    body = [figure(svg)]
    caps = dict(s["cap_multipliers"].iloc[0] or {}) if "cap_multipliers" in s else {}
    if caps:
        body.append(note("Capped vouchers and the multiplier that holds each to its cap:"))
        body.append(table(pd.DataFrame({"voucher": list(caps), "multiplier": list(caps.values())})))
    page.section("Vouchers given", *body, anchor="vouchers")


def _model(page: Page, model: dict[str, Any] | None) -> None:
    if model is None:
        page.section("The uplift model", note("The model's row was not found."), anchor="model")
        return
    metrics = (
        json.loads(model["metrics"]) if isinstance(model["metrics"], str) else model["metrics"]
    )
    vouchers = metrics.get("vouchers", {})
    body = [
        note(
            f"Model {model['model_id']} ({model.get('learner')}), held-out rows of the "
            "randomized history: the Qini curve is the incremental objective of the top "
            "fraction targeted, per customer; above the diagonal, the ranking beats random."
        )
    ]
    for title, key in (
        ("Qini curves (objective)", "qini_curve"),
        ("Uplift curves (objective)", "uplift_curve"),
    ):
        series = {
            v: m["objective"][key] for v, m in vouchers.items() if key in m.get("objective", {})
        }
        if series:
            n = len(next(iter(series.values())))
            x = [i / (n - 1) for i in range(n)]
            body.append(
                figure(
                    charts.lines(
                        title,
                        x,
                        series,
                        xlabel="fraction targeted",
                        ylabel="incremental objective per customer",
                    )
                )
            )
    for v, m in vouchers.items():
        bins = pd.DataFrame(m.get("objective", {}).get("calibration", []))
        if bins.empty or bins["observed"].isna().all():
            continue
        svg = charts.scatter_diagonal(
            f"Calibration: {v}",
            bins["predicted"],
            bins["observed"],
            bins["observed_se"],
            xlabel="predicted uplift (bin mean)",
            ylabel="observed uplift (± 2 se)",
        )
        body.append(figure(svg))
    summary = pd.DataFrame(
        [
            {
                "voucher": v,
                "qini": m["objective"].get("qini"),
                "auuc": m["objective"].get("auuc"),
                "average effect": m["objective"].get("average_effect"),
            }
            for v, m in vouchers.items()
        ]
    )
    body.append(table(summary))
    page.section("The uplift model", *body, anchor="model")


def _measured(page: Page, r: pd.DataFrame) -> None:
    heading = "Predicted against realized"
    if r.empty:
        page.section(
            heading,
            note(
                "Not measured yet: sparklift measure writes campaign_results "
                "once the outcomes are in."
            ),
            anchor="measured",
        )
        return
    objective = r[r["metric"] == "objective"]
    # measure's headline (and the calibration's): CUPED when it ran; the deciles exist
    # unadjusted only
    cells = objective[objective["decile"].isna()]
    adjustment = "cuped" if (cells["adjustment"] == "cuped").any() else "none"
    rows = cells[cells["adjustment"] == adjustment]
    whole = rows[(rows["budget_group"] == EVERY) & (rows["voucher_id"] == EVERY)]
    measured_on, sent = (str(r[c].iloc[0])[:10] for c in ("measured_on", "run_date"))
    body = [
        note(
            f"Measured on {measured_on}, of the send of {sent}: the policy's customers "
            "against the random holdout who would have received the same voucher "
            f"(difference in means, adjustment {adjustment}, CI at measure.confidence)."
        )
    ]
    if not whole.empty:
        w = whole.iloc[0]
        body.append(
            cards(
                [
                    ("realized incremental objective", w["incremental_total"]),
                    ("predicted by the allocation", w["predicted"] * w["n_policy"]),
                    ("realized per customer", w["estimate"]),
                    ("CI low", w["ci_low"]),
                    ("CI high", w["ci_high"]),
                    ("predicted per customer", w["predicted"]),
                ]
            )
        )
    body.append(
        table(
            rows,
            {
                "budget_group": "group",
                "voucher_id": "voucher",
                "n_policy": "policy",
                "n_holdout": "holdout",
                "estimate": "estimate",
                "ci_low": "CI low",
                "ci_high": "CI high",
                "p_value": "p",
                "incremental_total": "realized total",
                "predicted": "predicted per customer",
                "decision": "decision",
            },
        )
    )
    body += _cost_and_return(r[r["decile"].isna() & (r["adjustment"] == adjustment)])
    deciles = objective[(objective["adjustment"] == "none") & objective["decile"].notna()]
    if not deciles.empty:
        deciles = deciles.sort_values("decile")
        svg = charts.scatter_diagonal(
            "Predicted against realized, per decile of predicted uplift (unadjusted)",
            deciles["predicted"],
            deciles["estimate"],
            deciles["se"],
            xlabel="predicted uplift per customer",
            ylabel="realized (± 2 se)",
        )
        body.append(figure(svg))
    page.section(heading, *body, anchor="measured")


def _cost_and_return(r: pd.DataFrame) -> list[str]:
    """Per group and voucher: the incremental cost per customer and the return (objective
    per unit of cost) with their CIs; nothing for results measured before returns were."""
    keys = ["budget_group", "voucher_id"]
    ratio = r[r["metric"] == RETURN]
    if ratio.empty:
        return []
    cost = r[r["metric"] == "cost"].set_index(keys)[["estimate", "ci_low", "ci_high"]]
    both = ratio.set_index(keys).join(cost.add_prefix("cost_"), how="left").reset_index()
    columns = {
        "budget_group": "group",
        "voucher_id": "voucher",
        "cost_estimate": "cost per customer",
        "cost_ci_low": "cost CI low",
        "cost_ci_high": "cost CI high",
        "estimate": "return",
        "ci_low": "return CI low",
        "ci_high": "return CI high",
        "predicted": "predicted return",
    }
    return [
        note(
            "The incremental cost, and the return: incremental objective per unit of "
            "incremental cost, with Fieller's CI ('-' where the incremental cost is not "
            "distinguishable from 0, so that no finite interval covers the return, or where "
            "an arm has fewer than 2 customers)."
        ),
        table(both, columns),
    ]
