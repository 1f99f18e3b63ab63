"""Uplift learners by name (``uplift.learner``): the built-in ones (:mod:`.learners`)
configured from the ``uplift`` section, ``module:Class`` for one's own, and names joined
by ``+`` for the average of those learners."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sparklift.config import UpliftConfig
from sparklift.errors import ConfigError
from sparklift.uplift.learners import Average, DRLearner, TLearner, UpliftLearner

BUILT_IN = ("t_gbm", "dr_gbm", "t_linear", "dr_linear")


def gbm(params: Mapping[str, Any], seed: int) -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(random_state=seed, **params)


def linear(params: Mapping[str, Any]) -> RegressorMixin:
    return make_pipeline(StandardScaler(), Ridge(**params))


def make_learner(
    name: str,
    conf: UpliftConfig,
) -> UpliftLearner:
    """The learner called ``name``: a built-in one configured by ``conf``,
    ``module:Class`` built with ``conf.learner_params``, or ``a+b+...``: their average."""
    if "+" in name:
        parts = name.split("+")
        if "" in parts or len(set(parts)) < len(parts):
            raise ConfigError(
                f"uplift.learner: {name!r} must join different learner names with '+' "
                "(e.g. dr_gbm+t_gbm): a name is empty or repeated"
            )
        return Average([make_learner(p, conf) for p in parts])
    seed = conf.seed
    outcome: dict[str, Callable[[], RegressorMixin]] = {
        "gbm": lambda: gbm(conf.gbm, seed),
        "linear": lambda: linear(conf.linear),
    }
    final: dict[str, Callable[[], RegressorMixin]] = {
        "gbm": lambda: gbm(conf.gbm_final, seed),
        "linear": lambda: linear(conf.linear),
    }
    if name in BUILT_IN:
        kind, base = name.split("_", 1)
        try:
            if kind == "t":
                return TLearner(outcome[base]())
            return DRLearner(
                outcome[base](),
                final[base](),
                folds=conf.cross_fit_folds,
                seed=seed,
                pool=conf.pool_vouchers and base == "gbm",
            )
        except TypeError as e:
            sections = "uplift.gbm / uplift.gbm_final" if base == "gbm" else "uplift.linear"
            raise ConfigError(f"{sections}: {e}") from None
    if ":" not in name:
        raise ConfigError(
            f"uplift.learner: unknown learner {name!r} (built in: {', '.join(BUILT_IN)}; "
            "or module:Class for your own)"
        )
    module_name, _, cls_name = name.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"uplift.learner: cannot import {name!r}: {e}") from None
    try:
        learner = cls(**conf.learner_params)
    except TypeError as e:
        raise ConfigError(
            f"uplift.learner_params {dict(conf.learner_params)} do not fit {name}: {e}"
        ) from None
    missing = [m for m in ("fit", "predict") if not callable(getattr(learner, m, None))]
    if missing:
        raise ConfigError(f"uplift.learner: {name} has no method(s) {missing}")
    if not isinstance(learner, BaseEstimator):
        raise ConfigError(
            f"uplift.learner: {name} is not a scikit-learn estimator: subclass "
            "sklearn.base.BaseEstimator (and declare NaN support in its tags' allow_nan)"
        )
    return learner
