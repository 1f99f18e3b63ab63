"""The worlds of the sequential benchmark: generated with the generator, designed as
``sparklift design`` does, effects planted on the designed zones, and each world's looks
decided as ``sparklift analyze`` decides them (:mod:`benchmarks.sequential` says what is
measured and why)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time

import numpy as np
import pandas as pd
from pyspark.sql import functions as F
from scipy import stats

from sparklift.config import GenerateConfig, load_config
from sparklift.geo.cells import cell_stats
from sparklift.geo.design import design_checks, match_zones, randomize
from sparklift.geo.experiment import ExperimentConfig
from sparklift.geo.monitoring import (
    TERMINAL,
    History,
    Observation,
    decide,
    decision_inference,
    design_plan,
    look_days,
)
from sparklift.stats.clusters import effective_clusters
from sparklift.stats.ssc import convention
from sparklift.stats.twfe import CellStats, TwfeFit
from sparklift.synthetic.geo import GeoWorld, draw_world, worlds_activity_frame

HISTORY, POST = 56, 28  # design history days, experiment days
END = dt.date(2026, 11, 29)  # day 84
START = END - dt.timedelta(days=POST - 1)  # day 57
OFFSET = 1000  # zone id offset per seed (zones < 1000)
FIRST_SEED = 10_000
VARIANTS = ["control", "treatment"]
NAIVE_ALPHA = 0.05


def day(n: int) -> dt.date:
    """The date of world day ``n`` (1 = the first generated day)."""
    return END - dt.timedelta(days=HISTORY + POST - n)


def generator(zones: int, users: int) -> GenerateConfig:
    """A/A worlds: no planted effect (effects are planted on the design, :func:`plant`)."""
    return load_config(
        None,
        [
            f"generate.users={users}",
            f"generate.zones={zones}",
            f"generate.days={HISTORY + POST}",
            "generate.partitions=1",
            "generate.geo_effect.lift=0",
        ],
    ).generate


@dataclasses.dataclass(frozen=True)
class World:
    """One world's design: the assigned zones and the treatment zones among them."""

    seed: int
    zones: np.ndarray  # assigned zone ids (control and treatment)
    treated: np.ndarray
    distance_ratio: float  # matched over random within-pair distance


def draw(base: GenerateConfig, n: int) -> list[tuple[GeoWorld, GenerateConfig]]:
    """n A/A worlds (for the worlds frame)."""
    confs = [base.model_copy(update={"seed": s}) for s in range(FIRST_SEED, FIRST_SEED + n)]
    return [(draw_world(c, END), c) for c in confs]


def plant(pairs: list, designs: list[World], lift: float) -> list:
    """The A/A worlds with the mean relative ``lift`` planted on their designed treatment
    zones from day 57, per zone ``lift x U(0.4, 1.6)`` as the generator plants it."""
    out = []
    for (w, conf), d in zip(pairs, designs, strict=True):
        treated = w.zones["zone_id"].isin(d.treated).to_numpy()
        factor = np.random.default_rng([conf.seed, 1]).uniform(0.4, 1.6, len(w.zones))
        zones = w.zones.assign(treated=treated, lift=np.where(treated, lift * factor, 0.0))
        out.append((dataclasses.replace(w, zones=zones, effect_start=START), conf))
    return out


def aggregate(spark, pairs: list) -> tuple[CellStats, float]:
    """One Spark job: every world's rows generated and aggregated to zone-day cells of
    orders and of the true effect (zone ids offset by seed), sorted by zone and day."""
    t0 = time.perf_counter()
    rows = worlds_activity_frame(spark, pairs).select(
        (F.col("seed").cast("long") * OFFSET + F.col("zone_id")).alias("zone_id"),
        "date",
        "orders",
        "effect_orders",
    )
    cells = cell_stats(rows, ["orders", "effect_orders"])
    order = np.lexsort((cells.day.astype("datetime64[D]"), cells.zone))
    return cells.select(order), time.perf_counter() - t0


def day_numbers(cells: CellStats) -> np.ndarray:
    return (cells.day.astype("datetime64[D]") - np.datetime64(day(1))).astype(int) + 1


