"""A geo experiment's analysis from cell statistics: DiD per metric and variant with the
configured covariances, then post-estimation (:mod:`sparklift.post`): relative lift over
the control zones' post-period mean, wild cluster bootstrap, randomization inference and
an event study with a joint pre-trend test (fitted with the first configured covariance).
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from sparklift.config import AnalysisConfig
from sparklift.errors import InputError
from sparklift.geo.adjustment import metric_covariates
from sparklift.geo.did import effect_columns
from sparklift.geo.experiment import ExperimentConfig
from sparklift.geo.monitoring import decision_inference
from sparklift.post.event_study import event_study
from sparklift.post.lift import relative_lift
from sparklift.post.randomization import randomization_p
from sparklift.post.wild_bootstrap import wild_cluster_bootstrap
from sparklift.stats import covariance
from sparklift.stats.inference import Estimate
from sparklift.stats.ssc import SmallSample, convention
from sparklift.stats.twfe import CellStats, TwfeFit, TwfeResult


def analyze(
    cells: CellStats,
    assignment: pd.DataFrame,
    spec: ExperimentConfig,
    settings: AnalysisConfig,
    metric: str,
) -> list[dict]:
    """Result rows (term att, lift and week) of one metric for every treatment variant;
    the first covariance's att rows also carry the sequential decisions' ``decision_se``
    and ``decision_df`` (:func:`sparklift.geo.monitoring.decision_inference`)."""
    variant_of_zone = dict(zip(assignment["zone_id"], assignment["variant"], strict=True))
    effects, names = effect_columns(cells, variant_of_zone, spec.treatments, spec.start)
    covariates = metric_covariates(spec, metric, cells)
    fit = TwfeFit(cells, effects, names, metric, covariates)
    ssc = convention(spec.convention)
    days = pd.to_datetime(pd.Series(cells.day)).dt.date.to_numpy()
    control_post = (pd.Series(cells.zone).map(variant_of_zone).to_numpy() == spec.control) & (
        days >= spec.start
    )
    j_metric = cells.index(metric)
    control_mean = cells.sums[control_post, j_metric].sum() / cells.n[control_post].sum()
    ri = randomization_p(fit, assignment, spec, settings.ri_draws, settings.seed)
    first = settings.covariances[0]
    events = None
    if settings.event_study:
        events = event_study(cells, variant_of_zone, spec, metric, first, covariates)
    pretrend = events.pretrend_p if events else {}
    rows = []
    for variant in spec.treatments:
        wild = wild_cluster_bootstrap(
            fit, variant, settings.wild_bootstrap_draws, settings.seed, spec.alpha
        )
        decision_se, decision_df = decision_inference(fit, variant, spec)
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
            res = _result(fit, label, ssc, spec.alpha)
            att = _row(common, "att", None, res[variant], label, res.psd_fixed)
            if label == first:  # the decisions' inference goes with the first covariance
                att |= {"decision_se": decision_se, "decision_df": decision_df}
            rows.append(att)
            if covariance.parse(label).kind == "cluster":
                lift = relative_lift(fit, variant, control_post, label, ssc, spec.alpha)
                rows.append(_row(common, "lift", None, lift, label, lift.psd_fixed))
        if events:
            psd_fixed = events.result.psd_fixed
            rows += [
                common | _row({"variant": v}, "week", w, e, first, psd_fixed)
                for v, w, e in events.weeks
                if v == variant
            ]
    return rows


def _result(fit: TwfeFit, label: str, ssc: SmallSample, alpha: float) -> TwfeResult:
    """``fit``'s inference under covariance ``label``; a zone jackknife that cannot leave a
    zone out says that the configuration asked for it."""
    try:
        return fit.result(label, ssc, alpha)
    except InputError as e:
        if label != "zone-jackknife":
            raise
        raise InputError(f"{e}; or drop zone-jackknife from analysis.covariances") from None


def _row(
    common: dict, term: str, week: int | None, e: Estimate, label: str, psd_fixed: bool
) -> dict:
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
        "psd_fixed": psd_fixed,
    }


def analysis_window(spec: ExperimentConfig, run_date: dt.date) -> tuple[dt.date, dt.date]:
    """Pre-start to the last post-period day with data (the run date or the end)."""
    return spec.pre_start, min(spec.end, run_date)
