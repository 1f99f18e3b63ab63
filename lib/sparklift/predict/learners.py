"""Learners of predicted metrics, chosen by name as the uplift learners are.

``gbm`` is scikit-learn's HistGradientBoosting regressor or classifier (NaN handled
natively; early stopping on a 10% validation share whatever the size, as user histories
are noisy targets); ``linear`` a standardized ridge regression or logistic regression;
``module:Class`` any scikit-learn estimator with ``predict`` (regressors) or
``predict_proba`` (classifiers), built with the configured parameters. ``key`` names the
config key in errors.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import has_fit_parameter

from sparklift.errors import ConfigError

BUILT_IN = ("gbm", "linear")


def regressor(name: str, params: Mapping[str, Any], seed: int, key: str) -> RegressorMixin:
    """The regressor called ``name`` with ``params`` (``key``: its config key, for errors)."""
    return _build(name, params, seed, key, "predict")


def classifier(
    name: str, params: Mapping[str, Any], seed: int, key: str, params_key: str | None = None
) -> ClassifierMixin:
    """The classifier called ``name`` with ``params`` (``key``: its config key;
    ``params_key``: that of ``params``, default ``<key>_params``)."""
    return _build(name, params, seed, key, "predict_proba", params_key)


def _build(
    name: str,
    params: Mapping[str, Any],
    seed: int,
    key: str,
    method: str,
    params_key: str | None = None,
) -> Any:
    gbm, linear = (
        (HistGradientBoostingRegressor, Ridge)
        if method == "predict"
        else (HistGradientBoostingClassifier, LogisticRegression)
    )
    try:
        if name == "gbm":
            return gbm(**{"early_stopping": True, "random_state": seed} | dict(params))
        if name == "linear":
            extra = {} if method == "predict" else {"max_iter": 1000}
            return make_pipeline(StandardScaler(), linear(**extra | dict(params)))
    except TypeError as e:
        where = params_key or f"{key}_params"
        raise ConfigError(f"{where} {dict(params)} do not fit learner {name}: {e}") from None
    if ":" not in name:
        raise ConfigError(
            f"{key}: unknown learner {name!r} (built in: {', '.join(BUILT_IN)}; or "
            f"module:Class for a scikit-learn estimator of your own with {method})"
        )
    module_name, _, cls_name = name.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
        model = cls(**params)
    except (ImportError, AttributeError, TypeError) as e:
        raise ConfigError(f"{key}: cannot build {name!r}: {e}") from None
    if not isinstance(model, BaseEstimator) or not callable(getattr(model, method, None)):
        raise ConfigError(f"{key}: {name} is not a scikit-learn estimator with {method}")
    return model


def weight_argument(model: BaseEstimator) -> str | None:
    """The ``fit`` keyword that takes sample weights (a pipeline's routes them to its last
    step), None if the learner takes none."""
    if isinstance(model, Pipeline):
        name, last = model.steps[-1]
        return f"{name}__sample_weight" if has_fit_parameter(last, "sample_weight") else None
    return "sample_weight" if has_fit_parameter(model, "sample_weight") else None
