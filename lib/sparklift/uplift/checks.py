"""Checks of a randomized voucher history before any training, from ONE Spark aggregation.

Per arm (``treatment``: 'control' or a voucher_id) the aggregation yields the row count and,
per feature, the non-null count, sum and sum of squares, plus null objectives, null and
negative costs, and NaN or infinite values of every number (refused at once). From those:

- bad input (always an error): what fails the table's own error checks
  (``quality.tables.voucher_campaigns``: nulls, a negative cost, ...), no control arm, an
  arm with fewer than ``min_arm_rows`` rows, a voucher not in ``vouchers``, a non-numeric
  or constant feature, NaN or null objectives, null or negative costs;
- randomization (an error unless overridden): the sample-ratio test, a chi-square
  goodness-of-fit test of the arm counts against the configured shares at ``srm_alpha``,
  per campaign against the shares of the arms it has (Bonferroni over the campaigns), and
  pooled against the sum of the campaigns' expected counts (so a voucher added in a later
  campaign is no mismatch); a campaign without control large enough to expect one;
  and covariate balance, the standardized mean difference of every feature between each
  voucher arm and control, ``(m_j - m_0) / sqrt((s_j^2 + s_0^2) / 2)``, within ``max_smd``
  (control: the controls of the campaigns that drew the arm, each campaign's weighed by
  its share of the arm's rows);
- warnings: campaigns that lack a voucher of the history (a voucher added or retired
  between campaigns): its rows then come from some campaigns only, so a learner that
  compares them with every campaign's controls (one's own without strata) reads a
  difference between the campaigns as its effect; and a voucher whose controls, weighed
  to its mix of campaigns, are worth less than :data:`MIN_ESS_SHARE` of their number (Kish's
  effective size): a voucher drawn at a much higher ratio to control in some campaigns
  than in others (one that draws it alone beside one that draws ten vouchers) is compared
  mostly with the few controls of the first, though the counts look ample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType
from scipy import stats

from sparklift.errors import InputError
from sparklift.finite import PREFIX, float_columns, nonfinite_counts, refuse
from sparklift.quality.contract import ContractError, count_columns, counted, example, failures
from sparklift.quality.spec import TableSpec
from sparklift.uplift.arms import (
    CONTROL,
    campaign_arms,
    campaign_ratios,
    expected_rows,
)


class RandomizationError(InputError):
    """The history does not look randomized as configured (override to train anyway)."""


MIN_ESS_SHARE = 0.5


@dataclass
class ArmStats:
    rows: int
    mean: dict[str, float]
    var: dict[str, float]


@dataclass
class HistoryReport:
    """What the checks found; ``problems`` are randomization failures (overridable),
    ``warnings`` what may bias the effects without failing randomization."""

    arms: dict[str, ArmStats]
    srm_p: float
    expected_shares: dict[str, float]
    smd: dict[str, dict[str, float]]
    problems: list[str] = field(default_factory=list)
    campaign_srm_p: dict[str, float] = field(default_factory=dict)  # per campaign tested
    warnings: list[str] = field(default_factory=list)
    control_ess: dict[str, float] = field(default_factory=dict)  # per voucher: ESS / controls

    def as_dict(self) -> dict[str, Any]:
        return {
            "arm_rows": {a: s.rows for a, s in self.arms.items()},
            "expected_shares": self.expected_shares,
            "srm_p": self.srm_p,
            "campaign_srm_p_min": min(self.campaign_srm_p.values(), default=None),
            "max_abs_smd": {a: max(abs(v) for v in d.values()) for a, d in self.smd.items()},
            "problems": self.problems,
            "warnings": self.warnings,
            "control_ess_share": self.control_ess,
        }


def check_columns(df: DataFrame, table: str, features: Sequence[str]) -> None:
    """The history has its key columns and numeric features."""
    types = dict((f.name, f.dataType) for f in df.schema.fields)
    missing = [c for c in ("treatment", "objective", "cost", *features) if c not in types]
    if missing:
        raise InputError(f"table {table} has no columns {missing}")
    wrong = [
        f"{c} ({types[c].simpleString()})"
        for c in features
        if not isinstance(types[c], NumericType)
    ]
    if wrong:
        raise InputError(f"table {table}: features must be numeric; got {', '.join(wrong)}")
    for c in ("objective", "cost"):
        if not isinstance(types[c], NumericType):
            raise InputError(
                f"table {table}: column {c} must be numeric, got {types[c].simpleString()}"
            )


def arm_aggregates(
    df: DataFrame, table: str, features: Sequence[str], spec: TableSpec
) -> list[dict[str, Any]]:
    """One row per arm (and campaign, when the table has ``campaign_id``) with every count
    and moment the checks need (one Spark pass). The
    table's own error checks (``spec``: nulls, ranges such as a cost below 0, accepted
    values) are counted in the same pass and refused as a :class:`ContractError`; NaN or
    infinity in a feature, objective or cost without a range is refused, naming a row."""
    floats = float_columns(df, [*features, "objective", "cost"])
    ranged = spec.checks.ranges if spec.severity_of("range") == "error" else {}
    unranged = [c for c in floats if c not in ranged]  # a warning would let NaN through
    aggs = [F.count(F.lit(1)).alias("rows"), *nonfinite_counts(unranged)]
    aggs += count_columns(spec, df)
    for i, c in enumerate(features):
        x = F.col(c).cast("double")
        ok = x.isNotNull()
        aggs += [
            F.count(F.when(ok, 1)).alias(f"n{i}"),
            F.sum(F.when(ok, x)).alias(f"s{i}"),
            F.sum(F.when(ok, x * x)).alias(f"q{i}"),
        ]
    y, c = F.col("objective").cast("double"), F.col("cost").cast("double")
    aggs += [  # what training needs whatever quality.tables says
        F.count(F.when(y.isNull(), 1)).alias("bad_objective"),
        F.count(F.when(c.isNull(), 1)).alias("null_cost"),
        F.count(F.when(c < 0, 1)).alias("negative_cost"),
    ]
    by = ["campaign_id", "treatment"] if "campaign_id" in df.columns else ["treatment"]
    rows = [r.asDict() for r in df.groupBy(*by).agg(*aggs).collect()]
    keys = [k for k in ("campaign_id", "customer_id", "treatment") if k in df.columns]
    refuse(table, {c: sum(r[f"{PREFIX}{c}"] for r in rows) for c in unranged}, df, keys)
    counts = {f"{k}:{x}": float(sum(r[f"{k}:{x}"] for r in rows)) for k, x in counted(spec, df)}
    failed = failures(spec, counts)
    if failed:
        raise ContractError(table, {None: failed}, example(spec, df, failed[0], keys))
    return rows


def check_history(
    rows: list[dict[str, Any]],
    table: str,
    features: Sequence[str],
    known_vouchers: set[str],
    *,
    min_arm_rows: int,
    control_share: float,
    arm_shares: Mapping[str, float],
    srm_alpha: float,
    max_smd: float,
) -> HistoryReport:
    """Raise InputError on bad input; return the randomization report (with problems)."""
    by_arm = {str(a): r for a, r in _per_arm(rows).items()}
    if None in {r["treatment"] for r in rows} or "None" in by_arm:
        raise InputError(
            f"table {table}: null treatment in {by_arm.get('None', {}).get('rows')} rows"
        )
    if CONTROL not in by_arm:
        raise InputError(f"table {table} has no '{CONTROL}' arm (arms: {sorted(by_arm)})")
    unknown = sorted(set(by_arm) - {CONTROL} - known_vouchers)
    if unknown:
        raise InputError(f"table {table}: treatments {unknown} are not voucher_ids in vouchers")
    if len(by_arm) < 2:
        raise InputError(f"table {table} has only the control arm; nothing to learn")
    small = {a: r["rows"] for a, r in by_arm.items() if r["rows"] < min_arm_rows}
    if small:
        raise InputError(
            f"table {table}: arms {small} have fewer than uplift.min_arm_rows={min_arm_rows} rows"
        )
    for col, what in (
        ("bad_objective", "null objective"),
        ("null_cost", "null cost"),
        ("negative_cost", "negative cost"),
    ):
        n = sum(r[col] for r in rows)
        if n:
            raise InputError(f"table {table}: {n} rows with {what}")
    arms = {a: _arm_stats(r, features) for a, r in by_arm.items()}
    _check_features(rows, table, features)
    names = sorted(by_arm)
    counts = np.array([arms[a].rows for a in names], dtype=float)
    campaigns = campaign_arms(rows) or {"": {a: arms[a].rows for a in names}}  # or just one
    expected = expected_rows(campaigns, names, control_share, arm_shares)
    shares = {a: float(e / expected.sum()) for a, e in zip(names, expected, strict=True)}
    srm_p = float(stats.chisquare(counts, expected).pvalue)
    problems = []
    if srm_p < srm_alpha:
        observed = {a: round(float(arms[a].rows / counts.sum()), 4) for a in names}
        problems.append(
            f"sample ratio mismatch: arm shares {observed} vs configured "
            f"{ {a: round(s, 4) for a, s in shares.items()} } (chi-square p = {srm_p:.2g} "
            f"< {srm_alpha})"
        )
    warnings: list[str] = []
    campaign_p = campaign_ratios(rows, control_share, arm_shares, srm_alpha, problems, warnings)
    smd = {}
    for a, s in arms.items():
        if a == CONTROL:
            continue
        r0 = _controls_like(rows, a, len(features)) or by_arm[CONTROL]
        c0 = _arm_stats(r0, features)
        smd[a] = {}
        for i, c in enumerate(features):
            if np.isfinite(s.mean[c]) and np.isfinite(c0.mean[c]):
                smd[a][c] = _smd(s.mean[c] - c0.mean[c], (s.var[c] + c0.var[c]) / 2)
            # Where a feature is missing differs by arm too (a post-treatment column is
            # null for every control row): the SMD of its non-null indicator, whose
            # variance is the two arms' pooled share's, finite even when one arm has none.
            n1, n0 = by_arm[a][f"n{i}"], r0[f"n{i}"]
            if n1 != s.rows or not math.isclose(n0, r0["rows"], rel_tol=1e-9):
                p1, p0 = n1 / s.rows, n0 / r0["rows"]
                p = (n1 + n0) / (s.rows + r0["rows"])
                smd[a][f"{c} (non-null share)"] = _smd(p1 - p0, p * (1 - p))
        bad = {c: round(float(v), 3) for c, v in smd[a].items() if abs(v) > max_smd}
        if bad:
            problems.append(
                f"covariate imbalance in arm {a}: standardized mean differences {bad} "
                f"exceed uplift.max_smd={max_smd}"
            )
    ess = control_ess(campaign_arms(rows))
    few_controls = {a: f"{e:.1%}" for a, e in ess.items() if e < MIN_ESS_SHARE}
    if few_controls:
        warnings.append(
            f"vouchers whose controls are worth little once weighed to the voucher's mix of "
            f"campaigns (effective size over their number: {few_controls}): the voucher is "
            "drawn at a much higher ratio to control in some campaigns than in others, so "
            "the held-out metrics (and the T-learner, where a campaign lacks an arm) compare "
            "it mostly with those campaigns' few controls; the same arms in every campaign, "
            "or explicit uplift.arm_shares, keep the ratio even"
        )
    return HistoryReport(arms, srm_p, shares, smd, problems, campaign_p, warnings, ess)


def control_ess(campaigns: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
    """Per voucher: Kish's effective size of the controls of the campaigns that drew it and
    control, each campaign's weighed by (n_j,c / n_j) / (n_0,c / n_0) so that they have the
    voucher's mix of campaigns (as the held-out metrics and the balance check weigh them,
    and the T-learner's control models where a campaign lacks an arm:
    :func:`sparklift.uplift.strata.control_weights`), over their number:
    (sum w)^2 / sum w^2 / n_0, 1 when every campaign has the same share of both."""
    out = {}
    for arm in sorted({a for c in campaigns.values() for a in c} - {CONTROL}):
        drew = [c for c in campaigns.values() if c.get(arm) and c.get(CONTROL)]
        if not drew:
            continue
        n_arm, n0 = sum(c[arm] for c in drew), sum(c[CONTROL] for c in drew)
        weights = [(c[arm] / n_arm) / (c[CONTROL] / n0) for c in drew]
        squares = sum(c[CONTROL] * w**2 for c, w in zip(drew, weights, strict=True))
        out[arm] = n0 / squares  # sum of the weights over the controls is n0
    return out


def _arm_stats(r: Mapping[str, Any], features: Sequence[str]) -> ArmStats:
    """Rows, mean and variance of each feature, from an aggregate row's moments."""
    mean, var = {}, {}
    for i, c in enumerate(features):
        n = r[f"n{i}"]
        m = r[f"s{i}"] / n if n else float("nan")
        mean[c] = m
        var[c] = (r[f"q{i}"] - n * m * m) / (n - 1) if n > 1 else float("nan")
    return ArmStats(int(r["rows"]), mean, var)


