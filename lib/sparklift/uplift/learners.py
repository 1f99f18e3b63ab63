"""Multi-arm uplift learners on scikit-learn's estimator contract.

A learner is a scikit-learn estimator (a ``BaseEstimator``: parameters only in
``__init__``, validated in ``fit``, fitted state in attributes ending in ``_``) with

- ``fit(X, y, arm) -> self``: ``X`` (n, p) float features (NaN = missing), ``y`` (n,)
  the response, ``arm`` (n,) integers, 0 = control and 1..J the vouchers;
- ``predict(X) -> (n, J)``: the effect of each voucher on the response against control;

and its tags say whether it accepts NaN features (``input_tags.allow_nan``, read by
:func:`allows_nan`). So ``clone``, ``get_params``/``set_params`` and pickling work as for
any estimator. It is no regressor: ``predict`` gives effects, not the response, so a
regressor's ``score`` (R^2 against ``y``) would mean nothing.

Built in, chosen by name in ``uplift.learner`` (:mod:`.registry`):

- ``t_gbm`` / ``t_linear``: the T-learner, one outcome model per arm, effect = mu_j - mu_0
  (mu_0 per voucher's campaigns, given ``strata`` where campaigns drew different arms);
- ``dr_gbm`` / ``dr_linear``: the doubly robust (DR) learner (Kennedy 2023). Outcome
  models mu_k are cross-fitted over ``folds`` folds (of customers, given ``groups``);
  with the randomized arm shares e_k as propensities, each row gets the pseudo-outcome
  ``phi_j = mu_j - mu_0 + 1[arm=j] (y - mu_j) / e_j - 1[arm=0] (y - mu_0) / e_0``, whose
  conditional mean is tau_j(x) whatever the errors of mu. Given ``strata`` (each row's
  campaign), e_k are the shares of the row's own campaign, and voucher j learns only from
  the rows of campaigns that drew both j and control: a voucher tried in some campaigns
  only is then never compared with other campaigns' customers, whose differences would
  read as its effect (the T-learner weighs its controls instead). With ``pool`` (the
  default) ONE final model regresses the stacked phi_1..phi_J on (x, j) over all rows, so
  the vouchers share what persuades a customer and each learns from every arm's rows (on
  the generator's data this lifts the top-20% value captured from 0.66-0.82 to 0.85-0.87
  for the weakest voucher); trees still split on j where effects differ, and each
  voucher's predictions are shifted so that their mean equals the mean of its phi_j (its
  DR average effect). Without ``pool``, one final model per voucher. The stacked matrix
  holds J copies of the training features.

``gbm`` is scikit-learn's HistGradientBoostingRegressor with ``uplift.gbm`` for outcome
models and ``uplift.gbm_final`` for the DR final stage (its target, the pseudo-outcome,
is several times noisier than y, so it needs larger leaves); it handles NaN natively. A
``min_samples_leaf`` below 1 is a share of the training rows (:func:`sized`).
``linear`` is a standardized ridge regression with ``uplift.linear`` (never pooled: a
linear final model could not let the effect's slopes differ by voucher). Any other
learner is given as ``module:Class``, a ``BaseEstimator`` built with
``uplift.learner_params``. Names joined by ``+`` (``dr_gbm+t_gbm``) give the
:class:`Average` of those learners: learners whose errors differ (the DR learner's shared
final stage, the T-learner's separate outcome models) cancel part of each other's noise,
which on vouchers that appeal to different customers makes the voucher choice steadier
(bench/RESULTS.md "personal voucher choice"), at the cost of predicting with every member.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils import Tags, get_tags
from sklearn.utils.validation import (
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from sparklift.predict.learners import weight_argument
from sparklift.uplift.strata import control_weights, propensities, strata_counts, undrawn


class UpliftLearner(Protocol):
    """``fit(X, y, arm)``; a learner whose ``fit`` also takes ``groups`` gets each row's
    customer there (:func:`fit_grouped`), so that whatever it splits keeps a customer's rows
    together, and one whose ``fit`` takes ``strata`` gets each row's campaign, the unit
    whose arm shares the rows were randomized at."""

    def fit(self, X: np.ndarray, y: np.ndarray, arm: np.ndarray) -> UpliftLearner: ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...


def fit_grouped(
    learner: Any,
    X: np.ndarray,
    y: np.ndarray,
    arm: np.ndarray,
    groups: np.ndarray | None,
    strata: np.ndarray | None = None,
) -> Any:
    """``learner`` fitted on the rows, with their ``groups`` (customers) and ``strata``
    (campaigns) where its ``fit`` takes them (as scikit-learn's splitters take groups);
    plug-ins written for ``fit(X, y, arm)`` keep working."""
    takes = inspect.signature(learner.fit).parameters
    given = {"groups": groups, "strata": strata}
    return learner.fit(
        X, y, arm, **{k: v for k, v in given.items() if v is not None and k in takes}
    )


def allows_nan(estimator: Any) -> bool:
    """Whether the estimator's scikit-learn tags say it accepts NaN features."""
    return bool(get_tags(estimator).input_tags.allow_nan)


class _MultiArm(BaseEstimator):
    """What the built-in learners share: validation of ``X, y, arm`` and of ``X`` at
    predict time, and tags derived from their base models."""

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        bases = [p for p in self.get_params(deep=False).values() if hasattr(p, "fit")]
        tags.input_tags.allow_nan = all(allows_nan(b) for b in bases)
        return tags

    def _finite(self) -> bool | str:
        return "allow-nan" if allows_nan(self) else True

    def _validate_fit(
        self, X: Any, y: Any, arm: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """``X``, ``y`` and ``arm`` as arrays, and the number of vouchers J; sets
        ``n_features_in_``."""
        X, y = validate_data(
            self, X, y, ensure_all_finite=self._finite(), ensure_min_samples=2, y_numeric=True
        )
        arm = column_or_1d(arm)
        check_consistent_length(X, arm)
        if not np.issubdtype(arm.dtype, np.integer):
            raise ValueError(f"arm must hold integers (0 = control), got dtype {arm.dtype}")
        return X, y, arm, _arms(arm)

    def _validate_predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return validate_data(self, X, reset=False, ensure_all_finite=self._finite())


def _arms(arm: np.ndarray) -> int:
    """Number of vouchers J in ``arm`` (0..J, each present, J >= 1)."""
    present = np.unique(arm)
    n = int(present.max())
    if n < 1 or present[0] != 0 or len(present) != n + 1:
        raise ValueError(
            f"arm must hold 0 (control) and every voucher 1..{max(n, 1)}; got {present}"
        )
    return n


class TLearner(_MultiArm):
    """One outcome model per arm; the effect of voucher j is mu_j(x) - mu_0(x).

    Given ``strata`` (each row's campaign) where some campaign lacks an arm of the others,
    voucher j's mu_0 is fitted on the controls of the campaigns that drew j, each row
    weighed by ``(n_j,c / n_j) / (n_0,c / n_0)`` so that their mix of campaigns is j's
    (:func:`.strata.control_weights`): pooled controls would read a difference between the
    campaigns as j's effect. Each voucher then has its own control model, whose errors no
    longer cancel in the choice between vouchers (the DR learner's pooled final stage
    keeps that). When every campaign drew every arm, the controls are pooled, as without
    strata: the per-campaign sample-ratio test holds every campaign to the configured
    shares, so the arms' mixes of campaigns agree by design."""

    def __init__(self, base: RegressorMixin) -> None:
        self.base = base

    def fit(
        self, X: np.ndarray, y: np.ndarray, arm: np.ndarray, strata: np.ndarray | None = None
    ) -> TLearner:
        X, y, arm, n_vouchers = self._validate_fit(X, y, arm)
        counts, stratum = strata_counts(arm, n_vouchers, strata)
        _refuse_undrawn(counts)
        drawn = (counts > 0) & (counts[:, [0]] > 0)  # the strata with the arm and control
        uneven = not drawn.all()

        def fitted(rows: np.ndarray, weight: np.ndarray | None = None) -> RegressorMixin:
            model = clone(sized(self.base, len(X), int(rows.sum())))
            if weight is None:
                return model.fit(X[rows], y[rows])
            key = weight_argument(model)
            if key is None:  # the built-in bases take weights; a base of one's own may not
                raise ValueError(
                    f"{type(model).__name__} takes no sample_weight, which the controls of "
                    "campaigns that drew different vouchers need (to match each voucher's mix)"
                )
            return model.fit(X[rows], y[rows], **{key: weight[rows]})

        # a voucher's rows in a stratum without control measure nothing: left out
        self.models_ = [None if uneven else fitted(arm == 0)] + [
            fitted((arm == j) & drawn[stratum, j]) for j in range(1, n_vouchers + 1)
        ]
        self.controls_ = None  # pooled: models_[0]
        if uneven:  # vouchers whose campaigns' weights are equal share a model
            by_weights: dict[bytes, RegressorMixin] = {}
            self.controls_ = []
            for j in range(1, n_vouchers + 1):
                weights = control_weights(counts, j)
                key = weights.tobytes()
                if key not in by_weights:
                    weight = np.where(arm == 0, weights[stratum], 0.0)
                    by_weights[key] = fitted(weight > 0, weight)
                self.controls_.append(by_weights[key])
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = self._validate_predict(X)
        mu = np.column_stack([m.predict(X) for m in self.models_[1:]])
        controls = getattr(self, "controls_", None)  # absent in models pickled before it
        if controls is None:
            return mu - self.models_[0].predict(X)[:, None]
        mu0 = {id(m): m.predict(X) for m in controls}  # one prediction per model shared
        return mu - np.column_stack([mu0[id(m)] for m in controls])


class DRLearner(_MultiArm):
    """Doubly robust learner: cross-fitted outcome models, known randomized propensities,
    one final regression of the pseudo-outcome per voucher (or, pooled, for all)."""

    def __init__(
        self,
        outcome: RegressorMixin,
        final: RegressorMixin,
        folds: int = 2,
        seed: int = 0,
        pool: bool = True,
    ) -> None:
        self.outcome = outcome
        self.final = final
        self.folds = folds
        self.seed = seed
        self.pool = pool

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        arm: np.ndarray,
        groups: np.ndarray | None = None,
        strata: np.ndarray | None = None,
    ) -> DRLearner:
        """Fitted on the rows; ``groups`` (each row's customer) keeps a customer's rows in
        one fold, so no row's outcome models were fitted on its customer's other rows;
        ``strata`` (each row's campaign) gives each row its campaign's arm shares."""
        if not isinstance(self.folds, numbers.Integral) or self.folds < 2:
            raise ValueError(f"the DR learner needs folds >= 2 for cross-fitting, got {self.folds}")
        X, y, arm, n_vouchers = self._validate_fit(X, y, arm)
        counts, stratum = strata_counts(arm, n_vouchers, strata)
        _refuse_undrawn(counts)
        share = propensities(counts, stratum)
        drawn = [(share[:, j] > 0) & (share[:, 0] > 0) for j in range(1, n_vouchers + 1)]
        rng = np.random.default_rng(self.seed)
        if groups is None:
            fold = rng.permutation(len(arm)) % self.folds
        else:
            names, group = np.unique(column_or_1d(groups), return_inverse=True)
            check_consistent_length(arm, group)
            fold = (rng.permutation(len(names)) % self.folds)[group]
        mu = np.empty((len(arm), n_vouchers + 1))
        final = sized(self.final, len(X))
        for f in range(self.folds):
            train, held = fold != f, fold == f
            for k in range(n_vouchers + 1):
                rows = train & (arm == k)
                outcome = clone(sized(self.outcome, len(X), int(rows.sum())))
                mu[held, k] = outcome.fit(X[rows], y[rows]).predict(X[held])

        def ipw(k: int) -> np.ndarray:  # 1[arm=k] (y - mu_k) / e_k
            resid = np.where(arm == k, y - mu[:, k], 0.0)
            return np.divide(resid, share[:, k], out=np.zeros(len(y)), where=share[:, k] > 0)

        # phi_j on the rows of the strata that drew voucher j and control (all, unstratified)
        phi = [
            (mu[:, j] - mu[:, 0] + ipw(j) - ipw(0))[drawn[j - 1]] for j in range(1, n_vouchers + 1)
        ]
        self.n_vouchers_ = n_vouchers
        if self.pool:
            stacked = np.vstack(
                [_with_voucher(X[drawn[j - 1]], j) for j in range(1, n_vouchers + 1)]
            )
            final = clone(final)
            if final.get_params().get("early_stopping") == "auto":  # its random validation
                final.set_params(early_stopping=False)  # rows: copies of training customers
            self.models_ = [final.fit(stacked, np.concatenate(phi))]
            # Per voucher, the mean of phi_j (the DR average effect) less the pooled model's
            # mean: the trees may not split on j where vouchers differ mostly in level.
            self.offsets_ = np.array(
                [
                    phi[j - 1].mean()
                    - self.models_[0].predict(_with_voucher(X[drawn[j - 1]], j)).mean()
                    for j in range(1, n_vouchers + 1)
                ]
            )
        else:
            self.models_ = [  # each sized on its own rows, as the outcome models are
                clone(sized(self.final, len(X), int(rows.sum()))).fit(X[rows], p)
                for rows, p in zip(drawn, phi, strict=True)
            ]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = self._validate_predict(X)
        if self.pool:
            (m,) = self.models_
            Xj = _with_voucher(X, 0)  # one copy of X; only the voucher column changes
            pred = np.empty((len(X), self.n_vouchers_))
            for j in range(1, self.n_vouchers_ + 1):
                Xj[:, -1] = j
                pred[:, j - 1] = m.predict(Xj)
            return pred + self.offsets_
        return np.column_stack([m.predict(X) for m in self.models_])


class Average(_MultiArm):
    """The mean of several uplift learners' effects, each fitted on the same rows."""

    def __init__(self, learners: Sequence[Any]) -> None:
        self.learners = learners

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = all(allows_nan(m) for m in self.learners)
        return tags

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        arm: np.ndarray,
        groups: np.ndarray | None = None,
        strata: np.ndarray | None = None,
    ) -> Average:
        if len(self.learners) < 2:
            raise ValueError(f"an average needs at least 2 learners, got {len(self.learners)}")
        X, y, arm, n_vouchers = self._validate_fit(X, y, arm)
        self.learners_ = [fit_grouped(clone(m), X, y, arm, groups, strata) for m in self.learners]
        self.n_vouchers_ = n_vouchers
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = self._validate_predict(X)
        return np.mean([m.predict(X) for m in self.learners_], axis=0)


