"""A campaign's policy against its holdout, per budget group x voucher, in Spark.

The units of a voucher v in group g are the policy customers sent v and the held-out
customers the policy would have sent v (``policy_voucher_id``): both random samples of the
customers the policy picks for v, so their difference estimates what sending v to them
achieved. A customer without an outcome row had none (objective and cost 0); a row with a
null, NaN or infinite outcome is refused (:func:`check_outcomes`), never filled. Each cell
(group, voucher) is fitted where its rows are, in one ``applyInPandas``, by
:func:`sparklift.measure.estimate.lin_fit`, unadjusted and with CUPED covariates: both
metrics on one design, so that their covariance is known for the return
(:mod:`sparklift.measure.ratio`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from scipy import stats

from sparklift.allocation.arms import HOLDOUT, POLICY
from sparklift.errors import InputError
from sparklift.finite import float_columns, nonfinite
from sparklift.measure.estimate import lin_fit
from sparklift.measure.ratio import COV, DF
from sparklift.stats.proportions import two_shares_p
from sparklift.synthetic.rand import uniform

METRICS = {"objective": "expected_uplift", "cost": "expected_cost"}  # outcome: prediction
_FIT_SCHEMA = (
    "budget_group string, voucher_id string, metric string, adjustment string, "
    "n_policy long, n_holdout long, mean_policy double, mean_holdout double, "
    f"estimate double, se double, predicted double, df double, {COV} double, {DF} double"
)


def units(
    allocations: DataFrame,
    outcomes: DataFrame,
    covariates: DataFrame | None,
) -> DataFrame:
    """One row per policy or holdout customer the policy targets: budget_group,
    voucher_id (the policy's), treated (1: policy), each metric's outcome and prediction,
    and the ``covariates`` columns (a customer without them gets 0)."""
    rows = allocations.where(
        F.col("arm").isin(POLICY, HOLDOUT) & F.col("policy_voucher_id").isNotNull()
    ).select(
        "customer_id",
        "budget_group",
        F.col("policy_voucher_id").alias("voucher_id"),
        (F.col("arm") == POLICY).cast("int").alias("treated"),
        *METRICS.values(),
    )
    delivered = outcomes.select("customer_id", *METRICS, F.lit(1).alias("has_outcome"))
    rows = rows.join(delivered, "customer_id", "left")
    rows = rows.fillna(0.0, subset=list(METRICS)).fillna(0, subset=["has_outcome"])
    if covariates is not None:
        rows = rows.join(covariates, "customer_id", "left")
        rows = rows.fillna(0.0, subset=[c for c in covariates.columns if c != "customer_id"])
    return rows


def check_outcomes(outcomes: DataFrame, allocations: DataFrame, campaign_id: str) -> None:
    """Refuse null, NaN or infinite outcomes, duplicated outcomes and outcomes of customers
    the campaign does not have: the values and the duplicates in one aggregation (per
    customer, then over them), the customers in one join with the allocation."""
    table = f"table campaign_outcomes, campaign {campaign_id}"
    per_customer, dupes = _per_customer(outcomes, table)
    if dupes:
        first = per_customer.where(F.col("rows") > 1).orderBy("customer_id").limit(5).collect()
        raise InputError(
            f"{table}: {dupes} customers have more than one row, e.g. "
            f"{[r[0] for r in first]}: one row per customer expected"
        )
    strangers = outcomes.join(allocations.select("customer_id"), "customer_id", "left_anti")
    first = strangers.orderBy("customer_id").limit(5).collect()
    if first:
        raise InputError(
            f"{table}: {strangers.count()} customers are not in the campaign's allocation "
            f"(any arm), e.g. {[r[0] for r in first]}"
        )


def check_snapshot(snapshot: DataFrame, sent: object) -> None:
    """Refuse a customers snapshot of the send date with a customer twice: joined to the
    campaign's customers, it would count one twice in the estimates (and append two rows
    of one customer to ``voucher_campaigns`` for good). The allocation refused it when it
    ran, but a snapshot may be reloaded before the measurement, weeks later."""
    dupes = snapshot.groupBy("customer_id").count().where(F.col("count") > 1)
    first = dupes.orderBy("customer_id").limit(5).collect()
    if first:
        raise InputError(
            f"table customers, snapshot {sent}: {dupes.count()} customers have more than one "
            f"row, e.g. {[r[0] for r in first]}: one row per customer expected"
        )


def _per_customer(outcomes: DataFrame, table: str) -> tuple[DataFrame, int]:
    """The rows per customer (``rows``) and how many customers have more than one, having
    refused outcome rows whose objective or cost is null, NaN or infinite: filled with 0
    (as a customer without a row is) they would pass as delivered outcomes of 0, unseen by
    the coverage check, and an infinity would reach every estimate."""
    columns = [m for m in METRICS if m in outcomes.columns]
    floats = set(float_columns(outcomes, columns))
    bad = {m: F.col(m).isNull() | (nonfinite(m) if m in floats else F.lit(False)) for m in columns}
    per_customer = outcomes.groupBy("customer_id").agg(
        F.count(F.lit(1)).alias("rows"), *[F.count_if(b).alias(f"n_{m}") for m, b in bad.items()]
    )
    row = per_customer.agg(
        F.count_if(F.col("rows") > 1).alias("dupes"),
        *[F.sum(f"n_{m}").alias(f"n_{m}") for m in columns],
        *[
            F.min(F.when(F.col(f"n_{m}") > 0, F.col("customer_id"))).alias(f"e_{m}")
            for m in columns
        ],
    ).first()
    assert row is not None
    found = {m: (int(row[f"n_{m}"]), row[f"e_{m}"]) for m in columns if row[f"n_{m}"]}
    if found:
        what = "; ".join(
            f"column {m}: {n} rows, e.g. customer_id {e}" for m, (n, e) in found.items()
        )
        raise InputError(
            f"{table}: null, NaN or infinite outcomes ({what}); a finite number expected in "
            "every row (a customer without outcomes has no row, which counts as 0)"
        )
    return per_customer, int(row["dupes"])


def outcome_coverage(rows: DataFrame) -> dict[str, float]:
    """The share of policy and holdout units with an outcome row, and the chi-square p of
    their difference. A campaign system that delivers one arm's outcomes less completely
    (say, only for customers it contacted) biases the measurement, as a missing customer
    counts as 0: the sample-ratio check of the arms' outcomes."""
    counts = rows.groupBy("treated").agg(
        F.count(F.lit(1)).alias("n"), F.sum("has_outcome").alias("with")
    )
    got = {int(r["treated"]): (int(r["n"]), int(r["with"])) for r in counts.collect()}
    (n1, w1), (n0, w0) = got.get(1, (0, 0)), got.get(0, (0, 0))
    return {
        "policy_share": w1 / n1 if n1 else np.nan,
        "holdout_share": w0 / n0 if n0 else np.nan,
        "p_value": two_shares_p(w1, n1, w0, n0),
    }


