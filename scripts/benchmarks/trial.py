"""trial: the learners' voucher policies on a REAL randomized trial, valued on the trial's
own held-out customers. The generator plants the effects the other benchmarks value
policies with; a real trial has no planted truth, but its randomization values any policy
without one: among the customers a policy sends arm j, those the trial happened to give j
and those it gave control are two random samples, so their difference in mean outcome
times the policy's count is the policy's incremental objective (summed over its arms).

The trial is one CSV row per customer (e.g. the GOTV social-pressure trial of Gerber, Green
and Larimer, 2008: ``--treatment treatment --control Control --objective voted --positive
Yes``). Its rows are loaded as table ``voucher_campaigns`` (numeric columns as features,
a label column of at most 10 levels as one indicator per level but the first; a sending
cost per arm, ``--arm-costs``, 1 by default) with each arm as a voucher, and each learner
is trained by the ``train-uplift`` job, at the arm shares the trial has. The job holds out
``uplift.holdout_share`` (30%) of the customers by a hash; the policies are valued on
exactly those customers, which no model saw. At the same budget (``--budget-share`` of the
held-out customers at the mean arm cost), the benchmark values:

- each learner's allocation: sparklift's solver (the ``allocate`` job's, in the driver's
  memory) on the learner's predicted objective and cost of every held-out customer;
- the learner's best single arm: the same solver allowed one arm only (the arm whose
  sends the learner predicts to be worth most);
- the best single arm sent to customers drawn at random (no model; the arm of largest
  average effect per unit cost on the customers trained on): its held-out average effect
  times the customers the budget sends it.

95% intervals and the paired differences (from the random sends, and from the first
learner's allocation) from ``--bootstrap`` resamples of the held-out customers (the
policies stay fixed: they were chosen on the other customers).

Checked: every held-out customer was scored by every learner, and the trained models saw
none of them (the job's held-out count is the benchmark's).
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd

from benchmarks.measure import same_work, timed
from benchmarks.uplift import RUN_DATE, uplift_conf
from sparklift.allocation.distributed import Problem
from sparklift.allocation.envelope import NONE
from sparklift.allocation.in_memory import Customers, solve_in_memory
from sparklift.jobs import JobContext, train_uplift
from sparklift.session import build_session
from sparklift.tables import Catalog
from sparklift.uplift import model

HELP = "learned voucher policies valued on a real randomized trial's held-out customers"
MAX_LEVELS = 10  # a label column of more levels is left out (an id, a free text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--csv", required=True, help="the trial, one row per customer")
    parser.add_argument("--treatment", required=True, help="the column naming each row's arm")
    parser.add_argument("--control", required=True, help="the control arm's label")
    parser.add_argument("--objective", required=True, help="the outcome's column")
    parser.add_argument("--positive", help="for a label outcome: the label counted as 1")
    parser.add_argument("--drop", default="", help="columns that are no features (the outcomes)")
    parser.add_argument("--arm-costs", default="", help="e.g. 'Self=0.5,Neighbors=0.6' (1)")
    parser.add_argument("--budget-share", type=float, default=0.2)
    parser.add_argument("--learners", default="dr_gbm,t_gbm", help="comma-separated")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="the bootstrap's")
    parser.add_argument("--set", action="append", default=[], help="config override, KEY=VALUE")


def arm_id(label: str) -> str:
    """A voucher id for an arm's label: lower case, other characters as _."""
    return re.sub(r"[^0-9a-z]+", "_", label.strip().lower()).strip("_")


def encode(frame: pd.DataFrame) -> pd.DataFrame:
    """Numeric columns as floats; a label column of at most MAX_LEVELS levels as one 0/1
    indicator per level but the first (sorted); any other column left out (printed)."""
    out = {}
    for c in frame.columns:
        s = frame[c]
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            out[arm_id(c)] = s.astype(float)
            continue
        levels = sorted(s.dropna().astype(str).unique())
        if len(levels) > MAX_LEVELS:
            print(f"  column {c!r} left out: {len(levels)} levels")
            continue
        for level in levels[1:]:
            out[arm_id(f"{c}_{level}")] = (s.astype(str) == level).astype(float).where(s.notna())
    return pd.DataFrame(out, index=frame.index)


