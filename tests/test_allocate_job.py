"""`sparklift allocate` end to end: within budgets and caps, near the exact optimum,
published atomically (summary names the run), bad input refused with nothing written."""

from __future__ import annotations

import datetime as dt
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from sparklift.allocation import arms
from sparklift.allocation.tables import published_allocations, summary_where
from sparklift.cli import main
from sparklift.config import load_config
from sparklift.contracts.inputs import VOUCHERS as VOUCHERS_TABLE
from sparklift.contracts.vouchers import ALLOCATIONS, UPLIFT_SCORES
from sparklift.jobs import allocate as allocate_job
from sparklift.tables import Catalog
from sparklift.tables.local import read_pandas
from sparklift.tables.publish import named_id, new_id, utcnow
from tests.exact_optima import Instance, by_group, stored_optimum

RUN_DATE = "2026-09-01"
VOUCHERS = ["V01", "V02", "V03"]
BUDGETS = {"NL": 120.0, "DE": 60.0, "BE": 25.0}
GATE_TIMEOUT_S = 300
pytestmark = pytest.mark.e2e


def instance(n: int = 1500, seed: int = 0):
    rng = np.random.default_rng(seed)
    c = rng.lognormal(0, 0.8, (n, 3)) * np.array([1.0, 2.0, 4.0])
    u = c * rng.uniform(0, 0.3, (n, 3)) + rng.normal(0, 0.03, (n, 3))
    group = rng.choice(list(BUDGETS), n, p=[0.5, 0.3, 0.2])
    return u, c, group


def exact_by_group(u, c, group) -> dict[str, Instance]:
    """The default instance (n=1500, seed 0) by budget group, optima from the fixture."""
    return by_group("allocate_job/n=1500/seed=0", u, c, group, BUDGETS)


def exact_instances() -> list[Instance]:
    """Every instance whose optimum this module reads from the fixture."""
    return list(exact_by_group(*instance()).values())


def scores_frame(u, c, group) -> pd.DataFrame:
    n = len(group)
    return pd.DataFrame(
        {
            "run_date": dt.date.fromisoformat(RUN_DATE),
            "customer_id": np.repeat(np.arange(n, dtype=np.int64), 3),
            "budget_group": np.repeat(group, 3),
            "voucher_id": np.tile(VOUCHERS, n),
            "uplift_objective": u.ravel(),
            "uplift_cost": c.ravel(),
            "model_id": "m1",
        }
    )


def setup(spark, wh: Path, rows: pd.DataFrame | None) -> None:
    if rows is not None:
        catalog = Catalog(spark, load_config(overrides=[f"tables.base_path={wh}"]).tables)
        catalog.write(
            "uplift_scores",
            spark.createDataFrame(rows, UPLIFT_SCORES.schema),
        )


def campaign_file(tmp: Path, **spec) -> str:
    path = tmp / f"campaign_{len(list(tmp.glob('campaign_*')))}.yaml"
    path.write_text(yaml.safe_dump({"campaign_id": "c1", "vouchers": VOUCHERS, **spec}))
    return str(path)


def allocate(wh: Path, campaign: str, backend: str = "auto") -> int:
    return main(
        ["allocate", "--run-date", RUN_DATE, "--set", f"tables.base_path={wh}",
         "--set", f"tables.backend={backend}", "--campaign", campaign]
    )  # fmt: skip


