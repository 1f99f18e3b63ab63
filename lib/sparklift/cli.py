"""``sparklift <job> [--config F] [--run-date D] [--set key=value ...]``.

``spark-submit jobs/<job>.py`` passes the same arguments here, so both run the same code.
Exit codes: 0 success, 2 bad input or config, 3 input not ready (retry later),
4 write conflict (re-run), 5 design rejected, 1 anything else (an internal error: logged
with its traceback like any failure, with its exit code, never a bare traceback). The
pipeline exits with its most serious step failure's code. Logs go to stderr (plain or
JSON, ``logging.format``); stdout holds the job's summary only.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import sys
from collections.abc import Sequence

import sparklift
from sparklift import __version__
from sparklift.allocation.campaign import load_campaign
from sparklift.config import Config, load_config
from sparklift.errors import SparkliftError
from sparklift.geo.experiment import load_experiment
from sparklift.jobs import JobContext
from sparklift.jobs.refusals import recorded
from sparklift.logs import configure_logging
from sparklift.pipeline import registry
from sparklift.progress import spark_progress
from sparklift.session import build_session
from sparklift.tables import Catalog

JOBS = registry.jobs()  # every job module of sparklift.jobs, by name
DEFAULT_CONFIG = "conf/sparklift.yaml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparklift",
        description="Spark jobs for geo experiments, uplift models and voucher allocation.",
    )
    parser.add_argument("--version", action="version", version=f"sparklift {__version__}")
    sub = parser.add_subparsers(dest="job", required=True, metavar="JOB")
    for name, module in JOBS.items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        p.add_argument(
            "--config",
            help=f"YAML config merged over the defaults (default: {DEFAULT_CONFIG} if present)",
        )
        p.add_argument(
            "--run-date",
            type=dt.date.fromisoformat,
            default=dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1),
            help="the date the run is for, YYYY-MM-DD (default: yesterday, UTC)",
        )
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config key, e.g. --set features.definitions=[...] (repeatable)",
        )
        module.add_arguments(p)
    return parser


def _config_path(given: str | None) -> str | None:
    if given:
        return given
    from pathlib import Path

    return DEFAULT_CONFIG if Path(DEFAULT_CONFIG).is_file() else None


def check_spec_files(job: str, args: argparse.Namespace, config: Config) -> None:
    """Validate the job's experiment or campaign file before the Spark session starts
    (about 20 s), so a typo there fails at once. The job validates it again when it runs."""
    if job == "design":
        load_experiment(args.experiment, config.design)
    elif job == "allocate":
        load_campaign(args.campaign, config.allocate)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging()
    log = logging.getLogger("sparklift")
    module = JOBS[args.job]
    render = getattr(module, "render_summary", None)
    try:
        config = load_config(_config_path(args.config), args.set)
        configure_logging(config.logging)
        check_spec_files(args.job, args, config)
        spark = build_session(config.spark, config.tables.backend)
        ctx = JobContext(spark, config, Catalog(spark, config.tables), args.run_date)
        log.info(
            "job %s for run date %s (sparklift %s from %s, Spark %s, master %s, tables: %s "
            "backend)",
            args.job,
            args.run_date,
            __version__,
            sparklift.__file__,
            spark.version,
            spark.sparkContext.master,
            ctx.catalog.backend.name,
        )
        progress = (
            contextlib.nullcontext()
            if getattr(module, "PROGRESS_PER_STEP", False)
            else spark_progress(spark.sparkContext, args.job, config.logging.progress_interval_s)
        )
        with progress, recorded(ctx, args.job):
            summary = module.run(ctx, args)
    except SparkliftError as e:
        log.error("%s failed: %s", args.job, e, extra={"exit_code": e.exit_code})
        if render and getattr(e, "summary", None):
            print(render(e.summary))
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except Exception as e:  # a bug, not the input: the same log line, with the traceback
        log.error("%s failed with an internal error: %s: %s", args.job, type(e).__name__, e,
                  exc_info=True, extra={"exit_code": 1})  # fmt: skip
        print(f"error: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if render:
        print(render(summary))
    else:
        out = {"job": args.job, "run_date": str(args.run_date), **summary}
        print(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
