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


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    conf = load_config(
        None,
        [
            "spark.master=local[2]",
            "spark.shuffle_partitions=4",
            "spark.driver_memory=4g",
            "spark.log_level=ERROR",
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
