"""``sparklift <job> [--config F] [--run-date D] [--set key=value ...]``.

``spark-submit jobs/<job>.py`` passes the same arguments here, so both run the same code.
Exit codes: 0 success, 2 bad input or config, 3 input not ready (retry later),
4 write conflict (re-run), 1 anything else.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from sparklift import __version__
from sparklift.config import load_config
from sparklift.errors import SparkliftError
from sparklift.jobs import JobContext
from sparklift.jobs import allocate as allocate_job
from sparklift.jobs import analyze as analyze_job
from sparklift.jobs import design as design_job
from sparklift.jobs import features as features_job
from sparklift.jobs import generate as generate_job
from sparklift.jobs import score as score_job
from sparklift.jobs import train_uplift as train_uplift_job
from sparklift.session import build_session
from sparklift.tables import Catalog

JOBS: dict[str, ModuleType] = {
    "generate": generate_job,
    "features": features_job,
    "design": design_job,
    "analyze": analyze_job,
    "train-uplift": train_uplift_job,
    "score": score_job,
    "allocate": allocate_job,
}
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)
    log = logging.getLogger("sparklift")
    try:
        config = load_config(_config_path(args.config), args.set)
        spark = build_session(config.spark)
        ctx = JobContext(spark, config, Catalog(spark, config.tables), args.run_date)
        log.info(
            "job %s for run date %s (tables: %s backend)",
            args.job,
            args.run_date,
            ctx.catalog.backend.name,
        )
        summary = JOBS[args.job].run(ctx, args)
    except SparkliftError as e:
        log.error("%s failed: %s", args.job, e)
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(
        json.dumps(
            {"job": args.job, "run_date": str(args.run_date), **summary}, indent=2, default=str
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