def _controls_like(
    rows: list[dict[str, Any]], arm: str, n_features: int
) -> dict[str, float] | None:
    """The control rows of the campaigns that drew ``arm`` and control, each campaign's
    weighed by its share of the arm's rows (as moments of an aggregate row with their
    count): the controls the arm's rows are compared with, so that campaigns that differ
    (a voucher added in a later season) are no imbalance of the arm. None without
    campaigns that drew both."""
    campaigns: dict[Any, dict[str, dict[str, Any]]] = {}
    for r in rows:
        campaigns.setdefault(r.get("campaign_id"), {})[str(r["treatment"])] = r
    drew = [t for t in campaigns.values() if arm in t and CONTROL in t]
    if not drew:
        return None
    n_arm = sum(t[arm]["rows"] for t in drew)
    n0 = sum(t[CONTROL]["rows"] for t in drew)
    # each control row of a campaign with a share w of the arm's rows stands for w n0 / n0_c
    weight = [n0 * t[arm]["rows"] / n_arm / t[CONTROL]["rows"] for t in drew]
    out: dict[str, float] = {"rows": n0}
    for i in range(n_features):
        for k in ("n", "s", "q"):
            out[f"{k}{i}"] = sum(
                w * (t[CONTROL][f"{k}{i}"] or 0) for w, t in zip(weight, drew, strict=True)
            )
    return out


