"""Spark session factory: a tuned local session by default, untouched under spark-submit."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys

from pyspark.sql import SparkSession

from sparklift import delta_jars
from sparklift.config import SparkConfig
from sparklift.errors import SparkliftError

log = logging.getLogger(__name__)

JAVA_HINT = (
    "sparklift needs Java 17: install it (e.g. `apt-get install openjdk-17-jre-headless`) "
    "and put it on PATH or set JAVA_HOME"
)


def under_spark_submit() -> bool:
    """True when spark-submit (or pyspark shell) started this interpreter and owns the JVM."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def check_java() -> None:
    """Fail with one clear line if no Java 17+ is found: Spark 4 needs it."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not java or not os.path.exists(java):
        raise SparkliftError(f"no Java found: {JAVA_HINT}")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    # The line naming the version; JAVA_TOOL_OPTIONS adds a "Picked up ..." line first.
    first = next((ln for ln in out.splitlines() if ' version "' in ln), out.strip()[:200])
    try:
        version = first.split('"')[1]
        major = int(
            version.split(".")[0] if not version.startswith("1.") else version.split(".")[1]
        )
    except (IndexError, ValueError):
        raise SparkliftError(f"cannot read Java version from {first!r}: {JAVA_HINT}") from None
    if major < 17:
        raise SparkliftError(f"found Java {version} at {java}, too old: {JAVA_HINT}")


def local_cores(master: str) -> int | None:
    """The cores a local master runs tasks on (local, local[N], local[*], local[N, F],
    local-cluster[workers, cores, memory]); None for a cluster's master."""
    found = re.fullmatch(r"local(?:\[(\*|\d+)(?:,\s*\d+)?\])?", master.strip())
    if found:
        n = found.group(1) or "1"
        return (os.cpu_count() or 1) if n == "*" else int(n)
    found = re.fullmatch(r"local-cluster\[(\d+),\s*(\d+),\s*\d+\]", master.strip())
    return int(found.group(1)) * int(found.group(2)) if found else None


def delta_session_conf(conf: SparkConfig, backend: str) -> dict[str, str]:
    """Spark conf that loads Delta Lake from the jars set-up fetched (none for 'deltars').

    'auto' uses the jars when they are there; 'native' without them is an error that says
    what to run. Only local files are listed: nothing is resolved or downloaded.
    """
    if backend == "deltars":
        return {}
    directory = delta_jars.default_dir(conf.delta_jars)
    jars = delta_jars.find_jars(directory)
    if jars:
        return {"spark.jars": ",".join(jars), **delta_jars.DELTA_SESSION_CONF}
    if backend == "native":
        raise SparkliftError(
            f"tables.backend is 'native' but the Delta Lake jars for {delta_jars.coordinate()} "
            f"are not in {directory}: {delta_jars.FETCH_HINT}"
        )
    log.info("no Delta Lake jars in %s: tables use the delta-rs backend", directory)
    return {}


def build_session(conf: SparkConfig, backend: str = "auto") -> SparkSession:
    """Return the Spark session for a job.

    Under spark-submit the master and conf come from the submit line and are not changed.
    Otherwise a local session sized for a small machine: few shuffle partitions, no UI,
    driver memory from config, Arrow on, quiet logs, and Delta Lake from the fetched jars
    unless ``backend`` (``tables.backend``) is 'deltars'. Either way executors run the
    interpreter running this code unless ``PYSPARK_PYTHON`` says otherwise.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if under_spark_submit():
        return SparkSession.builder.getOrCreate()
    check_java()
    builder = (
        SparkSession.builder.master(conf.master)
        .appName(conf.app_name)
        .config("spark.driver.memory", conf.driver_memory)
        .config("spark.sql.shuffle.partitions", str(conf.shuffle_partitions))
        .config("spark.default.parallelism", str(conf.shuffle_partitions))
        .config("spark.ui.enabled", str(conf.ui_enabled).lower())
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.executorEnv.PYSPARK_PYTHON", os.environ["PYSPARK_PYTHON"])
    )
    cores = local_cores(conf.master)
    sized = {"spark.databricks.delta.snapshotPartitions": str(cores)} if cores else {}
    for key, value in {**delta_session_conf(conf, backend), **sized, **conf.conf}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(conf.log_level)
    return spark


def delta_jvm_available(spark: SparkSession) -> bool:
    """True when the Delta Lake JVM classes are on the driver's classpath (``spark.jars``
    and ``--packages`` jars are in Spark's class loader, not the JVM's system one)."""
    try:
        spark._jvm.org.apache.spark.util.Utils.classForName(  # type: ignore[union-attr]
            "io.delta.tables.DeltaTable", True, False
        )
        return True
    except Exception:
        return False
