"""Run several sparklift CLI commands in one process, hence one Spark application:
``python tests/jobs_in_one_app.py '[["generate", ...], ["features", ...]]'``. Prints a JSON
list of each command's exit code and summary; stops at the first failure."""

from __future__ import annotations

import contextlib
import io
import json
import sys

from sparklift.cli import main

results = []
for argv in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    results.append({"argv": argv, "code": code, "stdout": out.getvalue()})
    if code:
        break
print(json.dumps(results))
