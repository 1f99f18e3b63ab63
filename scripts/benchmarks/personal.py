"""personal: does the allocation pick the right voucher for each customer? On the
generator's history (286k rows by default, 30% held out: 200k to train, 3 vouchers) and
100k customers, in the ``distinct`` world (each voucher appeals to customers of its own)
and, for comparison, the ``scaled`` one (one shape for every voucher), each learner is trained
by the ``train-uplift`` job and its saved model scores every customer; then at a fixed
budget the allocation computed from its scores is valued by the planted effects, against
the allocation computed from the planted u and c themselves (the oracle) and against the
best single-voucher policy. Per learner it also reports how well each voucher's customers
are ranked (the planted effect of the voucher's top 20% by prediction, as a share of the
top 20% by planted effect; the worst voucher's share) and its predict time on the 100k
customers (both responses, one process), to compare with the default learner's.
One trained model's noise moves its share by many points, so
``--seeds`` repeats it over several generated worlds and the summary gives each policy's
mean, worst and how many worlds reach 85% of the oracle; ``--history`` sets the
randomized history's rows, to show how much of it a learner needs. A learner may carry
config overrides of its own (``name[key=value;key=value]``, values without commas or
brackets; the models' keys, ``uplift.*``: the tables and the session stay the world's),
to compare settings on the same worlds in one run:
``--learners 'dr_gbm,dr_gbm[uplift.gbm.min_samples_leaf=1000]'`` trains ``dr_gbm`` with
its default outcome models' leaves, then with leaves of 1,000 rows.

The allocation here is the Lagrangian rule the solver certifies (each customer takes the
voucher with the largest u - lambda c when it is positive), computed in NumPy for every
policy alike, with lambda set by bisection so that the policy's TRUE expected cost is
the budget: policies are compared at the same real spend, whatever their predicted costs.
The budget is a third of what the oracle spends with lambda = 0 (every customer helped
gets its best voucher).

Checked: each model scored every customer, whose planted effects value its allocation.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from benchmarks.measure import same_work, timed
from benchmarks.uplift import CUSTOMERS, HISTORY, VOUCHERS, generated_world, uplift_conf
from sparklift.jobs import train_uplift
from sparklift.synthetic import vouchers
from sparklift.uplift import model

HELP = "allocations from each learner's scores against the planted-truth allocation"
LEARNERS = ("dr_gbm", "t_gbm", "dr_gbm+t_gbm")
TARGET = 0.85  # issue 19: the default learner's allocation reaches 85% of the oracle's


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget-share", type=float, default=1 / 3)
    parser.add_argument("--seeds", default="7", help="the generator's seeds, comma-separated")
    parser.add_argument("--worlds", default="distinct,scaled", help="comma-separated")
    parser.add_argument("--history", type=int, default=HISTORY, help="randomized rows")
    parser.add_argument(
        "--learners",
        default=",".join(LEARNERS),
        help="comma-separated; each may carry config overrides: name[key=value;key=value]",
    )


def learner_spec(spec: str) -> tuple[str, list[str]]:
    """A ``--learners`` entry's learner and its config overrides: ``name[k=v;k=v]``."""
    found = re.fullmatch(r"([^\[\]]+)(?:\[([^\[\]]*)\])?", spec)
    if found is None:
        raise SystemExit(f"--learners: {spec!r} is not name or name[key=value;...]")
    name, sets = found.groups()
    return name, [x for x in (sets or "").split(";") if x]


def choose(u: np.ndarray, c: np.ndarray, lam: float) -> np.ndarray:
    """Each customer's voucher index under the rule u - lambda c (-1: none)."""
    margin = u - lam * c
    best = margin.argmax(axis=1)
    return np.where(margin.max(axis=1) > 0, best, -1)


def true_totals(choice: np.ndarray, tau: np.ndarray, cost: np.ndarray) -> tuple[float, float]:
    """The planted objective and expected cost of the chosen (customer, voucher) pairs."""
    rows = np.flatnonzero(choice >= 0)
    return float(tau[rows, choice[rows]].sum()), float(cost[rows, choice[rows]].sum())


def allocate(u, c, tau, cost, budget: float) -> tuple[float, float, float]:
    """(planted value, planted cost, lambda) of the rule on (u, c) whose planted cost is the
    budget (the rule's cost falls as lambda rises)."""
    lo, hi = 0.0, 1.0
    for _ in range(40):  # pairs predicted to cost nothing stay chosen at any lambda
        if true_totals(choose(u, c, hi), tau, cost)[1] <= budget:
            break
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        if true_totals(choose(u, c, mid), tau, cost)[1] > budget:
            lo = mid
        else:
            hi = mid
    value, spent = true_totals(choose(u, c, hi), tau, cost)
    return value, spent, hi


