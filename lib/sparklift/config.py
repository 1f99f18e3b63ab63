"""Typed configuration: packaged defaults, a user file merged over them, ``--set`` overrides.

Every key is validated by pydantic with unknown keys forbidden, so a typo or a wrong type
fails at start-up with the dotted key and what was expected. Local and production runs
differ only in the file they pass (``tables.base_path`` and ``spark`` usually).
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from sparklift.contracts import TABLE_NAMES
from sparklift.errors import ConfigError
from sparklift.stats.covariance import COVARIANCES
from sparklift.stats.ssc import CONVENTIONS


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
    target_file_rows: int = Field(gt=0)
    names: dict[str, str]

    @property
    def models(self) -> str:
        """Where model artefacts go: ``model_path``, else ``models`` under ``base_path``, so
        that moving the warehouse moves the models with it."""
        if self.model_path:
            return self.model_path
        return f"{self.base_path.rstrip('/')}/models"

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
    campaign_rows: int = Field(gt=0)
    campaigns: int = Field(ge=1)
    control_share: float = Field(gt=0, lt=1)
    partitions: int = Field(gt=0)
    geo_effect: GeoEffectConfig


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


class FutilityConfig(_Strict):
    """A futility band from beta spending: stop a variant that will not reach efficacy."""

    spending: Literal[SPENDING_FUNCTIONS]  # type: ignore[valid-type]
    param: float | None = None  # gamma of hsd (default -4), rho of power (default 3)
    beta: float | None = Field(default=None, gt=0, lt=1)  # spent on futility; null: 1 - power
    binding: bool = False  # non-binding: efficacy bounds ignore futility (stopping optional)


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


class PropensityConfig(_Strict):
    """``train-propensity`` / ``score-propensity``: P(an order in the next H days)."""

    horizon_days: int = Field(ge=1)  # H: the label window after a snapshot
    history_days: int = Field(ge=1)  # W: the features' window (its users are the customers)
    recent_days: int = Field(ge=1)  # R <= W: a second, recent window of the same features
    columns: list[str] = Field(min_length=1)  # user_activity columns summarized per window
    label_column: str  # the label: this column > 0 on some day of the next H days
    train_snapshots: int = Field(ge=1)  # K snapshots, H days apart, before the validation one
    learner: str  # gbm | linear | module:Class (a scikit-learn classifier)
    learner_params: dict[str, Any]
    class_weight: Literal["balanced", "none"]
    drift: Literal["linear", "latest", "none"]  # the base rate's trend over the snapshots
    max_train_rows: int = Field(ge=100)  # a uniform sample of the training snapshots' users
    max_validation_rows: int = Field(ge=100)
    precision_target: float = Field(gt=0, lt=1)  # recall is reported at this precision
    seed: int
    model_id: str | None  # score-propensity: the model (null: the latest trained)
    state_days: int = Field(ge=2)  # user_history partitions kept (a rerun needs the day before)

    @model_validator(mode="after")
    def _windows(self) -> PropensityConfig:
        if self.recent_days > self.history_days:
            raise ValueError(
                f"recent_days {self.recent_days} exceeds history_days {self.history_days}"
            )
        return self


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


class UpliftConfig(_Strict):
    """How ``sparklift train-uplift`` checks the history, samples, fits and evaluates."""

    learner: str  # t_gbm | dr_gbm | t_linear | dr_linear | module:Class
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

    model_id: str | None  # null = the latest in uplift_models
    on_version_mismatch: Literal["refuse", "warn"]


class AllocateConfig(_Strict):
    """Solver settings of ``sparklift allocate``; a campaign file may override each."""

    solver: Literal["lagrangian", "exact"]  # exact: groups up to exact_max_customers
    exact_max_customers: int = Field(ge=1)
    exact_time_limit_s: float = Field(gt=0)
    max_cap_rounds: int = Field(ge=1)
    cap_tolerance: float = Field(ge=0, lt=1)


class PipelineConfig(_Strict):
    """What ``sparklift pipeline`` runs for a date."""

    steps: list[str] = Field(min_length=1)  # kinds of sparklift.pipeline.registry
    campaigns: list[str]  # campaign files or globs

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


class Config(_Strict):
    logging: LoggingConfig
    spark: SparkConfig
    tables: TablesConfig
    generate: GenerateConfig
    features: FeaturesConfig
    design: DesignConfig
    analysis: AnalysisConfig
    uplift: UpliftConfig
    score: ScoreConfig
    propensity: PropensityConfig
    allocate: AllocateConfig
    pipeline: PipelineConfig
    maintain: MaintainConfig


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _apply_set(raw: dict[str, Any], assignment: str) -> str:
    """Apply one ``--set KEY=VALUE`` to ``raw``; return the dotted key it set."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. spark.master=local[2]")
    key, _, text = assignment.partition("=")
    parts = key.strip().split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {'.'.join(parts[: i + 1])} is not a config section")
        node = child
    if parts[-1] not in node:
        raise ConfigError(f"--set {key}: unknown key {parts[-1]!r} (known: {sorted(node)})")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as e:
        problem = ": ".join(
            filter(None, [getattr(e, "context", None), getattr(e, "problem", None)])
        )
        raise ConfigError(
            f"--set {assignment!r}: the value {text!r} is not valid YAML "
            f"({problem or str(e).splitlines()[0]})"
        ) from None
    node[parts[-1]] = value
    return ".".join(parts)


