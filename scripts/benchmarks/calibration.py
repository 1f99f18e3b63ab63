"""calibration: how often "each decile's mean predicted within 2 SE of the observed rate"
holds, for the default propensity model and for the planted probabilities themselves.

For each of W generated worlds (seeds 1000, 1001, ...; U users in G zones, the model's
windows: 3 training snapshots and the validation one), it fits the default model on the
training snapshots as ``train-propensity`` does, scores the validation snapshot, and builds
the reliability table (10 deciles, the SE clustered by the customer's zone) of the model and
of the oracle (the generator's own probability of an order in the horizon, the zone-day
shocks included) on the same customers. It prints, per world and over all of them, how many
deciles are within 2 SE, how many worlds have all ten (the check asked for), and all ten
within 2.81 SE (the same 5% test with Bonferroni's correction for ten deciles).

The limit it is compared with is the oracle: a score cannot be better calibrated than the
true probability, so the share of worlds where the oracle passes is the most any model can
reach. Checked: the oracle has a probability for every validation customer.

A third row separates the two ways a forecast misses: the model's scores shifted in
log-odds so that their mean is the validation week's observed rate (which no forecast
knows: the week's shocks and trend) leave only the shape of the scores to judge; the last
column, the spread over worlds of the mean z over the deciles, is the level's miss.
``--set`` (repeatable) changes the propensity config, e.g. ``propensity.drift=linear``.
"""

from __future__ import annotations

import argparse
import datetime as dt

import numpy as np
import pandas as pd
from scipy import optimize, stats

from benchmarks.measure import PeakRss, timed
from sparklift.config import load_config
from sparklift.predict.propensity import (
    evaluate,
    fit,
    model_features,
    snapshot_days,
    snapshot_frame,
)
from sparklift.session import build_session
from sparklift.synthetic.geo import activity_frame, draw_world
from sparklift.synthetic.purchase import purchase_probability

HELP = "the reliability table's 2-SE check over generated worlds: the model against the oracle"
RUN_DATE = dt.date(2026, 6, 30)
LABELS = {
    "model": "model",
    "level": "model at the week's observed level",
    "oracle": "oracle",
}
BONFERRONI = float(stats.norm.ppf(1 - 0.05 / 20))  # two-sided 5% over ten deciles: 2.81


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--worlds", type=int, default=20)
    parser.add_argument("--users", type=int, default=30_000)
    parser.add_argument("--zones", type=int, default=40)
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="a config override, as sparklift's --set (e.g. propensity.drift=linear)",
    )  # fmt: skip


def run(args: argparse.Namespace, workdir: str) -> None:
    overrides = [f"tables.base_path={workdir}", "spark.driver_memory=4g", "spark.log_level=ERROR"]
    overrides += args.set
    conf = load_config(None, overrides)
    spark = build_session(conf.spark, conf.tables.backend)
    pc = conf.propensity
    valid_day, train_days = snapshot_days(pc, RUN_DATE)
    days = pc.history_days + pc.horizon_days * (pc.train_snapshots + 1)
    names = model_features(pc)
    rows = []
    with PeakRss() as rss:
        for i in range(args.worlds):
            update = {"users": args.users, "zones": args.zones, "days": days, "seed": 1000 + i}
            gen = conf.generate.model_copy(update=update)
            world = draw_world(gen, RUN_DATE)
            row, seconds = timed(
                lambda: one_world(spark, world, gen, pc, valid_day, train_days, names)  # noqa: B023
            )
            rows.append(row | {"seconds": seconds})
            print(
                f"world {gen.seed}: {row['customers']:,} customers, ROC-AUC model "
                f"{row['auc_model']:.4f} oracle {row['auc_oracle']:.4f}; deciles within 2 SE: "
                f"model {row['model_2se']}/10 (max |z| {row['model_max_z']:.2f}), oracle "
                f"{row['oracle_2se']}/10 (max |z| {row['oracle_max_z']:.2f}) [{seconds:.0f}s]",
                flush=True,
            )
    summarize(pd.DataFrame(rows), rss.peak)