def load(args: argparse.Namespace) -> tuple[pd.DataFrame, list[str], dict[str, float]]:
    """The trial as voucher_campaigns rows, its vouchers and each voucher's cost."""
    raw = pd.read_csv(args.csv)
    for c in (args.treatment, args.objective):
        if c not in raw.columns:
            raise SystemExit(f"{args.csv}: no column {c!r}; it has {list(raw.columns)}")
    dropped = [c for c in args.drop.split(",") if c and c not in (args.objective, args.treatment)]
    unknown = sorted(set(dropped) - set(raw.columns))
    if unknown:
        raise SystemExit(f"--drop: {args.csv} has no columns {unknown}")
    raw = raw.drop(columns=dropped)
    labels = raw.pop(args.treatment).astype(str).str.strip()
    if args.control not in set(labels):
        raise SystemExit(f"{args.csv}: no row of control arm {args.control!r}")
    y = raw.pop(args.objective)
    y = (y.astype(str) == args.positive) if args.positive else y
    arms = labels.map(lambda a: "control" if a == args.control else arm_id(a))
    vouchers = sorted(set(arms) - {"control"})
    costs = dict.fromkeys(vouchers, 1.0)
    for item in filter(None, args.arm_costs.split(",")):
        label, value = item.split("=")
        if arm_id(label) not in costs:
            raise SystemExit(f"--arm-costs: {label!r} is not a treated arm; they are {vouchers}")
        costs[arm_id(label)] = float(value)
    frame = pd.DataFrame(
        {
            "campaign_id": "trial",
            "sent_date": RUN_DATE - dt.timedelta(days=365),
            "customer_id": np.arange(1, len(raw) + 1, dtype=np.int64),
            "treatment": arms,
            "objective": y.astype(float),
            "cost": arms.map(lambda a: costs.get(a, 0.0)),
        }
    )
    features = encode(raw)
    taken = sorted(set(features.columns) & set(frame.columns))
    if taken:
        raise SystemExit(f"{args.csv}: feature columns {taken} would take a history column's name")
    return pd.concat([frame, features], axis=1), vouchers, costs


def run(args: argparse.Namespace, workdir: str) -> None:
    frame, vouchers, costs = load(args)
    shares = frame["treatment"].value_counts(normalize=True).round(6).to_dict()
    conf = uplift_conf(workdir, "uplift.arm_shares=" + repr(shares).replace("'", '"'), *args.set)
    spark = build_session(conf.spark, conf.tables.backend)
    catalog = Catalog(spark, conf.tables)
    ctx = JobContext(spark, conf, catalog, RUN_DATE)
    catalog.write("voucher_campaigns", spark.createDataFrame(frame))
    features = frame.drop(columns=["campaign_id", "sent_date", "treatment", "objective", "cost"])
    customers = features.assign(snapshot_date=RUN_DATE, budget_group="all")
    catalog.write("customers", spark.createDataFrame(customers))  # what train-uplift's features are
    schema = "voucher_id string, face_value double, max_quantity bigint, active boolean"
    rows = [(v, costs[v], None, True) for v in vouchers]
    catalog.write("vouchers", spark.createDataFrame(rows, schema))
    flags = catalog.read("voucher_campaigns").select(
        "customer_id", train_uplift.held_out(conf.uplift).alias("held")
    )
    held_ids = set(flags.where("held").toPandas()["customer_id"])
    is_held = frame["customer_id"].isin(held_ids)
    test, train = frame[is_held].reset_index(drop=True), frame[~is_held]
    c = np.array([costs[v] for v in vouchers])
    budget = args.budget_share * len(test) * c.mean()
    print(
        f"trial {args.csv}: {len(frame):,} customers, arms {shares}; valued on the "
        f"{len(test):,} held out, budget {budget:,.1f} (costs {costs})"
    )
    index = {v: j for j, v in enumerate(vouchers)}
    arm = test["treatment"].map(index).fillna(-1).to_numpy(dtype=int)
    y = test["objective"].to_numpy()
    seen = train["treatment"].map(index).fillna(-1).to_numpy(dtype=int)  # chosen on these
    best = max(
        range(len(vouchers)), key=lambda j: effect(seen, train["objective"].to_numpy(), j) / c[j]
    )
    sends = min(len(test), budget / c[best])
    policies = {  # the random sends of one arm: every customer's, scaled to the budget's count
        f"random sends of the best arm ({vouchers[best]})": (np.full(len(test), best), sends)
    }
    for name in args.learners.split(","):
        trained, t_train = timed(
            lambda n=name: train_uplift.run(ctx, SimpleNamespace(learner=n, override_checks=False))
        )
        same_work(f"{name}: held-out customers", trained["holdout_rows"], len(test))
        fitted = model.load(trained["artifact_path"], trained["features"], vouchers)
        x = test[list(fitted.features)].to_numpy(dtype=np.float64, na_value=np.nan)
        pred = fitted.predict(x)
        u = pred["objective"]
        same_work(f"{name}: held-out customers scored", len(u), len(test))
        cost = pred["cost"]
        policies[f"{name}: its allocation"] = (allocate(u, cost, budget), None)
        singles = [allocate(*alone(j, u, cost), budget) for j in range(len(vouchers))]
        j = max(range(len(vouchers)), key=lambda k: predicted(singles[k], u))
        policies[f"{name}: its best single arm ({vouchers[j]})"] = (singles[j], None)
        print(f"  {name}: trained in {t_train:.0f} s", flush=True)
    spark.stop()
    report(policies, arm, y, c, args)


