#!/usr/bin/env bash
# Build what a cluster needs: a wheel (pip install on the nodes) and a zip of the package
# for spark-submit --py-files, the job entry points, and Delta Lake's jars (dist/jars/, for
# spark-submit --jars: the artefact is self-contained, nothing is downloaded at run time).
# dist/pipeline_steps.json lists the pipeline's steps, read from the packaged code's step
# registry, for the Airflow DAG (which cannot import sparklift). Output in dist/. The jars
# are those set-up fetched (.delta/jars, or $SPARKLIFT_DELTA_JARS).
# PACKAGE_PYTHON=/path/to/python builds with that interpreter (the Docker build does), not .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PACKAGE_PYTHON:-}" ]; then
  bash scripts/setup.sh
  PACKAGE_PYTHON=.venv/bin/python
fi
rm -rf dist && mkdir -p dist
"$PACKAGE_PYTHON" -m pip wheel --quiet --no-deps -w dist .
"$PACKAGE_PYTHON" - <<'PY'
import pathlib, zipfile
with zipfile.ZipFile("dist/sparklift.zip", "w", zipfile.ZIP_DEFLATED) as z:
    for p in sorted(pathlib.Path("lib").rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            z.write(p, p.relative_to("lib"))
PY
cp jobs/*.py dist/
PYTHONPATH=dist/sparklift.zip "$PACKAGE_PYTHON" -m sparklift.pipeline.registry > dist/pipeline_steps.json
if jars=$("$PACKAGE_PYTHON" -m sparklift.delta_jars list "${SPARKLIFT_DELTA_JARS:-$PWD/.delta/jars}" 2>/dev/null); then
  mkdir -p dist/jars
  IFS=, read -ra jar_files <<<"$jars"
  cp "${jar_files[@]}" dist/jars/
else
  echo "no Delta Lake jars in ${SPARKLIFT_DELTA_JARS:-.delta/jars} (scripts/setup.sh fetches them): dist/ has none; submit with --packages, or the jobs use delta-rs"
fi
echo "built: $(ls dist | tr '\n' ' ')"
