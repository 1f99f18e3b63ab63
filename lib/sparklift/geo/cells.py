"""Per-(zone, day) sufficient statistics of user rows, in one Spark aggregation.

For the listed numeric columns v: the row count n, the sums of every v and the sums of
every product v_j * v_l (j <= l); optionally, for groups of columns (the covariates and one
metric), the sums of every product of three and four of them, which the heteroskedastic
covariance needs (35 more sums per metric with three covariates). The result has one row
per zone-day (thousands to a few hundred thousand), so it is collected; the estimators in
:mod:`sparklift.stats.twfe` then never touch user rows again. :func:`experiment_cells` is
the one read of an experiment's cells from ``user_activity`` (by design and analyze).
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import operator
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparklift.errors import InputError
from sparklift.finite import float_columns, nonfinite, refuse
from sparklift.geo.adjustment import (
    NO_HISTORY,
    UserCovariates,
    covariate_column,
    user_covariates,
)
from sparklift.geo.experiment import ExperimentConfig
from sparklift.quality.contract import ContractError, count_columns, counted, example, failures
from sparklift.quality.spec import TableSpec
from sparklift.stats.twfe import CellStats

if TYPE_CHECKING:
    from sparklift.tables import Catalog


def experiment_cells(
    catalog: Catalog,
    spec: ExperimentConfig,
    zone_ids: list[int],
    first: dt.date,
    last: dt.date,
    fourth_moments: bool = False,
    extra: Mapping[str, str] | None = None,
    pre_start: dt.date | None = None,
    contract: TableSpec | None = None,
) -> CellStats:
    """Cell statistics of the experiment's metrics and covariates over ``user_activity``
    rows of the zones ``zone_ids`` from ``first`` to ``last``, in one aggregation; with
    ``fourth_moments`` also the products the robust covariance needs (covariates and one
    metric at a time); ``extra`` adds columns name -> SQL expression over the rows (the
    decision gates' mix expressions). With the experiment's variance reduction, its user
    covariates (:mod:`sparklift.geo.adjustment`) for a pre-period starting on ``pre_start``
    (default ``first``) join the rows first. ``contract``: user_activity's checks, counted in
    the same aggregation over the columns read (:func:`cell_stats`)."""

    def read(start: dt.date, end: dt.date) -> DataFrame:
        return catalog.read("user_activity", where=[("date", ">=", start), ("date", "<=", end)])

    activity = read(first, last)
    metrics = [m.name for m in spec.metrics]
    columns = metrics + list(spec.covariates)
    missing = [c for c in columns if c not in activity.columns]
    if missing:
        raise InputError(
            f"table user_activity has no columns {missing} (metrics and covariates of "
            f"experiment {spec.experiment_id}); it has {activity.columns}"
        )
    zones = catalog.spark.createDataFrame([(int(z),) for z in zone_ids], "zone_id int")
    rows = activity.join(F.broadcast(zones), "zone_id", "left_semi")
    with user_covariates(read, spec, zones, pre_start or first) as covs:
        adjustment = covs.columns if covs else []
        if covs:
            rows = covs.join(rows)
        higher = None
        if fourth_moments:  # per metric: covariates, its adjustment covariate and flag
            higher = [[*spec.covariates, *metric_covariates_of(covs, m), m] for m in metrics]
        return _cells(rows, columns, adjustment, higher, extra, contract)


def metric_covariates_of(covs: UserCovariates | None, metric: str) -> list[str]:
    """The adjustment columns of ``metric``: its covariate and the no-history flag."""
    if covs is None:
        return []
    return [covariate_column(covs.method, metric), NO_HISTORY]


def _cells(
    rows: DataFrame,
    columns: list[str],
    adjustment: list[str],
    higher: list[list[str]] | None,
    extra: Mapping[str, str] | None,
    contract: TableSpec | None,
) -> CellStats:
    derived = []
    for name, expression in (extra or {}).items():
        try:
            derived.append(F.expr(expression).cast("double").alias(name))
            rows.select(derived[-1]).schema  # noqa: B018  (analysed here: errors name it)
        except AnalysisException as e:
            raise InputError(
                f"{name}: expression {expression!r} over table user_activity does not "
                f"resolve ({e.getMessage().splitlines()[0]})"
            ) from None
    names = columns + adjustment
    rows = rows.select("zone_id", "date", *names, *derived)
    return cell_stats(rows, names + list(extra or {}), higher=higher, contract=contract)


def cell_stats(
    rows: DataFrame,
    columns: list[str],
    table: str = "user_activity",
    higher: list[list[str]] | None = None,
    contract: TableSpec | None = None,
) -> CellStats:
    """Aggregate ``rows`` (zone_id, date and ``columns``) into :class:`CellStats`, with the
    3rd and 4th order product sums within each group of ``higher``. ``contract``: the
    table's checks, counted in the same aggregation over the columns ``rows`` has and
    refused per date as a :class:`ContractError` (before the nulls the estimators refuse)."""
    missing = [c for c in ("zone_id", "date", *columns) if c not in rows.columns]
    if missing:
        raise InputError(f"table {table}: missing columns {missing}")
    pairs = [(a, b) for i, a in enumerate(columns) for b in columns[i:]]
    aggs = [F.count(F.lit(1)).alias("n")]
    floats = float_columns(rows, columns)
    bad = [F.col(c).isNull() for c in columns] + [nonfinite(c) for c in floats]
    aggs.append(F.count_if(functools.reduce(operator.or_, bad)).alias("bad_rows"))
    aggs += [F.sum(F.col(c).cast("double")).alias(f"s__{c}") for c in columns]
    aggs += [
        F.sum(F.col(a).cast("double") * F.col(b).cast("double")).alias(f"q__{a}__{b}")
        for a, b in pairs
    ]
    combos = sorted(
        {
            c
            for group in higher or []
            for degree in (3, 4)
            for c in itertools.combinations_with_replacement(sorted(group), degree)
        }
    )
    dbl = {c: F.col(c).cast("double") for c in columns}
    aggs += [
        F.sum(functools.reduce(operator.mul, [dbl[c] for c in combo])).alias(
            "h__" + "__".join(combo)
        )
        for combo in combos
    ]
    if contract is not None:
        aggs += count_columns(contract, rows)
    pdf = rows.groupBy("zone_id", "date").agg(*aggs).toPandas()
    if contract is not None:
        _refuse_contract(contract, rows, pdf, table)
    if pdf["bad_rows"].sum() > 0:  # the error path: name the columns in a second query
        counts = rows.agg(
            *[F.count_if(F.col(c).isNull()).alias(c) for c in columns],
            *[F.count_if(nonfinite(c)).alias(f"nf_{c}") for c in floats],
        ).first()
        refuse(table, {c: counts[f"nf_{c}"] for c in floats}, rows, ["zone_id", "date"])
        nulls = {c: counts[c] for c in columns if counts[c]}
        raise InputError(f"table {table}: null values in {nulls} (column: rows); expected none")
    if pdf["zone_id"].isna().any():
        raise InputError(f"table {table}: rows with a null zone_id")
    m = len(columns)
    cross = np.empty((len(pdf), m, m))
    for a, b in pairs:
        i, j = columns.index(a), columns.index(b)
        cross[:, i, j] = cross[:, j, i] = pdf[f"q__{a}__{b}"].to_numpy(dtype=float)
    return CellStats(
        zone=pdf["zone_id"].to_numpy(),
        day=pdf["date"].to_numpy(),
        n=pdf["n"].to_numpy(dtype=float),
        names=tuple(columns),
        sums=pdf[[f"s__{c}" for c in columns]].to_numpy(dtype=float),
        cross=cross,
        higher={c: pdf["h__" + "__".join(c)].to_numpy(dtype=float) for c in combos},
    )


def _refuse_contract(contract: TableSpec, rows: DataFrame, pdf: pd.DataFrame, table: str) -> None:
    """Refuse the first date whose summed counts fail the table's error checks."""
    names = [f"{kind}:{x}" for kind, x in counted(contract, rows)]
    by_day = pdf.groupby("date")[names].sum() if names else pd.DataFrame()
    failed = {  # pandas may hold a date as a Timestamp: the partition's date
        d.date() if isinstance(d, dt.datetime) else d: failures(
            contract, {n: float(v) for n, v in r.items()}
        )
        for d, r in by_day.iterrows()
    }
    if any(failed.values()):
        day, results = next((d, rs) for d, rs in sorted(failed.items()) if rs)
        shown = example(contract, rows, results[0], ["zone_id", "date"], day)
        raise ContractError(table, failed, shown)
