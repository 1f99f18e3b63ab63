"""``sparklift pipeline --run-date D`` (or ``--start D --end D``): the nightly run.

For each date in order: features -> analysis of every running geo experiment -> scoring ->
allocation of every active campaign (the steps of :mod:`sparklift.pipeline.registry`,
planned by :mod:`sparklift.pipeline.plan`), each step the same code as its own job and
idempotent for its date; with ``pipeline.checks``, a ``check:<table>`` step
(``sparklift check``) before the first step reading each checked table gates its
consumers. Every step's outcome is appended to ``pipeline_runs``; a step that succeeded
for the date is skipped unless ``--force``, one of its dependencies ran again in this run
(its inputs changed), or, for a check, its table was written since; a failed step blocks
the steps that depend on it (also those that succeeded earlier) and no others. The exit
code is that of the most serious failure (1 internal, 2 bad input, 4 conflict, 3 not
ready), 0 if none.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import time
import traceback
import uuid
from collections.abc import Mapping, Sequence

from pyspark.sql import functions as F

from sparklift import __version__
from sparklift.errors import InputError, SparkliftError
from sparklift.features.zone_day import date_range
from sparklift.jobs import JobContext, fallback, forecast, report, write_records
from sparklift.jobs.refusals import recorded
from sparklift.pipeline import registry
from sparklift.pipeline.plan import (
    BLOCKED,
    CHECK,
    FAILED,
    SKIPPED,
    SUCCEEDED,
    Step,
    blocked_by,
    exit_code,
    plan_steps,
)
from sparklift.pipeline.runs import StepOutcome, render
from sparklift.progress import spark_progress
from sparklift.quality.spec import table_spec
from sparklift.tables import TableIO
from sparklift.tables.changes import table_id

HELP = (
    "the nightly run for a date or a range: checks, features, analyses, user history and "
    "propensity scores, uplift scores, allocations, reports"
)
PROGRESS_PER_STEP = True  # the CLI leaves progress reporting to each step
ALLOCATE = "allocate"  # the step kind of pipeline.campaigns' files
log = logging.getLogger("sparklift.pipeline")


class PipelineFailed(SparkliftError):
    """Some steps failed; carries the run's summary and the most serious exit code."""

    def __init__(self, message: str, code: int, summary: dict) -> None:
        super().__init__(message)
        self.exit_code = code
        self.summary = summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--start", type=dt.date.fromisoformat, help="first date of a backfill")
    parser.add_argument("--end", type=dt.date.fromisoformat, help="last date of a backfill")
    parser.add_argument(
        "--steps",
        help="comma-separated kinds to run (default: pipeline.steps): "
        + ",".join(registry.kinds()),
    )
    parser.add_argument(
        "--force", action="store_true", help="re-run steps that already succeeded for the date"
    )


def run(ctx: JobContext, args: argparse.Namespace) -> dict:
    if (args.start is None) != (args.end is None):
        raise InputError("--start and --end go together (a backfill range); give both or none")
    if args.start and args.start > args.end:
        raise InputError(f"--start {args.start} is after --end {args.end}")
    kinds = args.steps.split(",") if args.steps else list(ctx.config.pipeline.steps)
    dates = date_range(args.start, args.end) if args.start else [ctx.run_date]
    run_id = uuid.uuid4().hex[:16]
    log.info(
        "pipeline run %s: %s for %s..%s", run_id, ",".join(kinds), dates[0], dates[-1],
        extra={"pipeline_run_id": run_id},
    )  # fmt: skip
    outcomes: list[StepOutcome] = []
    for day in dates:
        outcomes += _run_date(dataclasses.replace(ctx, run_date=day), kinds, args.force, run_id)
    summary = {"table": render(outcomes)}
    if ctx.config.pipeline.reports:
        _refresh_reports(ctx, outcomes)
    failed = [o for o in outcomes if o.status == FAILED]
    if failed:
        code = exit_code([o.exit_code for o in failed])
        names = ", ".join(f"{o.run_date} {o.step}" for o in failed)
        raise PipelineFailed(f"{len(failed)} step(s) failed: {names}", code, summary)
    return summary


def _refresh_reports(ctx: JobContext, outcomes: Sequence[StepOutcome]) -> None:
    """The forecasts, the reports of the experiments analysed and campaigns allocated in
    this run, and the index (as of the last date). They are for people: a failure is
    logged, the run goes on."""
    ran = [o for o in outcomes if o.status == SUCCEEDED and o.target]
    experiments = sorted({o.target for o in ran if o.kind == "analyze"})
    campaigns = sorted({o.target for o in ran if o.kind == ALLOCATE})
    if not experiments and not campaigns:
        return
    last = dataclasses.replace(ctx, run_date=max(o.run_date for o in ran))
    if experiments:  # one may have concluded: the forecasts, then the pages showing them
        try:
            forecast.run(last, argparse.Namespace())
        except Exception:  # whatever it is, the steps of the run stand
            log.exception("forecasts not refreshed")
    try:
        done = report.refresh(last, experiments, campaigns)
    except Exception:
        log.exception("reports not refreshed")
        return
    log.info("reports refreshed: %s (%d pages)", done["index"], len(done["pages"]))


