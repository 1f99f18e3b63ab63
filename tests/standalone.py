"""A Spark standalone master and workers on 127.0.0.1, started from the installed
pyspark's own ``bin/spark-class``, on ports the OS picks (no fixed port can collide), and
spark-submit to it with README's production flags (:func:`production_flags`).

Each daemon runs in its own process group, so stopping or killing it also ends the
executor JVMs and Python workers it started. Every wait is bounded and says what it
waited for; ``stop()`` ends everything and is safe to call twice.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyspark

from sparklift.delta_jars import DELTA_SESSION_CONF
from tests.conftest import SHORT_JVM_CONF, SHORT_JVM_OPTIONS

SPARK_HOME = Path(pyspark.__file__).resolve().parent
STARTUP_TIMEOUT_S = 120
# Session conf of README's production submit: Delta Lake's, and what sparklift's local
# session sets too (dates in UTC, Arrow for pandas, whole-stage code HotSpot compiles).
PRODUCTION_CONF = {
    **DELTA_SESSION_CONF,
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.codegen.hugeMethodLimit": "8000",
}
# Cluster-specific flags of README's submit line, which a test cluster sets its own way.
CLUSTER_FLAGS = ("--master", "--deploy-mode", "--files")


def production_flags(dist: Path) -> list[str]:
    """README's spark-submit flags for the artefact ``scripts/package.sh`` built in ``dist``:
    Delta Lake's jars from ``dist/jars`` (shipped, nothing downloaded), the session conf and
    the package zip. The README test checks README says exactly these."""
    jars = sorted((dist / "jars").glob("*.jar"))
    if not jars:
        raise RuntimeError(f"no Delta Lake jars in {dist / 'jars'}: run scripts/package.sh")
    flags = ["--jars", ",".join(str(j) for j in jars)]
    for key, value in PRODUCTION_CONF.items():
        flags += ["--conf", f"{key}={value}"]
    return [*flags, "--py-files", str(dist / "sparklift.zip")]


class Daemon:
    """One master or worker JVM, logging to a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [str(SPARK_HOME / "bin" / "spark-class"), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def wait_for(self, pattern: str, timeout_s: float = STARTUP_TIMEOUT_S) -> re.Match:
        """The first match of ``pattern`` in the daemon's log, within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            match = regex.search(self.log.read_text(errors="replace"))
            if match:
                return match
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"spark {self.name} exited ({self.proc.returncode}) before logging "
                    f"{pattern!r}; its log {self.log}:\n{self.log.read_text()[-3000:]}"
                )
            time.sleep(0.2)
        raise TimeoutError(
            f"spark {self.name} did not log {pattern!r} within {timeout_s:.0f}s; its log "
            f"{self.log}:\n{self.log.read_text()[-3000:]}"
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the daemon's whole process group (its executors too) and reap it."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


class StandaloneCluster:
    """``with StandaloneCluster(workdir) as cluster:`` a master and one worker."""

    def __init__(self, workdir: Path, worker_cores: int = 2, worker_memory: str = "2g") -> None:
        self.workdir = workdir
        self.worker_cores = worker_cores
        self.worker_memory = worker_memory
        self.daemons: list[Daemon] = []
        self.url = ""
        workdir.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "SPARK_HOME": str(SPARK_HOME),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOCAL_DIRS": str(workdir / "local"),
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "SPARK_NO_DAEMONIZE": "1",
            "SPARK_DAEMON_JAVA_OPTS": SHORT_JVM_OPTIONS,
        }

    def __enter__(self) -> StandaloneCluster:
        try:
            master = self._start(
                "master",
                ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", "0",
                 "--webui-port", "0"],
            )  # fmt: skip
            port = master.wait_for(r"Starting Spark master at spark://127\.0\.0\.1:(\d+)")[1]
            self.url = f"spark://127.0.0.1:{port}"
            self.start_worker()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self, name: str, args: list[str]) -> Daemon:
        daemon = Daemon(name, args, self.env, self.workdir)
        self.daemons.append(daemon)
        return daemon

    def start_worker(self) -> Daemon:
        """Start a worker and wait until the master has registered it."""
        n = sum(d.name.startswith("worker") for d in self.daemons) + 1
        work = self.workdir / f"worker{n}"
        worker = self._start(
            f"worker{n}",
            ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--port", "0",
             "--webui-port", "0", "--cores", str(self.worker_cores),
             "--memory", self.worker_memory, "--work-dir", str(work), self.url],
        )  # fmt: skip
        worker.wait_for(r"Successfully registered with master")
        return worker

    def worker(self) -> Daemon:
        """The latest worker still running."""
        alive = [d for d in self.daemons if d.name.startswith("worker") and d.proc.poll() is None]
        if not alive:
            raise RuntimeError("no spark worker is running")
        return alive[-1]

    def stop(self) -> None:
        for daemon in reversed(self.daemons):
            daemon.kill(signal.SIGTERM)

    def submit(self, dist: Path, job: str, args: list[str], log: Path) -> subprocess.Popen:
        """Start ``spark-submit`` of ``dist/<job>.py`` in client mode (its own process group)
        with the production flags, plus memory, UI and shuffle sizing for this machine (Delta's
        log replay in 2 tasks rather than its default 50: tiny tables, 2 cores) and the JIT
        of a short job's JVMs (C1 alone: tests/conftest.py)."""
        cmd = [
            str(SPARK_HOME / "bin" / "spark-submit"),
            "--master", self.url,
            "--deploy-mode", "client",
            *production_flags(dist),
            "--driver-memory", "1g",
            "--executor-memory", "1g",
            "--conf", "spark.ui.enabled=false",
            "--conf", "spark.sql.shuffle.partitions=4",
            "--conf", "spark.databricks.delta.snapshotPartitions=2",
            *(f for k, v in SHORT_JVM_CONF.items() for f in ("--conf", f"{k}={v}")),
            str(dist / f"{job}.py"),
            *args,
        ]  # fmt: skip
        out = open(log, "w")  # noqa: SIM115 - closed by the child's exit
        return subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
