"""The configuration sections every job shares: logging, Spark, tables, the generator,
the pipeline and table maintenance; and the strict base model of every section."""

from __future__ import annotations

import datetime as dt
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sparklift.contracts import CONTRACTS, TABLE_NAMES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoggingConfig(_Strict):
    format: Literal["plain", "json"]
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"]
    progress_interval_s: float = Field(ge=0)


class SparkConfig(_Strict):
    master: str
    app_name: str
    driver_memory: str
    shuffle_partitions: int = Field(gt=0)
    log_level: Literal["ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"]
    ui_enabled: bool
    delta_jars: str | None
    conf: dict[str, str]


class TablesConfig(_Strict):
    backend: Literal["auto", "native", "deltars"]
    base_path: str
    model_path: str | None
    report_path: str | None
    target_file_rows: int = Field(gt=0)
    names: dict[str, str]

    @property
    def models(self) -> str:
        """Where model artefacts go: ``model_path``, else ``models`` under ``base_path``, so
        that moving the warehouse moves the models with it."""
        if self.model_path:
            return self.model_path
        return f"{self.base_path.rstrip('/')}/models"

    @property
    def reports(self) -> str:
        """Where the HTML reports go: ``report_path``, else ``reports`` under ``base_path``."""
        return self.report_path or f"{self.base_path.rstrip('/')}/reports"

    @model_validator(mode="after")
    def _known_tables(self) -> TablesConfig:
        unknown = sorted(set(self.names) - set(TABLE_NAMES))
        missing = sorted(set(TABLE_NAMES) - set(self.names))
        if unknown or missing:
            raise ValueError(f"unknown tables {unknown}, missing tables {missing}")
        return self


class GeoEffectConfig(_Strict):
    zones: int = Field(ge=0)
    start_offset_days: int = Field(ge=1)
    lift: float = Field(ge=-0.9)


FaultKind = Literal["drop_half", "null_spike", "duplicate", "shift", "late", "remap_zones"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)


class FaultConfig(_Strict):
    """A fault of the daily feed injected into one date of user_activity
    (:mod:`sparklift.synthetic.faults`)."""

    kind: FaultKind
    date: dt.date
    column: str = "gmv"  # null_spike and shift: the column hit
    share: float = Field(default=0.3, gt=0, le=1)  # null_spike: the share of the date's rows
    factor: float = Field(default=1.5, gt=0)  # shift: the column's values times this

    @model_validator(mode="after")
    def _column_of_the_feed(self) -> FaultConfig:
        schema = CONTRACTS["user_activity"].schema
        if self.kind not in ("null_spike", "shift"):
            return self
        if self.column not in schema.fieldNames():
            raise ValueError(f"column {self.column!r} is not a column of user_activity "
                             f"{schema.fieldNames()}")  # fmt: skip
        if self.kind == "shift" and self.column in ("date", "user_id", "zone_id"):
            raise ValueError(f"a shift needs a measure column, not {self.column!r}")
        return self


class GenerateConfig(_Strict):
    seed: int
    users: int = Field(gt=0)
    zones: int = Field(ge=2)
    regions: int = Field(gt=0)
    days: int = Field(gt=0)
    end_date: dt.date | None
    customers: int = Field(gt=0)
    customer_snapshots: int = Field(ge=1)
    vouchers: int = Field(ge=1, le=20)
    voucher_effects: Literal["scaled", "distinct"]  # one shape for all, or one per kind
    campaign_rows: int = Field(gt=0)
    campaigns: int = Field(ge=1)
    control_share: float = Field(gt=0, lt=1)
    partitions: int = Field(gt=0)
    geo_effect: GeoEffectConfig
    faults: list[FaultConfig]


class PipelineConfig(_Strict):
    """What ``sparklift pipeline`` runs for a date."""

    steps: list[str] = Field(min_length=1)  # kinds of sparklift.pipeline.registry
    campaigns: list[str]  # campaign files or globs
    checks: bool  # check:<table> steps gate the steps reading the table
    reports: bool  # refresh the HTML reports of the experiments and campaigns a run touched

    @field_validator("steps")
    @classmethod
    def _known_once(cls, steps: list[str]) -> list[str]:
        from sparklift.pipeline.registry import kinds  # imports the jobs, which import this

        unknown = sorted(set(steps) - set(kinds()))
        if unknown:
            raise ValueError(f"unknown pipeline steps {unknown}; known: {list(kinds())}")
        if len(set(steps)) != len(steps):
            raise ValueError(f"steps are listed twice: {steps}")
        return steps


class MaintainConfig(_Strict):
    """What ``sparklift maintain`` does to each table: compaction and VACUUM."""

    optimize: bool
    vacuum: bool
    time_travel_hours: int = Field(ge=0)  # reads of any moment this recent must keep working
    vacuum_retention_hours: int = Field(ge=0)  # never below time_travel_hours (refused)
