"""The shipped Airflow DAG loads in Airflow's own DagBag (in .venv-airflow, made by
scripts/airflow_env.sh) with the steps of sparklift's step registry (from the
dist/pipeline_steps.json that scripts/package.sh writes), submits each pipeline step as the
pipeline runs it with Delta Lake's jars from dist/jars, and fails at once (no retries) on
exit code 2 only.
tests/test_standalone.py runs it with Airflow on a real cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from sparklift.pipeline import registry
from tests.conftest import REPO
from tests.standalone import production_flags

AIRFLOW_PY = REPO / ".venv-airflow" / "bin" / "python"


JARS = ["io.delta_delta-spark_2.13-4.4.0.jar", "io.delta_delta-storage-4.4.0.jar"]


def build_dist(tmp_path: Path, jars: Sequence[str] = ()) -> Path:
    """A dist/ with the steps manifest, written as scripts/package.sh writes it, and empty
    files named as Delta Lake's ``jars``."""
    dist = tmp_path / "dist"
    dist.mkdir()
    if jars:
        (dist / "jars").mkdir()
    for name in jars:
        (dist / "jars" / name).touch()
    manifest = subprocess.run(
        [sys.executable, "-m", "sparklift.pipeline.registry"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    (dist / "pipeline_steps.json").write_text(manifest)
    return dist


def load(
    tmp_path: Path,
    logical_date: str,
    params: dict,
    dist: Path,
    exit_codes: tuple[int, ...] = (),
    steps: str | None = None,
) -> dict:
    """What tests/airflow_dag_check.py reports of the DAG parsed with ``SPARKLIFT_DIST=dist``
    (and, for ``exit_codes``, what a task raised when a stub spark-submit exited so)."""
    assert AIRFLOW_PY.exists(), "no .venv-airflow: run scripts/airflow_env.sh (test.sh does)"
    stub = tmp_path / "bin" / "spark-submit"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text('#!/bin/sh\nexit "$STUB_EXIT_CODE"\n')
    stub.chmod(0o755)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SPARKLIFT"))},
        "PATH": f"{stub.parent}{os.pathsep}{os.environ['PATH']}",
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_SPARK_DEFAULT": "spark://spark-master:7077",
        "AIRFLOW_CONN_SPARK_BATCH": "spark://batch-master:7177",
        "SPARKLIFT_DIST": str(dist),
        **({"SPARKLIFT_STEPS": steps} if steps else {}),
    }
    out = subprocess.run(
        [str(AIRFLOW_PY), str(REPO / "tests" / "airflow_dag_check.py"),
         str(REPO / "docker" / "airflow" / "dags"), logical_date, json.dumps(params),
         json.dumps(list(exit_codes))],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_dag_loads_with_the_pipeline_graph_and_submit_commands(tmp_path):
    dist = build_dist(tmp_path, JARS)
    dag = load(tmp_path, "2026-11-22", {}, dist)
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
        step.kind: sorted(step.depends_on) for step in registry.steps()
    }
    for step, task in tasks.items():
        assert task["operator"] == "SparkSubmitOperator"
        assert task["retries"] >= 3 and task["retry_exponential_backoff"]
        cmd = task["command"]
        assert cmd[0] == "spark-submit"
        assert cmd[cmd.index("--master") + 1] == "spark://spark-master:7077"
        assert cmd[cmd.index("--py-files") + 1] == f"{dist}/sparklift.zip"
        assert cmd[cmd.index("--jars") + 1] == ",".join(f"{dist}/jars/{n}" for n in JARS)
        assert cmd[cmd.index("--deploy-mode") + 1] == "client"
        app = cmd.index(f"{dist}/pipeline.py")
        assert cmd[app + 1 :] == [
            "--config", "/opt/sparklift/conf/sparklift.yaml",
            "--run-date", "2026-11-22",
            "--steps", step,
        ]  # fmt: skip
        # The production flags of README's "Running on a cluster" (tests/standalone.py).
        assert set(production_flags(dist)) <= set(cmd)


def test_dag_keeps_the_steps_a_deployment_runs(tmp_path):
    """SPARKLIFT_STEPS keeps those tasks (dependencies on dropped ones go); an unknown
    step is an import error naming it."""
    dist = build_dist(tmp_path)
    dag = load(tmp_path, "2026-11-22", {}, dist, steps="features,score-propensity,score")
    assert {t: v["upstream"] for t, v in dag["tasks"].items()} == {
        "features": [],
        "score-propensity": [],
        "score": [],
    }
    broken = load(tmp_path, "2026-11-22", {}, dist, steps="features,scor")
    assert "SPARKLIFT_STEPS: unknown steps ['scor']" in json.dumps(broken["import_errors"])


def test_dag_params_choose_connection_and_config(tmp_path):
    params = {"spark_conn_id": "spark_batch", "config_path": "/etc/sparklift/prod.yaml"}
    dag = load(tmp_path, "2026-03-05", params, build_dist(tmp_path))
    cmd = dag["tasks"]["allocate"]["command"]
    assert cmd[cmd.index("--master") + 1] == "spark://batch-master:7177"
    assert cmd[cmd.index("--config") + 1] == "/etc/sparklift/prod.yaml"
    assert cmd[cmd.index("--run-date") + 1] == "2026-03-05"
    assert "--jars" not in cmd  # no dist/jars (the image has the jars on Spark's classpath)


def test_exit_code_2_fails_without_retries_others_retry(tmp_path):
    """The task's execute, against a stub spark-submit exiting with each code: 2 (bad input)
    and 5 (design rejected) raise AirflowFailException (no retries); 1, 3 (not ready) and 4
    (write conflict) a plain AirflowException, which Airflow retries."""
    dist = build_dist(tmp_path)
    raised = load(tmp_path, "2026-11-22", {}, dist, exit_codes=(0, 1, 2, 3, 4, 5))["raised"]
    assert raised == {
        "0": None,
        "1": "AirflowException",
        "2": "AirflowFailException",
        "3": "AirflowException",
        "4": "AirflowException",
        "5": "AirflowFailException",
    }


def test_dag_without_the_steps_manifest_does_not_load(tmp_path):
    """A dist/ not built by scripts/package.sh: an import error naming the missing file,
    not a DAG with no tasks."""
    (tmp_path / "dist").mkdir()
    dag = load(tmp_path, "2026-11-22", {}, tmp_path / "dist")
    assert "sparklift_nightly" not in dag.get("tasks", {})
    [error] = dag["import_errors"].values()
    assert f"{tmp_path / 'dist' / 'pipeline_steps.json'} not found" in error
