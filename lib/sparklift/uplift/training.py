"""Fit an uplift model on a driver-side sample and evaluate it on a held-out split.

The sample comes split by customer: the job holds each customer out with probability
``uplift.holdout_share`` (a seeded hash of its id), with all its rows, so a customer of
several campaigns is never on both sides. One learner per response is fitted on the rest,
and every voucher x response is evaluated on the held-out rows of that voucher's arm and
control (see :mod:`sparklift.uplift.evaluation`).
The model kept is the one the metrics describe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from sparklift.errors import InputError
from sparklift.uplift.arms import CONTROL
from sparklift.uplift.evaluation import evaluate
from sparklift.uplift.learners import UpliftLearner, allows_nan, fit_grouped
from sparklift.uplift.model import RESPONSES, UpliftModel, check_predicts

log = logging.getLogger("sparklift")


def arm_codes(treatment: pd.Series, vouchers: Sequence[str]) -> np.ndarray:
    """0 for control, 1 + the voucher's index otherwise."""
    codes = {CONTROL: 0, **{v: j + 1 for j, v in enumerate(vouchers)}}
    return treatment.map(codes).to_numpy(dtype=np.int64)


def feature_matrix(df: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    return df[list(features)].to_numpy(dtype=np.float64, na_value=np.nan)


def train(
    sample: pd.DataFrame,
    features: Sequence[str],
    vouchers: Sequence[str],
    make: Callable[[], UpliftLearner],
    name: str,
    held: np.ndarray,
    fractions: Sequence[float],
    customers: np.ndarray | None = None,
    campaigns: np.ndarray | None = None,
) -> tuple[UpliftModel, dict[str, Any], dict[str, Any]]:
    """The fitted model, per voucher and response its held-out metrics, and the number of
    training and held-out rows (and of training rows per arm). ``held`` marks the held-out
    rows of ``sample``; ``customers``, each row's customer, goes to a learner whose fit
    takes ``groups``, and ``campaigns``, each row's campaign, to one whose fit takes
    ``strata`` (:func:`.learners.fit_grouped`). A voucher is evaluated on the held-out rows
    of the campaigns that drew it and control, so no other campaign's customers pose as its
    control group."""
    X = feature_matrix(sample, features)
    arm = arm_codes(sample["treatment"], vouchers)
    drew = _drawn_with_control(arm, len(vouchers), campaigns)
    never = [v for j, v in enumerate(vouchers) if not drew[j].any()]
    if never:
        raise InputError(
            f"vouchers {never} were never drawn in a campaign that has control rows in the "
            "training sample, so their effect cannot be measured; train on campaigns "
            "(uplift.campaigns) that hold out a control arm"
        )
    short = [a for k, a in enumerate([CONTROL, *vouchers]) if not held[arm == k].any()]
    short += [
        v
        for j, v in enumerate(vouchers)
        if v not in short and not all((held & drew[j] & (arm == k)).any() for k in (0, j + 1))
    ]
    if short:
        raise InputError(
            f"the training sample's hold-out has no rows of arms {short} (a voucher's: in "
            "the campaigns that drew it and control); raise uplift.holdout_share or "
            "uplift.min_arm_rows"
        )
    fitted = {}
    for response in RESPONSES:
        y = sample[response].to_numpy(dtype=np.float64)
        learner = make()
        if not allows_nan(learner) and np.isnan(X[~held]).any():
            raise InputError(
                f"learner {name} cannot handle missing feature values, and "
                f"{int(np.isnan(X[~held]).any(axis=1).sum())} rows of the training sample "
                "have some (use a gbm learner, or fill them upstream)"
            )
        log.info("fitting %s for %s on %d rows", name, response, int((~held).sum()))
        groups = None if customers is None else customers[~held]
        strata = None if campaigns is None else campaigns[~held]
        fitted[response] = fit_grouped(learner, X[~held], y[~held], arm[~held], groups, strata)
    model = UpliftModel(name, list(features), list(vouchers), fitted)
    check_predicts(model)  # a learner of one's own: its shapes, before they index anything
    keep = held & (~np.isnan(X).any(axis=1) | model.handles_missing)
    pred = model.predict(X[keep])
    metrics: dict[str, Any] = {}
    for j, voucher in enumerate(vouchers):
        rows = np.isin(arm[keep], (0, j + 1)) & drew[j][keep]
        treated = arm[keep][rows] == j + 1
        metrics[voucher] = {
            response: evaluate(
                pred[response][rows, j],
                sample[response].to_numpy(dtype=np.float64)[keep][rows],
                treated,
                fractions,
            )
            for response in RESPONSES
        }
    per_arm = {a: int(((arm == k) & ~held).sum()) for k, a in enumerate([CONTROL, *vouchers])}
    rows = {"train": int((~held).sum()), "holdout": int(held.sum()), "train_per_arm": per_arm}
    return model, metrics, rows


def _drawn_with_control(
    arm: np.ndarray, n_vouchers: int, campaigns: np.ndarray | None
) -> list[np.ndarray]:
    """Per voucher, the rows of the campaigns that have rows of it and of control (every
    row, without campaigns)."""
    if campaigns is None:
        return [np.ones(len(arm), dtype=bool)] * n_vouchers
    code = pd.factorize(campaigns, use_na_sentinel=False)[0]

    def has(k: int) -> np.ndarray:  # the rows of the campaigns with rows of arm k
        return np.bincount(code[arm == k], minlength=code.max() + 1)[code] > 0

    control = has(0)
    return [control & has(j + 1) for j in range(n_vouchers)]
