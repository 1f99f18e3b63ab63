#!/usr/bin/env bash
# Create .venv (if missing) and install sparklift with its dev extras into it.
# Needs Python 3.10+ and Java 17; says in one line what to install if either is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! command -v "$PY" >/dev/null 2>&1 || ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "sparklift needs Python 3.10+ as python3 (or set PYTHON=/path/to/python)" >&2
  exit 1
fi
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
if ! command -v "$JAVA" >/dev/null 2>&1; then
  echo "sparklift needs Java 17: install it (e.g. apt-get install openjdk-17-jre-headless) and put it on PATH or set JAVA_HOME" >&2
  exit 1
fi
JV=$("$JAVA" -version 2>&1 | head -1 | sed -E 's/.*version "(1\.)?([0-9]+).*/\2/')
if ! [ "$JV" -ge 17 ] 2>/dev/null; then
  echo "sparklift needs Java 17, found Java ${JV:-unknown} at $JAVA: install openjdk-17 and put it first on PATH or set JAVA_HOME" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    echo "sparklift needs Python's venv module: install it (on Debian/Ubuntu: apt-get install python3-venv)" >&2
    exit 1
  fi
  "$PY" -m venv .venv
fi
STAMP=.venv/.sparklift-installed
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  echo "installing sparklift and its dependencies into .venv ..."
  bash scripts/pip_install.sh .venv -e ".[dev]"
  touch "$STAMP"
fi
# Delta Lake's JVM jars for the pinned delta-spark, once, into .delta/jars (Spark's own
# resolver, as spark-submit --packages does); jobs then start offline. If Maven Central
# cannot be reached this says so in one line and the delta-rs backend is used.
.venv/bin/python -m sparklift.delta_jars fetch || true
