"""Run by tests/test_airflow_dag.py with the Airflow virtual environment's Python: for
each scenario of the JSON list in the file named by the first argument (its environment
variables to set or, when null, unset; a logical date; param overrides; exit codes), load
the DAG folder (second argument) with Airflow's DagBag, which imports the DAG file afresh,
and report, as one JSON list printed last, what the test checks (import errors, the task
graph, retries, and each task's spark-submit command for the logical date). With exit
codes it also runs one task's ``execute`` once per code against the ``spark-submit``
first on PATH (the test's stub, which exits with ``$STUB_EXIT_CODE``) and reports the
exception each raised. One process for every scenario: Airflow's start-up is most of a
load's time."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from airflow.dag_processing.dagbag import DagBag
from airflow.timetables.base import TimeRestriction


def report(dag_folder: str, logical_date: str, overrides: dict, exit_codes: list) -> dict:
    bag = DagBag(dag_folder=dag_folder)
    out: dict = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}}
    dag = bag.dags.get("sparklift_nightly")
    if dag is None:
        return out
    out |= {
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "timetable": type(dag.timetable).__name__,
        "params": {k: dag.params[k] for k in dag.params},
        "tasks": {},
    }
    first = dag.timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=dag.start_date, latest=None, catchup=True),
    )
    out["first_run"] = {"logical_date": str(first.logical_date), "run_after": str(first.run_after)}
    params = {k: dag.params[k] for k in dag.params} | overrides
    for task in dag.tasks:
        context = {"ds": logical_date, "params": params}
        task.render_template_fields(context, jinja_env=dag.get_template_env())
        command = task._get_hook()._build_spark_submit_command(task.application)
        out["tasks"][task.task_id] = {
            "operator": type(task).__mro__[1].__name__,
            "upstream": sorted(task.upstream_task_ids),
            "retries": task.retries,
            "trigger_rule": getattr(task.trigger_rule, "value", task.trigger_rule),
            "retry_exponential_backoff": bool(task.retry_exponential_backoff),
            "retry_delay_s": task.retry_delay.total_seconds(),
            "conn_id": task._conn_id,
            "command": command,
        }
    out["raised"] = {}
    for code in exit_codes:
        task = dag.get_task("allocate")
        task._hook = None  # a fresh hook (and spark-submit) per run, as each try has
        os.environ["STUB_EXIT_CODE"] = str(code)
        try:
            task.execute({"ds": logical_date, "params": params})
            out["raised"][code] = None
        except Exception as e:
            out["raised"][code] = type(e).__name__
    return out


reports = []
for scenario in json.loads(Path(sys.argv[1]).read_text()):
    for name, value in scenario["env"].items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    reports.append(
        report(sys.argv[2], scenario["logical_date"], scenario["params"], scenario["exit_codes"])
    )
print(json.dumps(reports))