def published(spark, wh: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    catalog = Catalog(spark, load_config(overrides=[f"tables.base_path={wh}"]).tables)
    alloc = published_allocations(catalog, dt.date.fromisoformat(RUN_DATE), "c1").toPandas()
    return alloc, read_pandas(str(wh / "allocation_summary"))


def test_allocate_within_budget_near_optimum_and_replaces_its_run(spark, tmp_path, capsys):
    wh = tmp_path / "wh"
    u, c, group = instance()
    exact = exact_by_group(u, c, group)
    setup(spark, wh, scores_frame(u, c, group))
    campaign = campaign_file(tmp_path, budgets=BUDGETS, driver_max_rows=0)  # Spark passes
    capsys.readouterr()
    assert allocate(wh, campaign) == 0
    out = json.loads(capsys.readouterr().out)
    alloc, summary = published(spark, wh)
    assert out["run_id"] == alloc["run_id"].iloc[0] == summary["run_id"].iloc[0]
    assert out["passes"] == 3 and (summary["passes"] == 3).all()
    assert out["reader"] == "files"  # the scores' files, without a shuffle
    near_optimum(alloc, summary, u, group, exact)

    # A re-run publishes a new run and leaves only its allocations behind.
    assert allocate(wh, campaign) == 0
    again, summary2 = published(spark, wh)
    assert len(summary2) == 3 and summary2["run_id"].nunique() == 1
    assert summary2["run_id"].iloc[0] != summary["run_id"].iloc[0]
    everything = read_pandas(str(wh / "allocations"))
    assert set(everything["run_id"]) == {summary2["run_id"].iloc[0]}
    key = ["customer_id", "voucher_id"]
    pd.testing.assert_frame_equal(  # deterministic
        alloc.sort_values(key)[key].reset_index(drop=True),
        again.sort_values(key)[key].reset_index(drop=True),
    )

    # By default a campaign this small (4,500 score rows) is solved in the driver's memory,
    # after one pass; as near the optimum.
    capsys.readouterr()
    assert allocate(wh, campaign_file(tmp_path, budgets=BUDGETS)) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["passes"], out["reader"]) == (1, "driver")
    near_optimum(*published(spark, wh), u, group, exact)


def test_spark_passes_solve_the_policy_arm_spark_draws(spark, tmp_path, capsys):
    """In Spark passes, the Python reader of the scores' files keeps the policy arm by its
    own (NumPy) draw: each group's solved customers are Spark's policy customers, every
    policy row is one of them, and the holdout rows are Spark's holdout customers."""
    wh = tmp_path / "wh"
    u, c, group = instance()
    rows = scores_frame(u, c, group)
    setup(spark, wh, rows)
    shares = {"holdout_share": 0.2, "explore_share": 0.1, "explore_budget_share": 0.05}
    spec = campaign_file(tmp_path, budgets=BUDGETS, driver_max_rows=0, seed=4, **shares)
    capsys.readouterr()
    assert allocate(wh, spec) == 0
    assert json.loads(capsys.readouterr().out)["reader"] == "files"
    customers = spark.createDataFrame(rows[["customer_id", "budget_group"]].drop_duplicates())
    drawn = customers.withColumn("arm", arms.arm("c1", 4, 0.2, 0.1)).toPandas()
    alloc, summary = published(spark, wh)
    policy = drawn[drawn["arm"] == "policy"]
    solved = summary.set_index("budget_group")["n_customers"].to_dict()
    assert solved == policy["budget_group"].value_counts().to_dict()
    assert set(alloc.loc[alloc["arm"] == "policy", "customer_id"]) <= set(policy["customer_id"])
    held = set(drawn.loc[drawn["arm"] == "holdout", "customer_id"])
    assert set(alloc.loc[alloc["arm"] == "holdout", "customer_id"]) == held


