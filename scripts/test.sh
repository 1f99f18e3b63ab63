#!/usr/bin/env bash
# Set up (first run only: .venv, and .venv-airflow for the DAG tests) and run the whole
# test suite: -m "" selects every tier (plain pytest leaves out e2e, cluster and acceptance).
# Extra arguments go to pytest; a -m among them wins. Without test paths among them, the
# Airflow and process-level tests (the DAG, spark-submit on a standalone cluster,
# local-cluster executors), which are mostly JVM and process start-up, run in a second
# pytest beside the others (each with its own Spark session), at lower priority, with the
# propensity and campaign measurement end-to-end tests, the design and DiD acceptance tests,
# the table maintenance tests, the distributed allocation's, generate-then-features' and
# the adjusted fits' to balance the two runs; their output follows the main run's.
# .venv-airflow is installed meanwhile: the Airflow tests run last and wait for it. Each
# run prints its 25 slowest tests, to keep CI's wall time (under 30 minutes) in view.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYSPARK_PYTHON="$PWD/.venv/bin/python"
if ! command -v chromium >/dev/null 2>&1 && [ -z "${SPARKLIFT_CHROMIUM:-}${SPARKLIFT_CHROMIUM_SETUP:-}" ]; then
  echo "note: no chromium on PATH, so the browser tests of the HTML reports will be skipped" \
    "(install Debian's: apt-get install chromium, or set SPARKLIFT_CHROMIUM to a Chromium binary)"
fi
PYTEST=(.venv/bin/python -m pytest -m "" --durations=25)
for arg in "$@"; do
  if [[ $arg != -* ]]; then  # tests named: one run of just those
    bash scripts/airflow_env.sh
    exec "${PYTEST[@]}" "$@"
  fi
done
PROCESS_TESTS=(tests/test_cluster.py tests/test_propensity.py tests/test_design_acceptance.py
  tests/test_did_acceptance.py tests/test_measure_job.py tests/test_maintain.py
  tests/test_allocation_distributed.py tests/test_e2e.py tests/test_adjustment.py
  tests/test_airflow_dag.py tests/test_standalone.py)  # the Airflow ones last: see below
log=$(mktemp)
airflow_setup="$log.airflow"  # its exit code once done (its output: $airflow_setup.log)
{
  code=0
  bash scripts/airflow_env.sh >"$airflow_setup.log" 2>&1 || code=$?
  echo "$code" >"$airflow_setup.tmp" && mv "$airflow_setup.tmp" "$airflow_setup"
} &
installing=$!
SPARKLIFT_AIRFLOW_SETUP=$airflow_setup nice -n 5 "${PYTEST[@]}" "$@" "${PROCESS_TESTS[@]}" \
  >"$log" 2>&1 &
beside=$!
main=0
"${PYTEST[@]}" "$@" "${PROCESS_TESTS[@]/#/--ignore=}" || main=$?
other=0
wait "$beside" || other=$?
wait "$installing" || true  # its outcome: in $airflow_setup, which the tests read
echo "== the tests run beside: ${PROCESS_TESTS[*]} (exit $other)"
cat "$airflow_setup.log" "$log"
rm -f "$log" "$airflow_setup" "$airflow_setup.log"
exit $((main != 0 ? main : other))
