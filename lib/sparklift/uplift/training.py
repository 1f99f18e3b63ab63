"""Fit an uplift model on a driver-side sample and evaluate it on a held-out split.

The sample is split per arm (``holdout_share`` of each arm held out, seeded), one learner
per response is fitted on the rest, and every voucher x response is evaluated on the
held-out rows of that voucher's arm and control (see :mod:`sparklift.uplift.evaluation`).
The model kept is the one the metrics describe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from sparklift.errors import InputError
from sparklift.uplift.checks import CONTROL
from sparklift.uplift.evaluation import evaluate
from sparklift.uplift.learners import UpliftLearner, allows_nan
from sparklift.uplift.model import RESPONSES, UpliftModel, check_predicts

log = logging.getLogger("sparklift")


def arm_codes(treatment: pd.Series, vouchers: Sequence[str]) -> np.ndarray:
    """0 for control, 1 + the voucher's index otherwise."""
    codes = {CONTROL: 0, **{v: j + 1 for j, v in enumerate(vouchers)}}
    return treatment.map(codes).to_numpy(dtype=np.int64)


def holdout_mask(arm: np.ndarray, share: float, seed: int) -> np.ndarray:
    """True for the held-out rows: ``share`` of every arm, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(arm), dtype=bool)
    for k in np.unique(arm):
        rows = np.flatnonzero(arm == k)
        held[rng.choice(rows, round(share * len(rows)), replace=False)] = True
    return held


def feature_matrix(df: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    return df[list(features)].to_numpy(dtype=np.float64, na_value=np.nan)


def train(
    sample: pd.DataFrame,
    features: Sequence[str],
    vouchers: Sequence[str],
    make: Callable[[], UpliftLearner],
    name: str,
    holdout_share: float,
    seed: int,
    fractions: Sequence[float],
) -> tuple[UpliftModel, dict[str, Any], dict[str, Any]]:
    """The fitted model, per voucher and response its held-out metrics, and the number of
    training and held-out rows (and of training rows per arm)."""
    X = feature_matrix(sample, features)
    arm = arm_codes(sample["treatment"], vouchers)
    held = holdout_mask(arm, holdout_share, seed)
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
        fitted[response] = learner.fit(X[~held], y[~held], arm[~held])
    model = UpliftModel(name, list(features), list(vouchers), fitted)
    check_predicts(model)  # a learner of one's own: its shapes, before they index anything
    keep = held & (~np.isnan(X).any(axis=1) | model.handles_missing)
    pred = model.predict(X[keep])
    metrics: dict[str, Any] = {}
    for j, voucher in enumerate(vouchers):
        rows = np.isin(arm[keep], (0, j + 1))
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
