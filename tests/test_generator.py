"""The synthetic generator: determinism, realism, and a planted truth the data obeys."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from sparklift.config import load_config
from sparklift.synthetic import geo, vouchers
from sparklift.synthetic.rand import uniform, uniform_of_ids, uniform_state, uniform_state_of

END = dt.date(2026, 6, 30)


def conf(**overrides):
    sets = [f"generate.{k}={v}" for k, v in overrides.items()]
    return load_config(None, sets).generate


def test_same_seed_same_rows_whatever_the_partitioning(spark):
    rows = []
    for partitions in (2, 5):
        c = conf(users=1500, zones=12, days=10, partitions=partitions)
        world = geo.draw_world(c, END)
        rows.append(sorted(tuple(r) for r in geo.activity_frame(spark, world, c).collect()))
    assert rows[0] == rows[1] and len(rows[0]) > 1000
    other = conf(users=1500, zones=12, days=10, seed=8)
    changed = geo.activity_frame(spark, geo.draw_world(other, END), other).collect()
    assert sorted(tuple(r) for r in changed) != rows[0]


def test_worlds_frame_holds_each_worlds_own_rows(spark):
    worlds = []
    for seed in (3, 4):
        c = conf(users=1500, zones=12, days=10, seed=seed, **{"geo_effect.start_offset_days": 5})
        worlds.append((geo.draw_world(c, END), c))
    many = geo.worlds_activity_frame(spark, worlds)
    for world, c in worlds:
        alone = sorted(
            tuple(r) for r in geo.activity_frame(spark, world, c, with_truth=True).collect()
        )
        mine = many.where(F.col("seed") == c.seed).drop("seed").collect()
        assert sorted(tuple(r) for r in mine) == alone and len(alone) > 500
        assert any(r[-3] for r in alone)  # post rows present
    with pytest.raises(ValueError, match="distinct seeds"):
        geo.worlds_activity_frame(spark, [worlds[0], worlds[0]])


def test_zone_sizes_are_long_tailed_and_days_seasonal(spark):
    c = conf(users=20000, zones=200, days=28)
    world = geo.draw_world(c, END)
    sizes = np.sort(world.zones["users"].to_numpy())
    assert sizes[-1] > 20 * np.median(sizes)  # a few big zones
    assert sizes[: len(sizes) // 10].sum() < 0.01 * sizes.sum()  # many tiny ones
    daily = geo.activity_frame(spark, world, c).groupBy(F.dayofweek("date").alias("dow")).count()
    by_dow = {r.dow: r["count"] for r in daily.collect()}
    assert by_dow[7] > 1.15 * by_dow[3]  # Saturday busier than Tuesday


def test_geo_truth_is_the_effect_in_the_data(spark):
    """Compare treated zones' post-period orders with the same world without the effect."""
    c = conf(
        users=30000,
        zones=30,
        days=28,
        **{"geo_effect.zones": 10, "geo_effect.lift": 0.2, "geo_effect.start_offset_days": 14},
    )
    world = geo.draw_world(c, END)
    truth = geo.geo_truth(spark, world, c)
    treated = truth["treated_zones"]
    assert len(treated) == 10 and truth["effect_start"] == "2026-06-17"
    no_effect = world.zones.assign(lift=0.0, treated=False)
    flat = geo.GeoWorld(no_effect, world.days, world.effect_start)
    post = F.col("date") >= F.lit(world.effect_start)
    with_fx = geo.activity_frame(spark, world, c, treated).where(post)
    without = geo.activity_frame(spark, flat, c, treated).where(post)
    diff = with_fx.agg(F.avg("orders")).first()[0] - without.agg(F.avg("orders")).first()[0]
    # Same rows (the effect moves orders only), so the difference is the realized ATT.
    assert with_fx.count() == without.count() == truth["treated_post_rows"]
    assert diff == pytest.approx(truth["att"]["orders"], rel=0.1)
    assert truth["relative_att"]["orders"] == pytest.approx(0.2, rel=0.25)


