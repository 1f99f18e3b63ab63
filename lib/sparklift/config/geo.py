"""The geo experiment sections: zone-day features, design (sequential plans, CUPED/CUPAC)
and analysis."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from sparklift.config.base import _Strict
from sparklift.stats.covariance import COVARIANCES
from sparklift.stats.sequential import parameter_error
from sparklift.stats.ssc import CONVENTIONS


class FeatureDef(_Strict):
    """One zone/day feature: an aggregate over a zone's user rows on a day.

    agg: ``count`` (rows = active users), ``sum``/``mean`` of ``column``, ``count_if``/``share``
    of rows matching the SQL condition ``where``, or ``ratio`` of two other features
    (0 when the denominator is 0, so a zone with no activity has all-zero features).
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    agg: Literal["count", "sum", "mean", "count_if", "share", "ratio"]
    column: str | None = None
    where: str | None = None
    numerator: str | None = None
    denominator: str | None = None

    @model_validator(mode="after")
    def _fields_for_agg(self) -> FeatureDef:
        need = {
            "count": set(),
            "sum": {"column"},
            "mean": {"column"},
            "count_if": {"where"},
            "share": {"where"},
            "ratio": {"numerator", "denominator"},
        }[self.agg]
        given = {k for k in ("column", "where", "numerator", "denominator") if getattr(self, k)}
        if given != need:
            raise ValueError(
                f"feature {self.name!r} with agg {self.agg!r} takes exactly {sorted(need)}, "
                f"got {sorted(given)}"
            )
        return self


class FeaturesConfig(_Strict):
    definitions: list[FeatureDef] = Field(min_length=1)

    @model_validator(mode="after")
    def _ratios_resolve(self) -> FeaturesConfig:
        seen: set[str] = set()
        for f in self.definitions:
            if f.name in seen:
                raise ValueError(f"feature {f.name!r} is defined twice")
            if f.agg == "ratio":
                for ref in (f.numerator, f.denominator):
                    if ref not in seen:
                        raise ValueError(
                            f"ratio feature {f.name!r} refers to {ref!r}, which must be a "
                            "feature defined above it"
                        )
            seen.add(f.name)
        return self


SPENDING_FUNCTIONS = ("obf", "pocock", "hsd", "power")


def valid_spending_param(param: float | None, info: ValidationInfo) -> float | None:
    """``param`` if the spending function takes it (obf and pocock take none, power needs
    rho > 0, hsd a finite gamma): checked on loading, not first when a plan is computed
    after the Spark work."""
    name = info.data.get("spending")  # absent: the spending itself is invalid, and named
    problem = parameter_error(name, param) if name is not None else None
    if problem:
        raise ValueError(problem)
    return param


class FutilityConfig(_Strict):
    """A futility band from beta spending: stop a variant that will not reach efficacy."""

    spending: Literal[SPENDING_FUNCTIONS]  # type: ignore[valid-type]
    param: float | None = None  # gamma of hsd (default -4), rho of power (default 3)
    beta: float | None = Field(default=None, gt=0, lt=1)  # spent on futility; null: 1 - power
    binding: bool = False  # non-binding: efficacy bounds ignore futility (stopping optional)

    _param = field_validator("param")(valid_spending_param)


class SequentialConfig(_Strict):
    """A group sequential plan: where alpha is spent, so that daily looks stay valid.

    ``looks``: every N days from the start (an int), or the look dates; the end of the
    experiment is always the last look (its maximum duration)."""

    spending: Literal[SPENDING_FUNCTIONS]  # type: ignore[valid-type]
    param: float | None = None  # gamma of hsd (default -4), rho of power (default 3)
    sides: Literal[1, 2]  # 2: efficacy above, harm below; 1: efficacy only
    looks: int | list[dt.date]
    futility: FutilityConfig | None = None
    # The standard error and t reference of decisions (and of the plan's information):
    # the zone jackknife with t(G - 1), or the zone-clustered one with t(G* - 1).
    inference: Literal["jackknife", "effective_clusters"] = "jackknife"
    # The information fraction at a look: the design's planned one (the share of the
    # information the experiment will have at its end), or (se_K / se_now)^2 observed.
    information: Literal["planned", "observed"] = "planned"

    _param = field_validator("param")(valid_spending_param)

    @field_validator("looks")
    @classmethod
    def _looks(cls, looks: int | list[dt.date]) -> int | list[dt.date]:
        if isinstance(looks, int) and looks < 1:
            raise ValueError(f"looks every {looks} days: expected at least 1")
        if isinstance(looks, list) and any(b <= a for a, b in itertools.pairwise(looks)):
            raise ValueError(f"look dates must be strictly increasing, got {looks}")
        return looks