@pytest.mark.parametrize("driver_max_rows", [0, None])  # Spark passes; the driver's memory
def test_a_cap_bounds_the_explore_and_policy_sends_together(
    spark, tmp_path, capsys, driver_max_rows
):
    """The explore arm sends V03 too: the policy gets what its cap leaves, so the campaign
    sends V03 at most the cap's number of times over both arms."""
    wh = tmp_path / "wh"
    u, c, group = instance(600, 3)
    setup(spark, wh, scores_frame(u, c, group))
    reader = {} if driver_max_rows is None else {"driver_max_rows": driver_max_rows}
    shares = {"explore_share": 0.2, "explore_budget_share": 0.3}
    spec = campaign_file(tmp_path, budgets=BUDGETS, caps={"V03": 12}, max_cap_rounds=5, seed=2,
                         **shares, **reader)  # fmt: skip
    capsys.readouterr()
    assert allocate(wh, spec) == 0
    alloc, _ = published(spark, wh)
    v03 = alloc[alloc["voucher_id"] == "V03"]["arm"].value_counts().to_dict()
    assert v03.get("explore", 0) >= 1 and v03.get("policy", 0) > 0, v03
    assert v03.get("explore", 0) + v03.get("policy", 0) <= 12, v03


def near_optimum(alloc, summary, u, group, exact: dict[str, Instance]) -> None:
    """Budgets held, the summary true to the rows, each group within its reported gap and
    within the largest single u of its exact optimum."""
    assert alloc["customer_id"].is_unique and (alloc["model_id"] == "m1").all()
    for _, s in summary.iterrows():
        mine = alloc[alloc["budget_group"] == s["budget_group"]]
        assert mine["expected_cost"].sum() == pytest.approx(s["spent"])
        assert s["spent"] <= s["budget"] + 1e-9
        assert mine["expected_uplift"].sum() == pytest.approx(s["objective"])
        counts = dict(s["voucher_counts"])  # every voucher offered, 0 when none chosen
        assert sorted(counts) == VOUCHERS
        assert {v: n for v, n in counts.items() if n} == mine["voucher_id"].value_counts().to_dict()
        assert s["gap"] == pytest.approx(s["dual_bound"] - s["objective"])
        in_g = group == s["budget_group"]
        assert s["n_customers"] == in_g.sum()
        best = stored_optimum(exact[s["budget_group"]])
        assert s["objective"] <= best + 1e-6 <= s["dual_bound"] + 2e-6
        assert best - s["objective"] <= u[in_g].max()


def test_a_failed_run_leaves_the_published_one(spark, tmp_path, monkeypatch):
    wh = tmp_path / "wh"
    u, c, group = instance(600, 1)
    setup(spark, wh, scores_frame(u, c, group))
    campaign = campaign_file(tmp_path, budgets=BUDGETS, caps={"V03": 10}, max_cap_rounds=3)
    assert allocate(wh, campaign) == 0
    before, summary = published(spark, wh)
    assert (before["voucher_id"] == "V03").sum() <= 10

    def boom(*_):
        raise RuntimeError("executor lost")

    monkeypatch.setattr(allocate_job, "summarize", boom)  # dies after appending its rows
    assert allocate(wh, campaign) == 1  # an internal error
    after, summary_after = published(spark, wh)
    pd.testing.assert_frame_equal(summary, summary_after)
    assert set(read_pandas(str(wh / "allocations"))["run_id"]) == {summary["run_id"].iloc[0]}
    assert len(after) == len(before)


