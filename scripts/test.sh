#!/usr/bin/env bash
# Set up (first run only: .venv, and .venv-airflow for the DAG test) and run the whole
# test suite: -m "" selects every tier (plain pytest leaves out e2e, cluster and acceptance).
# Extra arguments go to pytest; a -m among them wins.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/airflow_env.sh   # Airflow in its own venv, for the DAG's test
export PYSPARK_PYTHON="$PWD/.venv/bin/python"
exec .venv/bin/python -m pytest -m "" "$@"
