"""The jobs' I/O edges: read inputs through the catalog, call the library, write outputs.

Each job module has ``add_arguments(parser)`` and ``run(ctx, args) -> summary``. They live
in the package (not only in ``jobs/``) so that the ``sparklift`` console script and
``spark-submit jobs/<job>.py`` share one code path and ship in one ``--py-files`` artefact.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pyspark.sql import DataFrame, SparkSession

from sparklift.config import Config
from sparklift.contracts import contract
from sparklift.errors import TableConflictError
from sparklift.tables import Catalog

log = logging.getLogger("sparklift")
CONFLICT_ATTEMPTS = 3  # a conflict means another writer just committed: the next try wins


@dataclass
class JobContext:
    spark: SparkSession
    config: Config
    catalog: Catalog
    run_date: dt.date
    # Tables whose check failed or was blocked earlier in this pipeline run, with why: their
    # run date's partition is not to be trusted, whatever quality_results says of it.
    unverified: Mapping[str, str] = field(default_factory=dict)


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
    mode = "append" if replace_where is None else "replace"
    return catalog.write(table, _frame(catalog, table, records), mode, replace_where)


def retry_on_conflict(write: Callable[[], int], table: str) -> int:
    """Run ``write`` again when a concurrent writer won (TableConflictError), up to
    CONFLICT_ATTEMPTS times in all. For writes whose rows do not depend on what the table
    held (a replace of their own partitions, a merge of their keys): on the new version
    the write means the same."""
    for _ in range(CONFLICT_ATTEMPTS - 1):
        try:
            return write()
        except TableConflictError as e:
            log.info("table %s changed while this job wrote to it (%s); writing again", table, e)
    return write()


def merge_records(catalog: Catalog, table: str, records: Sequence[Mapping[str, Any]]) -> int:
    """Upsert a few driver-side records into ``table`` on its contract's key, in one commit
    (:meth:`Catalog.merge`); its new version."""
    return catalog.merge(table, _frame(catalog, table, records))


def update_records(
    catalog: Catalog, table: str, records: Sequence[Mapping[str, Any]], unchanged: Sequence[str]
) -> int | None:
    """Replace a few driver-side records of ``table`` on its key where the table's rows
    still hold their ``unchanged`` columns, in one commit (:meth:`Catalog.update`); the
    new version, or None when no row did."""
    return catalog.update(table, _frame(catalog, table, records), unchanged)


def _frame(catalog: Catalog, table: str, records: Sequence[Mapping[str, Any]]) -> DataFrame:
    """``records`` as a frame of ``table``'s contract columns."""
    schema = contract(table).schema
    rows = [tuple(_plain(r.get(f)) for f in schema.fieldNames()) for r in records]
    return catalog.spark.createDataFrame(rows, schema)


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
