r"""Event study with a joint pre-trend test.

One regressor per treatment variant and week relative to the start
(floor((day - start) / 7)), week -1 the reference, fitted like the DiD; the pre-trend test
of a variant is the Wald F test that every pre-period week (< -1) is zero,
F = b' V^{-1} b / q against F(q, df) with df the covariance's t degrees of freedom.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from sparklift.geo.experiment import ExperimentConfig
from sparklift.stats.inference import Estimate
from sparklift.stats.ssc import convention
from sparklift.stats.twfe import CellStats, TwfeFit, TwfeResult


@dataclass(frozen=True)
class EventStudy:
    weeks: list[tuple[str, int, Estimate]]  # (variant, event week, its effect)
    pretrend_p: dict[str, float]  # per variant with pre-period weeks before week -1
    result: TwfeResult


def event_study(
    cells: CellStats,
    variant_of_zone: Mapping,
    spec: ExperimentConfig,
    metric: str,
    cov: str,
    covariates: tuple[str, ...] = (),
) -> EventStudy | None:
    """The weekly effects of every treatment variant and their pre-trend tests, with the
    covariance labelled ``cov`` and the row ``covariates`` (None when there is no week to
    estimate)."""
    days = pd.to_datetime(pd.Series(cells.day)).dt.date.to_numpy()
    week = np.array([(d - spec.start).days // 7 for d in days])
    variant = pd.Series(cells.zone).map(variant_of_zone).to_numpy()
    weeks = [w for w in sorted(set(week)) if w != -1]
    cols, names, keys = [], [], []
    for v in spec.treatments:
        for w in weeks:
            cols.append((variant == v) & (week == w))
            names.append(f"{v}@{w}")
            keys.append((v, int(w)))
    if not cols:
        return None
    fit = TwfeFit(cells, np.column_stack(cols).astype(float), names, metric, covariates)
    res = fit.result(cov, convention(spec.convention), spec.alpha)
    pretrend = {}
    for v in spec.treatments:
        pre = [i for i, (vv, w) in enumerate(keys) if vv == v and w < -1]
        if pre:
            b = res.params[pre]
            f = float(b @ np.linalg.solve(res.cov[np.ix_(pre, pre)], b)) / len(pre)
            pretrend[v] = float(stats.f.sf(f, len(pre), res.df))
    rows = [(v, w, res[name]) for name, (v, w) in zip(names, keys, strict=True)]
    return EventStudy(rows, pretrend, res)
