"""Multi-arm uplift learners with scikit-learn's fit/predict contract.

A learner is any object with

- ``fit(X, y, arm) -> self``: ``X`` (n, p) float features (NaN = missing), ``y`` (n,)
  the response, ``arm`` (n,) integers, 0 = control and 1..J the vouchers;
- ``predict(X) -> (n, J)``: the effect of each voucher on the response against control;
- ``handles_missing``: whether ``predict`` accepts NaN features.

Built in, chosen by name in ``uplift.learner``:

- ``t_gbm`` / ``t_linear``: the T-learner, one outcome model per arm, effect = mu_j - mu_0;
- ``dr_gbm`` / ``dr_linear``: the doubly robust (DR) learner (Kennedy 2023). Outcome
  models mu_k are cross-fitted over ``folds`` folds; with the randomized arm shares e_k as
  propensities, each row gets the pseudo-outcome
  ``phi_j = mu_j - mu_0 + 1[arm=j] (y - mu_j) / e_j - 1[arm=0] (y - mu_0) / e_0``,
  whose conditional mean is tau_j(x) whatever the errors of mu. With ``pool`` (the
  default) ONE final model regresses the stacked phi_1..phi_J on (x, j) over all rows, so
  the vouchers share what persuades a customer and each learns from every arm's rows (on
  the generator's data this lifts the top-20% value captured from 0.66-0.82 to 0.85-0.87
  for the weakest voucher); trees still split on j where effects differ, and each
  voucher's predictions are shifted so that their mean equals the mean of its phi_j (its
  DR average effect). Without ``pool``, one final model per voucher. The stacked matrix
  holds J copies of the training features.

``gbm`` is scikit-learn's HistGradientBoostingRegressor with ``uplift.gbm`` for outcome
models and ``uplift.gbm_final`` for the DR final stage (its target, the pseudo-outcome,
is several times noisier than y, so it needs larger leaves); it handles NaN natively.
``linear`` is a standardized ridge regression with ``uplift.linear`` (never pooled: a
linear final model could not let the effect's slopes differ by voucher). Any other
learner is given as ``module:Class`` and built with ``uplift.learner_params``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
from sklearn.base import RegressorMixin, clone
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sparklift.config import UpliftConfig
from sparklift.errors import ConfigError

BUILT_IN = ("t_gbm", "dr_gbm", "t_linear", "dr_linear")


class UpliftLearner(Protocol):
    handles_missing: bool

    def fit(self, X: np.ndarray, y: np.ndarray, arm: np.ndarray) -> UpliftLearner: ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...


def _arms(arm: np.ndarray) -> int:
    """Number of vouchers J in ``arm`` (0..J, each present)."""
    present = np.unique(arm)
    n = int(present.max())
    if present[0] != 0 or len(present) != n + 1:
        raise ValueError(f"arm must hold 0 (control) and every voucher 1..{n}; got {present}")
    return n


class TLearner:
    """One outcome model per arm; the effect of voucher j is mu_j(x) - mu_0(x)."""

    def __init__(self, base: RegressorMixin) -> None:
        self.base = base
        self.handles_missing = _handles_missing(base)

    def fit(self, X: np.ndarray, y: np.ndarray, arm: np.ndarray) -> TLearner:
        self.models_ = [
            clone(self.base).fit(X[arm == k], y[arm == k]) for k in range(_arms(arm) + 1)
        ]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        mu = np.column_stack([m.predict(X) for m in self.models_])
        return mu[:, 1:] - mu[:, [0]]


class DRLearner:
    """Doubly robust learner: cross-fitted outcome models, known randomized propensities,
    one final regression of the pseudo-outcome per voucher."""

    def __init__(
        self,
        outcome: RegressorMixin,
        final: RegressorMixin,
        folds: int = 2,
        seed: int = 0,
        pool: bool = True,
    ) -> None:
        if folds < 2:
            raise ValueError("the DR learner needs folds >= 2 for cross-fitting")
        self.outcome, self.final, self.folds, self.seed = outcome, final, folds, seed
        self.pool = pool
        self.handles_missing = _handles_missing(final) and _handles_missing(outcome)

    def fit(self, X: np.ndarray, y: np.ndarray, arm: np.ndarray) -> DRLearner:
        n_vouchers = _arms(arm)
        share = np.bincount(arm, minlength=n_vouchers + 1) / len(arm)
        fold = np.random.default_rng(self.seed).permutation(len(arm)) % self.folds
        mu = np.empty((len(arm), n_vouchers + 1))
        for f in range(self.folds):
            train, held = fold != f, fold == f
            for k in range(n_vouchers + 1):
                rows = train & (arm == k)
                mu[held, k] = clone(self.outcome).fit(X[rows], y[rows]).predict(X[held])
        resid0 = np.where(arm == 0, (y - mu[:, 0]) / share[0], 0.0)
        phi = [
            mu[:, j] - mu[:, 0] + np.where(arm == j, (y - mu[:, j]) / share[j], 0.0) - resid0
            for j in range(1, n_vouchers + 1)
        ]
        self.n_vouchers_ = n_vouchers
        if self.pool:
            stacked = np.vstack([_with_voucher(X, j) for j in range(1, n_vouchers + 1)])
            self.models_ = [clone(self.final).fit(stacked, np.concatenate(phi))]
            # Per voucher, the mean of phi_j (the DR average effect) less the pooled model's
            # mean: the trees may not split on j where vouchers differ mostly in level.
            self.offsets_ = np.array(
                [
                    phi[j - 1].mean() - self.models_[0].predict(_with_voucher(X, j)).mean()
                    for j in range(1, n_vouchers + 1)
                ]
            )
        else:
            self.models_ = [clone(self.final).fit(X, p) for p in phi]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.pool:
            (m,) = self.models_
            Xj = _with_voucher(X, 0)  # one copy of X; only the voucher column changes
            pred = np.empty((len(X), self.n_vouchers_))
            for j in range(1, self.n_vouchers_ + 1):
                Xj[:, -1] = j
                pred[:, j - 1] = m.predict(Xj)
            return pred + self.offsets_
        return np.column_stack([m.predict(X) for m in self.models_])


def _with_voucher(X: np.ndarray, j: int) -> np.ndarray:
    return np.column_stack([X, np.full(len(X), float(j))])


def _handles_missing(model: Any) -> bool:
    return isinstance(model, HistGradientBoostingRegressor)


def gbm(params: Mapping[str, Any], seed: int) -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(random_state=seed, **params)


def linear(params: Mapping[str, Any]) -> RegressorMixin:
    return make_pipeline(StandardScaler(), Ridge(**params))


def make_learner(
    name: str,
    conf: UpliftConfig,
) -> UpliftLearner:
    """The learner called ``name``: a built-in one configured by ``conf``, or
    ``module:Class`` built with ``conf.learner_params``."""
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
    learner = cls(**conf.learner_params)
    missing = [m for m in ("fit", "predict") if not callable(getattr(learner, m, None))]
    if missing:
        raise ConfigError(f"uplift.learner: {name} has no method(s) {missing}")
    if not hasattr(learner, "handles_missing"):
        learner.handles_missing = False
    return learner
