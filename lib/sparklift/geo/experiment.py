"""An experiment's specification: ``conf/experiments/<name>.yaml`` over the design defaults."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sparklift.config import DesignConfig, load_spec


class Metric(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")  # a numeric column of user_activity
    primary: bool = True  # a failed AA check on a primary metric rejects the design


class ExperimentConfig(DesignConfig):
    experiment_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    variants: list[str]  # the control first, then each treatment
    zones_per_variant: int = Field(ge=1)
    start: dt.date  # first day of the post period
    end: dt.date  # last day of the post period
    metrics: list[Metric] = Field(min_length=1)
    seed: int
    exclude_zones: list[int] = Field(default_factory=list)
    covariates: list[str] = Field(default_factory=list)  # user-level covariates of the analysis

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        if len(self.variants) < 2:
            raise ValueError(
                f"variants: an experiment needs N >= 2 variants (control first), "
                f"got {len(self.variants)}: {self.variants}"
            )
        if len(set(self.variants)) != len(self.variants):
            raise ValueError(f"variants must be distinct, got {self.variants}")
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ValueError(f"metrics are listed twice: {names}")
        return self

    @property
    def control(self) -> str:
        return self.variants[0]

    @property
    def treatments(self) -> list[str]:
        return self.variants[1:]

    @property
    def pre_start(self) -> dt.date:
        return self.start - dt.timedelta(days=self.pre_days)

    @property
    def post_days(self) -> int:
        return (self.end - self.start).days + 1


def load_experiment(path: str | Path, defaults: DesignConfig) -> ExperimentConfig:
    """Validate the experiment file at ``path`` merged over the design defaults."""
    return load_spec(path, defaults, ExperimentConfig, "experiment file")
