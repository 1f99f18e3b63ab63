"""The jobs of ``sparklift`` and the pipeline's steps, each declared once beside its job.

Every module of :mod:`sparklift.jobs` with ``HELP``, ``add_arguments`` and ``run`` is a job
of the command line (``train_uplift`` is ``sparklift train-uplift``). A job that is a step
of the nightly pipeline says so with ``STEP = PipelineStep(...)``: its kind (the job's
name), the kinds whose output it reads, and, for a step that runs once per target (an
experiment, a campaign), the function that finds the targets of a run date. The planner
(:mod:`sparklift.pipeline.plan`), ``sparklift pipeline``, the config's ``pipeline.steps``
check, the Airflow DAG (through :func:`manifest`, which ``scripts/package.sh`` writes to
``dist/pipeline_steps.json``) and README's table of steps all read them from here, so a
new step kind is its job module and one declaration in it.

This module imports no job (nor Spark) until asked: the job modules import it, and so
does the config's validation.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sparklift.config import Config
    from sparklift.jobs import JobContext

# A run date's targets of a step: target id -> that step's job arguments.
Targets = Callable[["JobContext"], Mapping[str, tuple[str, ...]]]


@dataclass(frozen=True)
class PipelineStep:
    """One kind of pipeline step: the job of the same name, run for a date.

    ``order`` places it in a run (steps run in increasing order; a step's dependencies
    must come before it). ``depends_on`` are the kinds whose output it reads: their
    failure blocks it, nothing else does. ``targets`` finds the run date's targets (one
    ``<kind>:<target>`` step each, with that target's job arguments); None for a step run
    once per date with no arguments. ``per`` says what one step of the kind is for.
    ``checks`` are the input tables whose data quality checks gate it (with
    ``pipeline.checks`` on, a ``check:<table>`` step runs before it and its failure blocks
    it); ``outputs`` the tables it writes that a later step's checks read (their check
    waits for it). ``falls_back(config, args)``: whether the step with these job
    arguments runs on an earlier good partition of its checked inputs when today's failed
    its checks or is missing (then those checks and their producers do not block it).
    """

    kind: str
    order: int
    depends_on: tuple[str, ...] = ()
    targets: Targets | None = None
    per: str = "run date"
    checks: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    falls_back: Callable[[Config, tuple[str, ...]], bool] | None = None


@cache
def jobs() -> dict[str, ModuleType]:
    """The command line's jobs by name, in name order: the job modules of sparklift.jobs."""
    package = importlib.import_module("sparklift.jobs")
    found = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"sparklift.jobs.{info.name}")
        if all(hasattr(module, a) for a in ("HELP", "add_arguments", "run")):
            found[info.name.replace("_", "-")] = module
    return found


@cache
def steps() -> tuple[PipelineStep, ...]:
    """The pipeline's steps in the order a run takes them."""
    declared = {name: m.STEP for name, m in jobs().items() if hasattr(m, "STEP")}
    for name, step in declared.items():
        if step.kind != name:
            raise ValueError(f"job {name} declares the pipeline step {step.kind!r}")
    ordered = tuple(sorted(declared.values(), key=lambda s: s.order))
    placed: set[str] = set()
    for step in ordered:
        late = [d for d in step.depends_on if d not in placed]
        if late:
            raise ValueError(f"pipeline step {step.kind} depends on {late}, not steps before it")
        placed.add(step.kind)
    return ordered


def kinds() -> tuple[str, ...]:
    """The step kinds in pipeline order."""
    return tuple(s.kind for s in steps())


def job(kind: str) -> ModuleType:
    """The job module a step kind runs."""
    return jobs()[kind]


def manifest() -> str:
    """The steps as JSON for the Airflow DAG, which cannot import sparklift: a list of
    ``{"kind", "depends_on", "may_fall_back"}`` in pipeline order (``may_fall_back``: the
    kind can run on an earlier partition when a step it depends on failed)."""
    return json.dumps(
        [
            {"kind": s.kind, "depends_on": list(s.depends_on), "may_fall_back": bool(s.falls_back)}
            for s in steps()
        ]
    )


if __name__ == "__main__":  # scripts/package.sh: python -m sparklift.pipeline.registry
    print(manifest())
