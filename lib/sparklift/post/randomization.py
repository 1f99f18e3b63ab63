r"""Randomization inference: re-draw the assignment as the design drew it.

The variants are shuffled within each matched group, the fit's effect columns are rebuilt
and refitted with the same covariates (:meth:`TwfeFit.with_effects`), and the
zone-clustered |t| of each variant is compared with the observed one:
p = (1 + #{|t_d| >= |t|}) / (1 + D).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sparklift.geo.experiment import ExperimentConfig
from sparklift.stats.ssc import convention
from sparklift.stats.twfe import TwfeFit


def randomization_p(
    fit: TwfeFit,
    assignment: pd.DataFrame,
    spec: ExperimentConfig,
    draws: int,
    seed: int,
) -> dict[str, float]:
    """Randomization-inference p-value per variant (empty when ``draws`` is 0) of a DiD fit
    whose effect columns are the treatments x post dummies."""
    if draws == 0:
        return {}
    ssc = convention(spec.convention)
    observed = fit.result("zone", ssc)
    t_obs = np.array([abs(observed[v].t) for v in spec.treatments])
    rng = np.random.default_rng(seed)
    cells, zone_ids = fit.cells, assignment["zone_id"].to_numpy()
    cell_zone = pd.Index(zone_ids).get_indexer(cells.zone)  # position of each cell's zone
    post = (pd.to_datetime(pd.Series(cells.day)).dt.date >= spec.start).to_numpy()[:, None]
    groups = [np.flatnonzero(assignment["group_id"].to_numpy() == g) for g in
              sorted(assignment["group_id"].unique())]  # fmt: skip
    variants = assignment["variant"].to_numpy()
    treatments = np.array(spec.treatments)
    exceed = np.zeros(len(spec.treatments))
    for _ in range(draws):
        drawn = variants.copy()
        for members in groups:
            drawn[members] = rng.permutation(variants[members])
        effects = (drawn[cell_zone][:, None] == treatments[None, :]) & post
        res = fit.with_effects(effects.astype(float)).result("zone", ssc)
        exceed += np.array([abs(res[v].t) for v in spec.treatments]) >= t_obs - 1e-12
    p = (1 + exceed) / (1 + draws)
    return dict(zip(spec.treatments, p.tolist(), strict=True))
