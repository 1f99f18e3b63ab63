"""``sparklift forecast``: the revenue forecast of every concluded experiment, metric and
variant -> ``forecasts`` (raw, shrunk towards past experiments, and corrected for the
winner's curse: :mod:`sparklift.geo.forecast`).

The lift is the experiment's final one: ``geo_results``' ``lift`` term on its
``concluded_on`` date, with the first clustered covariance of ``analysis.covariances`` (the
analysis writes lift rows only for those: :mod:`sparklift.post.lift`). Every
concluded experiment is forecast again on each run, because each new one changes the others'
shrinkage prior; the rows replace those experiments' partitions in one commit.
"""

from __future__ import annotations

import argparse

import pandas as pd
from pyspark.sql import functions as F

from sparklift.errors import ConfigError
from sparklift.geo.forecast import INPUT, forecasts
from sparklift.jobs import JobContext, log, write_records
from sparklift.stats import covariance
from sparklift.tables.publish import utcnow

HELP = "revenue forecasts of concluded experiments, raw and corrected, into forecasts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No arguments: every concluded experiment."""


def run(ctx: JobContext, args: argparse.Namespace) -> dict:
    catalog = ctx.catalog
    lifts, alphas = final_lifts(ctx)
    if lifts.empty:
        log.info("no concluded experiment with a final lift: nothing to forecast")
        return {"experiments": 0, "rows": 0}
    rows = forecasts(lifts, ctx.config.forecast, alphas)
    ids = sorted(rows["experiment_id"].unique())
    now = utcnow()
    records = [r | {"computed_at": now} for r in rows.to_dict("records")]
    version = write_records(catalog, "forecasts", records, {"experiment_id": ids})
    log.info("forecasts version %d: %d rows of %d experiments", version, len(rows), len(ids))
    return {
        "experiments": len(ids),
        "rows": len(rows),
        "version": version,
        "forecast_raw": float(pd.to_numeric(rows["forecast_raw"]).sum()),
    }


def lift_covariance(covariances: list[str]) -> str:
    """The first clustered covariance of ``analysis.covariances``: the first with lift rows."""
    clustered = [c for c in covariances if covariance.parse(c).kind == "cluster"]
    if not clustered:
        raise ConfigError(
            f"analysis.covariances {covariances}: the forecast needs the relative lift, which "
            "the analysis computes only with a clustered covariance; list zone, day or zone+day"
        )
    return clustered[0]


def final_lifts(ctx: JobContext) -> tuple[pd.DataFrame, dict[str, float]]:
    """Each concluded experiment's final lift per metric and variant with the first
    clustered covariance (columns ``INPUT``; none configured is an error only when there is
    an experiment to forecast), and each one's alpha per test, at which its decisions were
    taken (its alpha for rows written before it was recorded): a join of two small tables,
    collected."""
    catalog = ctx.catalog
    nothing = pd.DataFrame(columns=list(INPUT)), {}
    if not (catalog.exists("geo_experiments") and catalog.exists("geo_results")):
        return nothing
    concluded = (
        catalog.read("geo_experiments")
        .where(F.col("status") == "concluded")
        .select(  # decisions were taken at the alpha per test (over the comparisons)
            "experiment_id", "concluded_on", F.coalesce("alpha_per_test", "alpha").alias("alpha")
        )
    )
    if concluded.isEmpty():
        return nothing
    cov = lift_covariance(ctx.config.analysis.covariances)
    results = catalog.read("geo_results").where(
        (F.col("term") == "lift") & (F.col("cov_type") == cov)
    )
    joined = results.join(
        concluded,
        (results["experiment_id"] == concluded["experiment_id"])
        & (results["run_date"] == concluded["concluded_on"]),
    ).select(
        results["experiment_id"],
        "metric",
        "variant",
        "concluded_on",
        "cov_type",
        F.col("estimate").alias("lift"),
        F.col("se").alias("lift_se"),
        "p_value",
        "alpha",
    )
    frame = joined.toPandas()
    alphas = dict(zip(frame["experiment_id"], frame["alpha"].astype(float), strict=True))
    return frame[list(INPUT)], alphas