def same_history(a: CellStats, b: CellStats) -> None:
    """Assert that two worlds frames have identical cells on days 1-56."""
    ha, hb = a.select(day_numbers(a) <= HISTORY), b.select(day_numbers(b) <= HISTORY)
    for f in ("zone", "day", "n", "sums", "cross"):
        if not np.array_equal(getattr(ha, f), getattr(hb, f)):
            raise AssertionError(f"effect worlds' history cells differ from A/A ({f})")


def parts(cells: CellStats, seeds: list[int]):
    """Per seed: its cells (zone ids without the offset) and their day numbers."""
    day_no, seed_of = day_numbers(cells), cells.zone // OFFSET
    for seed in seeds:
        lo, hi = np.searchsorted(seed_of, [seed, seed + 1])
        part = cells.select(slice(lo, hi))
        yield dataclasses.replace(part, zone=part.zone % OFFSET), day_no[lo:hi]


def vectors(cells: CellStats, day_no: np.ndarray, zone_ids: np.ndarray, lookback: int):
    """The zones' matching vectors as ``zone_vectors`` returns them: index zone_id, columns
    ``{date}_{feature}`` for each day of the lookback ending on day 56 (features
    ``active_users`` and ``orders``; a zone without active users on a day has 0, as the
    features job writes it)."""
    keep = np.isin(cells.zone, zone_ids) & (day_no > HISTORY - lookback) & (day_no <= HISTORY)
    df = pd.DataFrame(
        {
            "zone_id": cells.zone[keep],
            "date": [day(int(d)).isoformat() for d in day_no[keep]],
            "active_users": cells.n[keep].astype(float),
            "orders": cells.sums[keep, cells.index("orders")],
        }
    )
    wide = df.pivot(index="zone_id", columns="date")
    keys = [day(d).isoformat() for d in range(HISTORY - lookback + 1, HISTORY + 1)]
    wide.columns = [f"{k}_{n}" for n, k in wide.columns]
    columns = [f"{k}_{n}" for k in keys for n in ("active_users", "orders")]
    return wide.reindex(index=np.sort(zone_ids), columns=columns).fillna(0.0)


def design(
    cells: CellStats, day_no: np.ndarray, geo: GeoWorld, seed: int, defaults: dict, k: int | None
) -> World:
    """One world's assignment as ``sparklift design`` makes it: match, then randomize."""
    eligible = geo.zones.loc[geo.zones["eligible"], "zone_id"].to_numpy()
    v = vectors(cells, day_no, eligible, defaults["lookback_days"])
    matching = match_zones(v, defaults["pca_components"], len(VARIANTS))
    assignment = randomize(matching, VARIANTS, k or len(matching.groups), seed)
    treated = assignment.loc[assignment["variant"] == "treatment", "zone_id"].to_numpy()
    return World(
        seed,
        np.sort(assignment["zone_id"].to_numpy()),
        np.sort(treated),
        matching.distance_ratio(seed),
    )


def experiment(world: World, spec_defaults: dict) -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        spec_defaults
        | {
            "experiment_id": f"world_{world.seed}",
            "variants": VARIANTS,
            "zones_per_variant": len(world.treated),
            "start": START,
            "end": END,
            "metrics": [{"name": "orders"}],
            "seed": world.seed,
            "alpha": 0.05,
            "power": 0.8,
        }
    )


