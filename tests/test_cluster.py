"""The jobs under local-cluster[2,1,1024]: executors in separate JVMs and Python workers.
All jobs run in one driver process (one application, as the pipeline runs its steps), so
the cluster starts once. The inputs (generated data, the trained model: driver-side work)
are made in the test session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sparklift.cli import main
from sparklift.tables.local import read_pandas

MASTER = "local-cluster[2,1,1024]"


def run_jobs(*commands: list[str]) -> list[dict]:
    """Run CLI commands in one fresh process (its own driver, executors and Python
    workers); every command must succeed. Returns their JSON summaries."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    out = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("jobs_in_one_app.py")), json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout)
    failed = [r for r in results if r["code"]]
    assert not failed and len(results) == len(commands), (failed, out.stderr[-3000:])
    return [json.loads(r["stdout"]) for r in results]


@pytest.mark.cluster
@pytest.mark.e2e
def test_jobs_on_local_cluster(spark, tmp_path: Path, capsys):
    tables = [
        "--set",
        f"tables.base_path={tmp_path}",
        "--set",
        f"tables.model_path={tmp_path / 'models'}",
        "--run-date",
        "2026-05-31",
    ]
    scale = ["--users", "4000", "--zones", "30", "--days", "14", "--customers", "3000"]
    assert main(["generate", *tables, *scale, "--campaign-rows", "20000"]) == 0
    gen = json.loads(capsys.readouterr().out)
    assert main(["train-uplift", *tables, "--set", "uplift.min_arm_rows=500"]) == 0
    model = json.loads(capsys.readouterr().out)
    cluster = ["--set", f"spark.master={MASTER}", "--set", "spark.driver_memory=1g",
               "--set", "spark.conf={spark.executor.memory: 768m}"]  # fmt: skip
    sets = [*tables, *cluster]
    budgets = {"NL": 400.0, "DE": 300.0, "BE": 200.0, "FR": 100.0}
    campaign = tmp_path / "campaign.yaml"
    campaign.write_text(json.dumps({"campaign_id": "cl", "budgets": budgets, "caps": {"V01": 50}}))
    feats, scored, alloc = run_jobs(
        ["features", *sets, "--start", "2026-05-30", "--end", "2026-05-31"],
        # Scoring in executor processes from the broadcast model.
        ["score", *sets],
        # Allocation: envelopes computed and cached in the executors (one cap round: the
        # rounds' convergence is the in-process tests' subject).
        ["allocate", *sets, "--campaign", str(campaign), "--set", "allocate.max_cap_rounds=1"],
    )  # fmt: skip

    assert feats["rows"] == 30 * 2
    activity = read_pandas(str(tmp_path / "user_activity"))
    assert len(activity) == gen["user_activity"]
    activity = activity[pd.to_datetime(activity["date"]) >= "2026-05-30"]
    out = read_pandas(str(tmp_path / "zone_day_features"))
    assert out["active_users"].sum() == len(activity)
    assert out["orders"].sum() == activity["orders"].sum()
    assert out["gmv"].sum() == pytest.approx(activity["gmv"].sum())

    assert scored["model_id"] == model["model_id"] and scored["customers_scored"] == 3000
    scores = read_pandas(str(tmp_path / "uplift_scores"))
    assert len(scores) == 3000 * len(model["vouchers"])
    assert scores[["uplift_objective", "uplift_cost"]].notna().all().all()
    assert scores.groupby("customer_id")["voucher_id"].nunique().eq(3).all()

    # Budgets and the cap hold.
    summary = read_pandas(str(tmp_path / "allocation_summary"))
    rows = read_pandas(str(tmp_path / "allocations"))
    assert set(rows["run_id"]) == {alloc["run_id"]} == set(summary["run_id"])
    assert rows["customer_id"].is_unique and (rows["voucher_id"] == "V01").sum() <= 50
    spent = rows.groupby("budget_group")["expected_cost"].sum()
    assert all(spent[g] <= b + 1e-9 for g, b in budgets.items() if g in spent)
    assert alloc["customers_allocated"] == len(rows) > 0
