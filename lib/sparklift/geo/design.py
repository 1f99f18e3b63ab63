"""A geo experiment's design, pure: matched groups, randomized variants, power and AA checks.

The steps (inputs are small driver-side frames; the job does the I/O):
1. :func:`match_zones` - PCA of the standardized zone vectors, distances, greedy groups of
   N (one zone per variant);
2. :func:`randomize` - the N variants at random within every group, then K groups at
   random, so each variant gets K zones;
3. :func:`design_checks` - on history cells with a pseudo pre/post split, the DiD fit of
   each metric with this assignment (zone-clustered): its standard error gives the MDE, the
   power at the target effect and the zones needed (:mod:`sparklift.stats.power`) of one
   test at the end at the alpha per test (``alpha_per_test``, Bonferroni over the
   comparisons, the level every decision is taken at), and its estimate must be
   equivalent to zero within the margin (TOST at ``alpha``: one check of the design,
   :mod:`sparklift.stats.equivalence`); the same fit at each planned look's duration gives
   the sequential plan's information fractions (:mod:`sparklift.geo.monitoring`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sparklift.errors import InputError
from sparklift.geo.adjustment import metric_covariates
from sparklift.geo.did import effect_columns
from sparklift.geo.experiment import ExperimentConfig
from sparklift.geo.matching import distances, greedy_groups, mean_within_group_distance, pca
from sparklift.geo.monitoring import decision_inference, design_plan, look_days
from sparklift.stats.equivalence import tost_p
from sparklift.stats.power import mde, power_at, zones_needed
from sparklift.stats.ssc import convention
from sparklift.stats.twfe import CellStats, TwfeFit


@dataclass(frozen=True)
class Matching:
    zone_ids: np.ndarray
    dist: np.ndarray
    explained_variance_ratio: np.ndarray
    groups: list[list[int]]  # indexes into zone_ids, in the order they were formed

    def distance_ratio(self, seed: int) -> float:
        """Mean within-group distance of the matched groups over that of random groups of
        the same size drawn from the same zones (below 1: matching found similar zones)."""
        n = len(self.groups[0])
        perm = np.random.default_rng(seed).permutation(len(self.zone_ids))
        random_groups = [list(perm[i : i + n]) for i in range(0, len(perm) - n + 1, n)]
        matched = mean_within_group_distance(self.dist, self.groups)
        return matched / mean_within_group_distance(self.dist, random_groups)


def match_zones(vectors: pd.DataFrame, n_components: int, n_variants: int) -> Matching:
    """Groups of ``n_variants`` similar zones from one vector per zone (index: zone_id)."""
    x = vectors.to_numpy(dtype=float)
    if not (x.std(axis=0) > 1e-12 * np.maximum(1.0, np.abs(x).max(axis=0))).any():
        raise InputError(
            f"zone_day_features: every matching feature ({len(vectors.columns)} columns, e.g. "
            f"{list(vectors.columns[:3])}) is the same in all {len(vectors)} eligible zones "
            "over the lookback: nothing to match zones on; choose design.features that vary"
        )
    fit = pca(x, n_components)
    dist = distances(fit.scores)
    return Matching(
        vectors.index.to_numpy(),
        dist,
        fit.explained_variance_ratio,
        greedy_groups(dist, n_variants),
    )


def randomize(
    matching: Matching, variants: list[str], zones_per_variant: int, seed: int
) -> pd.DataFrame:
    """zone_id, variant, group_id for K groups drawn at random, variants shuffled in each."""
    if len(matching.groups) < zones_per_variant:
        raise InputError(
            f"zones_per_variant {zones_per_variant} needs {zones_per_variant} groups of "
            f"{len(variants)} zones; the eligible zones make only {len(matching.groups)}"
        )
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(len(variants)) for _ in matching.groups]
    chosen = np.sort(rng.choice(len(matching.groups), zones_per_variant, replace=False))
    rows = [
        (int(matching.zone_ids[z]), variants[v], int(g) + 1)
        for g in chosen
        for z, v in zip(matching.groups[g], orders[g], strict=True)
    ]
    return pd.DataFrame(rows, columns=["zone_id", "variant", "group_id"])


def design_checks(
    cells: CellStats, assignment: pd.DataFrame, spec: ExperimentConfig, pseudo_start: dt.date
) -> pd.DataFrame:
    """Per metric and treatment: the AA estimate on history cells (post from
    ``pseudo_start``), its TOST equivalence verdict and the power figures (at the alpha
    per test, module docstring)."""
    variant_of_zone = dict(zip(assignment["zone_id"], assignment["variant"], strict=True))
    cells = cells.select(np.isin(cells.zone, assignment["zone_id"].to_numpy()))
    effects, names = effect_columns(cells, variant_of_zone, spec.treatments, pseudo_start)
    day = pd.to_datetime(pd.Series(cells.day)).dt.date.to_numpy()
    post_day = np.array([(d - pseudo_start).days + 1 for d in day])
    alpha = spec.alpha_per_test  # of the power figures: the decisions' level
    rows = []
    for metric in spec.metrics:
        j = cells.index(metric.name)
        total, n = cells.sums[:, j].sum(), cells.n.sum()
        mean = total / n
        ss = cells.cross[:, j, j].sum() - total * mean
        if ss <= 1e-12 * max(cells.cross[:, j, j].sum(), 1e-300):
            raise InputError(
                f"metric {metric.name!r} is constant ({mean:g} on every row of the history "
                "window): it cannot be tested; drop it from the experiment's metrics"
            )
        if abs(mean) <= 1e-9 * np.sqrt(ss / n):  # margin and target are shares of the mean
            raise InputError(
                f"experiment {spec.experiment_id}, metric {metric.name!r}: its mean over the "
                f"history window is 0 ({mean:.3g}, against an SD of {np.sqrt(ss / n):.3g}), so "
                "the AA margin and the target effect (shares of it) would be 0; choose a "
                "metric with a non-zero mean"
            )
        covariates = metric_covariates(spec, metric.name, cells)
        fit = TwfeFit(cells, effects, names, metric.name, covariates)
        res = fit.result("zone", convention(spec.convention), spec.alpha)
        unadjusted = res
        if covariates != tuple(spec.covariates):  # the same design without the adjustment
            plain = TwfeFit(cells, effects, names, metric.name, tuple(spec.covariates))
            unadjusted = plain.result("zone", convention(spec.convention), spec.alpha)
        margin, target = spec.margin * abs(mean), spec.target_effect * abs(mean)
        looks = [  # the AA fit at each earlier look's duration: its planned information
            TwfeFit(
                cells.select(post_day <= d),
                effects[post_day <= d],
                names,
                metric.name,
                covariates,
            )
            for d in look_days(spec)[:-1]
        ]
        for variant in spec.treatments:
            e = res[variant]
            se_k, decision_df = decision_inference(fit, variant, spec)
            ses = [decision_inference(f, variant, spec)[0] for f in looks] + [se_k]
            plan = design_plan(spec, ses, target, decision_df)
            mde_abs = mde(e.se, alpha, spec.power, res.df)
            se_plain = unadjusted[variant].se
            mde_plain = mde(se_plain, alpha, spec.power, unadjusted.df)
            p_tost = tost_p(e.estimate, e.se, margin, res.df)
            rows.append(
                {
                    "metric": metric.name,
                    "variant": variant,
                    "primary": metric.primary,
                    "baseline_mean": mean,
                    "aa_estimate": e.estimate,
                    "aa_se": e.se,
                    "aa_p_value": e.p_value,
                    "margin_abs": margin,
                    "tost_p": p_tost,
                    "equivalent": bool(p_tost < spec.alpha),
                    "mde": mde_abs,
                    "mde_relative": mde_abs / abs(mean),
                    "target_effect": spec.target_effect,
                    "power": power_at(target, e.se, alpha, res.df),
                    "zones_needed": zones_needed(
                        target, e.se, spec.zones_per_variant, alpha, spec.power, res.df
                    ),
                    "variance_reduction": spec.variance_reduction,
                    "aa_se_unadjusted": se_plain,
                    "se_reduction": 1.0 - e.se / se_plain,
                    "mde_relative_unadjusted": mde_plain / abs(mean),
                    "zones_needed_unadjusted": zones_needed(
                        target,
                        se_plain,
                        spec.zones_per_variant,
                        alpha,
                        spec.power,
                        unadjusted.df,
                    ),
                    "df": res.df,
                    "n_obs": res.n_obs,
                    "n_zones": res.n_zones,
                    "n_days": res.n_days,
                    "cov_type": res.cov_type,
                }
                | plan
            )
    return pd.DataFrame(rows)


def verdict(checks: pd.DataFrame, alpha: float) -> tuple[str, str | None]:
    """``accepted``, or ``rejected`` with the reason: a primary metric not equivalent."""
    failed = checks[checks["primary"] & ~checks["equivalent"]]
    if failed.empty:
        return "accepted", None
    parts = [
        f"{r.metric}/{r.variant}: AA estimate {r.aa_estimate:.4g} (se {r.aa_se:.3g}), TOST p "
        f"{r.tost_p:.3f} >= alpha {alpha} at margin +-{r.margin_abs:.4g}"
        for r in failed.itertuples()
    ]
    return "rejected", "AA check not equivalent on primary metric(s): " + "; ".join(parts)
