"""``sparklift allocate --campaign conf/campaigns/<name>.yaml``: the run date's
``uplift_scores`` -> at most one voucher per customer, within every budget group's budget
and every voucher's cap -> ``allocations`` and ``allocation_summary``.

Publishing follows :mod:`sparklift.allocation.tables`: append this run's allocations
under a new run_id, replace the summary of (run date, campaign) in one commit, then drop
the allocations of the run that commit replaced and of abandoned runs. The predicted
objective and spend are also reported corrected for selection by the campaigns measured
before (:mod:`sparklift.measure.calibration`). Bad input
(unknown budget group, duplicate rows, NaN scores, negative budgets), in any arm, fails
before anything is written.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob

import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparklift.allocation import arms, in_memory, match, ties
from sparklift.allocation import arms_in_memory as in_driver
from sparklift.allocation.budgets import arm_totals, check_input
from sparklift.allocation.campaign import CampaignConfig, falls_back, load_campaign
from sparklift.allocation.distributed import (
    GroupSummary,
    Problem,
    ScoreFiles,
    Solution,
    solve,
    solve_collected,
    summarize,
    tally,
)
from sparklift.allocation.limits import offered
from sparklift.errors import ConfigError, InputError, InputNotReadyError, few
from sparklift.jobs import JobContext, log, step, write_records
from sparklift.jobs import allocation_runs as runs
from sparklift.jobs import campaign_limits as limits
from sparklift.jobs.campaign_files import active_campaigns, is_glob, unmatched
from sparklift.jobs.fallback import choose
from sparklift.measure.calibration import Calibration, calibrate, corrected, final_looks
from sparklift.pipeline.registry import PipelineStep
from sparklift.tables.commit import arrow_cannot_open
from sparklift.tables.publish import new_id, utcnow

HELP = "allocate vouchers to customers under budgets and caps into allocations"
MAX_PAIRS = 10_000  # (model, voucher) pairs of a day read: one model x a few vouchers


STEP = PipelineStep(
    "allocate",
    order=40,
    depends_on=("score",),
    targets=active_campaigns,
    per="active campaign",
    checks=("uplift_scores",),
    falls_back=lambda conf, args: falls_back(args, conf.allocate),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--campaign", required=True, help="conf/campaigns/<name>.yaml")


def run(ctx: JobContext, args: argparse.Namespace) -> dict:
    if is_glob(args.campaign) and not glob.glob(args.campaign):
        raise ConfigError(unmatched(args.campaign))
    campaign = load_campaign(args.campaign, ctx.config.allocate)
    catalog, day = ctx.catalog, ctx.run_date
    if not catalog.exists("uplift_scores"):
        raise InputNotReadyError("no uplift_scores table yet: run sparklift score first")
    version = catalog.version("uplift_scores")  # chosen and read at this snapshot
    part = choose(ctx, "uplift_scores", "run_date", campaign.fallback, "allocate.fallback", version)
    scores = catalog.read("uplift_scores", version, where=[("run_date", "=", part.day)])
    # The day's (model, voucher) pairs, a few: one model expected, and the campaign's vouchers.
    pairs = scores.select("model_id", "voucher_id").distinct().limit(MAX_PAIRS).collect()
    models = sorted({r[0] for r in pairs}, key=str)
    if not models:
        raise InputNotReadyError(f"uplift_scores has no rows for run_date {day}: run score first")
    if len(models) > 1:
        raise InputError(f"uplift_scores of {part.day} mixes models {models[:3]}; re-run score")
    vouchers = campaign.vouchers or limits.active_vouchers(ctx)
    scored = sorted({r[1] for r in pairs if r[1] is not None})
    if not set(vouchers) & set(scored):
        named = few([repr(v) for v in scored], 20)
        raise InputError(
            f"uplift_scores of {part.day} has no rows for campaign {campaign.campaign_id}'s "
            f"vouchers {vouchers}; it scores {named} (score the campaign's vouchers, or "
            "name scored ones in its vouchers)"
        )
    vouchers, caps = offered(vouchers, limits.caps(ctx, campaign, vouchers), campaign.campaign_id)
    full = budgets = limits.budgets(ctx, campaign)
    arm = arms.arm(
        campaign.campaign_id, campaign.seed, campaign.holdout_share, campaign.explore_share
    )
    scores = scores.where(F.col("voucher_id").isin(vouchers)).withColumn("arm", arm)
    collected = _collected(ctx, campaign, scores, vouchers, part.day, version)
    _check_arms(campaign, scores, collected, vouchers, budgets)
    explore: DataFrame | pa.Table | None = None
    if campaign.explore_share > 0:
        with step("drawing the explore arm"):
            slices = {g: b * campaign.explore_budget_share for g, b in budgets.items()}
            if collected is not None:
                explore = in_driver.explore(collected, vouchers, slices, caps)
                paid, sent = in_driver.spend(explore), in_driver.sends(explore)
            else:
                explore = arms.explore_rows(
                    scores.where(F.col("arm") == arms.EXPLORE),
                    vouchers,
                    slices,
                    caps,
                    campaign.campaign_id,
                    campaign.seed,
                )  # deterministic: the rows written are the rows paid for here
                paid, sent = arms.explore_totals(explore)
            budgets = {g: b - paid.get(g, 0.0) for g, b in full.items()}
            caps = arms.caps_left(caps, sent)
    problem = Problem(
        vouchers,
        budgets,
        caps,
        exact_max_customers=campaign.exact_max_customers if campaign.solver == "exact" else 0,
        exact_time_limit_s=campaign.exact_time_limit_s,
        max_cap_rounds=campaign.max_cap_rounds,
        cap_tolerance=campaign.cap_tolerance,
        driver_steps=campaign.driver_steps,
        tie_order=ties.tie_order(ctx.spark, campaign.campaign_id, campaign.seed),
    )
    calibration = _calibration(ctx, campaign)
    run_id = new_id(utcnow())
    with step(f"allocating campaign {campaign.campaign_id} of {day} (run {run_id})"):
        policy = scores.where(F.col("arm") == arms.POLICY).drop("arm")
        if collected is not None:
            solution = solve_collected(in_driver.of_arm(collected, arms.POLICY), policy, problem)
        else:
            files = _score_files(ctx, campaign, part.day, version)
            solution = solve(policy, problem, files)
        try:
            holdout_share = campaign.holdout_share > 0
            if collected is not None:  # every arm's rows in the driver: one write, no query
                held = in_driver.holdout(collected, solution.rule) if holdout_share else None
                table = in_driver.union(solution.frame, held, explore)
                runs.append(
                    ctx, campaign.campaign_id, run_id, models[0], ctx.spark.createDataFrame(table)
                )
                counts = in_driver.tally(table)
            else:
                held = scores.where(F.col("arm") == arms.HOLDOUT).drop("arm")
                holdout = (
                    arms.holdout_rows(
                        held, solution.rule, ties.tie_draw(campaign.campaign_id, campaign.seed)
                    )
                    if holdout_share
                    else None
                )
                rows = arms.union(solution.allocations, holdout, explore)
                written = runs.append(ctx, campaign.campaign_id, run_id, models[0], rows)
                counts = tally(written, "arm", "policy_voucher_id")  # as written, every arm
            counts = counts.assign(targeted=counts["policy_voucher_id"].notna())
            groups = summarize(counts[counts["arm"] == arms.POLICY], solution, vouchers)
            balance = match.targeting(groups, counts) if holdout_share else {}
            records = _records(ctx, campaign.campaign_id, run_id, models[0], solution, groups,
                               full, counts, calibration)  # fmt: skip
            version = write_records(
                catalog,
                "allocation_summary",
                records,
                {"run_date": day, "campaign_id": campaign.campaign_id},
            )
        except BaseException:
            try:
                runs.drop_runs(ctx, campaign.campaign_id, [run_id])  # unpublished: unread
            except Exception as e:  # never in place of the run's own error
                log.warning("run %s: its unpublished rows stay until abandoned (%s)", run_id, e)
            raise
        finally:
            solution.release()
    runs.drop_superseded(ctx, campaign.campaign_id, run_id, version)
    for s in groups:
        log.info(
            "group %s: spent %.2f of %.2f, objective %.4f, bound %.4f, gap %.2e, lambda %.6g, "
            "%d of %d customers, %s",
            s.budget_group,
            s.spent,
            s.budget,
            s.objective,
            s.dual_bound,
            s.gap_rel,
            s.lam,
            s.n_allocated,
            s.n_customers,
            s.voucher_counts,
        )
    bad = match.mismatched(balance)
    if bad:
        log.warning(
            "the holdout is not the policy's match in %d group(s): %s; measure compares each "
            "voucher's policy customers with the held-out ones the rule targets, so its "
            "estimates would be biased. A small gap can be the solver's greedy fill below "
            "the budget's margin, which the rule does not follow; a large one means the "
            "arms' scores differ",
            len(bad),
            "; ".join(bad),
        )
    objective = sum(s.objective for s in groups)
    bound = sum(s.dual_bound for s in groups)
    spent = sum(s.spent for s in groups)
    return {
        "campaign_id": campaign.campaign_id,
        "run_id": run_id,
        "scores_date": str(part.day),
        "fallback": part.fallback,  # null, or the uplift_scores used instead of the run date's
        "customers_allocated": sum(s.n_allocated for s in groups),
        "holdout_customers": sum(r["holdout_customers"] for r in records),
        "explore_customers": sum(r["explore_customers"] for r in records),
        "explore_spent": sum(r["explore_spent"] for r in records),
        "holdout_match": balance,  # per group: the arms' shares of each voucher, and p
        "spent": spent,
        "objective": objective,
        "dual_bound": bound,
        "gap_rel": (bound - objective) / abs(bound) if bound else 0.0,
        "passes": solution.passes,
        "reader": solution.reader,
        "cap_rounds": solution.cap_rounds,
        "summary_version": version,
    } | _logged(corrected(objective, spent, calibration, ctx.config.measure.confidence))


def _collected(
    ctx: JobContext,
    campaign: CampaignConfig,
    scores: DataFrame,
    vouchers: list[str],
    day: dt.date,
    version: int | None,
) -> pa.Table | None:
    """Every arm's score rows in the driver's memory (:func:`.arms_in_memory.collect`),
    when the run date's ``uplift_scores`` hold at most ``driver_max_rows`` rows (counted
    from the Delta log's statistics); else none: the campaign is solved in Spark passes."""
    limit = campaign.driver_max_rows
    if not limit:
        return None
    rows = ctx.catalog.count("uplift_scores", version, where=[("run_date", "=", day)])
    if rows > limit:
        return None
    with step(f"bringing {rows:,} score rows to the driver (at most {limit:,})"):
        return in_driver.collect(scores, vouchers, campaign.campaign_id, campaign.seed)