class CovariateWindow(_Strict):
    """The pre-experiment window of the CUPED/CUPAC covariates: ``days`` days ending on
    ``end``, or (null) on the day before the pre-period (the design: before its history)."""

    days: int = Field(ge=1)
    end: dt.date | None = None


class CupacConfig(_Strict):
    """CUPAC's prediction model: trained on the ``horizon_days`` before the covariate
    window's end (target) from the window of the same length before them (features)."""

    learner: str  # gbm | linear | module:Class (a scikit-learn regressor)
    learner_params: dict[str, Any]
    features: list[str]  # user_activity columns whose history (with the metrics') it uses
    horizon_days: int = Field(ge=1)
    max_train_users: int = Field(ge=100)  # a uniform sample of the training users
    seed: int


class DesignConfig(_Strict):
    """Defaults of every experiment's design; an experiment file may override each."""

    lookback_days: int = Field(ge=2)
    pca_components: int = Field(ge=1)
    features: list[str] | None  # matching features; null = every zone_day_features feature
    pre_days: int = Field(ge=2)
    alpha: float = Field(gt=0, le=0.5)
    power: float = Field(gt=0, lt=1)
    margin: float = Field(gt=0)  # AA equivalence margin, relative to the metric's mean
    target_effect: float  # relative effect at which power is reported
    convention: Literal[tuple(CONVENTIONS)]  # type: ignore[valid-type]  # small-sample
    sequential: SequentialConfig | None  # null: one look, at the end (a fixed horizon)
    # Pre-treatment user covariates: none, the metric's own history (cuped), or its
    # prediction from the user's history (cupac).
    variance_reduction: Literal["none", "cuped", "cupac"]
    covariate_window: CovariateWindow
    cupac: CupacConfig

    @model_validator(mode="after")
    def _nonzero_target(self) -> DesignConfig:
        if self.target_effect == 0:
            raise ValueError("target_effect must be non-zero (a relative effect, e.g. 0.03)")
        return self


class GatesConfig(_Strict):
    """Checks before a sequential decision is reported; a failing gate makes it invalid."""

    traffic_p: float = Field(gt=0, lt=1)  # user-days per variant post against pre shares
    mix: dict[str, str]  # name -> SQL expression over user_activity columns (per user-day)
    mix_p: float = Field(gt=0, lt=1)  # the treatment's DiD effect on each mix expression
    pretrend_p: float = Field(gt=0, lt=1)  # the event study's joint pre-trend test


class AnalysisConfig(_Strict):
    """How ``sparklift analyze`` estimates: covariances, few-cluster inference, event study."""

    covariances: list[Literal[tuple(COVARIANCES)]] = Field(min_length=1)  # type: ignore[valid-type]
    wild_bootstrap_draws: int = Field(ge=99)
    ri_draws: int = Field(ge=0)  # 0 turns randomization inference off
    seed: int
    event_study: bool
    gates: GatesConfig


class ForecastConfig(_Strict):
    """``sparklift forecast``: revenue forecasts of concluded experiments (Groupon's formula:
    lift x platform_factor x success_probability x platform_revenue, less the haircut)."""

    platform_revenue: dict[str, float]  # metric -> the platform's revenue the lift applies to
    platform_factor: float = Field(gt=0)  # the share of the platform the feature will reach
    success_probability: float = Field(gt=0, le=1)  # that the effect holds once launched
    haircut: float = Field(ge=0, lt=1)  # the share taken off every forecast
    min_experiments: int = Field(ge=2)  # other concluded experiments a shrinkage prior needs
