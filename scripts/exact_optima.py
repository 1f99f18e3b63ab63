"""Recompute tests/fixtures/exact_optima.json: the exact optimum of every fixed instance the
allocation tests compare their solvers against, so that no test solves a MIP live under a
wall-clock limit.

The instances come from the test modules' own ``exact_instances()`` (same generators, seeds,
budgets and caps). Each is solved by ``solve_exact`` (OR-Tools SCIP: the formulation and
relative MIP gap of 1e-7 the tests used live) with no time limit; anything short of a proven
optimum raises. The file stores each optimum with its instance's fingerprint (see
tests/exact_optima.py), which the tests check. Run it after changing a generator or a case
(about a minute; it starts no Spark):

    .venv/bin/python scripts/exact_optima.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests package

from tests import test_allocate_job, test_allocation_distributed, test_allocation_solver
from tests.exact_optima import FIXTURE, Instance

from sparklift.allocation.exact import solve_exact

MODULES = (test_allocation_solver, test_allocation_distributed, test_allocate_job)
NO_TIME_LIMIT = 0  # OR-Tools' MPSolver reads a time limit of 0 ms as none


def optimum(instance: Instance) -> float:
    """The proven optimum; solve_exact raises unless SCIP reports OPTIMAL."""
    _, best, _ = solve_exact(
        instance.u,
        instance.c,
        instance.budget,
        groups=instance.groups,
        caps=instance.caps,
        time_limit_s=NO_TIME_LIMIT,
    )
    return best


def main() -> None:
    optima: dict[str, dict] = {}
    for module in MODULES:
        for instance in module.exact_instances():
            if instance.key in optima:
                raise SystemExit(f"two instances named {instance.key!r}")
            start = time.perf_counter()
            best = optimum(instance)
            optima[instance.key] = {"optimum": best, "instance": instance.fingerprint()}
            print(f"{instance.key}: {best!r} ({time.perf_counter() - start:.1f} s)", flush=True)
    about = "Exact optima of the allocation tests' instances; written by scripts/exact_optima.py."
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps({"about": about, "optima": optima}, indent=1) + "\n")
    print(f"wrote {len(optima)} optima to {FIXTURE}")


if __name__ == "__main__":
    main()
