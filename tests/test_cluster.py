"""The features job under local-cluster[2,1,1024]: executors in separate JVMs, driven
from a fresh process (``tests/jobs_in_one_app.py``); its inputs are generated in the test
session. Scoring (the broadcast model in executors' Python workers) and the allocation
(envelopes cached in executors, a worker killed mid-write) run on a standalone cluster's
executors in tests/test_standalone.py. With them here as well this test took 258 s alone
(2026-12-03); with the features job alone, 107 s (2026-12-04; bench/RESULTS.md)."""

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
from tests.conftest import SHORT_JVM_CONF

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
def test_features_on_local_cluster(spark, tmp_path: Path):
    tables = ["--set", f"tables.base_path={tmp_path}", "--run-date", "2026-05-31"]
    scale = ["--users", "4000", "--zones", "30", "--days", "14", "--customers", "500"]
    assert main(["generate", *tables, *scale, "--campaign-rows", "2000"]) == 0
    conf = {"spark.executor.memory": "768m", **SHORT_JVM_CONF}  # JVMs of one small job
    cluster = ["--set", f"spark.master={MASTER}", "--set", "spark.driver_memory=1g",
               "--set", f"spark.conf={json.dumps(conf)}"]  # fmt: skip
    (feats,) = run_jobs(
        ["features", *tables, *cluster, "--start", "2026-05-30", "--end", "2026-05-31"]
    )

    assert feats["rows"] == 30 * 2
    activity = read_pandas(str(tmp_path / "user_activity"))
    activity = activity[pd.to_datetime(activity["date"]) >= "2026-05-30"]
    out = read_pandas(str(tmp_path / "zone_day_features"))
    assert out["active_users"].sum() == len(activity) > 0
    assert out["orders"].sum() == activity["orders"].sum()
    assert out["gmv"].sum() == pytest.approx(activity["gmv"].sum())