def sized(model: RegressorMixin, n: int, fitted_on: int | None = None) -> RegressorMixin:
    """``model`` with a ``min_samples_leaf`` below 1 taken as a share of the ``n`` training
    rows (at least 1): leaves then hold the same share of a small history as of a large
    one, where a count tuned on a large one would leave a small one's trees few leaves.
    A model fitted on ``fitted_on`` rows only (one arm's) keeps leaves small enough for
    those rows to fill its ``max_leaf_nodes`` leaves: a new voucher's few rows among many
    would otherwise get a tree that never splits, a flat outcome model."""
    leaf = model.get_params().get("min_samples_leaf")
    if not (isinstance(leaf, float) and 0 < leaf < 1):
        return model
    size = round(leaf * n)
    if fitted_on is not None:
        leaves = model.get_params().get("max_leaf_nodes") or DEFAULT_LEAVES
        size = min(size, fitted_on // leaves)
    return clone(model).set_params(min_samples_leaf=max(1, size))


DEFAULT_LEAVES = 31  # assumed for max_leaf_nodes=None (no limit): scikit-learn's default


def _refuse_undrawn(counts: np.ndarray) -> None:
    absent = undrawn(counts)
    if absent:
        raise ValueError(
            f"vouchers {absent} were never drawn in a stratum (campaign) that also has "
            "control rows, so no row can measure their effect"
        )


def _with_voucher(X: np.ndarray, j: int) -> np.ndarray:
    return np.column_stack([X, np.full(len(X), float(j))])
