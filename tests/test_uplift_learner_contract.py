"""The uplift learners keep scikit-learn's estimator contract (issue 16, part 4): clone,
get_params/set_params, no validation in ``__init__``, fitted state ending in ``_``, NaN
support declared as a tag, and scikit-learn's own estimator checks.

Scikit-learn's checks call ``fit(X, y)``; the learners also need the arm. So the checks run
on subclasses that only give ``arm`` a default (control and voucher 1 alternately, by row);
parameters, validation, tags, ``predict`` and pickling are the learners' own. Every check
that scikit-learn yields for a non-classifier, non-regressor estimator runs and must pass
(``expected_failed_checks`` is empty); ``check_array_api_input`` skips itself unless
``SCIPY_ARRAY_API`` is set."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import parametrize_with_checks

from sparklift.config import load_config
from sparklift.errors import ConfigError
from sparklift.uplift.learners import Average, DRLearner, TLearner, allows_nan
from sparklift.uplift.registry import linear, make_learner

GBM = HistGradientBoostingRegressor(max_iter=5)


def alternating_arms(X) -> np.ndarray:
    return np.arange(len(X)) % 2


class CheckedT(TLearner):
    def fit(self, X, y, arm=None):
        return super().fit(X, y, alternating_arms(X) if arm is None else arm)


class CheckedDR(DRLearner):
    def fit(self, X, y, arm=None):
        return super().fit(X, y, alternating_arms(X) if arm is None else arm)


class CheckedAverage(Average):
    def fit(self, X, y, arm=None):
        return super().fit(X, y, alternating_arms(X) if arm is None else arm)


@parametrize_with_checks(
    [
        CheckedT(linear({})),
        CheckedDR(GBM, GBM),
        CheckedDR(linear({}), linear({}), pool=False),
        CheckedAverage([TLearner(linear({})), DRLearner(GBM, GBM)]),
    ],
    expected_failed_checks=lambda est: {},
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_clone_and_params_of_a_dr_learner():
    dr = DRLearner(Ridge(alpha=2.0), Ridge(), folds=3, pool=False)
    copy = clone(dr)
    assert copy is not dr and copy.outcome is not dr.outcome
    assert copy.get_params()["outcome__alpha"] == 2.0 and copy.folds == 3
    copy.set_params(final__alpha=5.0, seed=7)
    assert (copy.final.alpha, copy.seed, dr.final.alpha, dr.seed) == (5.0, 7, 1.0, 0)
    assert repr(dr) == "DRLearner(final=Ridge(), folds=3, outcome=Ridge(alpha=2.0), pool=False)"


def test_parameters_are_validated_in_fit_not_init():
    dr = DRLearner(Ridge(), Ridge(), folds=1)  # constructing never fails
    X, y = np.random.default_rng(0).normal(size=(2, 40, 2))
    with pytest.raises(ValueError, match="folds >= 2"):
        dr.fit(X, y[:, 0], np.arange(40) % 2)
    assert not hasattr(dr, "models_")
    fitted = dr.set_params(folds=2).fit(X, y[:, 0], np.arange(40) % 2)
    assert fitted.n_vouchers_ == 1 and fitted.predict(X).shape == (40, 1)


@pytest.mark.parametrize(
    "name", ["t_gbm", "dr_gbm", "t_linear", "dr_linear", "dr_gbm+t_gbm", "dr_gbm+t_linear"]
)
def test_nan_support_is_the_base_models_tag(name):
    learner = make_learner(name, load_config(None).uplift)
    assert allows_nan(learner) == name.endswith("gbm")  # an average: all of its members
    assert get_tags(learner).input_tags.allow_nan == name.endswith("gbm")
    # One base model without NaN support is enough to refuse NaN.
    assert not allows_nan(DRLearner(GBM, Ridge())) and not allows_nan(TLearner(Ridge()))
    assert allows_nan(DRLearner(GBM, GBM))


def test_nan_features_refused_unless_the_tag_allows_them():
    rng = np.random.default_rng(1)
    X, y, arm = rng.normal(size=(60, 2)), rng.normal(size=60), np.arange(60) % 3
    X[5, 1] = np.nan
    assert TLearner(GBM).fit(X, y, arm).predict(X).shape == (60, 2)
    with pytest.raises(ValueError, match="NaN"):
        TLearner(Ridge()).fit(X, y, arm)


class Constant:
    """Has fit and predict but is no scikit-learn estimator."""

    def fit(self, X, y, arm):
        return self

    def predict(self, X):
        return np.zeros((len(X), 1))


class ConstantEstimator(BaseEstimator, Constant):
    pass


def test_plug_in_learner_must_be_a_scikit_learn_estimator():
    conf = load_config(None).uplift
    with pytest.raises(ConfigError, match=r"not a scikit-learn estimator.*BaseEstimator"):
        make_learner(f"{__name__}:Constant", conf)
    learner = make_learner(f"{__name__}:ConstantEstimator", conf)
    assert isinstance(learner, ConstantEstimator) and not allows_nan(learner)
