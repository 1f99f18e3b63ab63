"""Revenue forecasts of concluded experiments, with two honest corrections of the lift.

Groupon's formula: forecast = lift x platform_factor x success_probability x
platform_revenue, less a configured haircut (``forecast``). It is computed three times per
experiment, metric and variant, from:

- the raw lift, the experiment's final relative lift as analysed;
- the lift shrunk towards the distribution of the *other* concluded experiments' lifts of
  the metric (empirical Bayes, :func:`sparklift.stats.shrinkage.shrink`; every variant's
  row with a finite lift and a positive SE; left as it is, with a null prior, while fewer
  than ``min_experiments`` other experiments have one);
- the lift less its winner's-curse bias when it was significant, p below the alpha per test
  its decisions were taken at (Lee and Shen,
  :func:`sparklift.stats.shrinkage.winners_curse`). The selection is the p-value's: the
  bias is computed on its normal scale, with the SE |lift| / z_{p/2} that gives the lift
  that p under a normal reference (the analysis' p comes from a t reference with few
  zones' degrees of freedom), so that a result is corrected exactly when it is reported
  as significant.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from sparklift.config import ForecastConfig
from sparklift.stats.shrinkage import prior, shrink, winners_curse

INPUT = (
    "experiment_id",
    "metric",
    "variant",
    "concluded_on",
    "cov_type",
    "lift",
    "lift_se",
    "p_value",
)


def revenue(lift: float | None, metric: str, conf: ForecastConfig) -> float | None:
    """Groupon's forecast of a lift in ``metric`` (None without the metric's revenue)."""
    base = conf.platform_revenue.get(metric)
    if base is None or lift is None:
        return None
    return lift * conf.platform_factor * conf.success_probability * base * (1 - conf.haircut)


def forecasts(
    lifts: pd.DataFrame, conf: ForecastConfig, alphas: Mapping[str, float]
) -> pd.DataFrame:
    """One row per row of ``lifts`` (columns ``INPUT``; ``alphas``: each experiment's
    alpha): the corrected lifts and the three forecasts (the ``forecasts`` table's rows)."""
    usable = lifts[np.isfinite(lifts["lift"].astype(float)) & (lifts["lift_se"].astype(float) > 0)]
    rows = []
    for r in lifts.to_dict("records"):
        others = usable[
            (usable["metric"] == r["metric"]) & (usable["experiment_id"] != r["experiment_id"])
        ]
        alpha = alphas[r["experiment_id"]]
        significant = bool(r["p_value"] < alpha)
        n = int(others["experiment_id"].nunique())
        out = dict(
            r,
            significant=significant,
            prior_experiments=n,
            prior_mean=None,
            prior_sd=None,
            shrinkage_weight=1.0,
            lift_shrunk=r["lift"],
        )
        if n >= conf.min_experiments and r["lift_se"] > 0:
            p = prior(others["lift"].to_numpy(float), others["lift_se"].to_numpy(float))
            shrunk, weight = shrink(r["lift"], r["lift_se"], p)
            out |= {
                "prior_mean": p.mean,
                "prior_sd": p.sd,
                "shrinkage_weight": weight,
                "lift_shrunk": shrunk,
            }
        corrected, bias = r["lift"], 0.0
        if significant and r["p_value"] > 0:  # selected: on the normal scale of its p-value
            se_normal = abs(r["lift"]) / stats.norm.isf(r["p_value"] / 2)
            corrected, bias = winners_curse(r["lift"], se_normal, alpha)
        out |= {"winners_curse_bias": bias, "lift_winners_curse": corrected}
        base = conf.platform_revenue.get(r["metric"])
        out |= {
            "platform_revenue": base,
            "platform_factor": conf.platform_factor,
            "success_probability": conf.success_probability,
            "haircut": conf.haircut,
            "forecast_raw": revenue(r["lift"], r["metric"], conf),
            "forecast_shrunk": revenue(out["lift_shrunk"], r["metric"], conf),
            "forecast_winners_curse": revenue(corrected, r["metric"], conf),
        }
        rows.append(out)
    return pd.DataFrame(rows)