def _check_arms(
    campaign: CampaignConfig,
    scores: DataFrame,
    collected: pa.Table | None,
    vouchers: list[str],
    budgets: dict[str, float],
) -> None:
    """Refuse defective scores of the holdout and explore arms as the solve refuses its
    own (policy) customers': the explore arm would stop a group's queue at a NaN cost and
    send a duplicated customer twice. In the driver's memory when the rows are there, else
    one Spark aggregation over these arms' rows."""
    if campaign.holdout_share == 0 and campaign.explore_share == 0:
        return
    others = scores.where(F.col("arm") != arms.POLICY).drop("arm")
    if collected is not None:
        rows = pa.concat_tables(
            [in_driver.of_arm(collected, arms.HOLDOUT), in_driver.of_arm(collected, arms.EXPLORE)]
        )
        totals = in_memory.totals(*in_memory.customers(rows, vouchers))
    else:
        totals = arm_totals(others)
    check_input(totals, budgets, others, vouchers, arms="holdout and explore arms")


def _score_files(
    ctx: JobContext, campaign: CampaignConfig, day: dt.date, version: int | None
) -> ScoreFiles | None:
    """uplift_scores' files of ``day`` at ``version``, for the solve's reader without a
    shuffle: none with ``score_reader: spark``, or when they are not plain Parquet or this
    process's Arrow cannot open them (a file system it was not built for)."""
    if campaign.score_reader != "auto":
        return None
    paths = ctx.catalog.parquet_files("uplift_scores", [("run_date", "=", day)], version)
    if not paths:
        return None
    why = arrow_cannot_open(paths[0])
    if why:
        log.info("uplift_scores' files are read through Spark: %s", why)
        return None
    keep = arms.policy_arm(
        ctx.spark,
        campaign.campaign_id,
        campaign.seed,
        campaign.holdout_share,
        campaign.explore_share,
    )
    return ScoreFiles(ctx.spark, paths, keep)