@pytest.mark.parametrize("backend", ["native", "deltars"])
def test_concurrent_runs_publish_in_turn_and_never_lose_rows(spark, tmp_path, monkeypatch, backend):
    """Run A appends its rows, then waits to publish while run B runs from start to end; A
    then publishes. B must not delete A's rows (it used to drop every other run present),
    A removes B (which it replaced), and an abandoned run goes while a fresh one stays."""
    wh = tmp_path / "wh"
    u, c, group = instance(300, 4)
    setup(spark, wh, scores_frame(u, c, group))
    campaign = campaign_file(tmp_path, budgets=BUDGETS)
    assert allocate(wh, campaign, backend) == 0
    first, _ = published(spark, wh)
    catalog = Catalog(spark, load_config(overrides=[f"tables.base_path={wh}"]).tables)
    in_flight = new_id(utcnow())
    for run_id in ("20200101T000000-0badf00d", in_flight):  # abandoned, and another run's
        rows = first.assign(run_id=run_id)[ALLOCATIONS.columns]
        catalog.write("allocations", spark.createDataFrame(rows, ALLOCATIONS.schema), mode="append")

    publish, gate = allocate_job.write_records, threading.Event()

    def held(*args, **kwargs):
        if threading.current_thread().name.startswith("run-a"):
            assert gate.wait(GATE_TIMEOUT_S), "run B never finished"
        return publish(*args, **kwargs)

    monkeypatch.setattr(allocate_job, "write_records", held)
    with ThreadPoolExecutor(1, thread_name_prefix="run-a") as pool:
        run_a = pool.submit(allocate, wh, campaign, backend)
        try:
            assert allocate(wh, campaign, backend) == 0  # run B
            where = summary_where(dt.date.fromisoformat(RUN_DATE), "c1")
            run_b = named_id(catalog, "allocation_summary", "run_id", where)
        finally:
            gate.set()
        assert run_a.result(timeout=GATE_TIMEOUT_S) == 0
    final, summary = published(spark, wh)
    assert summary["run_id"].iloc[0] not in (run_b, first["run_id"].iloc[0])
    assert len(final) == len(first) > 0  # the published run has all its rows
    present = set(read_pandas(str(wh / "allocations"))["run_id"])
    assert present == {summary["run_id"].iloc[0], in_flight}


def test_budgets_and_caps_from_tables(spark, tmp_path):
    wh = tmp_path / "wh"
    u, c, group = instance(400, 2)
    setup(spark, wh, scores_frame(u, c, group))
    catalog = Catalog(spark, load_config(overrides=[f"tables.base_path={wh}"]).tables)
    budgets = [("c1", g, b) for g, b in BUDGETS.items()] + [("other", "NL", 1.0)]
    catalog.write(
        "campaign_budgets",
        spark.createDataFrame(budgets, "campaign_id string, budget_group string, budget double"),
    )
    catalog.write(
        "campaign_caps",
        spark.createDataFrame([("c1", "V02", 5)], "campaign_id string, voucher_id string, cap int"),
    )
    assert allocate(wh, campaign_file(tmp_path, budgets="table", caps="table")) == 0
    alloc, summary = published(spark, wh)
    assert dict(zip(summary["budget_group"], summary["budget"], strict=True)) == BUDGETS
    assert (alloc["voucher_id"] == "V02").sum() <= 5
    assert set(dict(summary["cap_multipliers"].iloc[0])) == {"V02"}


def test_a_caps_table_without_the_campaign_s_rows_means_no_caps(spark, tmp_path, capsys):
    """`caps: table` and campaign_caps holds only another campaign's rows: a voucher
    without a cap has no row, so none has one and the campaign is allocated without caps,
    saying so (it exited 2). The allocation is the one of the same campaign with no caps."""
    wh = tmp_path / "wh"
    u, c, group = instance(100, 3)
    setup(spark, wh, scores_frame(u, c, group))
    catalog = Catalog(spark, load_config(overrides=[f"tables.base_path={wh}"]).tables)
    schema = "campaign_id string, voucher_id string, cap int"
    catalog.write("campaign_caps", spark.createDataFrame([("other", "V02", 1)], schema))
    capsys.readouterr()
    assert allocate(wh, campaign_file(tmp_path, budgets=BUDGETS, caps="table")) == 0
    assert "table campaign_caps has no rows for campaign c1: no caps" in capsys.readouterr().err
    tabled, summary = published(spark, wh)
    assert not dict(summary["cap_multipliers"].iloc[0] or {})
    assert allocate(wh, campaign_file(tmp_path, budgets=BUDGETS)) == 0
    plain, _ = published(spark, wh)
    key = ["customer_id", "voucher_id"]
    assert (
        tabled[key].sort_values(key).values.tolist() == plain[key].sort_values(key).values.tolist()
    )
    assert (tabled["voucher_id"] == "V02").sum() > 1  # the other campaign's cap is not read


