"""The command line: help, config errors before Spark starts, Java check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparklift import cli
from sparklift.errors import SparkliftError
from sparklift.session import check_java


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sparklift.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_help_lists_the_jobs():
    out = run("--help")
    assert out.returncode == 0
    assert "generate" in out.stdout and "features" in out.stdout


def test_bad_config_exits_2_naming_the_key():
    out = run("features", "--set", "spark.shuffle_partitions=zero")
    assert out.returncode == 2
    assert "spark.shuffle_partitions" in out.stderr and "'zero'" in out.stderr


def test_missing_java_gives_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nojava"))
    with pytest.raises(SparkliftError, match="needs Java 17"):
        check_java()


def test_old_java_is_rejected(monkeypatch, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "java"
    fake.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(SparkliftError, match=r"found Java 11\.0\.2 .* too old"):
        check_java()


def test_spark_submit_entry_points_exist():
    from sparklift.cli import JOBS

    for job in JOBS:
        path = os.path.join(os.path.dirname(__file__), "..", "jobs", f"{job.replace('-', '_')}.py")
        assert os.path.isfile(path), job
        assert f'main(["{job}", *sys.argv[1:]])' in Path(path).read_text(), job


def test_an_internal_error_is_one_json_log_line_with_exit_code_1(monkeypatch, capsys):
    """A bug (not a SparkliftError) exits 1 with the JSON log line every failure gets:
    exit_code 1, the error in the message and its traceback in ``exception``."""

    def broken(*args, **kwargs):
        raise RuntimeError("no session today")

    monkeypatch.setattr(cli, "build_session", broken)
    assert cli.main(["features", "--set", "logging.format=json"]) == 1
    err = capsys.readouterr().err
    records = [json.loads(ln) for ln in err.splitlines() if ln.startswith("{")]
    (failed,) = [r for r in records if "exit_code" in r]
    assert failed["exit_code"] == 1 and failed["level"] == "ERROR"
    assert (
        failed["message"]
        == "features failed with an internal error: RuntimeError: no session today"
    )
    assert failed["exception"].startswith("Traceback") and "in broken" in failed["exception"]
    assert "error: internal error: RuntimeError: no session today" in err.splitlines()