def _calibration(ctx: JobContext, campaign: CampaignConfig) -> dict[str, Calibration]:
    """Realized over predicted per metric, from the final looks of the campaigns measured
    in the last ``calibration_days`` (empty: none, or calibration off)."""
    days = campaign.calibration_days
    if not days or not ctx.catalog.exists("campaign_results"):
        return {}
    only = campaign.campaign_id if campaign.calibration_scope == "campaign" else None
    looks = final_looks(ctx.catalog.read("campaign_results"), ctx.run_date, days, only)
    found = calibrate(looks.toPandas())  # one row per measured send and metric: small
    if "objective" not in found:
        log.info("no campaign measured in the %d days to %s: the predicted value stays "
                 "uncorrected", days, ctx.run_date)  # fmt: skip
    return found


def _logged(figures: dict) -> dict:
    """The corrected figures, logged beside the ratio they come from."""
    if figures["calibration"]:
        obj = figures["calibration"]["objective"]
        log.info("predicted objective corrected by %d measured sends of %d campaigns x %.3f "
                 "(se %.3f): %.1f (CI of its expected value %.1f .. %.1f)", obj["runs"],
                 obj["campaigns"], obj["ratio"],
                 obj["se"], figures["objective_corrected"],
                 *figures["objective_corrected_ci"])  # fmt: skip
    return figures