def render_summary(summary: dict) -> str:
    """What the CLI prints on stdout: the run's summary table."""
    return summary["table"]


def _run_date(ctx: JobContext, kinds: Sequence[str], force: bool, run_id: str) -> list[StepOutcome]:
    rules = {s.kind: s.falls_back for s in registry.steps() if s.falls_back}

    def falls_back(kind: str, args: tuple[str, ...]) -> bool:
        rule = rules.get(kind)
        return rule is not None and rule(ctx.config, args)

    try:
        targets = _targets(ctx, kinds)
    except Exception as e:  # the date's plan failed: recorded, and the next date runs
        log.error("pipeline for %s: its steps could not be planned: %s", ctx.run_date, e,
                  exc_info=not isinstance(e, SparkliftError))  # fmt: skip
        now, why = _now(), f"the steps could not be planned: {e}"
        code = e.exit_code if isinstance(e, SparkliftError) else 1
        failed = StepOutcome(ctx.run_date, "plan", "plan", None, FAILED, (), now, now,
                             exit_code=code, error=why)  # fmt: skip
        _record(ctx, failed, run_id)
        return [failed]
    if ALLOCATE in targets and not targets[ALLOCATE]:
        log.info("no campaign of pipeline.campaigns %s is active on %s: nothing to allocate",
                 ctx.config.pipeline.campaigns, ctx.run_date)  # fmt: skip
    try:
        steps = plan_steps(kinds, targets, ctx.config.pipeline.checks, falls_back)
    except ValueError as e:
        raise InputError(f"--steps: {e}") from None
    done = set() if force else _succeeded(ctx)
    statuses: dict[str, str] = {}
    errors: dict[str, str] = {}
    outcomes = []
    for i, step in enumerate(steps, 1):
        inputs = (*step.depends_on, *step.soft_depends_on)
        base = StepOutcome(ctx.run_date, step.name, step.kind, step.target, SKIPPED, inputs)
        blockers = blocked_by(step, statuses)
        rerun_inputs = any(statuses.get(d) in (SUCCEEDED, FAILED, BLOCKED) for d in inputs)
        if blockers:  # before a skip: what it succeeded on earlier has just failed
            base.status = BLOCKED
            base.error = _blocked(blockers, statuses, errors)
            base.started_at = base.ended_at = _now()
            outcome = base
        elif step.name in done and not rerun_inputs and not _stale(ctx, step):
            outcome = base
        else:
            log.info("[%d/%d] %s for %s ...", i, len(steps), step.name, ctx.run_date)
            outcome = _run_step(_unverified(ctx, step, statuses, errors), step, base)
        statuses[step.name] = outcome.status
        errors[step.name] = outcome.error or ""
        outcomes.append(outcome)
        _log_outcome(outcome, i, len(steps))
        if outcome.status != SKIPPED:
            _record(ctx, outcome, run_id)
    if not steps:
        log.warning("nothing to run for %s (steps %s)", ctx.run_date, ",".join(kinds))
    return outcomes


def _unverified(
    ctx: JobContext, step: Step, statuses: Mapping[str, str], errors: Mapping[str, str]
) -> JobContext:
    """``ctx`` for ``step``, with the tables whose check step (a soft dependency: the step
    falls back) failed or was blocked in this run: the step must not trust their run date's
    partition, even when the check died before writing a verdict."""
    bad = {
        d.split(":", 1)[1]: _blocked([d], statuses, errors).removeprefix("not run: ")
        + " in this run"
        for d in step.soft_depends_on
        if d.startswith(f"{CHECK}:") and statuses.get(d) in (FAILED, BLOCKED)
    }
    return dataclasses.replace(ctx, unverified=bad) if bad else ctx


def _blocked(
    blockers: Sequence[str], statuses: Mapping[str, str], errors: Mapping[str, str]
) -> str:
    """Why a step was not run: its failed dependencies with their errors' first lines (a
    failed check names the checks that failed), then those blocked in turn."""
    failed = [f"{b} failed ({errors[b].splitlines()[0]})" for b in blockers
              if statuses[b] == FAILED and errors.get(b)]  # fmt: skip
    failed += [f"{b} failed" for b in blockers if statuses[b] == FAILED and not errors.get(b)]
    failed += [f"{b} was blocked" for b in blockers if statuses[b] == BLOCKED]
    return f"not run: {'; '.join(failed)}"


