"""The pipeline under spark-submit on a real standalone cluster (master + worker started
from pyspark's own scripts), shipped as scripts/package.sh's artefact and submitted with
README's production flags (Delta Lake's jars from dist/jars: native Delta tables); a
worker killed while the allocation step writes; and the Airflow DAG run by Airflow on the
same cluster: a whole run of a deployment's steps (score, then allocate: each a
spark-submit of the artefact). (How a task fails at once on exit code 2, without retries,
is tests/test_airflow_dag.py's subject, against a stub spark-submit.)"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sparklift.cli import main
from sparklift.tables.local import read_pandas
from tests.airflow_cli import DAG_ID, AirflowCli
from tests.conftest import REPO, SHORT_JVM_CONF
from tests.standalone import SPARK_HOME, StandaloneCluster

DAY = "2026-06-30"
BUDGETS = {"NL": 400.0, "DE": 300.0, "BE": 200.0, "FR": 100.0}
STEPS = {"score", "allocate:winback"}
OUTPUTS = ("uplift_scores", "allocations", "allocation_summary")
DELTA_SPARK = re.compile(r"^Apache-Spark/\S+ Delta-Lake/\S+")  # commitInfo.engineInfo
# The DAG's tasks here: a deployment of the campaign steps alone, score then allocate
# (SPARKLIFT_STEPS; the other tasks are the same spark-submit of another --steps, and each
# task costs this suite a driver and an executor JVM on the cluster, about 100 s here:
# features runs on executors in tests/test_cluster.py).
DEPLOYED = ("score", "allocate")
SUBMIT_TIMEOUT_S = 600
DAG_RUN_TIMEOUT_S = 900
pytestmark = [pytest.mark.cluster, pytest.mark.e2e]


@pytest.fixture(scope="module")
def artefact() -> Path:
    """dist/ as scripts/package.sh builds it (wheel, sparklift.zip, job entry points, and
    Delta Lake's jars in dist/jars)."""
    out = subprocess.run(
        ["bash", "scripts/package.sh"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert list((REPO / "dist" / "jars").glob("io.delta_delta-spark_2.13-*.jar")), out.stdout
    return REPO / "dist"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[StandaloneCluster]:
    with StandaloneCluster(tmp_path_factory.mktemp("standalone")) as c:
        yield c


@pytest.fixture(scope="module")
def inputs(spark, tmp_path_factory) -> Path:
    """Generated tables with the planted experiment running on DAY and a trained model:
    what each warehouse of this module starts from."""
    wh = tmp_path_factory.mktemp("inputs")
    sets = ["--set", f"tables.base_path={wh}", "--set", f"tables.model_path={wh / 'models'}"]
    scale = ["--users", "3000", "--zones", "24", "--days", "14", "--customers", "20000"]
    assert main(["generate", "--run-date", DAY, *sets, *scale, "--campaign-rows", "12000"]) == 0
    assert main(["train-uplift", "--run-date", DAY, *sets, "--set", "uplift.min_arm_rows=300"]) == 0
    return wh


def warehouse(inputs: Path, wh: Path) -> Path:
    """A copy of ``inputs`` at ``wh`` with a campaign with a cap and the config file the
    cluster runs read (native Delta tables: no fall-back to delta-rs without the jars)."""
    shutil.copytree(inputs, wh, dirs_exist_ok=True)
    campaign = {"campaign_id": "winback", "budgets": BUDGETS, "caps": {"V01": 300}}
    (wh / "winback.yaml").write_text(json.dumps(campaign))
    conf = {
        "tables": {"base_path": str(wh), "model_path": str(wh / "models"), "backend": "native"},
        # The gates run the same code in-process (tests/test_pipeline.py); on the cluster
        # each would add a job per task to the slowest test of the suite; so would the
        # reports (tests/test_pipeline.py).
        "pipeline": {"campaigns": [str(wh / "winback.yaml")], "checks": False, "reports": False},
        # Spark passes, not the driver's memory: the solver's Python workers (the files
        # reader and the sums they hand to the driver's accumulator) on real executors.
        # Convergence: the in-process tests.
        "allocate": {"max_cap_rounds": 1, "driver_max_rows": 0},
        "logging": {"format": "json", "progress_interval_s": 5},
    }
    (wh / "cluster.yaml").write_text(yaml.safe_dump(conf))
    return wh


def submit(cluster, artefact: Path, wh: Path, log: Path, *args: str) -> subprocess.Popen:
    return cluster.submit(
        artefact, "pipeline", ["--config", str(wh / "cluster.yaml"), "--run-date", DAY, *args], log
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


def runs_of(wh: Path, day: str) -> pd.DataFrame:
    """``pipeline_runs`` rows of one run date."""
    runs = read_pandas(str(wh / "pipeline_runs"))
    return runs[pd.to_datetime(runs["run_date"]).dt.strftime("%Y-%m-%d") == day]


def latest_runs(wh: Path) -> pd.DataFrame:
    runs = runs_of(wh, DAY)
    return runs.sort_values("ended_at").groupby("step").tail(1).set_index("step")


def last_commit_engine(table: Path) -> str:
    """``engineInfo`` of the latest commit of the Delta table at ``table`` (Delta Lake on
    Spark writes ``Apache-Spark/<v> Delta-Lake/<v>``; delta-rs writes none)."""
    last = max((table / "_delta_log").glob("*.json"), key=lambda f: int(f.stem))
    actions = [json.loads(line) for line in last.read_text().splitlines() if line.strip()]
    return next(a["commitInfo"].get("engineInfo", "") for a in actions if "commitInfo" in a)


def check_native(wh: Path) -> None:
    """The pipeline's outputs were last committed by Delta Lake on Spark."""
    for name in (*OUTPUTS, "pipeline_runs"):
        engine = last_commit_engine(wh / name)
        assert DELTA_SPARK.match(engine), (name, engine)


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


@pytest.fixture(scope="module")
def airflow(cluster, artefact, inputs, tmp_path_factory) -> tuple[AirflowCli, Path]:
    """Airflow (.venv-airflow) with a fresh SQLite metadata DB, the test cluster as the
    DAG's Spark connection, dist/ as SPARKLIFT_DIST, and a warehouse of its own."""
    root = tmp_path_factory.mktemp("airflow")
    wh = warehouse(inputs, root / "wh")
    conf_dir = root / "spark-conf"  # this machine's sizing, as a cluster's spark-defaults
    conf_dir.mkdir()
    (conf_dir / "spark-defaults.conf").write_text(
        "spark.sql.shuffle.partitions 4\nspark.ui.enabled false\n"
        "spark.databricks.delta.snapshotPartitions 2\n"
        + "".join(f"{k} {v}\n" for k, v in SHORT_JVM_CONF.items())
    )
    (conf_dir / "log4j2.properties").write_text(
        "rootLogger.level = warn\nrootLogger.appenderRef.stderr.ref = console\n"
        "appender.console.type = Console\nappender.console.name = console\n"
        "appender.console.target = SYSTEM_ERR\nappender.console.layout.type = PatternLayout\n"
        "appender.console.layout.pattern = %d %p %c{1}: %m%n%ex\n"
    )
    env = {k: v for k, v in cluster.env.items() if not k.startswith(("AIRFLOW", "SPARKLIFT"))}
    env |= {
        "PATH": f"{SPARK_HOME / 'bin'}{os.pathsep}{env['PATH']}",  # the .venv's spark-submit
        "SPARK_CONF_DIR": str(conf_dir),
        "AIRFLOW_CONN_SPARK_STANDALONE": cluster.url,
        "SPARKLIFT_SPARK_CONN_ID": "spark_standalone",
        "SPARKLIFT_DIST": str(artefact),
        "SPARKLIFT_CONFIG": str(wh / "cluster.yaml"),
        "SPARKLIFT_START_DATE": DAY,
        "SPARKLIFT_STEPS": ",".join(DEPLOYED),
    }
    cli = AirflowCli(root / "home", env)
    cli.migrate(root / "migrate.log")
    return cli, wh


def test_airflow_runs_the_dag_on_standalone_cluster(airflow, cluster, artefact, tmp_path):
    """``airflow dags test``: every task spark-submits the packaged pipeline with Delta
    Lake's jars to the standalone cluster; each step runs once, natively, and its outputs
    and the allocation are published. (The cluster's spark-submit test of the pipeline: a
    separate all-steps submit would run the same code on the same cluster again.)"""
    cli, wh = airflow
    cluster_url = cluster.url
    log = tmp_path / "dags_test.log"
    code = cli.run(["dags", "test", DAG_ID, DAY], log, DAG_RUN_TIMEOUT_S)
    text = log.read_text(errors="replace")
    assert code == 0, text[-4000:]
    assert cli.task_states(DAY) == {task: ("success", 1) for task in DEPLOYED}
    commands = re.findall(r"Spark-Submit cmd: (.*?) \[airflow", text)
    jars = ",".join(str(j) for j in sorted((artefact / "jars").glob("*.jar")))
    assert len(commands) == len(DEPLOYED), commands
    assert all(f"--jars {jars} " in c for c in commands), commands
    assert text.count("tables: native backend") >= len(DEPLOYED)
    runs = runs_of(wh, DAY)
    assert sorted(runs["step"]) == sorted(STEPS), runs[["step", "status", "error"]]
    assert set(runs["status"]) == {"succeeded"}, runs[["step", "status", "error"]]
    assert runs["app_id"].str.startswith("app-").all() and runs["app_id"].nunique() == len(DEPLOYED)
    check_native(wh)
    # The drivers ran the packaged code, on the standalone master, with Delta Lake from
    # dist/jars (native tables, committed by Delta Lake on Spark).
    starts = [ln for ln in text.splitlines() if '"job pipeline for' in ln]
    assert len(starts) == len(DEPLOYED), text[-4000:]
    for start in starts:
        assert "dist/sparklift.zip/sparklift" in start and cluster_url in start, start
        assert "tables: native backend" in start, start
    # Outputs: scores for every customer x voucher, an allocation within budgets and the cap.
    assert len(read_pandas(str(wh / "uplift_scores"))) == 20000 * 3
    summary, rows = published(wh)
    check_allocation(summary, rows)
    # In Spark passes (driver_max_rows 0): the files reader's workers ran on the executors.
    assert "allocation: pass " in text and "more than one place" not in text
    latest = latest_runs(wh)
    assert dict(latest.loc["allocate:winback", "output_rows"])["allocations"] == len(rows)


def test_worker_killed_while_allocation_writes(cluster, artefact, airflow, tmp_path):
    """Readers see the previous allocation or the complete new one, never a part; after a
    replacement worker joins, the run or a re-run completes. (On the warehouse the DAG
    run above published.)"""
    data = airflow[1]
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
    check_native(data)
    # Superseded runs are gone; only the published run's rows remain. (Their files, and the
    # partial Parquet file of a task killed mid-write, stay on disk until a VACUUM: the
    # Delta log never referenced the latter and no longer references the former.)
    assert set(read_pandas(str(data / "allocations"))["run_id"]) == {summary["run_id"].iloc[0]}
    # Same scores, same problem: the new allocation equals the old one.
    key = ["customer_id", "voucher_id"]
    pd.testing.assert_frame_equal(
        rows[key].sort_values(key).reset_index(drop=True),
        before_rows[key].sort_values(key).reset_index(drop=True),
    )
