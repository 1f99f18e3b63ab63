#!/usr/bin/env bash
# Build what a cluster needs: a wheel (pip install on the nodes) and a zip of the package
# for spark-submit --py-files, plus the job entry points. Output in dist/.
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
echo "built: $(ls dist | tr '\n' ' ')"