def _records(
    ctx: JobContext,
    campaign_id: str,
    run_id: str,
    model_id: str,
    solution: Solution,
    groups: list[GroupSummary],
    budgets: dict[str, float],
    counts: pd.DataFrame,
    calibration: dict[str, Calibration],
) -> list[dict]:
    """allocation_summary's rows: per group the policy's solve, the arms' counts (from
    the written rows' :func:`tally` by arm and policy_voucher_id, and targeted) and the
    explore arm's spend, the group's whole budget (the policy's plus the slice), and the
    objective and spend corrected by past measurements (null without)."""
    now = utcnow()
    obj, cost = calibration.get("objective"), calibration.get("cost")
    arm = counts["arm"]
    sent = counts[(arm == arms.EXPLORE) | ((arm == arms.HOLDOUT) & counts["targeted"])]
    by_arm = sent.groupby(["budget_group", "arm"])[["n", "cost"]].sum()
    count = {k: (int(r["n"]), float(r["cost"])) for k, r in by_arm.iterrows()}
    return [
        {
            "run_date": ctx.run_date,
            "campaign_id": campaign_id,
            "run_id": run_id,
            "budget_group": s.budget_group,
            "budget": budgets[s.budget_group],
            "spent": s.spent,
            "objective": s.objective,
            "dual_bound": s.dual_bound,
            "gap": s.gap,
            "gap_rel": s.gap_rel,
            "lambda": s.lam,
            "n_customers": s.n_customers,
            "n_allocated": s.n_allocated,
            "voucher_counts": s.voucher_counts,
            "cap_multipliers": solution.mu,
            "solver": s.solver,
            "passes": solution.passes,
            "model_id": model_id,
            "computed_at": now,
            "holdout_customers": count.get((s.budget_group, arms.HOLDOUT), (0, 0.0))[0],
            "explore_customers": count.get((s.budget_group, arms.EXPLORE), (0, 0.0))[0],
            "explore_spent": count.get((s.budget_group, arms.EXPLORE), (0, 0.0))[1],
            "objective_corrected": s.objective * obj.ratio if obj else None,
            "spent_corrected": s.spent * cost.ratio if cost and obj else None,
            "calibration_runs": obj.runs if obj else None,
        }
        for s in groups
    ]
