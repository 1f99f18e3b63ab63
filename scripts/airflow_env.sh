#!/usr/bin/env bash
# Create .venv-airflow (if missing or its pins changed) with the Airflow of
# docker/airflow/requirements.txt, apart from the project's venv so that Airflow's pins
# never constrain sparklift's. The tests load the DAG with it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
REQ=docker/airflow/requirements.txt
STAMP=.venv-airflow/.installed
if [ ! -f "$STAMP" ] || [ "$REQ" -nt "$STAMP" ]; then
  echo "installing Airflow ($(grep -h '^apache-airflow' "$REQ" | head -1)) into .venv-airflow ..."
  rm -rf .venv-airflow
  "$PY" -m venv .venv-airflow
  bash scripts/pip_install.sh .venv-airflow -r "$REQ"
  touch "$STAMP"
fi