def run(args: argparse.Namespace, workdir: str) -> None:
    results = []
    for world in args.worlds.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            out = bench_world(Path(workdir) / f"{world}{seed}", world, seed, args)
            results += [(world, seed, *r) for r in out]
    print(f"\nRESULT personal voucher choice ({args.history:,} history rows): planted value "
          "at the same planted spend")  # fmt: skip
    width = max(38, *(len(r[2]) for r in results))
    print(f"  world     seed  {'policy':{width}s}   value   share of oracle")
    for world, seed, policy, value, oracle, _ in results:
        print(f"  {world:9s} {seed:4d}  {policy:{width}s} {value:9.1f}   {value / oracle:6.3f}")
    print(f"\nRESULT summary over seeds: share of the oracle (mean, worst, worlds >= {TARGET})")
    for world in args.worlds.split(","):
        policies = dict.fromkeys(p for w, _, p, *_ in results if w == world)
        for policy in policies:
            rows = np.array(
                [(v / o, r) for w, _, p, v, o, r in results if (w, p) == (world, policy)]
            )
            shares, ranks = rows[:, 0], rows[:, 1]
            ranked = "" if np.isnan(ranks).all() else f"  top 20% worst voucher {ranks.mean():.3f}"
            print(
                f"  {world:9s} {policy:{width}s} mean {shares.mean():.3f}  worst {shares.min():.3f}"
                f"  >= {TARGET}: {int((shares >= TARGET).sum())}/{len(shares)}{ranked}"
            )


def bench_world(workdir: Path, world: str, seed: int, args: argparse.Namespace) -> list[tuple]:
    """(policy, planted value, oracle's planted value, the worst voucher's top-20% share;
    NaN where it does not apply) of every policy in one world."""
    world_sets = [f"generate.voucher_effects={world}", f"generate.seed={seed}"]
    ctx = generated_world(str(workdir), *world_sets, history=args.history)
    ids = vouchers.voucher_ids(VOUCHERS)
    faces = {v: vouchers.FACE_VALUES[j] for j, v in enumerate(ids)}
    truth = vouchers.true_uplift(ctx.catalog.read("customers"), faces, world)
    truth = truth.select("customer_id", "voucher_id", "tau_objective", "tau_cost").toPandas()
    tau = truth.pivot(index="customer_id", columns="voucher_id", values="tau_objective")[ids]
    cost = truth.pivot(index="customer_id", columns="voucher_id", values="tau_cost")[ids]
    tau_m, cost_m = tau.to_numpy(), cost.to_numpy()
    budget = args.budget_share * true_totals(choose(tau_m, cost_m, 0.0), tau_m, cost_m)[1]
    oracle, _, lam = allocate(tau_m, cost_m, tau_m, cost_m, budget)
    print(f"{world}: budget {budget:.1f}, oracle value {oracle:.1f} (lambda {lam:.4f})")
    out = [("oracle (planted u and c)", oracle, oracle, 1.0)]
    singles = [allocate(*only(j, tau_m, cost_m), tau_m, cost_m, budget)[0] for j in range(3)]
    out.append(("oracle, its best single voucher", max(singles), oracle, np.nan))
    print(f"  the oracle's best single voucher: {ids[int(np.argmax(singles))]}")
    for spec in args.learners.split(","):
        name, sets = learner_spec(spec)
        conf = uplift_conf(str(workdir), *world_sets, *sets) if sets else ctx.config
        job = dataclasses.replace(ctx, config=conf)
        trained, t_train = timed(
            lambda n=name, j=job: train_uplift.run(
                j, SimpleNamespace(learner=n, override_checks=False)
            )
        )
        fitted = model.load(trained["artifact_path"], trained["features"], ids)
        rows = ctx.catalog.read("customers").select("customer_id", *fitted.features)
        X = rows.toPandas().set_index("customer_id").loc[tau.index]
        same_work(f"{world} {name}: customers scored", len(X), CUSTOMERS)
        features = X.to_numpy(dtype=np.float64, na_value=np.nan)
        pred, t_predict = timed(lambda f=fitted, x=features: f.predict(x))
        u, c = pred["objective"], pred["cost"]
        long = {"uplift_objective": u, "uplift_cost": c, "tau_objective": tau_m, "tau_cost": cost_m}
        scored = pd.DataFrame({k: v.ravel() for k, v in long.items()})
        scored["voucher_id"] = np.tile(ids, len(u))
        ranks = [r["captured"] for r in vouchers.truth_report(scored).values()]
        value = allocate(u, c, tau_m, cost_m, budget)[0]
        out.append((spec, value, oracle, min(ranks)))
        singles = [allocate(*only(j, u, c), tau_m, cost_m, budget)[0] for j in range(3)]
        best = int(np.argmax(singles))
        out.append((f"{spec}: its best single voucher", singles[best], oracle, np.nan))
        print(
            f"  {world} {seed} {spec}: trained in {t_train:.0f} s, value {value:.1f} = "
            f"{value / oracle:.3f} of the oracle; its best single voucher {ids[best]} "
            f"{singles[best]:.1f}; top 20% per voucher {np.round(ranks, 3).tolist()}; "
            f"predict {t_predict:.2f} s ({CUSTOMERS / t_predict / 1e3:.0f} k customers/s)",
            flush=True,
        )
    shutil.rmtree(workdir, ignore_errors=True)
    return out


def only(j: int, u: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(u, c) of the policy that may give voucher j only."""
    alone = np.full_like(u, -np.inf)
    alone[:, j] = u[:, j]
    return alone, c
