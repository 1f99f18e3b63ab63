"""The steps of a pipeline run for one date and how they depend on each other.

Kinds run in the order features -> analyze -> score -> allocate, with one ``analyze:<id>``
step per running geo experiment and one ``allocate:<id>`` step per active campaign. Data
dependencies, not the order, decide what a failure stops: every analysis needs that
day's features (the activity it reads landed and passed the features job's checks), every
allocation needs that day's scores; analyses and allocations are independent of each
other, so a failed analysis never stops an allocation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sparklift.config import PIPELINE_STEPS

DEPENDS_ON: dict[str, tuple[str, ...]] = {
    "features": (),
    "analyze": ("features",),
    "score": (),
    "allocate": ("score",),
}
SUCCEEDED, FAILED, BLOCKED, SKIPPED = "succeeded", "failed", "blocked", "skipped"
# A failed run's exit code: the one most in need of a person first (internal error, then
# bad input, then a write conflict, then input not ready, which a retry may fix).
EXIT_PRIORITY = (1, 2, 4, 3)


@dataclass(frozen=True)
class Step:
    kind: str  # features | analyze | score | allocate
    target: str | None = None  # experiment_id or campaign_id
    args: tuple[str, ...] = ()  # the job's own arguments
    depends_on: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.target}" if self.target else self.kind


def plan_steps(
    kinds: Sequence[str],
    experiments: Sequence[str],
    campaigns: Mapping[str, str],
) -> list[Step]:
    """The steps of ``kinds`` in pipeline order: ``experiments`` are the running
    experiments' ids, ``campaigns`` the active campaigns' id -> file."""
    unknown = sorted(set(kinds) - set(PIPELINE_STEPS))
    if unknown:
        raise ValueError(f"unknown pipeline steps {unknown}; known: {list(PIPELINE_STEPS)}")
    names = {"features": ["features"], "score": ["score"]}
    names["analyze"] = [f"analyze:{e}" for e in experiments]
    names["allocate"] = [f"allocate:{c}" for c in campaigns]
    steps: list[Step] = []
    for kind in PIPELINE_STEPS:
        if kind not in kinds:
            continue
        deps = tuple(n for d in DEPENDS_ON[kind] if d in kinds for n in names[d])
        if kind == "analyze":
            steps += [Step(kind, e, ("--experiment", e), deps) for e in experiments]
        elif kind == "allocate":
            steps += [Step(kind, c, ("--campaign", f), deps) for c, f in campaigns.items()]
        else:
            steps.append(Step(kind, depends_on=deps))
    return steps


def blocked_by(step: Step, statuses: Mapping[str, str]) -> list[str]:
    """The dependencies of ``step`` that failed or were blocked in this run."""
    return [d for d in step.depends_on if statuses.get(d) in (FAILED, BLOCKED)]


def exit_code(failures: Sequence[int]) -> int:
    """The pipeline's exit code from its failed steps' codes (0 when none failed)."""
    if not failures:
        return 0
    for code in EXIT_PRIORITY:
        if code in failures:
            return code
    return 1


def running_experiment(status: str, start: dt.date, end: dt.date, day: dt.date) -> bool:
    """An experiment is analysed on the days of its post period, unless it was rejected."""
    return status != "rejected" and start <= day <= end