def _per_arm(rows: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """:func:`arm_aggregates`' rows summed over campaigns: one per arm."""
    out: dict[Any, dict[str, Any]] = {}
    for r in rows:
        merged = out.setdefault(r["treatment"], {"treatment": r["treatment"]})
        for k, v in r.items():
            if k not in ("campaign_id", "treatment") and v is not None:
                merged[k] = merged.get(k, 0) + v
    for merged in out.values():  # a moment no row had (all null) stays null
        for k in {k for r in rows for k in r} - {"campaign_id", "treatment"}:
            merged.setdefault(k, None)
    return out


def _smd(difference: float, variance: float) -> float:
    """A standardized mean difference; 0 for no difference, whatever the variance."""
    if difference == 0:
        return 0.0
    return difference / np.sqrt(variance) if variance > 0 else float("inf")


def _check_features(rows: list[dict[str, Any]], table: str, features: Sequence[str]) -> None:
    for c, (n, mean) in uninformative(rows, features).items():
        if n < 2:
            raise InputError(f"table {table}: feature {c} has fewer than 2 non-null values")
        raise InputError(f"table {table}: feature {c} is constant ({mean:g}); drop it")


def uninformative(
    rows: list[dict[str, Any]], features: Sequence[str]
) -> dict[str, tuple[int, float]]:
    """The features of :func:`arm_aggregates`' ``rows`` that cannot inform a model: fewer
    than 2 non-null values, or constant (-> their non-null count and mean)."""
    out = {}
    for i, c in enumerate(features):
        n = sum(r[f"n{i}"] for r in rows)
        s, q = sum(r[f"s{i}"] or 0.0 for r in rows), sum(r[f"q{i}"] or 0.0 for r in rows)
        if n < 2 or (q - s * s / n) / (n - 1) <= 1e-12 * max(1.0, q / n):
            out[c] = (n, s / n if n else float("nan"))
    return out


def keep_features(
    rows: list[dict[str, Any]], features: Sequence[str], kept: Sequence[str]
) -> list[dict[str, Any]]:
    """``rows`` of :func:`arm_aggregates` over ``features`` as if aggregated over ``kept``
    (a subset, in order): each kept feature's moments renumbered, no second pass."""
    index = {c: i for i, c in enumerate(features)}
    moments = {f"{m}{i}" for i in range(len(features)) for m in "nsq"}
    out = []
    for r in rows:
        row = {k: v for k, v in r.items() if k not in moments}
        for j, c in enumerate(kept):
            row |= {f"{m}{j}": r[f"{m}{index[c]}"] for m in "nsq"}
        out.append(row)
    return out