def rank_key() -> Column:
    """``expected_uplift`` with its ties broken by a hash of ``customer_id``: a jitter of
    1e-9 of the value's size, far below the gaps between a model's distinct predictions."""
    u = uniform(0, "measure.decile", F.col("customer_id")) - 0.5
    eu = F.col("expected_uplift")
    return eu + (F.abs(eu) + F.lit(1e-12)) * F.lit(1e-9) * u


def deciles(rows: DataFrame, bins: int = 10) -> pd.DataFrame:
    """Predicted against realized incremental objective per decile of the predicted uplift
    (``expected_uplift``, over policy and holdout units alike): per decile the mean
    prediction of its policy units, the difference in means and its Neyman SE. Ties
    (a tree model predicts a few distinct values: a quarter of the units may share one)
    are ranked by a hash of the customer (:func:`rank_key`), so the deciles are of equal
    size. A decile without units of both arms is left out (none: an empty frame)."""
    rows = rows.withColumn("_key", rank_key())
    edges = rows.approxQuantile("_key", [k / bins for k in range(1, bins)], 1e-4)
    if not edges:  # no units at all
        return _decile_frame([])
    decile = F.lit(bins)
    for k in range(bins - 1, 0, -1):
        decile = F.when(F.col("_key") <= edges[k - 1], F.lit(k)).otherwise(decile)
    stats_ = (
        rows.withColumn("decile", decile)
        .groupBy("decile", "treated")
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.avg("objective").alias("mean"),
            F.var_samp("objective").alias("var"),
            F.avg("expected_uplift").alias("predicted"),
        )
        .toPandas()
    )
    out = []
    for d, g in stats_.groupby("decile"):
        arms = g.set_index("treated")
        if set(arms.index) != {0, 1}:
            continue
        t, c = arms.loc[1], arms.loc[0]
        out.append(
            {
                "decile": int(d),
                "n_policy": int(t["n"]),
                "n_holdout": int(c["n"]),
                "mean_policy": float(t["mean"]),
                "mean_holdout": float(c["mean"]),
                "estimate": float(t["mean"] - c["mean"]),
                "se": float(np.sqrt(t["var"] / t["n"] + c["var"] / c["n"])),
                "predicted": float(t["predicted"]),
            }
        )
    return _decile_frame(out)


def _decile_frame(records: list[dict]) -> pd.DataFrame:
    columns = ["decile", "n_policy", "n_holdout", "mean_policy", "mean_holdout", "estimate"]
    frame = pd.DataFrame(records, columns=[*columns, "se", "predicted"])
    frame = frame.sort_values("decile", ignore_index=True)
    return frame.assign(budget_group="*", voucher_id="*", metric="objective", adjustment="none")


