"""Acceptance of the design on generated data: matching finds similar zones, and the AA test
holds its size over 200 randomizations."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

from sparklift.cli import main
from sparklift.config import load_config
from sparklift.features.zone_day import date_range
from sparklift.geo.cells import cell_stats
from sparklift.geo.design import design_checks, match_zones, randomize
from sparklift.geo.experiment import ExperimentConfig
from sparklift.geo.vectors import zone_vectors
from sparklift.tables import Catalog

RUN_DATE = dt.date(2026, 8, 31)


@pytest.mark.acceptance
@pytest.mark.e2e
def test_matching_beats_random_and_aa_rejects_at_nominal_rate(spark, tmp_path: Path):
    wh = tmp_path / "wh"
    common = ["--run-date", str(RUN_DATE), "--set", f"tables.base_path={wh}"]
    scale = ["--users", "60000", "--zones", "300", "--days", "56", "--customers", "100"]
    assert main(["generate", *common, *scale, "--campaign-rows", "100"]) == 0
    lookback = date_range(RUN_DATE - dt.timedelta(days=13), RUN_DATE)
    assert main(["features", *common, "--start", str(lookback[0]), "--end", str(RUN_DATE)]) == 0

    config = load_config(None, [f"tables.base_path={wh}"])
    catalog = Catalog(spark, config.tables)
    # Zones of the planted experiment are busy, as a live experiment's zones would be.
    busy = set(json.loads((wh / "generator_truth.json").read_text())["geo"]["treated_zones"])
    zones = catalog.read("zones").toPandas()
    eligible = sorted(set(zones.loc[zones["eligible"], "zone_id"]) - busy)
    names = [f.name for f in config.features.definitions]
    vectors = zone_vectors(catalog.read("zone_day_features"), eligible, names, lookback)
    matching = match_zones(vectors, 15, 2)
    ratio = matching.distance_ratio(seed=0)
    assert ratio < 0.6, ratio  # matched groups are much closer than random ones

    spec = ExperimentConfig.model_validate(
        config.design.model_dump()
        | {
            "experiment_id": "aa",
            "variants": ["control", "treat"],
            "zones_per_variant": 25,
            "start": RUN_DATE + dt.timedelta(days=1),
            "end": RUN_DATE + dt.timedelta(days=14),
            "metrics": [{"name": "orders"}, {"name": "gmv"}],
            "seed": 0,
        }
    )
    history = date_range(RUN_DATE - dt.timedelta(days=41), RUN_DATE)
    rows = catalog.read("user_activity").where(f"date >= '{history[0]}'")
    cells = cell_stats(rows.where(rows.zone_id.isin(eligible)), ["orders", "gmv"])
    pseudo_start = RUN_DATE - dt.timedelta(days=13)
    p = np.array(
        [
            design_checks(cells, randomize(matching, spec.variants, 25, seed), spec, pseudo_start)
            .set_index("metric")["aa_p_value"]
            .to_numpy()
            for seed in range(200)
        ]
    )
    rates = (p < 0.05).mean(axis=0)
    print(f"matched/random distance {ratio:.3f}; AA rejection rate orders, gmv: {rates}")
    assert ((rates >= 0.02) & (rates <= 0.08)).all(), rates
