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
from sparklift.uplift.evaluation import campaign_weights, evaluate
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
    of the campaigns with rows of it and of control there, the controls weighed to the
    treated rows' mix of campaigns (:func:`.evaluation.campaign_weights`), so no other
    campaign's customers pose as its control group."""
    X = feature_matrix(sample, features)
    arm = arm_codes(sample["treatment"], vouchers)
    code = (
        np.zeros(len(arm), dtype=np.int64)
        if campaigns is None
        else pd.factorize(campaigns, use_na_sentinel=False)[0]
    )
    never = [v for j, v in enumerate(vouchers) if not _paired(arm, j + 1, code, ~held).any()]
    if never:
        raise InputError(
            f"vouchers {never} were never drawn in a campaign that has control rows among "
            "the training sample's training rows, so their effect cannot be learned; train "
            "on campaigns (uplift.campaigns) that hold out a control arm"
        )
    short = [a for k, a in enumerate([CONTROL, *vouchers]) if not held[arm == k].any()]
    short += [
        v
        for j, v in enumerate(vouchers)
        if v not in short and not _paired(arm, j + 1, code, held).any()
    ]
    if short:
        raise InputError(
            f"the training sample's hold-out has no rows of arms {short} (a voucher's: in "
            "a campaign with control rows there too); raise uplift.holdout_share or "
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
        strata = None if campaigns is None else code[~held]  # factorized once, above
        fitted[response] = fit_grouped(learner, X[~held], y[~held], arm[~held], groups, strata)
    model = UpliftModel(name, list(features), list(vouchers), fitted)
    check_predicts(model)  # a learner of one's own: its shapes, before they index anything
    keep = held & (~np.isnan(X).any(axis=1) | model.handles_missing)
    pred = model.predict(X[keep])
    metrics: dict[str, Any] = {}
    for j, voucher in enumerate(vouchers):
        rows = _paired(arm, j + 1, code, keep)[keep]
        treated = arm[keep][rows] == j + 1
        weight = campaign_weights(treated, code[keep][rows])
        metrics[voucher] = {
            response: evaluate(
                pred[response][rows, j],
                sample[response].to_numpy(dtype=np.float64)[keep][rows],
                treated,
                fractions,
                weight=weight,
            )
            for response in RESPONSES
        }
    per_arm = {a: int(((arm == k) & ~held).sum()) for k, a in enumerate([CONTROL, *vouchers])}
    rows = {"train": int((~held).sum()), "holdout": int(held.sum()), "train_per_arm": per_arm}
    return model, metrics, rows


def _paired(arm: np.ndarray, j: int, code: np.ndarray, within: np.ndarray) -> np.ndarray:
    """The rows of ``within`` in control or voucher ``j`` whose campaign (``code``) has
    rows of both there."""
    rows = within & np.isin(arm, (0, j))
    k = code.max() + 1
    treated = np.bincount(code[rows & (arm == j)], minlength=k) > 0
    control = np.bincount(code[rows & (arm == 0)], minlength=k) > 0
    return rows & (treated & control)[code]
