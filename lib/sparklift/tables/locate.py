"""Where a table lives and which backend reads it: a catalog name resolved against the
base path, and the native Delta backend where its JVM classes are on the classpath, else
delta-rs."""

from __future__ import annotations

import os

from pyspark.sql import SparkSession

from sparklift.config import TablesConfig
from sparklift.delta_jars import FETCH_HINT, coordinate
from sparklift.errors import InputError
from sparklift.session import delta_jvm_available
from sparklift.tables.backends import Backend, DeltaRsBackend
from sparklift.tables.native import NativeBackend


def choose_backend(spark: SparkSession, conf: TablesConfig) -> Backend:
    if conf.backend == "native" or (conf.backend == "auto" and delta_jvm_available(spark)):
        if not delta_jvm_available(spark):
            raise InputError(
                "tables.backend is 'native' but the Delta JVM classes are not on the classpath: "
                f"{FETCH_HINT}, or spark-submit with --packages {coordinate()} (or --jars)"
            )
        return NativeBackend(spark)
    return DeltaRsBackend(spark, conf.target_file_rows)


def resolve_path(base_path: str, name: str) -> str:
    """Table location: a URI or absolute path as is, else relative to the base path."""
    if "://" in name or name.startswith("/"):
        return name
    if "://" in base_path:
        return f"{base_path.rstrip('/')}/{name}"
    return os.path.abspath(os.path.join(base_path, name))
