"""purchases: the propensity model on a REAL purchase log, against the Pareto/NBD model.

The generator plants each customer's purchase probability, which a real log lacks; but a
real log's future is observed, so any score of "an order in the next H days" is judged on
the validation snapshot's labels. The log is one row per purchase (customer, date, amount
and optionally a quantity and a zone: e.g. CDNOW's, 69,659 purchases of the 23,570
customers acquired by the CD retailer in the first quarter of 1997, up to June 1998,
shipped with the ``lifetimes`` package as ``lifetimes/datasets/CDNOW_master.txt``). It is
loaded as ``user_activity`` (one row per customer and day of purchase: orders, items, gmv,
tenure and the prior 28 days' orders and gmv, as the daily feed would hold; visits = orders,
the log has no visits; and ``orders_to_date``, the customer's orders before the day, a
lifetime column a model may list in ``propensity.columns``) and the ``train-propensity``
job runs on it as a user would, at its defaults unless ``--set`` says otherwise.

The peer is the textbook model of "will this customer buy again": Pareto/NBD (Schmittlein,
Morrison and Colombo, 1987; the ``lifetimes`` package's fit), fitted on every customer's
whole history up to the validation snapshot (repeat purchase days, recency, age), giving
P(at least one purchase in the next H days) = 1 - P(none | history). Both are valued on
exactly the job's validation customers with the job's own metrics (ROC-AUC, PR-AUC, Brier
score and its skill against the validation's own base rate, the reliability table and
Hosmer-Lemeshow), and each model's ROC-AUC difference from the peer's gets a paired
bootstrap interval. Checked: the model's ROC-AUC recomputed here from its artefact is the
job's stored one (the same rows).

Then (``--quality-days``, 60 by default) the default data quality checks of
``user_activity`` run day by day over the log's last days, as the nightly ``check`` step
would: every alarm is printed with its day (a real log is not known to be clean).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from benchmarks.faults import failures
from benchmarks.measure import PeakRss, same_work, timed
from sparklift.config import load_config
from sparklift.jobs import JobContext, propensity_io, train_propensity
from sparklift.predict.propensity import evaluate, model_features, snapshot_days, snapshot_frame
from sparklift.session import build_session
from sparklift.tables import Catalog

HELP = "the propensity model on a real purchase log, against Pareto/NBD (lifetimes)"
PRIOR_DAYS = 28  # the feed's prior_orders_28d / prior_gmv_28d


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--csv", required=True, help="one row per purchase")
    parser.add_argument("--customer", default="customer_id")
    parser.add_argument("--date", default="date")
    parser.add_argument("--date-format", default=None, help="e.g. %%Y%%m%%d (else inferred)")
    parser.add_argument("--amount", default="dollar_value")
    parser.add_argument("--quantity", default=None, help="items per purchase (else 1)")
    parser.add_argument("--zone", default=None, help="an integer zone per purchase (else 1)")
    parser.add_argument("--run-date", default=None, help="the job's run date (the log's last)")
    parser.add_argument("--learners", default="gbm,linear", help="comma-separated")
    parser.add_argument("--quality-days", type=int, default=60, help="days checked (0: none)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples of the customers")
    parser.add_argument("--set", action="append", default=[], help="config override, KEY=VALUE")


def load(args: argparse.Namespace) -> pd.DataFrame:
    """The log as purchases: customer (int64), day (datetime64), amount, quantity, zone."""
    with open(args.csv) as f:
        header = f.readline()
    sep = next((s for s in (",", "\t", ";") if s in header), r"\s+")  # else blanks (CDNOW's)
    raw = pd.read_csv(args.csv, sep=sep)
    named = {"customer": args.customer, "date": args.date, "amount": args.amount}
    named |= {k: v for k, v in (("quantity", args.quantity), ("zone", args.zone)) if v}
    missing = [c for c in named.values() if c not in raw.columns]
    if missing:
        raise SystemExit(f"{args.csv}: no columns {missing}; it has {list(raw.columns)}")
    out = pd.DataFrame({k: raw[c] for k, c in named.items()})
    out["customer"] = pd.to_numeric(out["customer"], errors="raise").astype(np.int64)
    out["day"] = pd.to_datetime(out["date"].astype(str), format=args.date_format).dt.normalize()
    out["amount"] = pd.to_numeric(out["amount"], errors="raise").astype(float)
    out["quantity"] = out.get("quantity", 1)
    out["zone"] = out["zone"].astype(np.int32) if "zone" in out else np.int32(1)
    return out.drop(columns="date")


def activity_rows(purchases: pd.DataFrame) -> pd.DataFrame:
    """``user_activity``'s rows: one per customer and day with a purchase, with the daily
    feed's columns (the tenure from the customer's first purchase; the prior 28 days'
    orders and gmv, the day itself excluded)."""
    day = purchases.groupby(["customer", "day"], as_index=False).agg(
        orders=("amount", "size"),
        items=("quantity", "sum"),
        gmv=("amount", "sum"),
        zone_id=("zone", "last"),
    )
    day = day.sort_values(["customer", "day"], ignore_index=True)
    first = day.groupby("customer")["day"].transform("min")
    prior = (
        day.set_index("day")
        .groupby("customer")[["orders", "gmv"]]
        .rolling(f"{PRIOR_DAYS}D", closed="left")
        .sum()
        .fillna(0.0)
        .reset_index(drop=True)
    )
    return pd.DataFrame(
        {
            "date": day["day"].dt.date,
            "user_id": day["customer"],
            "zone_id": day["zone_id"].astype(np.int32),
            "visits": day["orders"].astype(np.int64),
            "orders": day["orders"].astype(np.int64),
            "items": day["items"].astype(np.int64),
            "gmv": day["gmv"],
            "tenure_days": (day["day"] - first).dt.days.astype(np.int32),
            "prior_orders_28d": prior["orders"].astype(np.int32),
            "prior_gmv_28d": prior["gmv"],
            # a lifetime column (not in the contract; a feed may carry it): the orders
            # before the day, which a window shorter than the customer's life cannot sum
            "orders_to_date": (day.groupby("customer")["orders"].cumsum() - day["orders"]),
        }
    )


def pareto_nbd(purchases: pd.DataFrame, snapshot: dt.date, horizon: int) -> pd.Series:
    """P(at least one purchase in the ``horizon`` days after ``snapshot``) per customer,
    from Pareto/NBD fitted on every customer's purchase days up to ``snapshot``."""
    try:
        from lifetimes import ParetoNBDFitter
        from lifetimes.utils import summary_data_from_transaction_data
    except ImportError:
        raise SystemExit("the peer needs lifetimes: pip install lifetimes") from None
    seen = purchases[purchases["day"] <= pd.Timestamp(snapshot)]
    rfm = summary_data_from_transaction_data(
        seen, "customer", "day", observation_period_end=pd.Timestamp(snapshot), freq="D"
    )
    fitter = ParetoNBDFitter(penalizer_coef=0.0)
    fitter.fit(rfm["frequency"], rfm["recency"], rfm["T"])
    print(
        f"  Pareto/NBD on {len(rfm):,} customers up to {snapshot}: {dict(fitter.params_.round(4))}"
    )
    none = fitter.conditional_probability_of_n_purchases_up_to_time(
        0, horizon, rfm["frequency"], rfm["recency"], rfm["T"]
    )
    p = 1.0 - pd.Series(np.asarray(none, dtype=float), index=rfm.index)
    lost = ~np.isfinite(p)  # lifetimes overflows for the heaviest buyers (CDNOW: 1 customer)
    if lost.any():  # who bought on the snapshot day (recency = age) are alive for certain, and
        # P(none in t | alive) = ((alpha + T) / (alpha + T + t))^(r + x), death within t aside
        other = lost & (rfm["recency"] != rfm["T"])
        if other.any():  # not alive for certain: that formula would not be the peer's
            raise AssertionError(
                f"Pareto/NBD: no probability for customers {list(rfm.index[other])}"
            )
        r, alpha = fitter.params_["r"], fitter.params_["alpha"]
        x, age = rfm.loc[lost, "frequency"], rfm.loc[lost, "T"]
        p[lost] = 1.0 - ((alpha + age) / (alpha + age + horizon)) ** (r + x)
        print(f"  Pareto/NBD: {int(lost.sum())} customers scored by the alive-NBD formula")
    return p


