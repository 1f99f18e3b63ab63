"""The pipeline under spark-submit on a real standalone cluster (master + worker started
from pyspark's own scripts), shipped as scripts/package.sh's --py-files artefact; and a
worker killed while the allocation step writes."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sparklift.cli import main
from sparklift.tables.local import read_pandas
from tests.conftest import REPO
from tests.standalone import StandaloneCluster

DAY = "2026-06-30"
BUDGETS = {"NL": 400.0, "DE": 300.0, "BE": 200.0, "FR": 100.0}
SUBMIT_TIMEOUT_S = 600
pytestmark = [pytest.mark.cluster, pytest.mark.e2e]


@pytest.fixture(scope="module")
def artefact() -> Path:
    """dist/ as scripts/package.sh builds it (wheel, sparklift.zip, job entry points)."""
    out = subprocess.run(
        ["bash", "scripts/package.sh"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return REPO / "dist"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[StandaloneCluster]:
    with StandaloneCluster(tmp_path_factory.mktemp("standalone")) as c:
        yield c


@pytest.fixture(scope="module")
def data(spark, tmp_path_factory) -> Path:
    """Generated tables with the planted experiment running on DAY, a trained model, a
    campaign with a cap, and the config file the cluster run reads."""
    wh = tmp_path_factory.mktemp("cluster_wh")
    sets = ["--set", f"tables.base_path={wh}", "--set", f"tables.model_path={wh / 'models'}"]
    scale = ["--users", "3000", "--zones", "24", "--days", "56", "--customers", "20000"]
    assert main(["generate", "--run-date", DAY, *sets, *scale, "--campaign-rows", "12000"]) == 0
    assert main(["train-uplift", "--run-date", DAY, *sets, "--set", "uplift.min_arm_rows=300"]) == 0
    campaign = {"campaign_id": "winback", "budgets": BUDGETS, "caps": {"V01": 300}}
    (wh / "winback.yaml").write_text(json.dumps(campaign))
    conf = {
        "tables": {"base_path": str(wh), "model_path": str(wh / "models")},
        "pipeline": {"campaigns": [str(wh / "winback.yaml")]},
        "allocate": {"max_cap_rounds": 3},
        "logging": {"format": "json", "progress_interval_s": 5},
    }
    (wh / "cluster.yaml").write_text(yaml.safe_dump(conf))
    return wh


def submit(cluster, artefact: Path, wh: Path, log: Path, *args: str) -> subprocess.Popen:
    return cluster.submit(
        artefact / "pipeline.py",
        ["--config", str(wh / "cluster.yaml"), "--run-date", DAY, *args],
        artefact / "sparklift.zip",
        log,
    )


def finish(proc: subprocess.Popen, log: Path) -> int:
    try:
        return proc.wait(timeout=SUBMIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(
            f"spark-submit did not finish within {SUBMIT_TIMEOUT_S}s; log {log}:\n"
            + log.read_text()[-4000:]
        ) from None


def latest_runs(wh: Path) -> pd.DataFrame:
    runs = read_pandas(str(wh / "pipeline_runs"))
    return runs.sort_values("ended_at").groupby("step").tail(1).set_index("step")


def published(wh: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What a campaign system reads: the summary, then the allocations of the run it names
    (re-read if a newer run replaced the summary in between)."""
    for _ in range(20):
        summary = read_pandas(str(wh / "allocation_summary"))
        rows = read_pandas(str(wh / "allocations"))
        run_ids = set(summary["run_id"])
        if set(read_pandas(str(wh / "allocation_summary"))["run_id"]) == run_ids:
            assert len(run_ids) == 1, run_ids
            return summary, rows[rows["run_id"].isin(run_ids)]
    raise AssertionError("allocation_summary changed on every read")


def check_allocation(summary: pd.DataFrame, rows: pd.DataFrame) -> None:
    """A complete run: every row of the run the summary names, within budgets and cap."""
    assert len(rows) == summary["n_allocated"].sum() > 0
    assert rows["customer_id"].is_unique and (rows["voucher_id"] == "V01").sum() <= 300
    spent = rows.groupby("budget_group")["expected_cost"].sum()
    for _, s in summary.iterrows():
        assert spent.get(s["budget_group"], 0.0) == pytest.approx(s["spent"], rel=1e-9, abs=1e-9)
        assert s["spent"] <= BUDGETS[s["budget_group"]] + 1e-9


