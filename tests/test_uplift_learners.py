"""Learners recover planted effects; plug-ins load by name; bad learners fail clearly."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import Ridge

from sparklift.config import load_config
from sparklift.errors import ConfigError, InputError
from sparklift.uplift.learners import DRLearner, allows_nan
from sparklift.uplift.registry import BUILT_IN, make_learner
from sparklift.uplift.training import train

GBM = {"max_iter": 60, "max_leaf_nodes": 7, "min_samples_leaf": 200}
CONF = load_config(None).uplift.model_copy(update={"gbm": GBM, "gbm_final": GBM})


def world(n: int = 30_000, seed: int = 1):
    """Two vouchers, effects tau_1 = 0.5 x0, tau_2 = -0.3 + 0.4 x1; unequal arm shares."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    arm = rng.choice(3, n, p=[0.5, 0.3, 0.2])
    tau = np.column_stack([0.5 * X[:, 0], -0.3 + 0.4 * X[:, 1]])
    y = X[:, 2] + 0.5 * X[:, 3] ** 2 + rng.normal(0, 0.5, n)
    y += np.where(arm == 1, tau[:, 0], 0) + np.where(arm == 2, tau[:, 1], 0)
    return X, y, arm, tau


@pytest.mark.parametrize(
    "name, pool", [(n, True) for n in BUILT_IN] + [("dr_gbm", False), ("dr_gbm+t_gbm", True)]
)
def test_learner_recovers_planted_effects(name, pool):
    X, y, arm, _ = world()
    conf = CONF.model_copy(update={"pool_vouchers": pool})
    learner = make_learner(name, conf).fit(X, y, arm)
    Xt, _, _, tt = world(5000, seed=2)
    pred = learner.predict(Xt)
    assert pred.shape == (5000, 2)
    for j in range(2):
        assert np.corrcoef(pred[:, j], tt[:, j])[0, 1] > 0.8, (name, j)
        assert abs(pred[:, j].mean() - tt[:, j].mean()) < 0.05, (name, j)
    assert allows_nan(learner) == name.endswith("gbm")


@pytest.mark.parametrize("name", ["t_gbm", "dr_gbm"])
def test_a_leaf_size_below_one_is_a_share_of_the_training_rows(name):
    """The defaults' leaves: 0.5% of the rows for the outcome models, 1% for the DR final
    stage, so a small history's trees get as many leaves as a large one's; a count stays a
    count."""
    X, y, arm, _ = world(12_000)
    conf = CONF.model_copy(
        update={
            "gbm": {**GBM, "min_samples_leaf": 0.005},
            "gbm_final": {**GBM, "min_samples_leaf": 0.01},
        }
    )
    fitted = make_learner(name, conf).fit(X, y, arm)
    assert [m.min_samples_leaf for m in fitted.models_] == ([60] * 3 if name == "t_gbm" else [120])
    assert conf.gbm["min_samples_leaf"] == 0.005  # the configuration is left as it was
    counted = make_learner(name, CONF).fit(X, y, arm)
    assert {m.min_samples_leaf for m in counted.models_} == {200}
    defaults = load_config(None).uplift
    assert defaults.gbm["min_samples_leaf"] * 200_000 == 1000  # as counted before, at 200k
    assert defaults.gbm_final["min_samples_leaf"] * 200_000 == 2000


def test_a_voucher_with_few_rows_still_gets_an_outcome_model_that_splits():
    """A new voucher's 200 rows among 20,200: a leaf of 0.5% of all rows (101) is more
    than half its rows, so its tree could not split and its effect would be a constant
    less mu_0(x); a share-sized leaf is capped so that its rows fill the tree's 7 leaves."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(20_200, 4))
    arm = np.repeat([0, 1, 2], [12_000, 8_000, 200])
    tau = np.column_stack([0.5 * X[:, 0], 2.0 * (X[:, 0] > 0)])
    y = X[:, 2] + rng.normal(0, 0.5, len(X)) + np.where(arm > 0, tau[np.arange(len(X)), arm - 1], 0)
    conf = CONF.model_copy(update={"gbm": {**GBM, "min_samples_leaf": 0.005}})
    fitted = make_learner("t_gbm", conf).fit(X, y, arm)
    assert [m.min_samples_leaf for m in fitted.models_] == [101, 101, 200 // 7]
    Xt = rng.normal(size=(5000, 4))
    new_voucher = fitted.predict(Xt)[:, 1]
    assert np.corrcoef(new_voucher, 2.0 * (Xt[:, 0] > 0))[0, 1] > 0.8


class MeanDifference(BaseEstimator):
    """A plug-in learner: the constant difference in means, per voucher; NaN features
    do not matter to it, and its tags say so."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def __init__(self, shrink: float = 1.0) -> None:
        self.shrink = shrink

    def fit(self, X, y, arm):
        self.effect_ = [self.shrink * (y[arm == j].mean() - y[arm == 0].mean()) for j in (1, 2)]
        return self

    def predict(self, X):
        return np.tile(self.effect_, (len(X), 1))


