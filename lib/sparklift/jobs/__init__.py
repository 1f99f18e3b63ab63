"""The jobs' I/O edges: read inputs through the catalog, call the library, write outputs.

Each job module has ``add_arguments(parser)`` and ``run(ctx, args) -> summary``. They live
in the package (not only in ``jobs/``) so that the ``sparklift`` console script and
``spark-submit jobs/<job>.py`` share one code path and ship in one ``--py-files`` artefact.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyspark.sql import SparkSession

from sparklift.config import Config
from sparklift.contracts import contract
from sparklift.tables import Catalog

log = logging.getLogger("sparklift")


@dataclass
class JobContext:
    spark: SparkSession
    config: Config
    catalog: Catalog
    run_date: dt.date


@contextmanager
def step(name: str) -> Iterator[None]:
    """Log the start and duration of a step of a job."""
    log.info("%s ...", name)
    t0 = time.perf_counter()
    yield
    log.info("%s done in %.1fs", name, time.perf_counter() - t0)


def write_records(
    catalog: Catalog,
    table: str,
    records: Sequence[Mapping[str, Any]],
    replace_where: Mapping[str, Any] | None = None,
) -> int:
    """Write a few driver-side records (result rows, never data) to ``table`` in one
    commit, as its contract's columns: replacing ``replace_where``'s partitions, or
    appended when it is None."""
    schema = contract(table).schema
    rows = [tuple(_plain(r.get(f)) for f in schema.fieldNames()) for r in records]
    df = catalog.spark.createDataFrame(rows, schema)
    mode = "append" if replace_where is None else "replace"
    return catalog.write(table, df, mode=mode, replace_where=replace_where)


def _plain(value: Any) -> Any:
    """NumPy scalars as Python ones (createDataFrame takes only those); NaN as null; the
    same inside lists and structs (dicts)."""
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value