def _run_step(ctx: JobContext, step: Step, outcome: StepOutcome) -> StepOutcome:
    """Run one step's job, catching its failure into the outcome."""
    module = registry.job(step.kind)
    parser = argparse.ArgumentParser(prog=f"sparklift {step.kind}")
    module.add_arguments(parser)
    args = parser.parse_args(list(step.args))
    sc = ctx.spark.sparkContext
    sc.setJobGroup(f"{ctx.run_date}/{step.name}", f"sparklift pipeline {step.name}")
    interval = ctx.config.logging.progress_interval_s
    outcome.started_at = _now()
    t0 = time.perf_counter()
    with ctx.catalog.recording() as io:
        try:
            with spark_progress(sc, step.name, interval), recorded(ctx, step.kind):
                summary = module.run(ctx, args)
            outcome.status = SUCCEEDED
            outcome.summary = json.dumps(summary, default=str)
        except SparkliftError as e:
            outcome.status, outcome.exit_code, outcome.error = FAILED, e.exit_code, str(e)
        except Exception as e:  # an internal error: keep its traceback in the run log
            log.exception("%s failed with an internal error", step.name)
            outcome.status, outcome.exit_code = FAILED, 1
            outcome.error = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=20)}"
    if outcome.status == FAILED:
        ctx.spark.catalog.clearCache()  # what the failed job cached is of no further use
    outcome.ended_at = _now()
    outcome.duration_s = time.perf_counter() - t0
    _lineage(ctx, io, outcome)
    return outcome


def _lineage(ctx: JobContext, io: TableIO, outcome: StepOutcome) -> None:
    """Input and output tables, versions and row counts of a step, from the Delta log."""
    catalog = ctx.catalog
    for name, version in io.writes:
        outcome.output_versions[name] = max(version, outcome.output_versions.get(name, -1))
        outcome.output_rows[name] = outcome.output_rows.get(name, 0) + catalog.rows_added(
            name, version
        )
    for name, version, where in io.reads:
        if name in outcome.output_versions:
            continue  # a table the step writes (read back or checked): not an input
        rows = catalog.count(name, version, where)
        if rows >= outcome.input_rows.get(name, -1):
            outcome.input_rows[name] = rows
            outcome.input_versions[name] = version


def _log_outcome(o: StepOutcome, i: int, n: int) -> None:
    extra = {
        "run_date": str(o.run_date),
        "step": o.step,
        "status": o.status,
        "duration_s": round(o.duration_s, 3),
        "rows_in": sum(o.input_rows.values()),
        "rows_out": sum(o.output_rows.values()),
        "output_versions": o.output_versions,
        "exit_code": o.exit_code,
    }
    if o.status in (SKIPPED, BLOCKED):
        why = "succeeded earlier" if o.status == SKIPPED else o.error
        log.info("[%d/%d] %s for %s %s: %s", i, n, o.step, o.run_date, o.status, why, extra=extra)
        return
    level = logging.ERROR if o.status == FAILED else logging.INFO
    detail = f": {o.error.splitlines()[0]}" if o.error else ""
    log.log(
        level,
        "[%d/%d] %s for %s %s in %.1fs (rows in %d, out %d)%s",
        i, n, o.step, o.run_date, o.status, o.duration_s,
        extra["rows_in"], extra["rows_out"], detail,
        extra=extra,
    )  # fmt: skip


def _record(ctx: JobContext, outcome: StepOutcome, run_id: str) -> None:
    app_id = ctx.spark.sparkContext.applicationId
    write_records(ctx.catalog, "pipeline_runs", [outcome.record(run_id, app_id, __version__)])


def _succeeded(ctx: JobContext) -> set[str]:
    """The steps whose latest run for the date succeeded."""
    if not ctx.catalog.exists("pipeline_runs"):
        return set()
    rows = (
        ctx.catalog.read("pipeline_runs", where=[("run_date", "=", ctx.run_date)])
        .groupBy("step")
        .agg(F.max_by("status", "ended_at").alias("status"))
        .where(F.col("status") == SUCCEEDED)
        .collect()
    )
    return {r["step"] for r in rows}


def _stale(ctx: JobContext, step: Step) -> bool:
    """A check that succeeded earlier whose verdict of the run date no longer holds: the
    date's rows changed since the table version the check read (e.g. a score run of
    another invocation wrote them; :func:`fallback.changed`), the table was created again
    at its path, a later check of the date failed, or none recorded a verdict. Of a table
    partitioned by its date column, commits to other dates and compactions leave it: a
    re-run of a past date must not re-score and re-publish it because later days landed.
    A table without a date column runs again on any new version."""
    if step.kind != CHECK:
        return False
    table = step.target or ""
    latest = ctx.catalog.version(table)
    failed, checked = fallback.verdicts(ctx, table, ctx.run_date)
    verdict = checked.get(ctx.run_date)
    if latest is None or verdict is None or ctx.run_date in failed:
        return True
    date_column = table_spec(table, ctx.config.quality).date_column
    if date_column is None:
        version, was = verdict
        return version != latest or (
            was is not None and was != table_id(ctx.catalog.path(table), latest)
        )
    return ctx.run_date in fallback.changed(
        ctx, table, date_column, {ctx.run_date: verdict}, latest
    )


def _targets(ctx: JobContext, kinds: Sequence[str]) -> dict[str, Mapping[str, tuple[str, ...]]]:
    """The run date's targets of each kind in ``kinds`` that runs once per target."""
    return {s.kind: s.targets(ctx) for s in registry.steps() if s.targets and s.kind in kinds}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