@pytest.mark.parametrize("effects", ["scaled", "distinct"])
def test_voucher_truth_matches_the_randomized_outcomes(spark, effects):
    c = conf(campaign_rows=300000, vouchers=3, voucher_effects=effects)
    hist = vouchers.campaigns_frame(spark, c, END).cache()
    observed = {
        r.treatment: (r.o, r.c, r.n)
        for r in hist.groupBy("treatment")
        .agg(F.avg("objective").alias("o"), F.avg("cost").alias("c"), F.count("*").alias("n"))
        .collect()
    }
    assert observed["control"][2] / 300000 == pytest.approx(0.25, abs=0.005)
    assert observed["control"][1] == 0.0
    faces = vouchers.voucher_truth(c)["face_values"]
    control = hist.where("treatment = 'control'").withColumn("row", F.monotonically_increasing_id())
    truth = vouchers.true_uplift(control, faces, effects).cache()
    for r in (
        truth.groupBy("voucher_id")
        .agg(F.avg("tau_objective").alias("t"), F.avg("tau_cost").alias("k"))
        .collect()
    ):
        o, cost, n = observed[r.voucher_id]
        se = np.sqrt(2 * 2.5 / n)  # objective variance ~ m (1 + m) with m ~ 1.1, both arms
        assert o - observed["control"][0] == pytest.approx(r.t, abs=4 * se)
        assert cost == pytest.approx(r.k, rel=0.05)
    hist.unpersist()
    # Effects are heterogeneous: some customers are hurt by a voucher, most helped a little.
    per_customer = truth.where("voucher_id = 'V01'").select("tau_objective").toPandas()
    assert (per_customer["tau_objective"] < 0).mean() > 0.02
    assert per_customer["tau_objective"].std() > per_customer["tau_objective"].mean() / 2
    # Scaled: every voucher's effect has one shape (their correlation is 1); distinct:
    # each voucher appeals to customers of its own.
    tau = truth.groupBy("row").pivot("voucher_id").agg(F.first("tau_objective")).toPandas()
    corr = np.corrcoef(tau[["V01", "V02", "V03"]].to_numpy().T)[np.triu_indices(3, 1)]
    if effects == "scaled":
        assert corr.min() > 0.99, corr
    else:
        assert np.abs(corr).max() < 0.8, corr
    truth.unpersist()


def test_the_numpy_draw_of_a_string_of_any_length_is_sparks(spark):
    """Spark's xxhash64 of (seed, salt, long, string) and of (seed, salt), bit for bit in
    NumPy, for strings and salts of 0 to 100 bytes: every path of XXH64 (the 32-byte
    stripes from 32 bytes on, then 8-byte words, a 4-byte word, single bytes), and UTF-8.
    A voucher id of 32 bytes or more was refused (a ValueError, exit 1)."""
    rng = np.random.default_rng(5)
    ids = np.r_[rng.integers(-(2**63), 2**63 - 1, 200), 0, -1].astype(np.int64)
    keys = ["".join(chr(ord("a") + (i * 7 + n) % 26) for i in range(n)) for n in range(101)]
    keys += ["WINBACK_2026_Q3_FREE_DELIVERY_5EUR", "é€" * 12]
    frame = spark.createDataFrame(pd.DataFrame({"customer_id": ids}))
    draws = frame.select(
        *[uniform(7, "tie.c1", F.col("customer_id"), F.lit(k)).alias(str(n))
          for n, k in enumerate(keys)]
    ).toPandas()  # fmt: skip
    state = uniform_state(spark, 7, "tie.c1")
    for n, k in enumerate(keys):
        assert np.array_equal(uniform_of_ids(state, ids, k), draws[str(n)].to_numpy()), k
    for salt in keys[::9] + keys[-2:]:
        assert uniform_state_of(3, salt) == uniform_state(spark, 3, salt), salt