def test_plug_in_learner_by_module_and_class():
    X, y, arm, tau = world()
    learner = make_learner(
        f"{__name__}:MeanDifference", CONF.model_copy(update={"learner_params": {"shrink": 0.5}})
    )
    pred = learner.fit(X, y, arm).predict(X[:3])
    assert pred[0] == pytest.approx(0.5 * tau.mean(axis=0), abs=0.03)
    assert allows_nan(learner) and learner.get_params() == {"shrink": 0.5}


class OneColumn(MeanDifference):
    """A plug-in learner that predicts one column, whatever the vouchers."""

    def predict(self, X):
        return np.full(len(X), self.effect_[0])


def test_a_plug_in_learner_s_bad_params_and_shapes_are_refused_by_name():
    with pytest.raises(ConfigError, match=r"uplift.learner_params \{'shrnk': 0.5\} do not fit"):
        make_learner(
            f"{__name__}:MeanDifference", CONF.model_copy(update={"learner_params": {"shrnk": 0.5}})
        )
    X, y, arm, _ = world(2000)
    sample = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    sample = sample.assign(treatment=np.array(["control", "V1", "V2"])[arm], objective=y, cost=y)
    with pytest.raises(InputError, match=r"the .*OneColumn model fitted predicts shapes"):
        train(sample, list(sample.columns[: X.shape[1]]), ["V1", "V2"],
              lambda: make_learner(f"{__name__}:OneColumn", CONF), f"{__name__}:OneColumn",
              np.arange(len(X)) % 3 == 0, [0.1, 0.5])  # fmt: skip


def test_an_average_is_the_mean_of_its_members_fitted_alone():
    X, y, arm, _ = world(4000)
    Xt = world(500, seed=2)[0]
    members = [make_learner(n, CONF).fit(X, y, arm).predict(Xt) for n in ("dr_gbm", "t_linear")]
    average = make_learner("dr_gbm+t_linear", CONF).fit(X, y, arm).predict(Xt)
    np.testing.assert_allclose(average, (members[0] + members[1]) / 2, rtol=0, atol=1e-12)
    assert np.abs(members[0] - members[1]).max() > 0.05  # the members differ: a real mean


@pytest.mark.parametrize(
    "name, message",
    [
        ("x_gbm", "unknown learner"),
        ("dr_gbm+x_gbm", "unknown learner 'x_gbm'"),
        ("dr_gbm+", "a name is empty or repeated"),
        ("dr_gbm+t_gbm+dr_gbm", "a name is empty or repeated"),
        ("no.such.module:X", "cannot import"),
        (f"{__name__}:world", "no method"),
    ],
)
def test_bad_learner_names(name, message):
    with pytest.raises(ConfigError, match=message):
        make_learner(name, CONF)


def test_arms_must_be_complete():
    X, y, arm, _ = world(2000)
    arm[arm == 1] = 2  # voucher 1 has no rows
    with pytest.raises(ValueError, match="every voucher"):
        make_learner("t_linear", CONF).fit(X, y, arm)


def test_bad_hyper_parameters_name_the_section():
    conf = CONF.model_copy(update={"gbm": {"max_iters": 10}})
    with pytest.raises(ConfigError, match=r"uplift\.gbm / uplift\.gbm_final.*max_iters"):
        make_learner("dr_gbm", conf)


def test_an_arm_without_held_out_rows_is_named():
    X, y, arm, _ = world(2000)
    sample = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    held = np.random.default_rng(3).random(len(X)) < 0.3
    arm[np.flatnonzero(~held)[:3]] = 3  # a voucher of three customers, none held out
    sample = sample.assign(treatment=np.array(["control", "V1", "V2", "V3"])[arm], objective=y,
                           cost=y)  # fmt: skip
    with pytest.raises(InputError, match=r"hold-out has no rows of arms \['V3'\]"):
        train(sample, list(sample.columns[: X.shape[1]]), ["V1", "V2", "V3"],
              lambda: make_learner("t_linear", CONF), "t_linear", held, [0.1, 0.5])  # fmt: skip