def effect(arm: np.ndarray, y: np.ndarray, j: int, rows: np.ndarray | None = None) -> float:
    """Arm j's average effect: its customers' mean outcome minus control's."""
    if rows is not None:
        arm, y = arm[rows], y[rows]
    return float(y[arm == j].mean() - y[arm == -1].mean())


def predicted(choice: np.ndarray, u: np.ndarray) -> float:
    """The incremental objective the model predicts for sending each customer its choice."""
    sent = np.flatnonzero(choice >= 0)
    return float(u[sent, choice[sent]].sum())


def allocate(u: np.ndarray, c: np.ndarray, budget: float) -> np.ndarray:
    """Each customer's arm (-1: none) as sparklift's allocation gives it on the predicted
    (u, c) within the budget: the solver the ``allocate`` job runs in the driver's memory
    (ties at the budget's margin filled up to it)."""
    ids = np.arange(len(u), dtype=np.int64)
    cust = Customers(ids, np.full(len(u), "all", dtype=object), u, c)
    problem = Problem(vouchers=[f"v{j}" for j in range(u.shape[1])], budgets={"all": budget})
    choice = solve_in_memory(cust, problem).choice
    return np.where(choice == NONE, -1, choice)


def alone(j: int, u: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(u, c) of the policy that may send arm j only (the others unscored: NaN)."""
    mask = np.arange(u.shape[1]) != j
    return np.where(mask, np.nan, u), np.where(mask, np.nan, c)


def value(
    choice: np.ndarray, arm: np.ndarray, y: np.ndarray, share: np.ndarray, rows=None
) -> float:
    """The incremental objective of sending each customer its ``choice`` (-1: none): per
    arm j, the customers sent j times the mean outcome of those among them the trial gave
    j minus that of those it gave control (over the customers ``rows``, a resample). Where
    one of the two is empty (an arm sent to few customers), the arm's Horvitz-Thompson
    sum instead: each sent customer's outcome over the trial's ``share`` of its arm
    (``share[j]``; control's last), signed."""
    if rows is not None:
        choice, arm, y = choice[rows], arm[rows], y[rows]
    total = 0.0
    for j in np.unique(choice[choice >= 0]):
        sent = choice == j
        treated, control = sent & (arm == j), sent & (arm == -1)
        if treated.any() and control.any():
            total += sent.sum() * (y[treated].mean() - y[control].mean())
        else:
            total += y[treated].sum() / share[j] - y[control].sum() / share[-1]
    return float(total)


def report(policies: dict, arm: np.ndarray, y: np.ndarray, c: np.ndarray, args) -> None:
    """Each policy's sends, spend and incremental objective with its bootstrap 95% interval,
    and its difference from the random sends of the best arm (paired: same resamples)."""
    share = np.array([*(np.mean(arm == j) for j in range(len(c))), np.mean(arm == -1)])

    def worth(choice: np.ndarray, scale: float | None, rows=None) -> float:
        if scale is None:
            return value(choice, arm, y, share, rows)
        return scale * effect(arm, y, int(choice[0]), rows)

    rng = np.random.default_rng(args.seed)
    draws = [rng.integers(0, len(y), len(y)) for _ in range(args.bootstrap)]
    names = list(policies)
    boot = np.array([[worth(*policies[p], r) for p in names] for r in draws])
    point = np.array([worth(*policies[p]) for p in names])
    print(
        f"\nRESULT trial {args.csv}: incremental {args.objective} of each policy on the "
        f"{len(y):,} held-out customers (95% bootstrap interval, {args.bootstrap} resamples)"
    )
    print(
        f"  {'policy':46s} {'sends':>8s} {'spend':>9s} {'value':>9s} {'95% interval':>20s}"
        f" {'per 1k sends':>12s}  {'vs random (95% interval)':>27s}"
    )
    for k, p in enumerate(names):
        choice, scale = policies[p]
        sends = scale if scale is not None else np.count_nonzero(choice >= 0)
        spend = sends * c[int(choice[0])] if scale is not None else c[choice[choice >= 0]].sum()
        lo, hi = np.percentile(boot[:, k], [2.5, 97.5])
        dlo, dhi = np.percentile(boot[:, k] - boot[:, 0], [2.5, 97.5])
        print(
            f"  {p:46s} {sends:8,.0f} {spend:9,.1f} {point[k]:9.1f} [{lo:8.1f}, {hi:8.1f}]"
            f" {1000 * point[k] / sends:12.1f}  {point[k] - point[0]:+8.1f} "
            f"[{dlo:+7.1f}, {dhi:+7.1f}]"
        )
    first = names[1]  # the first learner's allocation: the others against it, paired
    print(f"  paired differences from {first} (95% interval):")
    for k, p in enumerate(names[2:], start=2):
        lo, hi = np.percentile(boot[:, k] - boot[:, 1], [2.5, 97.5])
        print(f"    {p:46s} {point[k] - point[1]:+8.1f} [{lo:+7.1f}, {hi:+7.1f}]")
