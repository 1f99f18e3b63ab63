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
        if not any(m.primary for m in self.metrics):
            raise ValueError(f"metrics: at least one must be primary, got {names}")
        twice = sorted({c for c in self.covariates if self.covariates.count(c) > 1})
        if twice:
            raise ValueError(f"covariates: {twice} listed twice, in {self.covariates}")
        outcomes = [c for c in self.covariates if c in names]
        if outcomes:
            raise ValueError(
                f"covariates: {outcomes} are metrics of the experiment: a metric moves with "
                "the treatment, so as its own covariate (or another metric's) it would absorb "
                "the effect; drop them from covariates (variance_reduction adjusts a metric "
                "by its pre-experiment history)"
            )
        window_end = self.covariate_window.end
        if self.variance_reduction != "none" and window_end and window_end >= self.pre_start:
            raise ValueError(
                f"covariate_window.end {window_end} is not before the pre-period, which starts "
                f"on {self.pre_start}: a covariate from days the DiD compares (or from the "
                f"treatment itself) would bias the estimate; end it by "
                f"{self.pre_start - dt.timedelta(days=1)} or leave it null"
            )
        looks = self.sequential.looks if self.sequential else []
        if isinstance(looks, list):
            outside = [str(d) for d in looks if not self.start <= d <= self.end]
            if outside:
                raise ValueError(
                    f"sequential.looks: dates {outside} are outside the experiment "
                    f"{self.start}..{self.end} (its end is the maximum duration)"
                )
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

    def covariate_days(self, pre_start: dt.date | None = None) -> tuple[dt.date, dt.date]:
        """First and last day of the covariate window before a pre-period starting on
        ``pre_start`` (default: the experiment's; its explicit ``end`` applies only there)."""
        pre_start = pre_start or self.pre_start
        end = self.covariate_window.end
        if end is None or pre_start != self.pre_start:
            end = pre_start - dt.timedelta(days=1)
        return end - dt.timedelta(days=self.covariate_window.days - 1), end

    @property
    def post_days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def look_dates(self) -> list[dt.date]:
        """The sequential plan's look dates; the end (the maximum duration) is the last."""
        looks = self.sequential.looks if self.sequential else []
        if isinstance(looks, int):
            looks = [
                self.start + dt.timedelta(days=d - 1) for d in range(looks, self.post_days, looks)
            ]
        return sorted(set(looks) | {self.end})

    @property
    def alpha_per_test(self) -> float:
        """Alpha of each (treatment, primary metric) comparison: Bonferroni over them, so
        the chance that any treatment is declared better or worse on any primary metric
        when none is stays below ``alpha`` whatever the correlation of the comparisons."""
        return self.alpha / (len(self.treatments) * sum(m.primary for m in self.metrics))


def load_experiment(path: str | Path, defaults: DesignConfig) -> ExperimentConfig:
    """Validate the experiment file at ``path`` merged over the design defaults."""
    return load_spec(path, defaults, ExperimentConfig, "experiment file")