class Recorder(BaseEstimator, RegressorMixin):
    """An outcome model that records the customers (feature 0) it is fitted on and those it
    then predicts for; it predicts 0."""

    calls: ClassVar[list[tuple[np.ndarray, np.ndarray]]] = []

    def fit(self, X, y):
        self.fitted_ = X[:, 0].copy()
        return self

    def predict(self, X):
        Recorder.calls.append((self.fitted_, X[:, 0].copy()))
        return np.zeros(len(X))


def test_the_dr_learner_cross_fits_by_customer():
    """Customers with three rows each (several campaigns): the outcome models that give a
    row its pseudo-outcome never saw that customer's other rows. train() passes each row's
    customer to a learner whose fit takes ``groups``. Folds split by row (before) put 3 in 4
    of the customers on both sides of a 2-fold split (1 - 2 x (1/2)^3), so the model of an
    arm of share p was fitted on the customer of a share 1 - (1 - p/2)^2 of the rows it
    predicts for: 0.19-0.44 here."""
    X, y, arm, _ = world(3000)
    customer = np.arange(3000) // 3
    X[:, 0] = customer
    sample = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    sample = sample.assign(treatment=np.array(["control", "V1", "V2"])[arm], objective=y, cost=y)
    held = np.isin(customer, np.arange(0, 1000, 5))  # a fifth of the customers
    Recorder.calls = []
    make = lambda: DRLearner(Recorder(), Ridge(), folds=2, pool=False)  # noqa: E731
    train(sample, list(sample.columns[:4]), ["V1", "V2"], make, "dr", held, [0.5],
          customers=customer)  # fmt: skip
    assert len(Recorder.calls) == 2 * 2 * 3  # responses x folds x arms
    for fitted, predicted in Recorder.calls:
        assert len(predicted) > 1000 and not np.isin(predicted, fitted).any()
        assert not np.isin(predicted, customer[held]).any()  # the hold-out stays out
    Recorder.calls = []
    DRLearner(Recorder(), Ridge(), folds=2, pool=False).fit(X, y, arm)  # no groups: by row
    shared = [np.isin(p, f).mean() for f, p in Recorder.calls]
    assert min(shared) > 0.1  # the defect the groups avoid


def campaigns_world(n: int = 20_000, seed: int = 5):
    """Campaign A drew control and V1 (25/75), campaign B, a season later, control, V1 and
    V2 (25/37.5/37.5), and B's customers buy 1.0 more whatever they get, which no feature
    shows: V2's rows are all B's while half the controls are A's."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    campaign = np.where(np.arange(n) < n // 2, "A", "B")
    arm = np.where(
        campaign == "A",
        rng.choice(3, n, p=[0.25, 0.75, 0.0]),
        rng.choice(3, n, p=[0.25, 0.375, 0.375]),
    )
    tau = np.column_stack([0.5 * X[:, 0], -0.3 + 0.4 * X[:, 1]])
    y = X[:, 2] + 1.0 * (campaign == "B") + rng.normal(0, 0.5, n)
    y += np.where(arm > 0, tau[np.arange(n), np.maximum(arm, 1) - 1], 0)
    return X, y, arm, tau, campaign


@pytest.mark.parametrize("name", ["dr_gbm", "dr_linear", "t_gbm", "t_linear"])
def test_a_learner_measures_a_voucher_within_the_campaigns_that_drew_it(name):
    """With each row's campaign the DR learner (its arm shares), pooled (gbm) or per
    voucher (linear), and the T-learner (V2 against B's controls, V1 against controls
    weighed to V1's 2/3 of A's rows; unweighed, -0.17) recover the planted effects; with
    one share per arm for every row, or every control pooled, B's higher base reads as
    V2's effect (about +0.5) and A's lower one lowers V1's."""
    X, y, arm, _, campaign = campaigns_world()
    stratified = make_learner(name, CONF).fit(X, y, arm, strata=campaign)
    pooled = make_learner(name, CONF).fit(X, y, arm)
    Xt, _, _, tt, _ = campaigns_world(5000, seed=6)
    good, bad = stratified.predict(Xt), pooled.predict(Xt)
    for j in range(2):
        assert abs(good[:, j].mean() - tt[:, j].mean()) < 0.05, (name, j)
        assert np.corrcoef(good[:, j], tt[:, j])[0, 1] > 0.8, (name, j)
    assert bad[:, 1].mean() - tt[:, 1].mean() > 0.3  # the defect the strata avoid


