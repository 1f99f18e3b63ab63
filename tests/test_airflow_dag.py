"""The shipped Airflow DAG loads in Airflow's own DagBag (in .venv-airflow, made by
scripts/airflow_env.sh) and submits each pipeline step as the pipeline runs it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from sparklift.pipeline.plan import DEPENDS_ON
from tests.conftest import REPO

AIRFLOW_PY = REPO / ".venv-airflow" / "bin" / "python"


def load(tmp_path: Path, logical_date: str, params: dict) -> dict:
    assert AIRFLOW_PY.exists(), "no .venv-airflow: run scripts/airflow_env.sh (test.sh does)"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SPARKLIFT"))},
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_SPARK_DEFAULT": "spark://spark-master:7077",
        "AIRFLOW_CONN_SPARK_BATCH": "spark://batch-master:7177",
        "SPARKLIFT_DIST": "/opt/sparklift/dist",
    }
    out = subprocess.run(
        [str(AIRFLOW_PY), str(REPO / "tests" / "airflow_dag_check.py"),
         str(REPO / "docker" / "airflow" / "dags"), logical_date, json.dumps(params)],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_dag_loads_with_the_pipeline_graph_and_submit_commands(tmp_path):
    dag = load(tmp_path, "2026-11-22", {})
    assert dag["import_errors"] == {}
    assert dag["catchup"] is True and dag["max_active_runs"] == 1
    # The run for day D starts once D is over, with D as its logical date (= run date).
    assert dag["timetable"] == "CronDataIntervalTimetable"
    assert dag["first_run"] == {
        "logical_date": "2026-11-01 00:00:00+00:00",
        "run_after": "2026-11-02 00:00:00+00:00",
    }
    tasks = dag["tasks"]
    assert {t: v["upstream"] for t, v in tasks.items()} == {
        step: sorted(needs) for step, needs in DEPENDS_ON.items()
    }
    for step, task in tasks.items():
        assert task["operator"] == "SparkSubmitOperator"
        assert task["retries"] >= 3 and task["retry_exponential_backoff"]
        cmd = task["command"]
        assert cmd[0] == "spark-submit"
        assert cmd[cmd.index("--master") + 1] == "spark://spark-master:7077"
        assert cmd[cmd.index("--py-files") + 1] == "/opt/sparklift/dist/sparklift.zip"
        assert cmd[cmd.index("--deploy-mode") + 1] == "client"
        app = cmd.index("/opt/sparklift/dist/pipeline.py")
        assert cmd[app + 1 :] == [
            "--config", "/opt/sparklift/conf/sparklift.yaml",
            "--run-date", "2026-11-22",
            "--steps", step,
        ]  # fmt: skip
        assert "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension" in cmd


def test_dag_params_choose_connection_and_config(tmp_path):
    params = {"spark_conn_id": "spark_batch", "config_path": "/etc/sparklift/prod.yaml"}
    dag = load(tmp_path, "2026-03-05", params)
    cmd = dag["tasks"]["allocate"]["command"]
    assert cmd[cmd.index("--master") + 1] == "spark://batch-master:7177"
    assert cmd[cmd.index("--config") + 1] == "/etc/sparklift/prod.yaml"
    assert cmd[cmd.index("--run-date") + 1] == "2026-03-05"
