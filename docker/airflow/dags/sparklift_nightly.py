"""sparklift's nightly run in Airflow: one spark-submit task per pipeline step.

Tasks mirror ``sparklift pipeline``'s steps and their data dependencies, as its step
registry (``sparklift.pipeline.registry``) declares them: features -> analyze (every
running geo experiment), user-history -> score-propensity (the propensity model) and score
-> allocate (every active campaign); an analysis failure never holds back allocation.
``allocate`` runs once ``score`` is done even if it failed: a campaign with
``allocate.fallback`` then allocates on the latest good ``uplift_scores`` partition, and the
others are blocked by the failed check of today's (exit 3 or 2, as that check).
Airflow's environment has no sparklift to import, so the DAG reads them from
``dist/pipeline_steps.json``, which ``scripts/package.sh`` writes from the
registry of the very code it packages. Each task submits
``dist/pipeline.py --steps <step>`` (built by ``scripts/package.sh``) with the run date =
the logical date; with ``pipeline.checks`` the task first runs the data quality checks of
its step's inputs (``check:<table>`` steps, in the same submit; one that succeeded for the
date in an earlier task is skipped): the daily data-interval timetable starts the run for
day D once D is over, so ``ds`` is the day whose data it processes. The pipeline itself
records every step in ``pipeline_runs`` and skips what already succeeded for the date, so
a retry only redoes what failed. Exit code 3 (input not ready: upstream data late) is the usual
reason to fail; retries back off exponentially up to a few hours. Exit code 2 (bad input
or config) fails the task at once: a retry would fail the same way. ``catchup`` runs
missed days (backfills) one at a time, oldest first.

Each task ships Delta Lake's jars from ``dist/jars`` (``scripts/package.sh`` copies them
there) with ``--jars``, listed when the DAG is parsed: nothing is downloaded at run time.

Params (per run, e.g. ``airflow dags trigger -c '{"config_path": ...}'``): the Spark
connection id and the sparklift config file. Defaults come from the environment
(``SPARKLIFT_SPARK_CONN_ID``, ``SPARKLIFT_CONFIG``, ``SPARKLIFT_DIST``,
``SPARKLIFT_START_DATE``), which ``docker/docker-compose.yml`` sets; ``SPARKLIFT_STEPS``
(comma-separated kinds) keeps only those tasks.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, Context, Param
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from airflow.timetables.interval import CronDataIntervalTimetable

DIST = os.environ.get("SPARKLIFT_DIST", "/opt/sparklift/dist")
START = dt.date.fromisoformat(os.environ.get("SPARKLIFT_START_DATE", "2026-11-01"))
STEPS_FILE = Path(DIST, "pipeline_steps.json")
if not STEPS_FILE.is_file():
    raise FileNotFoundError(
        f"{STEPS_FILE} not found: SPARKLIFT_DIST must be a dist/ built by scripts/package.sh"
    )
# step kind -> the kinds it needs, in pipeline order (sparklift's step registry)
MANIFEST = json.loads(STEPS_FILE.read_text())
STEPS: dict[str, list[str]] = {s["kind"]: s["depends_on"] for s in MANIFEST}
# A kind that may fall back to an earlier partition (allocate with allocate.fallback) runs
# once its upstream tasks are done, failed or not: the pipeline then decides, per campaign,
# to fall back or to block (the check that failed is named in pipeline_runs).
AFTER_ANY = {s["kind"] for s in MANIFEST if s.get("may_fall_back")}
# The kinds this deployment runs (SPARKLIFT_STEPS, comma-separated; default every step), as
# pipeline.steps does for `sparklift pipeline`: a deployment without propensity models has
# no user-history or score-propensity tasks. A kept step's dependencies on dropped ones go.
if os.environ.get("SPARKLIFT_STEPS"):
    CHOSEN = os.environ["SPARKLIFT_STEPS"].split(",")
    UNKNOWN = sorted(set(CHOSEN) - set(STEPS))
    if UNKNOWN:
        raise ValueError(f"SPARKLIFT_STEPS: unknown steps {UNKNOWN}; known: {list(STEPS)}")
    STEPS = {k: [d for d in needs if d in CHOSEN] for k, needs in STEPS.items() if k in CHOSEN}
# Delta Lake's jars for spark-submit --jars; None if dist/ has none (an image that has them
# on Spark's own classpath, as docker/Dockerfile's does).
JARS = ",".join(str(p) for p in sorted(Path(DIST, "jars").glob("*.jar"))) or None
# spark-submit exit codes (sparklift's, README "Exit codes") that no retry can fix: the task
# fails at once. Every other code is retried with the back-off below: 3 (input not ready)
# is what the retries are for, 4 (write conflict) is transient, and 1 is also what
# spark-submit exits with when the cluster fails (master unreachable, executors lost);
# the pipeline redoes only the steps that failed, so a retry is cheap.
NO_RETRY = {2: "bad input or config", 5: "design rejected"}
RUN_ARGS = ["--config", "{{ params.config_path }}", "--run-date", "{{ ds }}"]
DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Wide projections stay JIT-compiled (lib/sparklift/defaults.yaml says why).
    "spark.sql.codegen.hugeMethodLimit": "8000",
}


class SparkliftSubmit(SparkSubmitOperator):
    """SparkSubmitOperator whose connection id is templated too (a DAG param), and which
    fails without retries when spark-submit's exit code says a retry cannot help."""

    template_fields = (*SparkSubmitOperator.template_fields, "_conn_id")

    def execute(self, context: Context) -> None:
        try:
            super().execute(context)
        except AirflowException as e:
            code = self.exit_code()
            if code in NO_RETRY:
                raise AirflowFailException(
                    f"spark-submit exited {code} ({NO_RETRY[code]}): not retried"
                ) from e
            raise

    def exit_code(self) -> int | None:
        """spark-submit's return code, None if it never ran (provider 6.3.4's hook keeps
        the process as ``_submit_sp``; it raises a plain AirflowException on any code)."""
        process = getattr(self._hook, "_submit_sp", None)
        return None if process is None else process.returncode


with DAG(
    dag_id="sparklift_nightly",
    description="features -> analyses, scores -> allocations, for each day",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=dt.datetime(START.year, START.month, START.day, tzinfo=dt.timezone.utc),
    catchup=True,
    max_active_runs=1,
    default_args={
        "retries": 4,
        "retry_delay": dt.timedelta(minutes=15),
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(hours=4),
        "execution_timeout": dt.timedelta(hours=6),
    },
    params={
        "spark_conn_id": Param(
            os.environ.get("SPARKLIFT_SPARK_CONN_ID", "spark_default"),
            type="string",
            description="Airflow connection of the Spark master",
        ),
        "config_path": Param(
            os.environ.get("SPARKLIFT_CONFIG", "/opt/sparklift/conf/sparklift.yaml"),
            type="string",
            description="sparklift config file, as the Spark driver sees it",
        ),
    },
    tags=["sparklift"],
) as dag:
    tasks = {
        step: SparkliftSubmit(
            task_id=step,
            conn_id="{{ params.spark_conn_id }}",
            application=f"{DIST}/pipeline.py",
            py_files=f"{DIST}/sparklift.zip",
            jars=JARS,
            name=f"sparklift-{step}-{{{{ ds }}}}",
            deploy_mode="client",
            conf=DELTA_CONF,
            application_args=[*RUN_ARGS, "--steps", step],
            trigger_rule="all_done" if step in AFTER_ANY else "all_success",
        )
        for step in STEPS
    }
    for step, needs in STEPS.items():
        for need in needs:
            tasks[need] >> tasks[step]
