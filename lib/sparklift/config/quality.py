"""``sparklift check --table T``: declarative data quality checks per table.

Every table with a contract gets its schema, key and not-null checks from the contract;
``quality.tables`` adds what a contract cannot say (ranges, accepted values, references to
other tables, the columns whose history is watched) and may override the severities.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sparklift.config.base import _Strict

Severity = Literal["error", "warn"]
CHECK_KINDS = (
    "schema",
    "freshness",
    "not_null",
    "unique_key",
    "range",
    "accepted",
    "reference",
    "anomaly",
)


class AnomalyConfig(_Strict):
    """The table's own history: each metric of today against the last ``window_days``."""

    row_count: bool = True
    null_share: list[str] = Field(default_factory=list)  # columns
    mean: list[str] = Field(default_factory=list)
    quantiles: dict[str, list[float]] = Field(default_factory=dict)  # column -> probabilities
    distinct: list[str] = Field(default_factory=list)  # distinct values (approximate, 5%)
    psi: list[str] = Field(default_factory=list)  # population stability of these columns


class TableChecks(_Strict):
    """One table's checks beyond its contract (None: the contract's default)."""

    date_column: str | None = None  # the partition checked is the run date's (null: the
    # contract's first date partition column; a table without one is checked whole)
    not_null: list[str] | None = None  # beyond the contract's key (always checked)
    ranges: dict[str, tuple[float | None, float | None]] = Field(default_factory=dict)
    accepted: dict[str, list[str | int | bool]] = Field(default_factory=dict)
    references: dict[str, str] = Field(default_factory=dict)  # column -> "table.column"
    anomaly: AnomalyConfig = Field(default_factory=AnomalyConfig)
    severity: dict[str, Severity] = Field(default_factory=dict)  # check kind -> severity

    @model_validator(mode="after")
    def _known(self) -> TableChecks:
        unknown = sorted(set(self.severity) - set(CHECK_KINDS))
        if unknown:
            raise ValueError(f"severity: unknown check kinds {unknown}; known: {CHECK_KINDS}")
        for column, target in self.references.items():
            if target.count(".") != 1:
                raise ValueError(f"references.{column}: expected 'table.column', got {target!r}")
        for column, (low, high) in self.ranges.items():
            if low is not None and high is not None and low > high:
                raise ValueError(f"ranges.{column}: low {low} is above high {high}")
        for column, values in self.accepted.items():
            if not values:
                raise ValueError(f"accepted.{column}: an empty list accepts no value; list some")
        for column, probs in self.anomaly.quantiles.items():
            if not probs or any(not 0 < p < 1 for p in probs):
                raise ValueError(f"anomaly.quantiles.{column}: probabilities in (0, 1)")
        return self


class QualityConfig(_Strict):
    """The anomaly rule and every table's checks."""

    window_days: int = Field(ge=2)  # the history each anomaly metric is compared with
    min_history: int = Field(ge=2)  # fewer past values: the anomaly check is skipped
    sensitivity: float = Field(gt=0, allow_inf_nan=False)  # |z| above this is an anomaly
    same_weekday: bool  # compare with the same weekday of past weeks only
    season_days: int = Field(ge=0)  # 7: the z rule on changes from 7 days before (0: levels)
    relative_change: float | None = Field(
        default=None, gt=0, allow_inf_nan=False
    )  # also: |today / mean - 1| above
    psi_bins: int = Field(ge=2, le=100)
    psi_threshold: float = Field(
        gt=0, allow_inf_nan=False
    )  # PSI above this: the distribution shifted
    severity: dict[str, Severity]  # check kind -> default severity
    tables: dict[str, TableChecks]

    @model_validator(mode="after")
    def _kinds(self) -> QualityConfig:
        if self.season_days and self.same_weekday:
            raise ValueError(
                "season_days and same_weekday are two answers to a weekly pattern: set one "
                "(season_days: 0 with same_weekday: true)"
            )
        if self.min_history > self.window_days:
            raise ValueError(
                f"min_history {self.min_history} is above window_days {self.window_days}: "
                "every anomaly check would be skipped"
            )
        missing = sorted(set(CHECK_KINDS) - set(self.severity))
        unknown = sorted(set(self.severity) - set(CHECK_KINDS))
        if missing or unknown:
            raise ValueError(
                f"severity must give every check kind {CHECK_KINDS}: missing {missing}, "
                f"unknown {unknown}"
            )
        return self
