"""``sparklift measure --campaign conf/campaigns/<name>.yaml``: what a sent campaign's
policy achieved against its random holdout -> ``campaign_results``.

It reads the campaign's published allocation of ``--allocated-on`` (default: its latest
run whose measurement window is over; with ``--interim``, its latest), that send's
``campaign_outcomes`` (``sent_date`` its run date) and, for CUPED, the customers snapshot
of the send date (pre-campaign columns). Per budget group x voucher
(:mod:`sparklift.measure.campaign`), the incremental objective and cost per targeted
customer with CIs, unadjusted and adjusted, then per group and for the campaign, and the
return of each (incremental objective per unit of incremental cost, with Fieller's CI:
:mod:`sparklift.measure.ratio`). The campaign's figures, the predicted beside the realized,
go to the summary.

The outcomes are final ``measure.window_days`` after the send: before that the run is
refused (exit 3, not ready) unless ``--interim`` says it is a look during the campaign.
Each look gets its group sequential bound (:mod:`sparklift.measure.looks`), given the
run's earlier looks recorded in ``campaign_results``, so daily looks stay valid.
"""

from __future__ import annotations

import argparse
import datetime as dt

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType

from sparklift.allocation.arms import HOLDOUT
from sparklift.allocation.campaign import load_campaign
from sparklift.allocation.tables import published_allocations
from sparklift.errors import InputError, InputNotReadyError
from sparklift.jobs import JobContext, log, step, write_records
from sparklift.measure.campaign import (
    check_outcomes,
    check_snapshot,
    deciles,
    fit_cells,
    intervals,
    measured,
    outcome_coverage,
    units,
    with_totals,
)
from sparklift.measure.looks import fraction, look, with_look
from sparklift.measure.ratio import CARRIED, RETURN, returns
from sparklift.tables.publish import utcnow

HELP = "measure a sent campaign: its policy against its holdout, into campaign_results"
KEYS = ("snapshot_date", "customer_id", "budget_group")
SRM_P = 0.001  # the usual threshold of a sample-ratio mismatch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--campaign", required=True, help="conf/campaigns/<name>.yaml")
    parser.add_argument(
        "--allocated-on",
        type=dt.date.fromisoformat,
        help="the allocation run measured (default: the latest whose window is over)",
    )
    parser.add_argument(
        "--interim", action="store_true", help="a look before the measurement window is over"
    )


def run(ctx: JobContext, args: argparse.Namespace) -> dict:
    campaign = load_campaign(args.campaign, ctx.config.allocate)
    conf, catalog, cid = ctx.config.measure, ctx.catalog, campaign.campaign_id
    sent = measured_run(ctx, cid, args.allocated_on, args.interim)
    allocations = published_allocations(catalog, sent, cid)
    if allocations.where(F.col("arm") == HOLDOUT).limit(1).count() == 0:
        raise InputError(
            f"campaign {cid} sent on {sent} has no holdout arm: nothing to measure its policy "
            "against. Allocate it with holdout_share > 0 (e.g. 0.05)"
        )
    outcomes = send_outcomes(ctx, cid, sent)
    check_outcomes(outcomes, allocations, cid)
    covariates = _covariates(ctx, sent)
    names = [c for c in covariates.columns if c != "customer_id"] if covariates else []
    with step(f"measuring campaign {cid} sent on {sent} ({len(names)} CUPED covariates)"):
        rows = units(allocations, outcomes, covariates).persist()
        try:
            coverage = outcome_coverage(rows)
            fitted = fit_cells(rows, names)
            cells = with_totals(fitted)
            results = intervals(pd.concat([cells, deciles(rows)]), conf.confidence)
        finally:
            rows.unpersist()
    left = fitted[(fitted["metric"] == "objective") & (fitted["adjustment"] == "none")]
    left = left[~measured(left)]
    if len(left):
        log.warning(
            "%d policy customers in %d cell(s) are not measured, as an arm of the cell has "
            "fewer than 2 customers: %s; the totals are over the other cells (a larger "
            "holdout_share measures them)",
            left["n_policy"].sum(),
            len(left),
            ", ".join(f"{g}/{v} ({n1} in the policy arm, {n0} held out)" for g, v, n1, n0 in
                      left[["budget_group", "voucher_id", "n_policy", "n_holdout"]]
                      .itertuples(index=False)),
        )  # fmt: skip
    if coverage["p_value"] < SRM_P:
        log.warning(
            "sample-ratio mismatch: %.1f%% of the policy's units have outcomes, %.1f%% of the "
            "holdout's (p %.2g): missing customers count as 0, so the estimates are biased",
            100 * coverage["policy_share"],
            100 * coverage["holdout_share"],
            coverage["p_value"],
        )
    at = look(
        _prior_looks(ctx, cid, sent),
        fraction(sent, ctx.run_date, conf.window_days),
        1 - conf.confidence,
        conf.spending,
        conf.spending_param,
    )
    results = with_look(results, at)
    results = pd.concat([results, returns(results, conf.confidence)], ignore_index=True)
    results = results.drop(columns=CARRIED)
    now = utcnow()
    where = {"campaign_id": cid, "run_date": sent, "measured_on": ctx.run_date}
    records = []
    for r in results.to_dict("records"):
        decile = r.get("decile")
        records.append(r | where | {"computed_at": now, "decile": _int_or_none(decile)})
    version = write_records(catalog, "campaign_results", records, where)
    summary = _summary(results, cid, sent, ctx.run_date, version, names, args.interim)
    unmeasured = int(left["n_policy"].sum())
    return summary | {"outcome_coverage": coverage, "unmeasured_policy_customers": unmeasured}


