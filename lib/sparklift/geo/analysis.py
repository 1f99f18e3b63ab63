"""A geo experiment's analysis from cell statistics: DiD per metric and variant with the
configured covariances, relative lift, wild cluster bootstrap, randomization inference and
an event study with a joint pre-trend test.

Relative lift: L = b / m with m the mean of the metric over control-zone post-period rows.
Both are M-estimators, so their joint covariance is clustered like b's: the per-cell scores
are [B_j' u_c, (S_c - m n_c) / N_cp] (the second only in control post cells), and by the
delta method Var(L) = g' V g with g = [1/m, -b/m^2]. The CI is L +- t se(L).

Randomization inference re-draws the assignment as the design drew it (the variants
shuffled within each matched group), refits with the same covariates and compares the
zone-clustered |t| of each variant with the observed one: p = (1 + #{|t_d| >= |t|}) / (1 + D).

Event study: one regressor per treatment variant and week relative to the start
(floor((day - start) / 7)), week -1 the reference, fitted with the first configured
covariance; the pre-trend test is the Wald F test that every pre-period week (< -1) of a
variant is zero, F = b' V^{-1} b / q against F(q, df).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from scipy import stats

from sparklift.config import AnalysisConfig
from sparklift.geo.did import effect_columns
from sparklift.geo.experiment import ExperimentConfig
from sparklift.stats.twfe import CellStats, TwfeFit, TwfeResult
from sparklift.stats.wild_bootstrap import wild_cluster_bootstrap

COVARIANCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "zone": ("clustered", ("zone",)),
    "zone+day": ("clustered", ("zone", "day")),
    "robust": ("robust", ()),
    "unadjusted": ("unadjusted", ()),
}


def analyze(
    cells: CellStats,
    assignment: pd.DataFrame,
    spec: ExperimentConfig,
    settings: AnalysisConfig,
    metric: str,
) -> list[dict]:
    """Result rows (term att, lift and week) of one metric for every treatment variant."""
    variant_of_zone = dict(zip(assignment["zone_id"], assignment["variant"], strict=True))
    effects, names = effect_columns(cells, variant_of_zone, spec.treatments, spec.start)
    fit = TwfeFit(cells, effects, names, metric, tuple(spec.covariates))
    days = pd.to_datetime(pd.Series(cells.day)).dt.date.to_numpy()
    control_post = (pd.Series(cells.zone).map(variant_of_zone).to_numpy() == spec.control) & (
        days >= spec.start
    )
    j_metric = cells.index(metric)
    control_mean = cells.sums[control_post, j_metric].sum() / cells.n[control_post].sum()
    ri = randomization_p(fit, cells, assignment, spec, settings)
    pretrend, weeks = event_study(cells, variant_of_zone, spec, settings, metric)
    rows = []
    for variant in spec.treatments:
        wild = wild_cluster_bootstrap(
            fit, variant, settings.wild_bootstrap_draws, settings.seed, spec.alpha
        )
        common = {
            "metric": metric,
            "variant": variant,
            "control_mean": control_mean,
            "wild_p": wild.p_value,
            "wild_ci_low": wild.ci_low,
            "wild_ci_high": wild.ci_high,
            "ri_p": ri.get(variant),
            "pretrend_p": pretrend.get(variant),
            "n_obs": fit.n_obs,
            "n_zones": fit.n_zones,
            "n_days": fit.n_days,
        }
        for label in settings.covariances:
            cov_type, clusters = COVARIANCES[label]
            res = fit.result(cov_type, clusters, spec.convention, spec.alpha)
            rows.append(_row(common, "att", None, res, variant, label))
            if cov_type == "clustered":
                rows.append(
                    common
                    | _lift(fit, variant, cells, control_post, j_metric, clusters, spec)
                    | {"cov_type": label, "psd_fixed": res.psd_fixed}
                )
        rows += [common | r for r in weeks if r["variant"] == variant]
    return rows


def _row(common: dict, term: str, week: int | None, res: TwfeResult, name: str, label: str) -> dict:
    e = res[name]
    return common | {
        "term": term,
        "event_week": week,
        "estimate": e.estimate,
        "se": e.se,
        "t": e.t,
        "p_value": e.p_value,
        "ci_low": e.ci_low,
        "ci_high": e.ci_high,
        "cov_type": label,
        "psd_fixed": res.psd_fixed,
    }


def _lift(
    fit: TwfeFit,
    variant: str,
    cells: CellStats,
    control_post: np.ndarray,
    j_metric: int,
    clusters: tuple[str, ...],
    spec: ExperimentConfig,
) -> dict:
    """Relative lift b / m with its delta-method standard error and CI."""
    j = fit.names.index(variant)
    b = fit.params[j]
    n_cp = cells.n[control_post].sum()
    m = cells.sums[control_post, j_metric].sum() / n_cp
    psi_b = fit.cell_scores @ fit.bread[j]
    psi_m = np.where(control_post, (cells.sums[:, j_metric] - m * cells.n) / n_cp, 0.0)
    psi = np.column_stack([psi_b, psi_m])[cells.n > 0]
    meat, g = fit.cluster_meat(psi, clusters)
    factor, df = fit.cluster_factor(clusters, g, spec.convention)
    grad = np.array([1 / m, -b / m**2])
    se = float(np.sqrt(max(grad @ (meat * factor) @ grad, 0.0)))
    lift = b / m
    q = stats.t(df).ppf(1 - spec.alpha / 2)
    t = lift / se
    return {
        "term": "lift",
        "event_week": None,
        "estimate": lift,
        "se": se,
        "t": t,
        "p_value": float(2 * stats.t(df).sf(abs(t))),
        "ci_low": lift - q * se,
        "ci_high": lift + q * se,
    }


def randomization_p(
    fit: TwfeFit,
    cells: CellStats,
    assignment: pd.DataFrame,
    spec: ExperimentConfig,
    settings: AnalysisConfig,
) -> dict[str, float]:
    """Randomization-inference p-value per variant (empty when ``ri_draws`` is 0)."""
    if settings.ri_draws == 0:
        return {}
    observed = fit.result("clustered", ("zone",), spec.convention)
    t_obs = np.array([abs(observed[v].t) for v in spec.treatments])
    rng = np.random.default_rng(settings.seed)
    zone_ids = assignment["zone_id"].to_numpy()
    cell_zone = pd.Index(zone_ids).get_indexer(cells.zone)  # position of each cell's zone
    post = (pd.to_datetime(pd.Series(cells.day)).dt.date >= spec.start).to_numpy()[:, None]
    groups = [np.flatnonzero(assignment["group_id"].to_numpy() == g) for g in
              sorted(assignment["group_id"].unique())]  # fmt: skip
    variants = assignment["variant"].to_numpy()
    treatments = np.array(spec.treatments)
    exceed = np.zeros(len(spec.treatments))
    for _ in range(settings.ri_draws):
        drawn = variants.copy()
        for members in groups:
            drawn[members] = rng.permutation(variants[members])
        effects = (drawn[cell_zone][:, None] == treatments[None, :]) & post
        res = fit.with_effects(effects.astype(float)).result(
            "clustered", ("zone",), spec.convention
        )
        exceed += np.array([abs(res[v].t) for v in spec.treatments]) >= t_obs - 1e-12
    p = (1 + exceed) / (1 + settings.ri_draws)
    return dict(zip(spec.treatments, p.tolist(), strict=True))


def event_study(
    cells: CellStats,
    variant_of_zone: dict,
    spec: ExperimentConfig,
    settings: AnalysisConfig,
    metric: str,
) -> tuple[dict[str, float], list[dict]]:
    """Per-variant pre-trend p-values and the event-study rows (term ``week``)."""
    if not settings.event_study:
        return {}, []
    days = pd.to_datetime(pd.Series(cells.day)).dt.date.to_numpy()
    week = np.array([(d - spec.start).days // 7 for d in days])
    variant = pd.Series(cells.zone).map(variant_of_zone).to_numpy()
    weeks = [w for w in sorted(set(week)) if w != -1]
    cols, names, keys = [], [], []
    for v in spec.treatments:
        for w in weeks:
            cols.append((variant == v) & (week == w))
            names.append(f"{v}@{w}")
            keys.append((v, w))
    if not cols:
        return {}, []
    label = settings.covariances[0]
    cov_type, clusters = COVARIANCES[label]
    fit = TwfeFit(cells, np.column_stack(cols).astype(float), names, metric, tuple(spec.covariates))
    res = fit.result(cov_type, clusters, spec.convention, spec.alpha)
    rows = []
    for name, (v, w) in zip(names, keys, strict=True):
        rows.append(_row({"variant": v}, "week", int(w), res, name, label))
    pretrend = {}
    for v in spec.treatments:
        pre = [i for i, (vv, w) in enumerate(keys) if vv == v and w < -1]
        if pre:
            b = res.params[pre]
            cov = res.cov[np.ix_(pre, pre)]
            f = float(b @ np.linalg.solve(cov, b)) / len(pre)
            pretrend[v] = float(stats.f.sf(f, len(pre), res.df))
    return pretrend, rows


def analysis_window(spec: ExperimentConfig, run_date: dt.date) -> tuple[dt.date, dt.date]:
    """Pre-start to the last post-period day with data (the run date or the end)."""
    return spec.pre_start, min(spec.end, run_date)