def shares_world(n: int = 30_000, seed: int = 3, even: bool = False):
    """Campaigns A and B draw control, V1 and V2 at 50/40/10 and 50/10/40 (so V1's rows are
    4/5 A's, V2's 4/5 B's), C draws control and V3; B's customers buy 1.0 more, which no
    feature shows. ``even``: A and B alike (50/25/25), C too (50/16.7/16.7/16.7)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    campaign = rng.choice(np.array(["A", "B", "C"]), n)
    shares = {"A": [0.5, 0.4, 0.1, 0.0], "B": [0.5, 0.1, 0.4, 0.0], "C": [0.5, 0.0, 0.0, 0.5]}
    p = np.array([[0.5, 1 / 6, 1 / 6, 1 / 6] if even else shares[c] for c in campaign])
    arm = (rng.random((n, 1)) > p.cumsum(axis=1)).sum(axis=1)
    tau = np.column_stack([0.4 * X[:, 0], np.full(n, -0.2), 0.3 + 0.2 * X[:, 1]])
    y = X[:, 2] + 1.0 * (campaign == "B") + rng.normal(0, 0.5, n)
    y += np.where(arm > 0, tau[np.arange(n), np.maximum(arm, 1) - 1], 0)
    return X, y, arm, tau, campaign


@pytest.mark.parametrize("name", ["t_gbm", "t_linear"])
def test_the_t_learner_weighs_each_voucher_s_controls_to_its_own_mix(name):
    """V1 and V2 are drawn in the same campaigns at different shares: controls weighed to
    their combined mix (or pooled) read B's +1.0 as about -0.3 on V1 and +0.3 on V2; each
    voucher's own weights recover the planted effects."""
    X, y, arm, _, campaign = shares_world()
    Xt, _, _, tt, _ = shares_world(5000, seed=4)
    pred = make_learner(name, CONF).fit(X, y, arm, strata=campaign).predict(Xt)
    for j in range(3):
        assert abs(pred[:, j].mean() - tt[:, j].mean()) < 0.05, (name, j)


def test_the_t_learner_pools_controls_where_every_campaign_drew_every_arm():
    """Bit for bit the model without strata (its controls pooled), and a model pickled
    before per-campaign controls (no ``controls_``) predicts as before."""
    X, y, arm, _, campaign = shares_world(6000, even=True)
    with_strata = make_learner("t_linear", CONF).fit(X, y, arm, strata=campaign)
    without = make_learner("t_linear", CONF).fit(X, y, arm)
    assert with_strata.controls_ is None
    assert np.array_equal(with_strata.predict(X), without.predict(X))
    del without.controls_
    assert np.array_equal(with_strata.predict(X), without.predict(X))


def test_train_evaluates_a_voucher_against_the_controls_of_its_campaigns():
    """train() passes each row's campaign to the learner and evaluates V2 on the held-out
    rows of campaign B only: its held-out average effect is B's difference in means (the
    planted -0.3), not one against A's controls too (-0.3 + 0.5)."""
    X, y, arm, tau, campaign = campaigns_world()
    sample = pd.DataFrame(X, columns=[f"x{i}" for i in range(4)])
    sample = sample.assign(treatment=np.array(["control", "V1", "V2"])[arm], objective=y, cost=y)
    held = np.arange(len(y)) % 5 == 0
    make = lambda: make_learner("dr_linear", CONF)  # noqa: E731
    model, metrics, _ = train(sample, list(sample.columns[:4]), ["V1", "V2"], make, "dr",
                              held, [0.5], campaigns=campaign)  # fmt: skip
    v2 = metrics["V2"]["objective"]
    assert v2["n_control"] == int((held & (arm == 0) & (campaign == "B")).sum())
    assert v2["n_treated"] == int((held & (arm == 2)).sum())
    assert abs(v2["average_effect"] - tau[held & (campaign == "B"), 1].mean()) < 0.2
    v1 = metrics["V1"]["objective"]
    assert v1["n_control"] == int((held & (arm == 0)).sum())  # A and B both drew V1
    # V1's treated are 2/3 A's, its controls 1/2: weighed to the treated rows' mix, the
    # held-out effect is the planted 0.5 x0 (unweighed, B's +1.0 would pull it down)
    assert abs(v1["average_effect"] - tau[held & (arm == 1), 0].mean()) < 0.1
    assert abs(model.predict(X[:2000])["objective"][:, 1].mean() + 0.3) < 0.05
    lone = sample.copy()
    lone.loc[(campaign == "B") & (arm == 0), "treatment"] = "V1"  # B: no control left
    integer = make_learner("dr_linear", CONF).fit(X, np.round(y).astype(int), arm, strata=campaign)
    assert integer.predict(X[:5]).shape == (5, 2)  # an integer response is a response too
    with pytest.raises(InputError, match=r"vouchers \['V2'\] were never drawn in a campaign"):
        train(lone, list(sample.columns[:4]), ["V1", "V2"], make, "dr", held, [0.5],
              campaigns=campaign)  # fmt: skip
