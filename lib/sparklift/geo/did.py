"""Difference-in-differences regressors on cells: one treatment x post dummy per variant."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np
import pandas as pd

from sparklift.stats.twfe import CellStats


def effect_columns(
    cells: CellStats,
    variant_of_zone: Mapping[int, str],
    treatments: list[str],
    post_start: dt.date,
) -> tuple[np.ndarray, list[str]]:
    """The cell-constant DiD regressors 1[zone in variant] * 1[day >= post_start], one per
    treatment variant (the control is the omitted group), and their names."""
    variant = pd.Series(cells.zone).map(variant_of_zone).to_numpy()
    post = pd.to_datetime(pd.Series(cells.day)).dt.date.to_numpy() >= post_start
    cols = np.column_stack([(variant == v) & post for v in treatments]).astype(float)
    return cols, list(treatments)
