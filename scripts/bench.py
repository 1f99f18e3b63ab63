"""Benchmarks. ``python scripts/bench.py features [--rows N]`` | ``design [--zones G]`` |
``did [--rows N] [--no-peer]`` | ``score [--sizes 1e6,3e6,1e7]`` | ``uplift`` |
``allocate [--customers N] [--exact-sizes 1e4,3e4,1e5]`` |
``caps [--warehouse DIR] [--run-date D] [--campaign F] [--rounds 10,20,40]`` |
``write [--rows N] [--repeats R] [--diagnose]`` |
``sequential [--worlds W] [--zones G] [--users U]`` |
``adjustment [--worlds W] [--zones G] [--users U] [--lift L]`` |
``propensity [--sizes 1e6,3e6,1e7] [--history-days D]`` |
``calibration [--worlds W] [--users U] [--zones G]`` |
``campaign [--campaigns C] [--customers N] [--holdout H]`` |
``personal [--budget-share S] [--seeds 7,8] [--worlds distinct,scaled]`` |
``forecast [--portfolios P]`` | ``ties [--customers N] [--seeds S] [--leaves 12,50,200,0]`` |
``codegen [--users U] [--zones G] [--days D]`` |
``trial --csv F --treatment T --control C --objective Y [--positive L] [--arm-costs A=1]`` |
``purchases --csv F [--customer C] [--date D] [--amount A] [--set K=V]``.

Each benchmark is a module of ``scripts/benchmarks/`` (its docstring says what it times and
against what) and fails unless the work it timed is the work it reports. Data go to a fresh
temporary directory, removed afterwards, unless ``--workdir`` names one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

from benchmarks import (
    adjustment,
    allocate,
    calibration,
    campaign,
    caps,
    codegen,
    design,
    did,
    faults,
    features,
    forecast,
    personal,
    propensity,
    purchases,
    quality,
    score,
    sequential,
    ties,
    trial,
    uplift,
    write,
)

BENCHMARKS = {
    "features": features,
    "design": design,
    "did": did,
    "score": score,
    "uplift": uplift,
    "allocate": allocate,
    "caps": caps,
    "write": write,
    "sequential": sequential,
    "adjustment": adjustment,
    "propensity": propensity,
    "calibration": calibration,
    "campaign": campaign,
    "personal": personal,
    "quality": quality,
    "faults": faults,
    "forecast": forecast,
    "codegen": codegen,
    "trial": trial,
    "ties": ties,
    "purchases": purchases,
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(
        dest="bench", required=True, metavar="{" + ",".join(BENCHMARKS) + "}"
    )
    for name, module in BENCHMARKS.items():
        p = sub.add_parser(name, help=module.HELP, description=module.__doc__)
        p.formatter_class = argparse.RawDescriptionHelpFormatter
        module.add_arguments(p)
        p.add_argument("--workdir", default=None, help="keep the data here (default: a temp dir)")
    workers = did.WORKERS
    for name in workers:  # one side of a benchmark, in a process of its own
        sub.add_parser(name).add_argument("--workdir", required=True)
    args = parser.parse_args()
    if args.bench in workers:
        workers[args.bench](args.workdir)
        return 0
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    workdir = args.workdir or tempfile.mkdtemp(prefix="sparklift-bench-")
    try:
        BENCHMARKS[args.bench].run(args, workdir)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