def one_world(spark, world, gen, pc, valid_day, train_days, names) -> dict:
    """The model's and the oracle's reliability on one world's validation snapshot."""
    activity = activity_frame(spark, world, gen).persist()
    try:
        frames = {s: snapshot_frame(activity, s, pc).toPandas() for s in [*train_days, valid_day]}
    finally:
        activity.unpersist()
    train = pd.concat([frames[s] for s in train_days], ignore_index=True)
    train = train.sort_values(["snapshot", "user_id"], ignore_index=True)
    model = fit(train, pc, pc.seed, trained_through=valid_day)
    valid = frames[valid_day]
    oracle = purchase_probability(spark, world, gen, valid_day, pc.horizon_days).toPandas()
    valid = valid.merge(oracle, on="user_id", how="left")
    if valid["p_purchase"].isna().any():
        raise AssertionError("the oracle lacks validation customers: not the same rows")
    y, zones = valid["label"].to_numpy(dtype=int), valid["zone"].to_numpy()
    p_model = model.predict(valid[names].to_numpy(dtype=float), valid_day)
    out: dict = {"world": gen.seed, "customers": len(valid)}
    scores = {"model": p_model, "level": at_level(p_model, y.mean())}
    for who, p in (*scores.items(), ("oracle", valid["p_purchase"].to_numpy())):
        ev = evaluate(y, p, pc.precision_target, zones)
        t = ev.reliability
        signed = (t["observed_rate"] - t["mean_predicted"]) / t["se"]
        z = signed.abs()
        out |= {
            f"auc_{who}": ev.metrics["roc_auc"],
            f"{who}_2se": int((z <= 2).sum()),
            f"{who}_max_z": float(z.max()),
            f"{who}_mean_z": float(signed.mean()),
            f"{who}_calibration_p": ev.metrics["calibration_p"],
        }
    return out


def at_level(p: np.ndarray, rate: float) -> np.ndarray:
    """``p`` shifted in log-odds so that its mean is ``rate``: the model's scores with the
    validation week's base rate known, which no forecast has (its shape alone)."""

    def shifted(s: float) -> np.ndarray:
        odds = np.exp(s) * p
        return odds / (odds + 1.0 - p)

    return shifted(optimize.brentq(lambda s: shifted(s).mean() - rate, -5.0, 5.0))


def summarize(r: pd.DataFrame, peak: int) -> None:
    n = len(r)
    print(
        f"\n{n} worlds, {r['customers'].mean():,.0f} validation customers each, "
        f"{r['seconds'].mean():.0f}s per world, peak memory {peak / 2**30:.2f} GiB"
    )
    header = ["score", "ROC-AUC (mean)", "deciles within 2 SE", "worlds: all 10 within 2 SE"]
    header += [f"worlds: all 10 within {BONFERRONI:.2f} SE", "joint calibration test p < 0.05"]
    header += ["mean z over deciles: sd over worlds"]
    print("| " + " | ".join(header) + " |\n|" + " --- |" * len(header))
    for who in ("model", "level", "oracle"):
        within, max_z = r[f"{who}_2se"], r[f"{who}_max_z"]
        cells = [LABELS[who], f"{r[f'auc_{who}'].mean():.4f}", f"{within.sum() / (10 * n):.1%}"]
        cells += [f"{(within == 10).sum()}/{n}", f"{(max_z <= BONFERRONI).sum()}/{n}"]
        cells += [
            f"{(r[f'{who}_calibration_p'] < 0.05).sum()}/{n}",
            f"{r[f'{who}_mean_z'].std():.2f}",
        ]
        print("| " + " | ".join(cells) + " |")
    gap = (r["auc_oracle"] - r["auc_model"]).max()
    print(f"largest ROC-AUC gap to the oracle: {gap:.4f} (target: within 0.03)")
