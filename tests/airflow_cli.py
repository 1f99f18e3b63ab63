"""Airflow's own CLI from ``.venv-airflow`` (scripts/airflow_env.sh) with a throwaway
``AIRFLOW_HOME`` and SQLite metadata DB, to run the shipped DAG as a person would.

Every command runs with a bounded wait and, when it ends or times out, everything it
started is killed: Airflow runs each task in a process group of its own, so the whole
process tree is collected while the command still runs, not only its group.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import psutil

from tests.conftest import REPO

AIRFLOW = REPO / ".venv-airflow" / "bin" / "airflow"
AIRFLOW_PY = REPO / ".venv-airflow" / "bin" / "python"
DAGS = REPO / "docker" / "airflow" / "dags"
DAG_ID = "sparklift_nightly"
INSTALL_TIMEOUT_S = 1200


def wait_for_airflow() -> None:
    """Wait for scripts/test.sh's install of .venv-airflow, which runs while the tests
    before these do (``SPARKLIFT_AIRFLOW_SETUP``: the file it writes its exit code to, its
    log beside it as ``.log``); then require .venv-airflow."""
    status = os.environ.get("SPARKLIFT_AIRFLOW_SETUP")
    deadline = time.monotonic() + INSTALL_TIMEOUT_S
    while status and not Path(status).exists():
        assert time.monotonic() < deadline, f"the Airflow install did not end ({status}.log)"
        time.sleep(1)
    if status:
        code = Path(status).read_text().strip()
        assert code == "0", (
            f"the Airflow install failed ({code}):\n" + Path(f"{status}.log").read_text()[-3000:]
        )
    assert AIRFLOW.exists(), "no .venv-airflow: run scripts/airflow_env.sh (test.sh does)"


class AirflowCli:
    """``airflow`` commands against one metadata DB in ``home``, with ``env`` (connections
    as ``AIRFLOW_CONN_*``, sparklift's ``SPARKLIFT_*`` and PATH for spark-submit)."""

    def __init__(self, home: Path, env: Mapping[str, str]) -> None:
        wait_for_airflow()
        self.home = home
        self.env = {
            **env,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        }
        home.mkdir(parents=True, exist_ok=True)

    def start(self, args: list[str], log: Path) -> subprocess.Popen:
        """Start ``airflow <args>`` in its own session, output to ``log``."""
        with open(log, "w") as out:
            return subprocess.Popen(
                [str(AIRFLOW), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    def run(self, args: list[str], log: Path, timeout_s: float) -> int:
        """``airflow <args>``'s exit code; AssertionError (with the log) past ``timeout_s``."""
        proc = self.start(args, log)
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"airflow {' '.join(args)} did not finish within {timeout_s:.0f}s; log {log}:\n"
                + log.read_text(errors="replace")[-4000:]
            ) from None
        finally:
            kill_tree(proc)

    def migrate(self, log: Path) -> None:
        """Create the SQLite metadata DB."""
        code = self.run(["db", "migrate"], log, timeout_s=300)
        assert code == 0, log.read_text(errors="replace")[-4000:]

    def task_states(self, logical_date: str) -> dict[str, tuple[str | None, int]]:
        """task_id -> (state, try_number) of the DAG's run for ``logical_date``, read from
        the metadata DB (read-only: Airflow may be writing)."""
        day = dt.date.fromisoformat(logical_date)
        db = sqlite3.connect(f"file:{self.home / 'airflow.db'}?mode=ro", uri=True, timeout=30)
        try:
            rows = db.execute(
                "SELECT r.logical_date, t.task_id, t.state, t.try_number FROM task_instance t "
                "JOIN dag_run r ON r.dag_id = t.dag_id AND r.run_id = t.run_id "
                "WHERE r.dag_id = ?",
                (DAG_ID,),
            ).fetchall()
        finally:
            db.close()
        return {task: (state, tries) for ld, task, state, tries in rows if ld.startswith(str(day))}


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc`` and every process it started (task process groups included)."""
    with contextlib.suppress(psutil.NoSuchProcess):
        procs = [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGKILL)
        psutil.wait_procs(procs, timeout=30)
    with contextlib.suppress(ProcessLookupError):  # what left the tree but not the group
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