def _prior_looks(ctx: JobContext, cid: str, sent: dt.date) -> list[float]:
    """The information fractions of the earlier interim looks at the run ``sent`` (those
    measured before the run date and before the window's end), in look order."""
    if not ctx.catalog.exists("campaign_results"):
        return []
    where = [("campaign_id", "=", cid), ("run_date", "=", sent)]
    rows = (
        ctx.catalog.read("campaign_results", where=where)
        .where(
            (F.col("measured_on") < ctx.run_date)
            & (F.col("budget_group") == "*")
            & (F.col("voucher_id") == "*")
            & (F.col("metric") == "objective")
            & F.col("decile").isNull()
            & (F.col("information_fraction") < 1)
        )
        .groupBy("measured_on")
        .agg(F.max("information_fraction").alias("t"))
        .orderBy("measured_on")
        .collect()
    )
    return [float(r["t"]) for r in rows]


def _int_or_none(value: object) -> int | None:
    return None if value is None or pd.isna(value) else int(value)  # type: ignore[arg-type]


def _return_text(summary: dict) -> str:
    """The realized return with its CI, or why it has none, and the predicted one."""
    value, (low, high) = summary["realized_return"], summary["realized_return_ci"]
    if value is None:
        return "n/a (no measured incremental cost)"
    unbounded = "CI unbounded: the incremental cost is not distinguishable from 0"
    ci = f"CI {low:.3f} .. {high:.3f}" if low is not None else unbounded
    text = f"{value:.3f} ({ci}"
    predicted = summary["predicted_return"]
    return text + (f"; predicted {predicted:.3f})" if predicted is not None else ")")


def _float_or_none(value: object) -> float | None:
    return None if value is None or pd.isna(value) else float(value)  # type: ignore[arg-type]


def send_outcomes(ctx: JobContext, cid: str, sent: dt.date) -> DataFrame:
    """The outcomes of the campaign's send of ``sent`` (``campaign_outcomes`` of that
    ``sent_date``). Not ready (exit 3) without any: every customer counts as 0 without a
    row, so none at all means not loaded yet, not a campaign that did nothing."""
    if not ctx.catalog.exists("campaign_outcomes"):
        raise InputNotReadyError("no campaign_outcomes table yet: load the campaign's outcomes")
    if "sent_date" not in ctx.catalog.partition_columns("campaign_outcomes"):
        raise InputError(
            "table campaign_outcomes is not partitioned by sent_date (its contract's key is "
            "campaign_id, sent_date, customer_id: each send of a campaign has its own "
            "outcomes); write it again with sent_date, the run date of the allocation sent"
        )
    where = [("campaign_id", "=", cid), ("sent_date", "=", sent)]
    if ctx.catalog.count("campaign_outcomes", where=where) == 0:
        raise InputNotReadyError(
            f"table campaign_outcomes has no rows of campaign {cid} with sent_date {sent} yet: "
            "load that send's outcomes (one row per customer of every arm)"
        )
    return ctx.catalog.read("campaign_outcomes", where=where)


def measured_run(ctx: JobContext, cid: str, allocated_on: dt.date | None, interim: bool) -> dt.date:
    """The run date of the campaign's allocation to read: ``allocated_on``, else its latest
    run whose measurement window is over by the run date (its latest at all if
    ``interim``). Not ready (exit 3) while that window is open, unless ``interim``."""
    window = dt.timedelta(days=ctx.config.measure.window_days)
    sent = allocated_on or _latest_run(ctx, cid, ctx.run_date)
    if ctx.run_date < sent + window and not interim:
        # A campaign allocated daily: the latest run whose window is over, if any.
        ended = None if allocated_on else _latest_run(ctx, cid, ctx.run_date - window)
        if ended is None:
            raise InputNotReadyError(
                f"campaign {cid} sent on {sent}: its {window.days}-day measurement window "
                f"ends on {sent + window}, after the run date {ctx.run_date} (a look before: "
                "--interim)"
            )
        sent = ended
    return sent


