"""The rows of ``pipeline_runs``: one per step run (an append-only run log; its contract:
:mod:`sparklift.contracts.pipeline`).

A re-run appends new rows, so the table keeps every attempt; a step's state for a date is
its latest row. ``input_*`` are the tables a step read that it did not write, with the
version it read and the rows in the partitions it read (from the Delta log's statistics);
``output_*`` are the tables it wrote, their last version and the rows its commits added.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StepOutcome:
    """What happened to one step of a run (also the row written to pipeline_runs)."""

    run_date: dt.date
    step: str
    kind: str
    target: str | None
    status: str
    depends_on: Sequence[str] = ()
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    duration_s: float = 0.0
    input_rows: dict[str, int] = field(default_factory=dict)
    input_versions: dict[str, int] = field(default_factory=dict)
    output_rows: dict[str, int] = field(default_factory=dict)
    output_versions: dict[str, int] = field(default_factory=dict)
    exit_code: int = 0
    error: str | None = None
    summary: str | None = None

    def record(self, pipeline_run_id: str, app_id: str, version: str) -> dict[str, Any]:
        return {
            **vars(self),
            "depends_on": list(self.depends_on),
            "pipeline_run_id": pipeline_run_id,
            "app_id": app_id,
            "sparklift_version": version,
        }


def render(outcomes: Sequence[StepOutcome]) -> str:
    """The run's summary as a fixed-width table: one line per date and step."""
    header = ("run_date", "step", "status", "seconds", "rows in", "rows out", "versions", "note")
    lines = [header]
    for o in outcomes:
        note = (o.error or "").splitlines()[0][:80] if o.error else ""
        if o.status == "skipped":
            note = "succeeded earlier (--force re-runs it)"
        fallback = json.loads(o.summary).get("fallback") if o.summary else None
        if isinstance(fallback, dict):
            note = f"fell back to {fallback['table']} of {fallback['used']}"
        versions = ",".join(f"{t}@{v}" for t, v in sorted(o.output_versions.items()))
        lines.append(
            (
                str(o.run_date),
                o.step,
                o.status if not o.exit_code else f"{o.status} ({o.exit_code})",
                f"{o.duration_s:.1f}" if o.status in ("succeeded", "failed") else "-",
                _rows(o.input_rows),
                _rows(o.output_rows),
                versions or "-",
                note,
            )
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header) - 1)]
    out = []
    for row in lines:
        cells = [
            c.ljust(w) if i < 3 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row[:-1], widths, strict=True))
        ]
        out.append("  ".join([*cells, row[-1]]).rstrip())
    out.insert(1, "-" * len(out[0]))
    return "\n".join(out)


def _rows(counts: dict[str, int]) -> str:
    return f"{sum(counts.values()):,}" if counts else "-"
