"""`sparklift analyze` end to end: the planted effect recovered, results replaced, bad input."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable
from scipy import stats

from sparklift.cli import main
from sparklift.config import load_config
from sparklift.errors import InputError, TableConflictError
from sparklift.geo.experiment import ExperimentConfig
from sparklift.jobs import JobContext
from sparklift.jobs import analyze as analyze_job
from sparklift.jobs.published_designs import experiment_row, write_design
from sparklift.stats.twfe import CellStats
from sparklift.tables import Catalog
from sparklift.tables.local import read_pandas

RUN_DATE = "2026-03-31"


@pytest.fixture(scope="module")
def warehouse(spark, tmp_path_factory) -> Path:
    wh = tmp_path_factory.mktemp("analyze") / "wh"
    sets = ["--set", f"tables.base_path={wh}", "--set", "generate.geo_effect.lift=0.3"]
    sets += ["--set", "generate.geo_effect.start_offset_days=28"]
    scale = ["--users", "20000", "--zones", "60", "--days", "42", "--customers", "100"]
    assert main(["generate", "--run-date", RUN_DATE, *sets, *scale, "--campaign-rows", "100"]) == 0
    return wh


def analyze(wh: Path, experiment: str, run_date: str = RUN_DATE) -> int:
    sets = ["--set", f"tables.base_path={wh}", "--set", "analysis.ri_draws=199"]
    return main(["analyze", "--experiment", experiment, "--run-date", run_date, *sets])


def results(wh: Path) -> pd.DataFrame:
    return read_pandas(str(wh / "geo_results"))


def version(wh: Path) -> int | None:
    try:
        return DeltaTable(str(wh / "geo_results")).version()
    except Exception:
        return None


@pytest.mark.e2e
def test_analyze_recovers_the_planted_effect(warehouse, capsys):
    assert analyze(warehouse, "synthetic_geo") == 0
    summary = json.loads(capsys.readouterr().out)
    truth = json.loads((warehouse / "generator_truth.json").read_text())["geo"]
    res = results(warehouse)
    assert set(res["term"]) == {"att", "lift", "week"}
    att = res[(res.term == "att") & (res.cov_type == "zone")].set_index("metric")
    for metric in ("orders", "gmv"):
        row = att.loc[metric]
        assert row["ci_low"] < truth["att"][metric] < row["ci_high"], (metric, row, truth["att"])
        assert row["estimate"] > 0 and row["p_value"] < 0.05
        assert row["wild_p"] < 0.1 and 0 < row["ri_p"] < 0.1
    lift = res[(res.term == "lift") & (res.cov_type == "zone")].set_index("metric")
    rel = truth["relative_att"]["orders"]
    assert lift.loc["orders", "ci_low"] < rel < lift.loc["orders", "ci_high"]
    two_way = res[(res.term == "att") & (res.cov_type == "zone+day")].set_index("metric")
    assert (two_way["estimate"] == att.loc[two_way.index, "estimate"]).all()
    assert summary["rows"] == len(res) and att["n_zones"].eq(att["n_zones"].iloc[0]).all()

    # Re-running the same run date replaces its rows in one commit.
    before = version(warehouse)
    assert analyze(warehouse, "synthetic_geo") == 0
    assert version(warehouse) == before + 1 and len(results(warehouse)) == len(res)


class Killed(BaseException):
    """The driver dies: nothing after this point runs."""


@pytest.mark.e2e
def test_strong_effect_concludes_early_and_the_pipeline_stops_analysing_it(
    warehouse, capsys, monkeypatch
):
    """The planted effect (lift 0.3, start 2026-03-18, end 2026-03-31, weekly looks) crosses
    its O'Brien-Fleming bound at the first look (2026-03-24). That run is killed after its
    looks are committed and before the experiment is concluded; the next day's pipeline
    concludes it as of the look, and the pipeline then stops analysing it."""
    sets = ["--set", f"tables.base_path={warehouse}", "--set", "analysis.ri_draws=0",
            "--set", "analysis.wild_bootstrap_draws=99",
            "--set", "pipeline.checks=false", "--set", "pipeline.reports=false"]  # fmt: skip
    days = ["--start", "2026-03-23", "--end", "2026-03-23", "--steps", "analyze"]
    assert main(["pipeline", *days, *sets]) == 0

    def killed(*args):
        raise Killed

    monkeypatch.setattr(analyze_job, "conclude", killed)
    with pytest.raises(Killed):
        main(["analyze", "--experiment", "synthetic_geo", "--run-date", "2026-03-24", *sets])
    monkeypatch.undo()
    days = ["--start", "2026-03-25", "--end", "2026-03-26", "--steps", "analyze"]
    assert main(["pipeline", *days, *sets]) == 0
    seq = read_pandas(str(warehouse / "geo_sequential"))
    seq = seq[seq["experiment_id"] == "synthetic_geo"].assign(
        run_date=lambda d: pd.to_datetime(d["run_date"]).dt.date.astype(str)
    )
    before = seq[seq["run_date"] == "2026-03-23"]
    assert len(before) == 3 and not before["decision_point"].any()
    assert before["decision"].isna().all() and before["z"].notna().all()
    look = seq[seq["run_date"] == "2026-03-24"].set_index("metric")
    assert look["decision_point"].all() and (look["look"] == 1).all()
    # No design run: calendar information, 7 of 14 days; alpha 0.05 / 2 primary metrics,
    # two-sided O'Brien-Fleming-type: each side spends g(t) = 2 - 2 Phi(z_{1-a/4} / sqrt(t)).
    assert (look["information_fraction"] == 0.5).all()
    g = 2 - 2 * stats.norm.cdf(stats.norm.isf(0.025 / 4) / np.sqrt(0.5))
    assert look["efficacy_bound"].to_numpy() == pytest.approx(stats.norm.isf(g), abs=1e-4)
    assert look.loc["orders", "decision"] == "efficacy" and look.loc["orders", "z"] > 4
    assert set(look["variant_decision"]) == {"efficacy"}
    assert {g["gate"] for g in look.loc["orders", "gates"]} == {
        "traffic", "mix:tenure_days", "mix:new_users", "pretrend",
    }  # fmt: skip
    # The repeated CI holds the planted per user-day effect of the post days so far.
    truth = json.loads((warehouse / "generator_truth.json").read_text())["geo"]["att"]["orders"]
    assert look.loc["orders", "rci_low"] < truth < look.loc["orders", "rci_high"]
    assert 0 < look.loc["orders", "final_p"] < 1e-4
    exp = read_pandas(str(warehouse / "geo_experiments")).set_index("experiment_id")
    exp = exp.loc["synthetic_geo"]
    assert exp["status"] == "concluded" and str(exp["concluded_on"])[:10] == "2026-03-24"
    assert exp["reason"] == "treatment: efficacy on 2026-03-24"
    runs = read_pandas(str(warehouse / "pipeline_runs"))
    planned = runs.groupby(pd.to_datetime(runs["run_date"]).dt.date.astype(str))["step"].apply(set)
    assert planned.get("2026-03-25") == {"analyze:synthetic_geo"}  # the stopped path
    after = seq[seq["run_date"] == "2026-03-25"]
    assert set(after["decision"]) == {"stopped"} and not after["decision_point"].any()
    assert "analyze:synthetic_geo" not in planned.get("2026-03-26", set())
    capsys.readouterr()
    assert analyze(warehouse, "synthetic_geo", "2026-03-26") == 2
    assert "concluded on 2026-03-24" in capsys.readouterr().err


def register(wh: Path, experiment_id: str, assignment: pd.DataFrame, **over) -> None:
    config = load_config(None, [f"tables.base_path={wh}"])
    from pyspark.sql import SparkSession

    catalog = Catalog(SparkSession.getActiveSession(), config.tables)
    spec = ExperimentConfig.model_validate(
        config.design.model_dump()
        | {
            "experiment_id": experiment_id,
            "variants": ["control", "treatment"],
            "zones_per_variant": 5,
            "start": dt.date(2026, 3, 20),
            "end": dt.date(2026, 3, 31),
            "pre_days": 14,
            "metrics": [{"name": "orders"}],
            "seed": 1,
        }
        | over
    )
    row = experiment_row(spec, over.pop("status", "accepted"), None, dt.date(2026, 3, 1), 10, {})
    write_design(catalog, experiment_id, assignment, pd.DataFrame(), row, 168)


def assignment(zones: list[int], variants: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"zone_id": zones, "variant": variants, "group_id": 1})


class Read:
    """What ``read_experiments`` returned at an earlier read."""

    def __init__(self, rows: list) -> None:
        self.rows = rows

    def collect(self) -> list:
        return self.rows


def test_a_conclusion_never_overwrites_a_design_published_after_its_read(
    spark, tmp_path, monkeypatch
):
    """The analysis reads the experiment's row, a re-design publishes another one, then the
    analysis concludes: the conclusion is refused (exit 4) and the new design's row stays.
    A conclusion of the current design lands."""
    wh = tmp_path / "wh"
    register(wh, "race", assignment(list(range(1, 11)), ["control", "treatment"] * 5))
    conf = load_config(None, [f"tables.base_path={wh}"])
    ctx = JobContext(spark, conf, Catalog(spark, conf.tables), dt.date(2026, 3, 25))
    first = analyze_job.load_design(ctx, "race")
    read = analyze_job.read_experiments(ctx.catalog, [("experiment_id", "=", "race")]).collect()
    register(wh, "race", assignment(list(range(11, 21)), ["control", "treatment"] * 5))
    second = analyze_job.load_design(ctx, "race")
    assert second.design_id != first.design_id and read[0]["design_id"] == first.design_id
    monkeypatch.setattr(analyze_job, "read_experiments", lambda *a: Read(read))
    with pytest.raises(TableConflictError, match="race: its design changed while it was anal"):
        analyze_job.conclude(ctx, first, "treatment: efficacy on 2026-03-24", dt.date(2026, 3, 24))
    monkeypatch.undo()
    row = read_pandas(str(wh / "geo_experiments")).set_index("experiment_id").loc["race"]
    assert (row["design_id"], row["status"]) == (second.design_id, "accepted")
    analyze_job.conclude(ctx, second, "treatment: efficacy on 2026-03-24", dt.date(2026, 3, 24))
    row = read_pandas(str(wh / "geo_experiments")).set_index("experiment_id").loc["race"]
    assert (row["design_id"], row["status"]) == (second.design_id, "concluded")
    assert str(row["concluded_on"])[:10] == "2026-03-24"


@pytest.mark.e2e
def test_bad_input_fails_clearly_and_writes_nothing(warehouse, capsys):
    ten = list(range(1, 11))
    ok = ["control", "treatment"] * 5
    register(warehouse, "no_zone_data", assignment([*ten[:-1], 9999], ok))
    register(warehouse, "empty_variant", assignment(ten, ["control"] * 10))
    register(warehouse, "bad_metric", assignment(ten, ok), metrics=[{"name": "basket"}])
    register(warehouse, "all_treated_post", assignment(ten, ok), start=dt.date(2026, 4, 20),
             end=dt.date(2026, 4, 30))  # fmt: skip
    cases = [
        ("nope", RUN_DATE, 2, "unknown experiment 'nope'"),
        ("no_zone_data", RUN_DATE, 2, "assigned zones [9999] have no rows in user_activity"),
        ("empty_variant", RUN_DATE, 2, "variants ['treatment'] have no zones"),
        ("bad_metric", RUN_DATE, 2, "user_activity has no columns ['basket']"),
        ("all_treated_post", RUN_DATE, 3, "no post-period data for run date"),
    ]
    for experiment, run_date, code, message in cases:
        before = version(warehouse)
        assert analyze(warehouse, experiment, run_date) == code, experiment
        assert message in capsys.readouterr().err, experiment
        assert version(warehouse) == before


@pytest.mark.e2e
def test_cuped_and_cupac_cover_the_planted_effect_with_smaller_standard_errors(warehouse):
    """The planted experiment's zones analysed from 14 pre-period days, without adjustment,
    with CUPED (the 14 days before) and with CUPAC (trained on them: 7 days of features, 7
    of target): every CI covers the true ATT; the orders SE is smaller with either (the
    generator's users persist little from day to day, so the gains are a few percent:
    bench/RESULTS.md has them over 200 worlds)."""
    planted = read_pandas(str(warehouse / "geo_assignments"))
    planted = planted[planted["experiment_id"] == "synthetic_geo"]
    zones = planted[["zone_id", "variant", "group_id"]].reset_index(drop=True)
    common = {
        "zones_per_variant": int((zones["variant"] == "treatment").sum()),
        "start": dt.date(2026, 3, 18),
        "metrics": [{"name": "orders"}, {"name": "gmv"}],
        "covariate_window": {"days": 14},
    }
    cupac = {"days": 7}, {"learner": "gbm", "learner_params": {"max_iter": 60},
                          "features": ["visits", "prior_orders_28d", "prior_gmv_28d"],
                          "horizon_days": 7, "max_train_users": 5000, "seed": 0}  # fmt: skip
    register(warehouse, "adj_none", zones, **common)
    register(warehouse, "adj_cuped", zones, **common, variance_reduction="cuped")
    register(warehouse, "adj_cupac", zones, **common | {"covariate_window": cupac[0]},
             variance_reduction="cupac", cupac=cupac[1])  # fmt: skip
    sets = ["--set", f"tables.base_path={warehouse}", "--set", "analysis.ri_draws=0",
            "--set", "analysis.wild_bootstrap_draws=99"]  # fmt: skip
    for experiment in ("adj_none", "adj_cuped", "adj_cupac"):
        assert main(["analyze", "--experiment", experiment, "--run-date", RUN_DATE, *sets]) == 0
    truth = json.loads((warehouse / "generator_truth.json").read_text())["geo"]["att"]
    res = results(warehouse)
    att = {
        (r["experiment_id"], r["metric"]): r
        for r in res[(res.term == "att") & (res.cov_type == "zone")].to_dict("records")
    }
    for metric in ("orders", "gmv"):
        se = {e: att[(e, metric)]["se"] for e in ("adj_none", "adj_cuped", "adj_cupac")}
        for e in se:
            row = att[(e, metric)]
            assert row["ci_low"] < truth[metric] < row["ci_high"], (e, metric, row, truth)
        if metric == "orders":
            assert se["adj_cuped"] < se["adj_none"] and se["adj_cupac"] < se["adj_none"], se
    # The adjustment enters the post-estimation too: the event study's weeks and the
    # sequential decisions' SE come from the adjusted fit, so they differ from none's.
    weeks = res[(res.term == "week") & (res.cov_type == "zone")]
    week_se = {e: weeks[weeks.experiment_id == e].set_index(["metric", "event_week"])["se"]
               for e in ("adj_none", "adj_cuped")}  # fmt: skip
    cuped_weeks, none_weeks = week_se["adj_cuped"].sort_index(), week_se["adj_none"].sort_index()
    assert len(cuped_weeks) > 0 and cuped_weeks.index.equals(none_weeks.index)
    assert (cuped_weeks != none_weeks).all()
    seq = read_pandas(str(warehouse / "geo_sequential"))
    seq = {(r["experiment_id"], r["metric"]): r["se"] for r in seq.to_dict("records")}
    assert seq[("adj_cuped", "orders")] != seq[("adj_none", "orders")]


def test_a_constant_metric_is_refused_or_left_out_from_the_cells():
    """A constant primary metric is refused; a secondary one is left out of the analysis."""
    # 4 zones x 6 days of unbalanced cells: orders varies, gmv is 3.7 on every row (its
    # fit would give a round-off standard error, not exactly zero).
    rng = np.random.default_rng(0)
    zone, days = np.repeat(np.arange(1, 5), 6), np.arange(6)
    day = np.tile(np.datetime64("2026-03-17") + days, 4)
    n = rng.integers(1, 30, len(zone)).astype(float)
    orders = rng.poisson(2.0, (len(zone), 30)) * (np.arange(30) < n[:, None])
    sums = np.column_stack([orders.sum(1), 3.7 * n])
    cross = np.zeros((len(zone), 2, 2))
    cross[:, 0, 0], cross[:, 1, 1] = (orders**2).sum(1), 3.7**2 * n
    cross[:, 0, 1] = cross[:, 1, 0] = 3.7 * orders.sum(1)
    cells = CellStats(zone, day, n, ("orders", "gmv"), sums, cross)
    spec = ExperimentConfig.model_validate(
        load_config().design.model_dump()
        | {
            "experiment_id": "flat",
            "variants": ["control", "treatment"],
            "zones_per_variant": 2,
            "start": dt.date(2026, 3, 20),
            "end": dt.date(2026, 3, 31),
            "metrics": [{"name": "orders"}, {"name": "gmv"}],
            "seed": 1,
        }
    )
    first, last = dt.date(2026, 3, 17), dt.date(2026, 3, 22)
    with pytest.raises(InputError, match=r"flat: metric 'gmv' is constant \(3.7 on every"):
        analyze_job.constant_metrics(cells, spec, first, last)
    secondary = [spec.metrics[0], spec.metrics[1].model_copy(update={"primary": False})]
    left_out = spec.model_copy(update={"metrics": secondary})
    assert analyze_job.constant_metrics(cells, left_out, first, last) == {"gmv"}
    varying = spec.model_copy(update={"metrics": spec.metrics[:1]})
    assert analyze_job.constant_metrics(cells, varying, first, last) == set()
