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
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sparklift.pipeline import registry
from tests.airflow_cli import AIRFLOW_PY, wait_for_airflow
from tests.conftest import REPO
from tests.standalone import production_flags

JARS = ["io.delta_delta-spark_2.13-4.4.0.jar", "io.delta_delta-storage-4.4.0.jar"]


def build_dist(root: Path, manifest: str | None, jars: Sequence[str] = ()) -> Path:
    """A dist/ under ``root`` with the steps ``manifest`` (None: none), written as
    scripts/package.sh writes it, and empty files named as Delta Lake's ``jars``."""
    dist = root / "dist"
    dist.mkdir(parents=True)
    if jars:
        (dist / "jars").mkdir()
    for name in jars:
        (dist / "jars" / name).touch()
    if manifest is not None:
        (dist / "pipeline_steps.json").write_text(manifest)
    return dist


@dataclass(frozen=True)
class Scenario:
    """One load of the DAG: its dist/ (made by ``jars``, or without a manifest), the
    steps deployed (SPARKLIFT_STEPS), the logical date, params and stub exit codes."""

    jars: Sequence[str] = ()
    manifest: bool = True
    steps: str | None = None
    logical_date: str = "2026-11-22"
    params: dict = field(default_factory=dict)
    exit_codes: tuple[int, ...] = ()


SCENARIOS = {
    "graph": Scenario(jars=JARS),
    "kept": Scenario(steps="features,score-propensity,score"),
    "unknown_step": Scenario(steps="features,scor"),
    "params": Scenario(
        logical_date="2026-03-05",
        params={"spark_conn_id": "spark_batch", "config_path": "/etc/sparklift/prod.yaml"},
    ),
    "exit_codes": Scenario(exit_codes=(0, 1, 2, 3, 4, 5)),
    "no_manifest": Scenario(manifest=False),
}


@pytest.fixture(scope="module")
def loads(tmp_path_factory) -> dict[str, tuple[dict, Path]]:
    """Per scenario, what tests/airflow_dag_check.py reports of the DAG parsed with its
    dist/ as SPARKLIFT_DIST (and, for exit codes, what a task raised when a stub
    spark-submit exited so), and that dist/: all loaded in one Airflow process."""
    wait_for_airflow()
    root = tmp_path_factory.mktemp("airflow_dag")
    manifest = subprocess.run(
        [sys.executable, "-m", "sparklift.pipeline.registry"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    dists = {
        name: build_dist(root / name, manifest if s.manifest else None, s.jars)
        for name, s in SCENARIOS.items()
    }
    plan = [
        {
            "env": {"SPARKLIFT_DIST": str(dists[name]), "SPARKLIFT_STEPS": s.steps},
            "logical_date": s.logical_date,
            "params": s.params,
            "exit_codes": list(s.exit_codes),
        }
        for name, s in SCENARIOS.items()
    ]
    (root / "scenarios.json").write_text(json.dumps(plan))
    stub = root / "bin" / "spark-submit"
    stub.parent.mkdir()
    stub.write_text('#!/bin/sh\nexit "$STUB_EXIT_CODE"\n')
    stub.chmod(0o755)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SPARKLIFT"))},
        "PATH": f"{stub.parent}{os.pathsep}{os.environ['PATH']}",
        "AIRFLOW_HOME": str(root / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_SPARK_DEFAULT": "spark://spark-master:7077",
        "AIRFLOW_CONN_SPARK_BATCH": "spark://batch-master:7177",
    }
    out = subprocess.run(
        [str(AIRFLOW_PY), str(REPO / "tests" / "airflow_dag_check.py"),
         str(root / "scenarios.json"), str(REPO / "docker" / "airflow" / "dags")],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
    reports = json.loads(out.stdout.strip().splitlines()[-1])
    return {name: (r, dists[name]) for name, r in zip(SCENARIOS, reports, strict=True)}


def test_dag_loads_with_the_pipeline_graph_and_submit_commands(loads):
    dag, dist = loads["graph"]
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
    # allocate runs after a failed score too: its campaigns may fall back to older scores.
    falls = {s.kind for s in registry.steps() if s.falls_back}
    assert falls == {"allocate"}
    assert {t: v["trigger_rule"] for t, v in tasks.items()} == {
        t: "all_done" if t in falls else "all_success" for t in tasks
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


def test_dag_keeps_the_steps_a_deployment_runs(loads):
    """SPARKLIFT_STEPS keeps those tasks (dependencies on dropped ones go); an unknown
    step is an import error naming it."""
    dag, _ = loads["kept"]
    assert {t: v["upstream"] for t, v in dag["tasks"].items()} == {
        "features": [],
        "score-propensity": [],
        "score": [],
    }
    broken, _ = loads["unknown_step"]
    assert "SPARKLIFT_STEPS: unknown steps ['scor']" in json.dumps(broken["import_errors"])


def test_dag_params_choose_connection_and_config(loads):
    dag, _ = loads["params"]
    cmd = dag["tasks"]["allocate"]["command"]
    assert cmd[cmd.index("--master") + 1] == "spark://batch-master:7177"
    assert cmd[cmd.index("--config") + 1] == "/etc/sparklift/prod.yaml"
    assert cmd[cmd.index("--run-date") + 1] == "2026-03-05"
    assert "--jars" not in cmd  # no dist/jars (the image has the jars on Spark's classpath)


def test_exit_code_2_fails_without_retries_others_retry(loads):
    """The task's execute, against a stub spark-submit exiting with each code: 2 (bad input)
    and 5 (design rejected) raise AirflowFailException (no retries); 1, 3 (not ready) and 4
    (write conflict) a plain AirflowException, which Airflow retries."""
    raised = loads["exit_codes"][0]["raised"]
    assert raised == {
        "0": None,
        "1": "AirflowException",
        "2": "AirflowFailException",
        "3": "AirflowException",
        "4": "AirflowException",
        "5": "AirflowFailException",
    }


def test_dag_without_the_steps_manifest_does_not_load(loads):
    """A dist/ not built by scripts/package.sh: an import error naming the missing file,
    not a DAG with no tasks."""
    dag, dist = loads["no_manifest"]
    assert "tasks" not in dag
    [error] = dag["import_errors"].values()
    assert f"{dist / 'pipeline_steps.json'} not found" in error