def _latest_run(ctx: JobContext, campaign_id: str, until: dt.date) -> dt.date | None:
    """The campaign's latest published allocation run on or before ``until``: None if it
    has one later only, not ready (exit 3) if it has none at all."""
    if not ctx.catalog.exists("allocation_summary"):
        raise InputNotReadyError("no allocation_summary table yet: allocate the campaign first")
    runs = ctx.catalog.read("allocation_summary").where(F.col("campaign_id") == campaign_id)
    row = runs.agg(F.max(F.when(F.col("run_date") <= until, F.col("run_date")))).first()
    if row is not None and row[0] is not None:
        return row[0]
    if until < ctx.run_date:
        return None
    raise InputNotReadyError(f"campaign {campaign_id} has no allocation up to {until}")


def _covariates(ctx: JobContext, sent: dt.date) -> DataFrame | None:
    """customer_id and the CUPED columns of the send date's customers snapshot (None: no
    table or snapshot, or no columns). A missing table or snapshot is an error when
    covariates are listed, else a warning: measured unadjusted, and labelled so (its zeros
    would say "cuped")."""
    conf = ctx.config.measure
    why = "no table customers"
    if ctx.catalog.exists("customers"):
        snap = ctx.catalog.read("customers", where=[("snapshot_date", "=", sent)])
        if snap.limit(1).count():
            return _snapshot_covariates(snap, conf.covariates, sent)
        why = f"table customers has no snapshot of {sent}, the send date"
    if conf.covariates:
        raise InputError(f"{why}: measure.covariates {conf.covariates} cannot be read")
    log.warning("%s: the campaign is measured without CUPED", why)
    return None


def _snapshot_covariates(
    snap: DataFrame, covariates: list[str] | None, sent: dt.date
) -> DataFrame | None:
    """customer_id and the CUPED columns of the snapshot of ``sent``: ``covariates``, or
    (None) every numeric column but its keys (None: no column), once it is known to hold
    each customer once (it is joined to the campaign's customers)."""
    numeric = [
        f.name
        for f in snap.schema.fields
        if isinstance(f.dataType, NumericType) and f.name not in KEYS
    ]
    names = numeric if covariates is None else covariates
    missing = sorted(set(names) - set(snap.columns))
    if missing:
        raise InputError(f"table customers has no column(s) {missing} (measure.covariates)")
    if not names:
        return None
    check_snapshot(snap, sent)
    return snap.select("customer_id", *names)


def _summary(results, cid, sent, measured_on, version, names, interim) -> dict:
    """The campaign's figures (adjusted when covariates were used), predicted beside them."""
    adjustment = "cuped" if names else "none"
    campaign = results[(results["budget_group"] == "*") & results["decile"].isna()]
    total = campaign[campaign["adjustment"] == adjustment]
    by = total.set_index("metric")
    objective, cost, ratio = by.loc["objective"], by.loc["cost"], by.loc[RETURN]
    realized_return = _float_or_none(ratio["estimate"])
    return_ci = [_float_or_none(ratio["ci_low"]), _float_or_none(ratio["ci_high"])]
    out = {
        "campaign_id": cid,
        "allocated_on": str(sent),
        "measured_on": str(measured_on),
        "interim": interim,
        "adjustment": adjustment,
        "customers_policy": int(objective["n_policy"]),
        "customers_holdout": int(objective["n_holdout"]),
        "incremental_objective": float(objective["incremental_total"]),
        "incremental_objective_ci": [
            float(objective["ci_low"] * objective["n_policy"]),
            float(objective["ci_high"] * objective["n_policy"]),
        ],
        "predicted_objective": float(objective["predicted"] * objective["n_policy"]),
        "look": int(objective["look"]),
        "information_fraction": float(objective["information_fraction"]),
        "z_bound": float(objective["z_bound"]),
        "decision": objective["decision"],
        "incremental_objective_rci": [
            float(objective["rci_low"] * objective["n_policy"]),
            float(objective["rci_high"] * objective["n_policy"]),
        ],
        "incremental_cost": float(cost["incremental_total"]),
        "incremental_cost_ci": [
            _float_or_none(cost["ci_low"] * cost["n_policy"]),
            _float_or_none(cost["ci_high"] * cost["n_policy"]),
        ],
        "predicted_cost": float(cost["predicted"] * cost["n_policy"]),
        "realized_return": realized_return,
        # null bounds: the incremental cost is not distinguishable from 0 (ratio module)
        "realized_return_ci": return_ci,
        "predicted_return": _float_or_none(ratio["predicted"]),
        "results_version": version,
    }
    if names:
        plain = campaign[campaign["adjustment"] == "none"]
        se = plain.set_index("metric").loc["objective", "se"]
        out["se_reduction_objective"] = float(1 - objective["se"] / se) if se else None
    log.info(
        "campaign %s, look %d (t %.3f): incremental objective %.1f (repeated CI %.1f .. %.1f), "
        "%s; predicted %.1f; incremental cost %.1f, predicted %.1f; return %s",
        cid,
        out["look"],
        out["information_fraction"],
        out["incremental_objective"],
        *out["incremental_objective_rci"],
        out["decision"],
        out["predicted_objective"],
        out["incremental_cost"],
        out["predicted_cost"],
        _return_text(out),
    )
    return out