def fit_cells(rows: DataFrame, covariates: Sequence[str]) -> pd.DataFrame:
    """Per cell, metric and adjustment (none; cuped when ``covariates``): counts, means,
    the estimate, its HC2 SE and Welch-Satterthwaite df, the mean prediction of the policy
    customers, and what the return's CI needs (:data:`sparklift.measure.ratio.CARRIED`,
    in each metric's row): the covariance of the cell's objective and cost estimates and
    the df of their ratio's statistic."""
    names, metrics = list(covariates), list(METRICS)

    def fit(pdf: pd.DataFrame) -> pd.DataFrame:
        t = pdf["treated"].to_numpy()
        out = []
        for adjustment in ("none", "cuped") if names else ("none",):
            X = pdf[names].to_numpy(dtype=float) if adjustment == "cuped" else None
            f = lin_fit(pdf[metrics].to_numpy(dtype=float), t, X)
            for metric, e in zip(metrics, f.estimates, strict=True):
                treated = pdf.loc[pdf["treated"] == 1, METRICS[metric]]
                out.append(
                    {
                        "budget_group": pdf["budget_group"].iloc[0],
                        "voucher_id": pdf["voucher_id"].iloc[0],
                        "metric": metric,
                        "adjustment": adjustment,
                        "n_policy": e.n_policy,
                        "n_holdout": e.n_holdout,
                        "mean_policy": e.mean_policy,
                        "mean_holdout": e.mean_holdout,
                        "estimate": e.estimate,
                        "se": e.se,
                        "predicted": float(treated.mean()) if len(treated) else np.nan,
                        "df": e.df,
                        COV: float(f.cov[0, 1]),
                        DF: f.ratio_df(),
                    }
                )
        return pd.DataFrame(out)

    columns = ["budget_group", "voucher_id", "treated", *metrics, *METRICS.values(), *names]
    cast = [F.col(c).cast("double").alias(c) for c in columns[3:]]
    return (
        rows.select(*columns[:3], *cast)
        .groupBy("budget_group", "voucher_id")
        .applyInPandas(fit, _FIT_SCHEMA)
        .toPandas()
    )


def measured(cells: pd.DataFrame) -> pd.Series:
    """The cells with an estimate and an SE (each arm 2 customers or more)."""
    return np.isfinite(cells["estimate"]) & np.isfinite(cells["se"])


def with_totals(cells: pd.DataFrame) -> pd.DataFrame:
    """``cells`` and their totals: per group over its vouchers (voucher_id '*') and over
    the campaign ('*', '*'), per customer of the policy (the cells are independent
    samples, so their variances add). A total is over the measured cells only (their
    policy customers, predictions and outcomes alike): a cell without an estimate is left
    out, not counted as no effect; a total of no measured cell is NaN."""
    keys = ["metric", "adjustment"]
    parts = [cells]
    for by in (["budget_group"], []):
        for key, g in cells.groupby(by + keys):
            g = g[measured(g)]
            if g.empty:
                row = {"budget_group": "*", **dict(zip(by + keys, key, strict=True))}
                row |= {"voucher_id": "*", "n_policy": 0, "n_holdout": 0}
                parts.append(pd.DataFrame([row]).reindex(columns=cells.columns))
                continue
            n1, n0 = g["n_policy"].sum(), g["n_holdout"].sum()
            total = (g["estimate"] * g["n_policy"]).sum()
            row = {"budget_group": "*", **dict(zip(by + keys, key, strict=True)), "voucher_id": "*"}
            row |= {
                "n_policy": int(n1),
                "n_holdout": int(n0),
                "mean_policy": float((g["mean_policy"] * g["n_policy"]).sum() / n1),
                # weighted as the estimate, so mean_policy - mean_holdout is the
                # unadjusted total
                "mean_holdout": float((g["mean_holdout"] * g["n_policy"]).sum() / n1),
                "estimate": float(total / n1),
                "se": float(np.sqrt(((g["se"] * g["n_policy"]) ** 2).sum()) / n1),
                "predicted": float((g["predicted"] * g["n_policy"]).sum() / n1),
                COV: float((g[COV] * g["n_policy"] ** 2).sum() / n1**2),
            }
            parts.append(pd.DataFrame([row]))
    return pd.concat(parts, ignore_index=True)


def intervals(results: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """CIs, two-sided p-values and the incremental total of each row. A cell's (a row with
    a ``df``) are Student t's at its Welch-Satterthwaite df, as a cell may hold a few
    customers of an arm. The rows without stay normal: the group and campaign totals pool
    the cells, their decision is on the z scale of the looks' bounds (:mod:`.looks`), and
    the deciles split the campaign's units in ten."""
    out = results.copy()
    level = 0.5 + confidence / 2
    df = out["df"] if "df" in out else pd.Series(np.nan, index=out.index)
    cell = np.isfinite(df)
    df = df.where(cell, 1.0)  # a placeholder where the normal is taken
    ratio = np.abs(out["estimate"] / out["se"])
    quantile = np.where(cell, stats.t.ppf(level, df), stats.norm.ppf(level))
    out["ci_low"] = out["estimate"] - quantile * out["se"]
    out["ci_high"] = out["estimate"] + quantile * out["se"]
    out["p_value"] = np.where(cell, 2 * stats.t.sf(ratio, df), 2 * stats.norm.sf(ratio))
    out["incremental_total"] = out["estimate"] * out["n_policy"]
    return out