@pytest.mark.parametrize("driver_max_rows", [0, None])  # Spark passes; the driver's memory
def test_vouchers_max_quantity_caps_every_arm(spark, tmp_path, driver_max_rows):
    """Table vouchers' max_quantity is a cap too, the smaller of it and the campaign's: V01
    max_quantity 3 (no campaign cap), V02 the campaign's 5 under max_quantity 40, V03 null
    (none). The explore arm draws V01 for some 40 customers, yet the campaign sends it at
    most 3 times over every arm."""
    wh = tmp_path / "wh"
    u, c, group = instance(600, 3)
    setup(spark, wh, scores_frame(u, c, group))
    catalog = Catalog(spark, load_config(overrides=[f"tables.base_path={wh}"]).tables)
    rows = [("V01", 1.0, 3, True), ("V02", 2.0, 40, True), ("V03", 4.0, None, True)]
    catalog.write("vouchers", spark.createDataFrame(rows, VOUCHERS_TABLE.schema))
    reader = {} if driver_max_rows is None else {"driver_max_rows": driver_max_rows}
    shares = {"explore_share": 0.2, "explore_budget_share": 0.3}
    spec = campaign_file(tmp_path, budgets=BUDGETS, caps={"V02": 5}, max_cap_rounds=5, seed=2,
                         **shares, **reader)  # fmt: skip
    assert allocate(wh, spec) == 0
    alloc, summary = published(spark, wh)
    sent = alloc.groupby("voucher_id").size()
    assert sent.get("V01", 0) <= 3 and sent.get("V02", 0) <= 5, sent
    assert set(dict(summary["cap_multipliers"].iloc[0])) == {"V01", "V02"}


@pytest.mark.parametrize(
    "table, rows, message",
    [
        ("campaign_budgets", [("c1", "NL", None), ("c1", "DE", 60.0), ("c1", "BE", 25.0)],
         "table campaign_budgets, campaign c1, budget_group NL: column budget is null"),
        ("campaign_budgets", [("c1", None, 5.0), ("c1", "NL", 1.0)],
         "table campaign_budgets, campaign c1: a row has a null budget_group"),
        ("campaign_caps", [("c1", "V02", None)],
         "table campaign_caps, campaign c1, voucher_id V02: column cap is null"),
    ],
)  # fmt: skip
def test_null_budget_and_cap_rows_are_refused(spark, tmp_path, capsys, table, rows, message):
    wh = tmp_path / "wh"
    u, c, group = instance(100, 3)
    setup(spark, wh, scores_frame(u, c, group))
    catalog = Catalog(spark, load_config(overrides=[f"tables.base_path={wh}"]).tables)
    schema = {
        "campaign_budgets": "campaign_id string, budget_group string, budget double",
        "campaign_caps": "campaign_id string, voucher_id string, cap int",
    }[table]
    catalog.write(table, spark.createDataFrame(rows, schema))
    spec = {"budgets": "table"} if table == "campaign_budgets" else {"caps": "table"}
    capsys.readouterr()
    assert allocate(wh, campaign_file(tmp_path, **({"budgets": BUDGETS} | spec))) == 2
    assert message in capsys.readouterr().err
    assert not (wh / "allocations").exists() and not (wh / "allocation_summary").exists()


