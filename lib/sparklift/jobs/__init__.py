"""The jobs' I/O edges: read inputs through the catalog, call the library, write outputs.

Each job module has ``add_arguments(parser)`` and ``run(ctx, args) -> summary``. They live
in the package (not only in ``jobs/``) so that the ``sparklift`` console script and
``spark-submit jobs/<job>.py`` share one code path and ship in one ``--py-files`` artefact.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pyspark.sql import SparkSession

from sparklift.config import Config
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