def run(args: argparse.Namespace, workdir: str) -> None:
    purchases = load(args)
    rows = activity_rows(purchases)
    run_date = dt.date.fromisoformat(args.run_date) if args.run_date else max(rows["date"])
    conf = load_config(
        None,
        [
            f"tables.base_path={workdir}",
            f"tables.model_path={workdir}/models",
            "spark.driver_memory=4g",
            "spark.log_level=ERROR",
            *args.set,
        ],
    )
    spark = build_session(conf.spark, conf.tables.backend)
    catalog = Catalog(spark, conf.tables)
    ctx = JobContext(spark, conf, catalog, run_date)
    catalog.write("user_activity", spark.createDataFrame(rows))
    pc = conf.propensity
    valid_day, train_days = snapshot_days(pc, run_date)
    print(
        f"log {args.csv}: {len(purchases):,} purchases of {purchases['customer'].nunique():,} "
        f"customers, {rows['date'].min()}..{rows['date'].max()}, {len(rows):,} customer-days; "
        f"horizon {pc.horizon_days} days, history {pc.history_days}, training snapshots "
        f"{', '.join(map(str, train_days))}, validation {valid_day}"
    )
    valid = snapshot_frame(catalog.read("user_activity"), valid_day, pc).toPandas()
    y = valid["label"].to_numpy(dtype=int)
    scores: dict[str, np.ndarray] = {}
    with PeakRss() as rss:
        for learner in args.learners.split(","):
            trained, seconds = timed(
                lambda n=learner: train_propensity.run(ctx, SimpleNamespace(learner=n))
            )
            row = propensity_io.model_row(ctx, trained["model_id"])
            model, _ = propensity_io.load(ctx, row)
            p = model.predict(valid[model_features(pc)].to_numpy(dtype=float), valid_day)
            same_work(f"{learner}: validation customers", trained["validation_rows"], len(y))
            auc = evaluate(y, p, pc.precision_target).metrics["roc_auc"]
            same_work(f"{learner}: ROC-AUC", round(auc, 6), trained["metrics"]["roc_auc"])
            scores[f"sparklift {learner}"] = p
            print(f"  {learner}: trained on {trained['train_rows']:,} rows in {seconds:.1f} s")
        peer, seconds = timed(lambda: pareto_nbd(purchases, valid_day, pc.horizon_days))
        print(f"  Pareto/NBD fitted and scored in {seconds:.1f} s")
        scores["Pareto/NBD (lifetimes)"] = peer.reindex(valid["user_id"]).to_numpy()
        same_work("Pareto/NBD: validation customers scored", int(np.isfinite(
            scores["Pareto/NBD (lifetimes)"]).sum()), len(y))  # fmt: skip
        alarms = checked_days(ctx, rows, args.quality_days) if args.quality_days else None
    spark.stop()
    report(scores, y, pc.precision_target, valid_day, rss.peak, args)
    if alarms is not None:
        flagged = {d: f for d, f in alarms.items() if f}
        counts = Counter(name for f in alarms.values() for name, _ in f)
        print(
            f"RESULT quality: the default checks of user_activity alarmed on {len(flagged)} of "
            f"the log's last {len(alarms)} days (after a warm-up of window_days + season_days)"
            f": {dict(counts)}"
        )


