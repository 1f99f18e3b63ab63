"""The steps of a pipeline run for one date and how they depend on each other.

Kinds run in the order of their declarations (:mod:`sparklift.pipeline.registry`):
features -> analyze -> score -> allocate, with one ``analyze:<id>`` step per running geo
experiment and one ``allocate:<id>`` step per active campaign. Data dependencies, not the
order, decide what a failure stops: every analysis needs that day's features (the
activity it reads landed and passed the features job's checks), every allocation needs
that day's scores; analyses and allocations are independent of each other, so a failed
analysis never stops an allocation. With ``pipeline.checks``, each step's checked input
tables get a ``check:<table>`` step (``sparklift check``) placed before the first step that
reads them and after the steps of this run that write them: a failed check blocks its
consumers, unless a consumer falls back to an earlier good partition (its dependencies on
that check and on the table's producers are then soft: they order it, never block it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sparklift.pipeline import registry

SUCCEEDED, FAILED, BLOCKED, SKIPPED = "succeeded", "failed", "blocked", "skipped"
CHECK = "check"  # the kind of a gate: sparklift check --table <target>
# A failed run's exit code: the one most in need of a person first (internal error, then
# bad input, then a write conflict, then input not ready, which a retry may fix).
EXIT_PRIORITY = (1, 2, 4, 3)


@dataclass(frozen=True)
class Step:
    kind: str  # a registered step kind (features | analyze | score | allocate ...) or check
    target: str | None = None  # experiment_id, campaign_id, or the checked table
    args: tuple[str, ...] = ()  # the job's own arguments
    depends_on: tuple[str, ...] = field(default=())  # their failure blocks it
    soft_depends_on: tuple[str, ...] = field(default=())  # they only come before it

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.target}" if self.target else self.kind


def plan_steps(
    kinds: Sequence[str],
    targets: Mapping[str, Mapping[str, tuple[str, ...]]],
    checks: bool = False,
    falls_back: Callable[[str, tuple[str, ...]], bool] | None = None,
) -> list[Step]:
    """The steps of ``kinds`` in pipeline order. ``targets`` holds, for each kind that runs
    once per target, the run date's targets (target id -> job arguments); a kind that
    runs once per date has none. ``checks``: gate each kind's checked inputs with a
    ``check:<table>`` step; ``falls_back(kind, args)``: whether that step falls back past
    a failed check of its inputs or their producer."""
    declared = registry.steps()
    unknown = sorted(set(kinds) - {s.kind for s in declared})
    if unknown:
        raise ValueError(f"unknown pipeline steps {unknown}; known: {list(registry.kinds())}")
    names: dict[str, list[str]] = {}
    writers: dict[str, list[str]] = {}  # table -> the steps of this run that write it
    gates: dict[str, str] = {}  # table -> its check step
    steps: list[Step] = []
    for decl in declared:
        if decl.kind not in kinds:
            continue
        found = targets.get(decl.kind, {}) if decl.targets else {None: ()}
        checked = decl.checks if checks and found else ()  # no consumer today: no gate
        for table in checked:
            if table not in gates:
                steps.append(Step(CHECK, table, ("--table", table), tuple(writers.get(table, ()))))
                gates[table] = steps[-1].name
        deps = [n for d in decl.depends_on if d in kinds for n in names[d]]
        deps += [gates[t] for t in checked]
        passable = {gates[t] for t in checked} | {
            w for t in decl.checks for w in writers.get(t, ())
        }
        planned = []
        for target, args in found.items():
            soft = falls_back is not None and falls_back(decl.kind, tuple(args))
            hard = tuple(d for d in deps if not (soft and d in passable))
            later = tuple(d for d in deps if soft and d in passable)
            planned.append(Step(decl.kind, target, tuple(args), hard, later))
        names[decl.kind] = [s.name for s in planned]
        for table in decl.outputs:
            writers.setdefault(table, []).extend(names[decl.kind])
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
