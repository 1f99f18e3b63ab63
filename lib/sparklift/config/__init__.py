"""Typed configuration: packaged defaults, a user file merged over them, ``--set`` overrides.

Every key is validated by pydantic with unknown keys forbidden, so a typo or a wrong type
fails at start-up with the dotted key and what was expected. Local and production runs
differ only in the file they pass (``tables.base_path`` and ``spark`` usually).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError, model_validator

from sparklift.config.base import (
    FAULT_KINDS,
    FaultConfig,
    GenerateConfig,
    GeoEffectConfig,
    LoggingConfig,
    MaintainConfig,
    PipelineConfig,
    SparkConfig,
    TablesConfig,
    _Strict,
)
from sparklift.config.geo import (
    SPENDING_FUNCTIONS,
    AnalysisConfig,
    CovariateWindow,
    CupacConfig,
    DesignConfig,
    FeatureDef,
    FeaturesConfig,
    ForecastConfig,
    FutilityConfig,
    GatesConfig,
    SequentialConfig,
)
from sparklift.config.models import (
    AllocateConfig,
    MeasureConfig,
    PropensityConfig,
    ScoreConfig,
    UpliftConfig,
)
from sparklift.config.quality import AnomalyConfig, QualityConfig, TableChecks
from sparklift.errors import ConfigError

__all__ = [
    "FAULT_KINDS",
    "SPENDING_FUNCTIONS",
    "AllocateConfig",
    "AnalysisConfig",
    "AnomalyConfig",
    "Config",
    "CovariateWindow",
    "CupacConfig",
    "DesignConfig",
    "FaultConfig",
    "FeatureDef",
    "FeaturesConfig",
    "ForecastConfig",
    "FutilityConfig",
    "GatesConfig",
    "GenerateConfig",
    "GeoEffectConfig",
    "LoggingConfig",
    "MaintainConfig",
    "MeasureConfig",
    "PipelineConfig",
    "PropensityConfig",
    "QualityConfig",
    "ScoreConfig",
    "SequentialConfig",
    "SparkConfig",
    "TableChecks",
    "TablesConfig",
    "UpliftConfig",
    "deep_merge",
    "default_config_text",
    "format_errors",
    "load_config",
    "load_spec",
    "read_yaml_mapping",
]


class Config(_Strict):
    logging: LoggingConfig
    spark: SparkConfig
    tables: TablesConfig
    generate: GenerateConfig
    features: FeaturesConfig
    design: DesignConfig
    analysis: AnalysisConfig
    forecast: ForecastConfig
    uplift: UpliftConfig
    score: ScoreConfig
    propensity: PropensityConfig
    allocate: AllocateConfig
    measure: MeasureConfig
    pipeline: PipelineConfig
    maintain: MaintainConfig
    quality: QualityConfig

    @model_validator(mode="after")
    def _checked_tables_exist(self) -> Config:
        unknown = sorted(set(self.quality.tables) - set(self.tables.names))
        if unknown:  # a misspelt name would leave the real table on its defaults, silently
            raise ValueError(
                f"quality.tables: {unknown} name no table of tables.names; known: "
                f"{sorted(self.tables.names)}"
            )
        return self


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _section(annotation: Any) -> Any:
    """A field's type with ``None`` taken out: an optional section (``X | None``, null in
    the defaults) takes keys as ``X`` does."""
    if get_origin(annotation) in (Union, UnionType):
        kept = [a for a in get_args(annotation) if a is not type(None)]
        if len(kept) == 1:
            return kept[0]
    return annotation


def _key_type(kind: Any, part: str, key: str, where: str) -> Any:
    """The type of ``part`` inside a value of type ``kind`` at dotted ``where``: a model's
    field, or a dict's value type (any key); a ConfigError naming the known keys for a
    model's unknown one, and saying that ``where`` is no section when it holds a value."""
    kind = _section(kind)
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        fields = kind.model_fields
        if part not in fields:
            inside = f" in {where}" if where else ""
            raise ConfigError(
                f"--set {key}: unknown key {part!r}{inside} (known: {sorted(fields)})"
            )
        return fields[part].annotation
    if get_origin(kind) is dict:
        return get_args(kind)[1]
    raise ConfigError(f"--set {key}: {where} is not a config section")


def _apply_set(raw: dict[str, Any], assignment: str) -> str:
    """Apply one ``--set KEY=VALUE`` to ``raw`` (``spark.conf={...}`` merges into the
    defaults' Spark settings); return the dotted key it set. The key is checked against the
    config's models, as a file's keys are (a table's checks, an optional section left null
    in the defaults): the sections on its way that ``raw`` lacks are created."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. spark.master=local[2]")
    key, _, text = assignment.partition("=")
    parts = key.strip().split(".")
    kind: Any = Config
    for i, part in enumerate(parts):
        kind = _key_type(kind, part, key, ".".join(parts[:i]))
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:  # absent, or an optional section left null
            child = node[part] = {}
        elif not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(f"--set {key}: {where} is {child!r} in the config, not a section")
        node = child
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
    # Spark settings add to the defaults' (which tune Delta for small machines); any other
    # value replaces (learner_params belong to one learner: another needs its own).
    merge = key.strip() == "spark.conf" and isinstance(value, dict)
    node[parts[-1]] = deep_merge(node.get(parts[-1]) or {}, value) if merge else value
    return ".".join(parts)


def _blame(loc: str, set_keys: Mapping[str, str]) -> str | None:
    """The ``--set`` assignment an error at dotted ``loc`` comes from: one that set ``loc``
    or a section containing it, else one that set a key inside ``loc`` (a section's own
    check); None when no --set touched it (the file or the defaults did), and for a check
    across sections (``loc`` empty), which a --set cannot be told to have caused alone."""
    for key, assignment in reversed(list(set_keys.items())):  # the last --set wins
        if loc == key or loc.startswith(f"{key}."):
            return assignment
    for key, assignment in reversed(list(set_keys.items())):
        if loc and key.startswith(f"{loc}."):
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
            got = e.get("input")  # a whole section (a cross-field check's) says nothing
            msg = e["msg"].removeprefix("Value error, ")
            text = msg if isinstance(got, Mapping) else f"{msg} (got {got!r})"
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
        named = f"{key}: {text}" if key else text  # a check across sections names its keys
        lines.append(f"  {named}" + (f" [from {origin}]" if tag else ""))
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


def _from_its_directory(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """A config file's mapping with its relative ``pipeline.campaigns`` patterns made
    relative to the file's directory, so that they find the same files from any working
    directory (a cluster-mode driver's has no ``conf/``). The defaults' patterns and a
    ``--set``'s stay relative to the working directory."""
    pipeline = data.get("pipeline")
    patterns = pipeline.get("campaigns") if isinstance(pipeline, dict) else None
    if not isinstance(patterns, list):
        return data  # not set here, or not a list (validation names it)
    here = path.absolute().parent
    moved = [str(here / p) if isinstance(p, str) and not Path(p).is_absolute() else p
             for p in patterns]  # fmt: skip
    return deep_merge(data, {"pipeline": {"campaigns": moved}})


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Load defaults, merge the file at ``path`` (if any) and ``--set`` overrides, validate."""
    raw = yaml.safe_load(default_config_text())
    source = "defaults"
    if path is not None:
        raw = deep_merge(raw, _from_its_directory(read_yaml_mapping(path), Path(path)))
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
