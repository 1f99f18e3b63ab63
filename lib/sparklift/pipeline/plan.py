"""The steps of a pipeline run for one date and how they depend on each other.

Kinds run in the order of their declarations (:mod:`sparklift.pipeline.registry`):
features -> analyze -> score -> allocate, with one ``analyze:<id>`` step per running geo
experiment and one ``allocate:<id>`` step per active campaign. Data dependencies, not the
order, decide what a failure stops: every analysis needs that day's features (the
activity it reads landed and passed the features job's checks), every allocation needs
that day's scores; analyses and allocations are independent of each other, so a failed
analysis never stops an allocation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sparklift.pipeline import registry

SUCCEEDED, FAILED, BLOCKED, SKIPPED = "succeeded", "failed", "blocked", "skipped"
# A failed run's exit code: the one most in need of a person first (internal error, then
# bad input, then a write conflict, then input not ready, which a retry may fix).
EXIT_PRIORITY = (1, 2, 4, 3)


@dataclass(frozen=True)
class Step:
    kind: str  # a registered step kind: features | analyze | score | allocate
    target: str | None = None  # experiment_id or campaign_id
    args: tuple[str, ...] = ()  # the job's own arguments
    depends_on: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.target}" if self.target else self.kind


def plan_steps(
    kinds: Sequence[str], targets: Mapping[str, Mapping[str, tuple[str, ...]]]
) -> list[Step]:
    """The steps of ``kinds`` in pipeline order. ``targets`` holds, for each kind that runs
    once per target, the run date's targets (target id -> job arguments); a kind that
    runs once per date has none."""
    declared = registry.steps()
    unknown = sorted(set(kinds) - {s.kind for s in declared})
    if unknown:
        raise ValueError(f"unknown pipeline steps {unknown}; known: {list(registry.kinds())}")
    names: dict[str, list[str]] = {}
    steps: list[Step] = []
    for decl in declared:
        if decl.kind not in kinds:
            continue
        deps = tuple(n for d in decl.depends_on if d in kinds for n in names[d])
        if decl.targets is None:
            planned = [Step(decl.kind, depends_on=deps)]
        else:
            found = targets.get(decl.kind, {})
            planned = [Step(decl.kind, t, tuple(a), deps) for t, a in found.items()]
        names[decl.kind] = [s.name for s in planned]
        steps += planned
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