def checked_days(ctx: JobContext, rows: pd.DataFrame, days: int) -> dict:
    """The default checks of ``user_activity`` day by day over the log's last ``days``
    days, after a warm-up of ``window_days + season_days`` that builds their history:
    the failed checks (name, severity) of each counted day. The log is real and not known
    to be clean: an alarm is printed with its day, to be read."""
    q = ctx.config.quality
    warmup = q.window_days + q.season_days
    zones = pd.DataFrame({"zone_id": sorted(rows["zone_id"].unique())})
    zones = zones.assign(region="all", eligible=True)
    ctx.catalog.write("zones", ctx.spark.createDataFrame(zones))
    last = max(rows["date"])
    first = last - dt.timedelta(days=warmup + days - 1)
    if first < min(rows["date"]):
        raise SystemExit(f"--quality-days {days}: the log starts after {first}")
    alarms = {}
    for k in range(warmup + days):
        day = first + dt.timedelta(days=k)
        failed = failures(JobContext(ctx.spark, ctx.config, ctx.catalog, day), "user_activity")
        if k >= warmup:
            alarms[day] = failed
        if failed:
            print(f"  {day} {'counted' if k >= warmup else 'warm-up'}: {failed}", flush=True)
    return alarms


def report(
    scores: dict, y: np.ndarray, target: float, day: dt.date, peak: int, args: argparse.Namespace
) -> None:
    """Each score's metrics on the validation customers, its reliability table, and its
    ROC-AUC's difference from the peer's with a paired bootstrap 95% interval."""
    print(
        f"\nRESULT purchases: {len(y):,} validation customers on {day}, base rate "
        f"{y.mean():.4f}; peak memory {peak / 2**30:.2f} GiB"
    )
    print(
        f"  {'score':26s} {'ROC-AUC':>8s} {'PR-AUC':>7s} {'recall@' + str(target):>11s}"
        f" {'Brier':>7s} {'Brier skill':>11s} {'HL p':>9s} {'deciles in 2 SE':>16s}"
    )
    base_brier = y.mean() * (1 - y.mean())
    tables = {}
    for name, p in scores.items():
        ev = evaluate(y, p, target)
        m, t = ev.metrics, ev.reliability
        tables[name] = t
        print(
            f"  {name:26s} {m['roc_auc']:8.4f} {m['pr_auc']:7.4f} {m['recall_at_precision']:11.3f}"
            f" {m['brier']:7.4f} {1 - m['brier'] / base_brier:11.3f} {m['calibration_p']:9.2g}"
            f" {int(t['within_2se'].sum()):13d}/10"
        )
    print("  reliability (mean predicted / observed per decile of each score):")
    for name, t in tables.items():
        cells = " ".join(
            f"{a:.3f}/{b:.3f}" for a, b in zip(t["mean_predicted"], t["observed_rate"], strict=True)
        )
        print(f"    {name:26s} {cells}")
    names = list(scores)
    peer = names[-1]
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(y), len(y)) for _ in range(args.bootstrap)]
    auc = {n: np.array([roc_auc_score(y[r], scores[n][r]) for r in draws]) for n in names}
    for name in names[:-1]:
        lo, hi = np.percentile(auc[name] - auc[peer], [2.5, 97.5])
        point = roc_auc_score(y, scores[name]) - roc_auc_score(y, scores[peer])
        print(f"  ROC-AUC {name} - {peer}: {point:+.4f} [{lo:+.4f}, {hi:+.4f}]")
    print(
        "  mean score: " + json.dumps({k: round(float(np.mean(v)), 4) for k, v in scores.items()})
    )
