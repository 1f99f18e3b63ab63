"""The model sections: propensity to purchase, uplift training, scoring and allocation."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from sparklift.config.base import _Strict
from sparklift.config.geo import SPENDING_FUNCTIONS, valid_spending_param


class PropensityConfig(_Strict):
    """``train-propensity`` / ``score-propensity``: P(an order in the next H days)."""

    horizon_days: int = Field(ge=1)  # H: the label window after a snapshot
    history_days: int = Field(ge=1)  # W: the features' window (its users are the customers)
    recent_days: int = Field(ge=1)  # R <= W: a second, recent window of the same features
    columns: list[str] = Field(min_length=1)  # user_activity columns summarized per window
    label_column: str  # the label: this column > 0 on some day of the next H days
    train_snapshots: int = Field(ge=1)  # K snapshots, H days apart, before the validation one
    learner: str  # gbm | linear | module:Class (a scikit-learn classifier)
    gbm: dict[str, Any]  # HistGradientBoostingClassifier keyword arguments
    linear: dict[str, Any]  # LogisticRegression keyword arguments
    learner_params: dict[str, Any]  # keyword arguments of a module:Class learner
    class_weight: Literal["balanced", "none"]
    drift: Literal["linear", "latest", "none"]  # the base rate's trend over the snapshots
    drift_max_days: int = Field(ge=0)  # linear: extrapolated this far past the last snapshot
    max_train_rows: int = Field(ge=100)  # a uniform sample of the training snapshots' users
    max_validation_rows: int = Field(ge=100)
    precision_target: float = Field(gt=0, lt=1)  # recall is reported at this precision
    seed: int
    model_id: str | None  # score-propensity: the model (null: the latest as of the run date)
    state_days: int = Field(ge=2)  # user_history partitions kept (a rerun needs the day before)
    state_reader: Literal["auto", "spark"]  # score-propensity: how user_history's files are read

    @model_validator(mode="after")
    def _windows(self) -> PropensityConfig:
        if self.recent_days > self.history_days:
            raise ValueError(
                f"recent_days {self.recent_days} exceeds history_days {self.history_days}"
            )
        return self


class UpliftConfig(_Strict):
    """How ``sparklift train-uplift`` checks the history, samples, fits and evaluates."""

    learner: str  # t_gbm | dr_gbm | t_linear | dr_linear | module:Class | a+b (their mean)
    features: list[str] | None  # null = every numeric column but the keys and outcomes
    campaigns: list[str] | None  # campaign_ids to learn from; null = all
    max_train_rows: int = Field(gt=0)
    holdout_share: float = Field(gt=0, lt=1)
    cross_fit_folds: int = Field(ge=2)
    seed: int
    gbm: dict[str, Any]  # HistGradientBoostingRegressor keyword arguments (outcome models)
    gbm_final: dict[str, Any]  # ... of the DR learner's final stage
    pool_vouchers: bool  # DR: one final model over (features, voucher) for all vouchers
    linear: dict[str, Any]  # Ridge keyword arguments
    learner_params: dict[str, Any]  # keyword arguments of a module:Class learner
    control_share: float = Field(gt=0, lt=1)
    arm_shares: dict[str, float]  # explicit share per arm; empty = control_share + even split
    min_arm_rows: int = Field(ge=2)
    srm_alpha: float = Field(gt=0, lt=1)
    max_smd: float = Field(gt=0)
    override_checks: bool
    policy_fractions: list[float] = Field(min_length=1)

    @model_validator(mode="after")
    def _fractions(self) -> UpliftConfig:
        bad = [q for q in self.policy_fractions if not 0 < q <= 1]
        if bad:
            raise ValueError(f"policy_fractions must be in (0, 1]; got {bad}")
        return self


class ScoreConfig(_Strict):
    """Which model ``sparklift score`` uses, and what to do with one saved under other
    scikit-learn or numpy versions than the running ones."""

    model_id: str | None  # null = the latest in uplift_models as of the run date
    on_version_mismatch: Literal["refuse", "warn"]


class FallbackConfig(_Strict):
    """An input's earlier partition a job may use when the run date's is bad or missing."""

    max_age_days: int = Field(ge=1)


class AllocateConfig(_Strict):
    """Solver settings of ``sparklift allocate``; a campaign file may override each."""

    solver: Literal["lagrangian", "exact"]  # exact: groups up to exact_max_customers
    exact_max_customers: int = Field(ge=1)
    exact_time_limit_s: float = Field(gt=0)
    max_cap_rounds: int = Field(ge=1)
    cap_tolerance: float = Field(ge=0, lt=1)
    driver_steps: int = Field(ge=1)  # a crossing bucket with more breakpoints: split in Spark
    driver_max_rows: int = Field(ge=0)  # at most this many score rows: solved in the driver
    score_reader: Literal["auto", "spark"]  # auto: uplift_scores' files read without a shuffle
    # The predicted value corrected by campaigns measured in the last calibration_days
    # (0: never); pooled over every campaign's runs, or only this campaign's.
    calibration_days: int = Field(ge=0)
    calibration_scope: Literal["all", "campaign"]
    # Today's uplift_scores missing or failing an error check: allocate on the latest good
    # partition at most max_age_days old instead (null: refuse).
    fallback: FallbackConfig | None


class MeasureConfig(_Strict):
    """``sparklift measure``: a campaign's policy against its holdout."""

    window_days: int = Field(ge=1)  # outcomes cover the days after the send: final after these
    covariates: list[str] | None  # CUPED: pre-campaign customer columns; null = every numeric
    confidence: float = Field(gt=0, lt=1)
    # Looks during the window (--interim): Lan-DeMets spending of alpha = 1 - confidence
    spending: Literal[SPENDING_FUNCTIONS]  # type: ignore[valid-type]
    spending_param: float | None = None  # gamma of hsd (default -4), rho of power (default 3)

    # checked on loading, not first at an interim look
    _param = field_validator("spending_param")(valid_spending_param)
