#!/usr/bin/env bash
# pip_install.sh VENV ARGS...: install ARGS (pip install's arguments) into the venv VENV
# with uv (itself from PyPI, into the venv), which downloads and installs in parallel:
# about half pip's time for pyspark and its peers on a fresh machine. Falls back to pip
# if uv cannot be installed.
set -euo pipefail
venv=$1
shift
if "$venv/bin/python" -m pip install --quiet uv 2>/dev/null; then
  "$venv/bin/python" -m uv pip install --quiet --python "$venv/bin/python" "$@"
else
  echo "uv not available: installing with pip" >&2
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet "$@"
fi