def _blame(loc: str, set_keys: Mapping[str, str]) -> str | None:
    """The ``--set`` assignment an error at dotted ``loc`` comes from: one that set ``loc``
    or a section containing it, else one that set a key inside ``loc`` (a section's own
    check); None when no --set touched it (the file or the defaults did)."""
    for key, assignment in reversed(list(set_keys.items())):  # the last --set wins
        if loc == key or loc.startswith(f"{key}."):
            return assignment
    for key, assignment in reversed(list(set_keys.items())):
        if key.startswith(f"{loc}.") or not loc:
            return assignment
    return None


def format_errors(
    err: ValidationError, source: str, set_keys: Mapping[str, str] | None = None
) -> str:
    """One line per invalid key, naming where its value came from: ``source`` (a file,
    the defaults) or a ``--set`` (``set_keys``: dotted key -> its assignment)."""
    found = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        assignment = _blame(key, set_keys or {})
        if e["type"] == "extra_forbidden":
            text = "unknown key"
        else:
            text = f"{e['msg']} (got {e.get('input')!r})"
        found.append((key, text, assignment))
    blamed = list(dict.fromkeys(a for _, _, a in found if a))
    from_set = ", ".join(f"--set {a}" for a in blamed)
    if blamed and all(a for _, _, a in found):  # every error comes from a --set
        where = from_set
    else:
        where = f"{source} and {from_set}" if blamed else source
    tag = len(blamed) > 1 or (blamed and where != from_set)  # say which line is whose
    lines = [f"invalid configuration ({where}):"]
    for key, text, assignment in found:
        origin = f"--set {assignment}" if assignment else source
        lines.append(f"  {key}: {text}" + (f" [from {origin}]" if tag else ""))
    return "\n".join(lines)


def default_config_text() -> str:
    return resources.files("sparklift").joinpath("defaults.yaml").read_text()


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """The mapping in the YAML file at ``path``, or a ConfigError saying what is wrong."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {p} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {p} must hold a mapping at the top level")
    return data


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Load defaults, merge the file at ``path`` (if any) and ``--set`` overrides, validate."""
    raw = yaml.safe_load(default_config_text())
    source = "defaults"
    if path is not None:
        raw = deep_merge(raw, read_yaml_mapping(path))
        source = str(path)
    set_keys: dict[str, str] = {}
    for assignment in overrides:
        key = _apply_set(raw, assignment)
        set_keys.pop(key, None)  # re-inserted last: the later --set of a key wins
        set_keys[key] = assignment
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_errors(e, source, set_keys)) from None


Spec = TypeVar("Spec", bound=BaseModel)


def load_spec(path: str | Path, defaults: BaseModel, model: type[Spec], what: str) -> Spec:
    """Validate the YAML file at ``path`` (an experiment, a campaign) merged over the
    defaults of its config section."""
    raw = deep_merge(defaults.model_dump(), read_yaml_mapping(path, what))
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_errors(e, str(path))) from None