def simulate(cells: CellStats, day_no: np.ndarray, world: World, spec_defaults: dict, path: bool):
    """One world's design checks and its experiment's looks. ``path``: fit every post day
    (naive peeking needs them); else only the look days (the others make no decision)."""
    spec = experiment(world, spec_defaults)
    keep = np.isin(cells.zone, world.zones)
    c, dn = cells.select(keep), day_no[keep]
    treated = np.isin(c.zone, world.treated)
    assignment = pd.DataFrame(
        {
            "zone_id": world.zones,
            "variant": np.where(np.isin(world.zones, world.treated), "treatment", "control"),
        }
    )
    hist = dn <= HISTORY
    check = design_checks(c.select(hist), assignment, spec, day(HISTORY - POST + 1)).iloc[0]
    i_max, planned_t = float(check["max_information"]), list(check["planned_fractions"])
    se_k = i_max**-0.5
    j, je = c.index("orders"), c.index("effect_orders")
    baseline = c.sums[treated & hist, j].sum() / c.n[treated & hist].sum()
    treated_rows = pd.Series(c.n[treated & hist]).groupby(c.zone[treated & hist]).sum()
    exposed = treated & ~hist
    att = c.sums[exposed, je].sum() / c.n[exposed].sum()
    plan_ = design_plan(spec, se_k / np.sqrt(planned_t), att, float(check["decision_df"]))
    effect = exposed.astype(float)[:, None]
    ssc = convention(spec.convention)
    naive, fixed, fixed_d, g_star, looks = False, None, None, None, set(look_days(spec))
    # The plan as designed, and for comparison the same plan on calendar time (the
    # fraction an experiment without a design gets) and with observed fractions.
    seq = spec.sequential.model_copy(update={"information": "observed"})
    streams = {
        "": Monitor(spec, i_max, planned_t),
        "calendar_": Monitor(spec, None, None),
        "observed_": Monitor(spec.model_copy(update={"sequential": seq}), i_max, planned_t),
    }
    for d in range(1, POST + 1) if path else look_days(spec):
        m = (dn > HISTORY - spec.pre_days) & (dn <= HISTORY + d)
        fit = TwfeFit(c.select(m), effect[m], ["treatment"], "orders")
        res = fit.result("zone", ssc, spec.alpha)
        e = res["treatment"]
        naive |= bool(e.p_value < NAIVE_ALPHA)
        # decisions' inference at the looks (other days decide nothing)
        se, df = decision_inference(fit, "treatment", spec) if d in looks else (e.se, res.df)
        if d == POST:
            fixed = bool(e.p_value < spec.alpha)
            fixed_d = bool(2 * stats.t.sf(abs(e.estimate / se), df) < spec.alpha)
            g_star = effective_clusters(fit, "treatment")
        obs = Observation("orders", "treatment", True, e.estimate, se, df)
        for s in streams.values():
            s.look(d, obs)
        if not path and all(s.decision for s in streams.values()):
            break
    return {
        **{f"{k}{f}": getattr(s, f) for k, s in streams.items() for f in Monitor.FIELDS},
        "naive": naive,
        "fixed": fixed,
        "fixed_d": fixed_d,
        "g_star": g_star,
        "decision_df": df,
        "att": att,
        "se_k": se_k,
        "baseline": baseline,
        "mde_relative": check["sequential_mde"] / baseline,
        "plan_power": plan_["sequential_power"],
        "plan_days": plan_["expected_days_target"],
        "plan_days_h0": plan_["expected_days_h0"],
        "alpha": spec.alpha_per_test,
        "planned_t": planned_t,
        "k": len(world.treated),
        "distance_ratio": world.distance_ratio,
        "top_share": treated_rows.max() / treated_rows.sum(),
    }


class Monitor:
    """One comparison's decisions at the looks, as analyze takes them day after day (its
    History of earlier looks, no gates), until a terminal decision."""

    FIELDS = ("decision", "stop_day", "looks")

    def __init__(self, spec: ExperimentConfig, i_max: float | None, planned_t) -> None:
        self.spec, self.i_max, self.planned_t = spec, i_max, planned_t
        self.history, self.decision, self.stop_day = History(), None, POST
        self.looks: list[tuple] = []  # (day, t, z, bound, se) at each look

    def look(self, d: int, obs: Observation) -> None:
        if self.decision:
            return
        row = decide(self.spec, day(HISTORY + d), obs, self.i_max, self.planned_t, self.history)
        if row["decision_point"]:
            self.history = History((*self.history.fractions, row["information_fraction"]))
            t, z, u = row["information_fraction"], row["z"], row["efficacy_bound"]
            self.looks.append((d, t, z, u, obs.se))
            if row["decision"] in TERMINAL:
                self.stop_day, self.decision = d, row["decision"]


def simulate_all(
    cells: CellStats, designs: list[World], spec_defaults: dict, path: bool
) -> pd.DataFrame:
    cells_of = parts(cells, [w.seed for w in designs])
    return pd.DataFrame(
        [
            simulate(part, day_no, w, spec_defaults, path) | {"seed": w.seed}
            for w, (part, day_no) in zip(designs, cells_of, strict=True)
        ]
    )