@pytest.mark.parametrize(
    "case, spec, rows, code, message",
    [
        ("negative budget", {"budgets": {**BUDGETS, "BE": -5.0}}, "ok", 2, "budgets must be >= 0"),
        (
            "infinite budget",
            {"budgets": {**BUDGETS, "BE": float("inf")}},
            "ok",
            2,
            "budgets must be >= 0 and finite, got {'BE': inf}",
        ),
        (
            "empty voucher list",
            {"budgets": BUDGETS, "vouchers": []},
            "ok",
            2,
            "vouchers: [] names no voucher",
        ),
        (
            "unscored vouchers",
            {"budgets": BUDGETS, "vouchers": ["V07", "V08"]},
            "ok",
            2,
            "uplift_scores of 2026-09-01 has no rows for campaign c1's vouchers ['V07', 'V08']; "
            "it scores 'V01', 'V02', 'V03' (score",
        ),
        ("unknown group", {"budgets": {"NL": 1.0, "DE": 1.0}}, "ok", 2, "budget groups ['BE']"),
        ("duplicates", {"budgets": BUDGETS}, "dup", 2, "duplicate (customer_id, voucher_id)"),
        ("NaN score", {"budgets": BUDGETS}, "nan", 2, "null, NaN or infinite"),
        ("no scores yet", {"budgets": BUDGETS}, None, 3, "no uplift_scores table yet"),
        ("no scores today", {"budgets": BUDGETS}, "other day", 3, "no rows for run_date"),
        (
            "exact with caps",
            {"budgets": BUDGETS, "caps": {"V01": 1}, "solver": "exact"},
            "ok",
            2,
            "caps couple the groups",
        ),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(
    spark, tmp_path, capsys, case, spec, rows, code, message
):
    wh = tmp_path / "wh"
    u, c, group = instance(100, 3)
    frame = scores_frame(u, c, group)
    frame = {
        "ok": frame,
        "dup": pd.concat([frame, frame.head(1)]),
        "nan": frame.assign(uplift_objective=frame["uplift_objective"].where(frame.index != 5)),
        "other day": frame.assign(run_date=dt.date(2026, 8, 1)),
        None: None,
    }[rows]
    setup(spark, wh, frame)
    capsys.readouterr()
    assert allocate(wh, campaign_file(tmp_path, **spec)) == code, case
    assert message in capsys.readouterr().err
    assert not (wh / "allocations").exists() and not (wh / "allocation_summary").exists()


@pytest.mark.parametrize("driver_max_rows", [0, None])  # Spark passes; the driver's memory
@pytest.mark.parametrize(
    "arm, defect, message",
    [
        ("explore", "nan cost", "1 (customer, voucher) scores that are null, NaN or infinite "
                                "in the holdout and explore arms, e.g. customer_id={id}"),
        ("holdout", "duplicate", "1 duplicate (customer_id, voucher_id) rows in the holdout "
                                 "and explore arms, e.g. customer_id={id}"),
    ],
)  # fmt: skip
def test_defective_scores_of_the_holdout_and_explore_arms_are_refused(
    spark, tmp_path, capsys, driver_max_rows, arm, defect, message
):
    """The arms the solver does not read are checked as its own customers are: a NaN cost
    would stop the explore queue of its group unseen, a duplicate be sent or held twice."""
    wh = tmp_path / "wh"
    u, c, group = instance(300, 5)
    frame = scores_frame(u, c, group)
    customers = spark.createDataFrame(frame[["customer_id"]].drop_duplicates())
    drawn = customers.withColumn("arm", arms.arm("c1", 6, 0.2, 0.2)).toPandas()
    one = int(drawn.loc[drawn["arm"] == arm, "customer_id"].min())
    row = frame.index[frame["customer_id"] == one][1]
    if defect == "nan cost":
        frame.loc[row, "uplift_cost"] = np.nan
    else:
        frame = pd.concat([frame, frame.loc[[row]]])
    setup(spark, wh, frame)
    reader = {} if driver_max_rows is None else {"driver_max_rows": driver_max_rows}
    spec = campaign_file(tmp_path, budgets=BUDGETS, seed=6, holdout_share=0.2, explore_share=0.2,
                         explore_budget_share=0.1, **reader)  # fmt: skip
    capsys.readouterr()
    assert allocate(wh, spec) == 2
    assert message.format(id=one) in capsys.readouterr().err
    assert not (wh / "allocations").exists() and not (wh / "allocation_summary").exists()
