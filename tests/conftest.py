"""One Spark session for the whole test run, built by sparklift's own factory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from sparklift.config import Config, load_config
from sparklift.session import build_session
from sparklift.tables import Catalog

REPO = Path(__file__).resolve().parents[1]
# JVM options for the JVMs a test starts for one small job (spark-submit drivers, cluster
# executors, a CLI in a subprocess): such a JVM spends most of its CPU compiling hot code
# with C2, which a short job never repays; C1 alone halves it (the features job under
# local-cluster: 165 -> 83 CPU-s, 90 -> 57 s; bench/RESULTS.md). The suite's own
# long-lived session keeps both compilers (C1 alone made it 38% slower).
SHORT_JVM_OPTIONS = "-XX:TieredStopAtLevel=1"
SHORT_JVM_CONF = {  # the Spark conf that gives a job's driver and executors those options
    "spark.driver.extraJavaOptions": SHORT_JVM_OPTIONS,
    "spark.executor.extraJavaOptions": SHORT_JVM_OPTIONS,
}


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    conf = load_config(
        None,
        [
            "spark.master=local[2]",
            "spark.shuffle_partitions=4",
            "spark.driver_memory=4g",
            "spark.log_level=ERROR",
            # The throughput collector: the suite's many small jobs took 7-9% less time and
            # 10-12% less CPU than under G1, the JVM's default (bench/RESULTS.md).
            "spark.conf={spark.driver.extraJavaOptions: -XX:+UseParallelGC}",
        ],
    )
    session = build_session(conf.spark, conf.tables.backend)
    yield session
    session.stop()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(
        None,
        [
            f"tables.base_path={tmp_path / 'warehouse'}",
            "spark.master=local[2]",
            "spark.shuffle_partitions=4",
        ],
    )


@pytest.fixture
def catalog(spark: SparkSession, config: Config) -> Catalog:
    return Catalog(spark, config.tables)


def parquet_files(root: str) -> set[str]:
    """Every Parquet file under a table directory, referenced by the log or not."""
    out = set()
    for dirpath, _, files in os.walk(root):
        out |= {os.path.join(dirpath, f) for f in files if f.endswith(".parquet")}
    return out