def test_pipeline_on_standalone_cluster(cluster, artefact, data, tmp_path):
    log = tmp_path / "submit.log"
    code = finish(submit(cluster, artefact, data, log), log)
    text = log.read_text()
    assert code == 0, text[-4000:]
    # The driver ran the packaged code, on the standalone master.
    start = next(json.loads(ln) for ln in text.splitlines() if '"job pipeline for' in ln)
    assert "dist/sparklift.zip/sparklift" in start["message"] and cluster.url in start["message"]
    runs = latest_runs(data)
    assert set(runs["status"]) == {"succeeded"}, runs[["status", "error"]]
    assert set(runs.index) == {"features", "analyze:synthetic_geo", "score", "allocate:winback"}
    assert runs["app_id"].str.startswith("app-").all()  # a standalone application id
    # Outputs: the day's features for every zone, scores for every customer x voucher,
    # the analysis of the running experiment, an allocation within budgets and the cap.
    feats = read_pandas(str(data / "zone_day_features"))
    assert (pd.to_datetime(feats["date"]).dt.strftime("%Y-%m-%d") == DAY).sum() == 24
    assert len(read_pandas(str(data / "uplift_scores"))) == 20000 * 3
    results = read_pandas(str(data / "geo_results"))
    assert set(results["experiment_id"]) == {"synthetic_geo"} and results["estimate"].notna().all()
    summary, rows = published(data)
    check_allocation(summary, rows)
    assert dict(runs.loc["allocate:winback", "output_rows"])["allocations"] == len(rows)


def test_worker_killed_while_allocation_writes(cluster, artefact, data, tmp_path):
    """Readers see the previous allocation or the complete new one, never a part; after a
    replacement worker joins, the run or a re-run completes."""
    before_summary, before_rows = published(data)
    old_run = before_summary["run_id"].iloc[0]
    runs_dir = data / "allocations" / f"run_date={DAY}" / "campaign_id=winback"
    known = {p.name for p in runs_dir.iterdir()}
    log = tmp_path / "killed.log"
    proc = submit(cluster, artefact, data, log, "--steps", "allocate", "--force")
    deadline = time.monotonic() + SUBMIT_TIMEOUT_S
    while not ({p.name for p in runs_dir.iterdir()} - known):  # the new run's first file
        assert proc.poll() is None, "the run finished before it wrote:\n" + log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the allocation never started writing"
        time.sleep(0.02)
    cluster.worker().kill()  # SIGKILL to the worker and its executors, mid-write
    summary, rows = published(data)
    check_allocation(summary, rows)  # the previous run, or the complete new one
    cluster.start_worker()  # the replacement the cluster manager would bring
    while proc.poll() is None:  # readers keep seeing a complete run throughout
        assert time.monotonic() < deadline, "spark-submit hung after the worker was replaced"
        check_allocation(*published(data))
        time.sleep(0.5)
    if proc.returncode != 0:  # the run gave up: nothing of it is visible; re-run it
        assert published(data)[0]["run_id"].iloc[0] == old_run
        rerun = tmp_path / "rerun.log"
        assert finish(submit(cluster, artefact, data, rerun, "--steps", "allocate"), rerun) == 0
    summary, rows = published(data)
    check_allocation(summary, rows)
    assert summary["run_id"].iloc[0] != old_run
    assert latest_runs(data).loc["allocate:winback", "status"] == "succeeded"
    # Superseded runs are gone; only the published run's rows remain.
    assert set(read_pandas(str(data / "allocations"))["run_id"]) == {summary["run_id"].iloc[0]}
    # Same scores, same problem: the new allocation equals the old one.
    key = ["customer_id", "voucher_id"]
    pd.testing.assert_frame_equal(
        rows[key].sort_values(key).reset_index(drop=True),
        before_rows[key].sort_values(key).reset_index(drop=True),
    )
