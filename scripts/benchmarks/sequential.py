"""sequential: the acceptance simulation of group sequential monitoring (issue 17) on the
generator's worlds, with sparklift's own design. Each world has 84 days: its first 56 are the
design's history (pre 28 + pseudo post 28 days ending on the design run date, as
``jobs/design.py`` takes them), the experiment runs on days 57-84; metric orders, alpha 0.05,
power 0.8, the default plan (O'Brien-Fleming-type spending, two-sided, a look every 7 days).

Per world, on the driver, the design as ``sparklift design`` makes it: each eligible zone's
matching vector (its user-days and orders on each of the ``lookback_days`` days ending on day
56, the features job's ``active_users`` and ``orders``), ``match_zones`` (PCA, greedy pairs)
and ``randomize`` (K pairs, control and treatment shuffled in each; K = all pairs unless
``--zones-per-variant``); then ``design_checks`` on days 1-56 (pseudo start day 29) gives the
maximum information and the planned fractions. On each post day d, the TWFE fit of the
assigned zones on days 29..56+d with the decisions' inference (the zone jackknife, t(G - 1))
at the looks, as analyze does, and ``monitoring.decide`` with the history of earlier looks,
until a terminal decision. Scenarios:

- A/A (``--worlds``, lift 0): the false-positive rate of naive daily peeking (p < 0.05 on
  any of the 28 days) and of the sequential plan (efficacy or harm), the latter at most
  alpha + 2 Monte Carlo standard errors;
- MDE: the plan's MDE relative to the treated zones' baseline orders per user-day (median
  over the A/A worlds of the design's ``sequential_mde`` / baseline) planted on each A/A
  world's designed treatment zones: the realized power (efficacy) within 3 points of the
  plan's (the mean over worlds of the design's ``sequential_power`` at the true ATT);
- 1.5 x MDE: the mean stopping day at least 35% shorter than the 28-day horizon.

The effect worlds are the A/A worlds (same seeds, same drawn world) with the generator's
lift planted on the designed treatment zones from day 57: ``treated``, ``lift`` (the mean
lift x U(0.4, 1.6) per zone, the generator's heterogeneity, from a stream of the seed) and
``effect_start`` of the A/A ``GeoWorld`` replaced. Not ``draw_world`` with a lift: it draws
the treated zones before the day shocks from the same generator, so the whole history would
change. Rows are hashed from the seed, so days 1-56 are the A/A world's; the run asserts it on
the cells of every world, so the A/A design is the effect world's design.

For diagnosis it also prints the one test at day 28 (the DiD test's own size), the same
plan on calendar time (no design information) and with observed information fractions
(``sequential.information: observed``), per look the planned and reached
information fractions, (se_K / se)^2, the bounds and the share crossing, and the time to
compute a plan of 100 looks (issue 17: at most 1 s).

All worlds of a scenario are generated and aggregated to zone-day cells in one Spark job, as
``tests/test_did_acceptance.py`` does. Exits non-zero, naming the figure, if one misses.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from benchmarks.sequential_worlds import (
    HISTORY,
    NAIVE_ALPHA,
    POST,
    aggregate,
    design,
    draw,
    generator,
    parts,
    plant,
    same_history,
    simulate_all,
)
from sparklift.config import load_config
from sparklift.session import build_session
from sparklift.stats.sequential import plan, spending
from sparklift.stats.twfe import CellStats

HELP = "FPR, power and stopping time of the sequential plan over simulated geo worlds"
POWER_TOLERANCE, STOP_REDUCTION, PLAN_SECONDS = 0.03, 0.35, 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--worlds", type=int, default=500, help="worlds per scenario")
    parser.add_argument("--zones", type=int, default=48, help="zones per world")
    parser.add_argument("--users", type=int, default=4000, help="users per world")
    parser.add_argument(
        "--zones-per-variant", type=int, default=None, help="K matched pairs (default: all)"
    )


def run(args: argparse.Namespace, workdir: str) -> None:
    misses = bench_sequential(args.worlds, args.zones, args.users, args.zones_per_variant, workdir)
    if misses:
        raise SystemExit("acceptance missed:\n  " + "\n  ".join(misses))


def rate(x) -> tuple[float, float]:
    """A Monte Carlo proportion and its standard error."""
    p = float(np.mean(x))
    return p, float(np.sqrt(p * (1 - p) / len(x)))


def plan_seconds() -> float:
    """Best of 3: the time to compute a plan of 100 equally spaced looks (issue 17)."""
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        plan(np.linspace(0.01, 1, 100), alpha=0.025, beta=0.1, futility=spending("hsd", -2))
        best = min(best, time.perf_counter() - t0)
    return float(best)


def spark_line(cells: CellStats, seconds: float) -> int:
    rows = int(cells.n.sum())
    print(f"  one Spark job: {rows:,} rows in {len(cells.n):,} cells, {seconds:.0f}s "
          f"({rows / seconds / 1e6:.2f}M rows/s)", flush=True)  # fmt: skip
    return rows


def bench_sequential(n: int, zones: int, users: int, k: int | None, workdir: str) -> list[str]:
    conf = load_config(
        None, [f"tables.base_path={workdir}", "spark.driver_memory=4g", "spark.log_level=ERROR"]
    )
    spec_defaults = conf.design.model_dump()
    t_start = time.perf_counter()
    t_plan = plan_seconds()
    spark = build_session(conf.spark, conf.tables.backend)
    pairs = draw(generator(zones, users), n)
    print(
        f"A/A: {n} worlds of {zones} zones, {users:,} users, {HISTORY + POST} days ...", flush=True
    )
    aa_cells, t_spark = aggregate(spark, pairs)
    rows = spark_line(aa_cells, t_spark)
    t0 = time.perf_counter()
    designs = [
        design(part, day_no, w, conf_.seed, spec_defaults, k)
        for (w, conf_), (part, day_no) in zip(
            pairs, parts(aa_cells, [c.seed for _, c in pairs]), strict=True
        )
    ]
    aa = simulate_all(aa_cells, designs, spec_defaults, path=True)
    print(f"  designs (match, randomize, checks) and 28 daily fits per world on the driver: "
          f"{time.perf_counter() - t0:.0f}s", flush=True)  # fmt: skip
    mde = float(aa["mde_relative"].median())
    q1, q3 = aa["mde_relative"].quantile([0.25, 0.75])
    print(f"  the plan's MDE: {mde:.4f} relative (median over worlds; IQR {q1:.4f}-{q3:.4f})")

    eff = {}
    for name, lift in {"MDE": mde, "1.5 x MDE": 1.5 * mde}.items():
        print(f"{name}: the {n} A/A worlds, lift {lift:.4f} on the designed treatment zones ...")
        cells, t = aggregate(spark, plant(pairs, designs, lift))
        same_history(aa_cells, cells)
        print(f"  days 1-{HISTORY}: cells identical to the A/A worlds' (asserted)")
        rows += spark_line(cells, t)
        t_spark += t
        t0 = time.perf_counter()
        eff[name] = simulate_all(cells, designs, spec_defaults, path=False)
        print(f"  design checks and the look fits on the driver: "
              f"{time.perf_counter() - t0:.0f}s", flush=True)  # fmt: skip
    spark.stop()
    return report(aa, eff, n, time.perf_counter() - t_start, rows, t_spark, t_plan)


def report(
    aa: pd.DataFrame,
    eff: dict[str, pd.DataFrame],
    n: int,
    wall: float,
    rows: int,
    t_spark: float,
    t_plan: float,
) -> list[str]:
    alpha = float(aa["alpha"].iloc[0])
    misses = []
    naive, naive_se = rate(aa["naive"])
    fixed, fixed_se = rate(aa["fixed"])
    seq, seq_se = rate(aa["decision"].isin(["efficacy", "harm"]))
    limit = alpha + 2 * np.sqrt(alpha * (1 - alpha) / n)
    print("\nRESULT sequential benchmark")
    print(f"  design: K = {aa['k'].median():.0f} matched pairs per world (median; range "
          f"{aa['k'].min()}-{aa['k'].max()}), within-pair distance / random pairs' "
          f"{aa['distance_ratio'].median():.3f} (median); the largest treatment zone "
          f"holds {aa['top_share'].median():.1%} of the treatment zones' history rows "
          "(median)")  # fmt: skip
    print(f"  A/A ({n} worlds), alpha {alpha}:")
    print(f"    naive daily peeking (p < {NAIVE_ALPHA} on any of {POST} days): FPR {naive:.3f} "
          f"(MC se {naive_se:.3f})")  # fmt: skip
    print(f"    one test at day {POST}, zone-clustered against t(N - k) as geo_results reports "
          f"it: FPR {fixed:.3f} (MC se {fixed_se:.3f}); with the decisions' inference "
          f"(df {aa['decision_df'].median():.1f}, median): {rate(aa['fixed_d'])[0]:.3f}; "
          f"median G* {aa['g_star'].median():.1f} of {aa['k'].median() * 2:.0f} "
          "zones")  # fmt: skip
    print(f"    sequential plan (efficacy or harm at a weekly look): FPR {seq:.3f} (MC se "
          f"{seq_se:.3f}); target <= alpha + 2 MC se = {limit:.3f}")  # fmt: skip
    print(f"    mean stopping day {aa['stop_day'].mean():.2f} (plan's expected days under H0 "
          f"{aa['plan_days_h0'].mean():.2f})")  # fmt: skip
    cal, cal_se = rate(aa["calendar_decision"].isin(["efficacy", "harm"]))
    print(f"    the same plan on calendar time (no design information): FPR {cal:.3f} (MC se "
          f"{cal_se:.3f}), mean stopping day {aa['calendar_stop_day'].mean():.2f}")  # fmt: skip
    ob, ob_se = rate(aa["observed_decision"].isin(["efficacy", "harm"]))
    print(f"    the same plan with observed fractions ((se_K / se)^2, capped): FPR {ob:.3f} "
          f"(MC se {ob_se:.3f}), mean stop {aa['observed_stop_day'].mean():.2f}")  # fmt: skip
    looks_summary(aa, "")
    print(
        "    the calendar-time stream (it stops on crossings only, so its worlds at later "
        "looks are not selected by t):"
    )
    looks_summary(aa, "calendar_")
    if seq > limit:
        misses.append(f"A/A sequential FPR {seq:.3f} > {limit:.3f}")
    m = eff["MDE"]
    power, power_se = rate(m["decision"] == "efficacy")
    planned = float(m["plan_power"].mean())
    print(f"  MDE ({n} worlds, lift {m['att'].mean() / m['baseline'].mean():.4f} of the treated "
          f"baseline; true ATT mean {m['att'].mean():.5f}, drift ATT/se_K mean "
          f"{(m['att'] / m['se_k']).mean():.2f}):")  # fmt: skip
    print(f"    realized power {power:.3f} (MC se {power_se:.3f}); the plan's power at each "
          f"world's true ATT, mean {planned:.3f}; difference {power - planned:+.3f} "
          f"(target within +-{POWER_TOLERANCE})")  # fmt: skip
    print(f"    harm decisions {np.mean(m['decision'] == 'harm'):.3f}; mean stopping day "
          f"{m['stop_day'].mean():.2f} (plan: {m['plan_days'].mean():.2f})")  # fmt: skip
    print(f"    on calendar time: power {np.mean(m['calendar_decision'] == 'efficacy'):.3f}, "
          f"mean stopping day {m['calendar_stop_day'].mean():.2f}; with observed fractions: "
          f"power {np.mean(m['observed_decision'] == 'efficacy'):.3f}, mean stopping day "
          f"{m['observed_stop_day'].mean():.2f}")  # fmt: skip
    if abs(power - planned) > POWER_TOLERANCE:
        misses.append(f"MDE power {power:.3f} vs the plan's {planned:.3f}")
    h = eff["1.5 x MDE"]
    stop = float(h["stop_day"].mean())
    shorter = 1 - stop / POST
    print(f"  1.5 x MDE ({n} worlds): mean stopping day {stop:.2f} of {POST} "
          f"({shorter:.1%} shorter; target >= {STOP_REDUCTION:.0%}); plan's expected days "
          f"{h['plan_days'].mean():.2f}; power {np.mean(h['decision'] == 'efficacy'):.3f} "
          f"(plan {h['plan_power'].mean():.3f})")  # fmt: skip
    days = sorted(h["stop_day"].unique())
    shares = ", ".join(f"day {d}: {np.mean(h['stop_day'] == d):.3f}" for d in days)
    print(f"    stopping day distribution: {shares}")
    print(f"    on calendar time: mean stopping day {h['calendar_stop_day'].mean():.2f}, power "
          f"{np.mean(h['calendar_decision'] == 'efficacy'):.3f}")  # fmt: skip
    print(f"    with observed fractions: mean stopping day {h['observed_stop_day'].mean():.2f} "
          f"({1 - h['observed_stop_day'].mean() / POST:.1%} shorter), power "
          f"{np.mean(h['observed_decision'] == 'efficacy'):.3f}")  # fmt: skip
    looks_summary(h, "")
    print("    with observed fractions:")
    looks_summary(h, "observed_")
    if shorter < STOP_REDUCTION:
        misses.append(f"1.5 x MDE mean stopping day {stop:.2f}: {shorter:.1%} shorter")
    print(f"  plan of 100 equally spaced looks (alpha 0.025, beta 0.1, HSD(-2) futility): "
          f"{t_plan:.3f}s (best of 3; limit {PLAN_SECONDS:.0f}s)")  # fmt: skip
    if t_plan > PLAN_SECONDS:
        misses.append(f"a plan of 100 looks took {t_plan:.2f}s")
    print(f"  rows generated {rows:,} in three Spark jobs, {t_spark:.0f}s "
          f"({rows / t_spark / 1e6:.2f}M rows/s); wall time {wall:.0f}s")  # fmt: skip
    return misses


def looks_summary(df: pd.DataFrame, stream: str) -> None:
    """Per planned look: the planned and the reached information fractions, the bounds and
    the share of the worlds reaching it that stopped there."""
    planned = np.array(df["planned_t"].tolist())
    print("    per look: day, planned t (mean), reached t (mean; share set to 1 as final), "
          "(se_K / se)^2 (median, 10%-90%), bound (mean), worlds reaching it, "
          "share crossing")  # fmt: skip
    for k in range(planned.shape[1]):
        at = [lk[k] for lk in df[f"{stream}looks"] if len(lk) > k]
        if not at:
            break
        d, t, z, u, se = (np.array(x, dtype=float) for x in zip(*at, strict=True))
        raw = (df["se_k"].to_numpy()[[len(lk) > k for lk in df[f"{stream}looks"]]] / se) ** 2
        q = np.quantile(raw, [0.1, 0.5, 0.9])
        print(f"      look {k + 1}: day {d.mean():.0f}, planned {planned[:, k].mean():.3f}, "
              f"reached {t.mean():.3f} ({np.mean(t >= 1):.3f}), {q[1]:.3f} ({q[0]:.3f}-"
              f"{q[2]:.3f}), bound {u.mean():.3f}, {len(at)} worlds, crossing "
              f"{np.mean(np.abs(z) >= u):.3f}")  # fmt: skip
