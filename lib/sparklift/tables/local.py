"""Read a small Delta table into pandas on one machine, without Spark.

For tests, the demo summary and benchmarks. It resolves the snapshot with deltalake and
reads the data files with pyarrow: deltalake's own ``to_pyarrow_table``/``to_pandas``
(1.x) leaves runtime threads that abort the interpreter at exit now and then
("terminate called without an active exception", delta-io/delta-rs#2184), which would
turn a passing test run or script into exit code 134.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable


def read_pandas(path: str, version: int | None = None) -> pd.DataFrame:
    """Every row of the Delta table at ``path`` (latest or given version), in schema order."""
    table = DeltaTable(path, version=version)
    schema = pa.schema(table.schema().to_arrow())
    parts = list(table.metadata().partition_columns)
    files = table.file_uris()
    if not files:
        return schema.empty_table().to_pandas()
    partitioning = ds.partitioning(pa.schema([schema.field(c) for c in parts]), flavor="hive")
    data = ds.dataset(
        files,
        schema=schema,
        format="parquet",
        partitioning=partitioning if parts else None,
        partition_base_dir=path.rstrip("/") if parts else None,
    )
    return data.to_table().select(schema.names).to_pandas()
