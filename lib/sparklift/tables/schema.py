"""Schema enforcement and Delta partition-value encoding shared by both backends."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    ByteType,
    DataType,
    DateType,
    IntegerType,
    IntegralType,
    LongType,
    MapType,
    ShortType,
    StringType,
    StructField,
    StructType,
)

from sparklift import errors
from sparklift.errors import InputError, SchemaMismatchError

PARTITION_TYPES = (DateType, StringType, IntegerType, LongType, ShortType, ByteType, BooleanType)
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
# Characters Spark escapes as %XX in a partition directory name (ExternalCatalogUtils).
_PATH_ESCAPED = frozenset([chr(c) for c in range(1, 32)] + list("\"#%'*/:=?\\\x7f{[]^"))


def _nullable(t: DataType) -> DataType:
    """The same type with every nested field nullable: Delta tables here are all-nullable."""
    if isinstance(t, StructType):
        return StructType([StructField(f.name, _nullable(f.dataType), True) for f in t.fields])
    if isinstance(t, ArrayType):
        return ArrayType(_nullable(t.elementType), True)
    if isinstance(t, MapType):
        return MapType(_nullable(t.keyType), _nullable(t.valueType), True)
    return t


def table_schema(schema: StructType) -> StructType:
    """The schema a new table gets from a frame: same names and types, all nullable."""
    return _nullable(schema)  # type: ignore[return-value]


def spark_to_arrow(schema: StructType) -> pa.Schema:
    return to_arrow_schema(table_schema(schema), timezone="UTC")


def arrow_to_spark(schema: pa.Schema) -> StructType:
    return table_schema(from_arrow_schema(schema))


def check_schema(
    table: str, expected: StructType, actual: StructType, extra_allowed: bool = False, of: str = ""
) -> None:
    """Fail, naming missing, extra and mistyped columns, unless names and types match
    (``extra_allowed``: ``actual`` may have further columns). ``of`` says what ``expected``
    is in the message, e.g. " (its contract)"."""
    want = {f.name: _nullable(f.dataType) for f in expected.fields}
    got = {f.name: _nullable(f.dataType) for f in actual.fields}
    missing = [n for n in want if n not in got]
    extra = [] if extra_allowed else [n for n in got if n not in want]
    mistyped = [
        f"{n} is {got[n].simpleString()}, expected {want[n].simpleString()}"
        for n in want
        if n in got and got[n] != want[n]
    ]
    if missing or extra or mistyped:
        parts = []
        if missing:
            parts.append(f"missing columns {missing}")
        if extra:
            parts.append(f"extra columns {extra}")
        if mistyped:
            parts.append("mistyped columns [" + "; ".join(mistyped) + "]")
        raise SchemaMismatchError(f"cannot write to table {table}{of}: " + ", ".join(parts))


def cast_integers(table: str, df: DataFrame, expected: StructType) -> DataFrame:
    """``df`` with each integer column of another width cast to ``expected``'s width.

    Upstream ids arrive as int or bigint (Parquet int64 is common) and flow into outputs; a
    contract fixes one width for every reader. A value that does not fit fails the write
    naming table, column and value, whatever ``spark.sql.ansi.enabled`` says (a non-ANSI
    cast would wrap it silently)."""
    want = {f.name: f.dataType for f in expected.fields}
    for f in df.schema.fields:
        to = want.get(f.name)
        if not (isinstance(to, IntegralType) and isinstance(f.dataType, IntegralType)):
            continue
        if to == f.dataType:
            continue
        bits = {"tinyint": 8, "smallint": 16, "int": 32, "bigint": 64}[to.simpleString()]
        low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        col = F.col(f.name)
        fits = col.isNull() | col.between(F.lit(low), F.lit(high))
        head, tail = errors.marked("InputError", "\0").split("\0")  # exit 2 from the task
        message = F.concat(
            F.lit(f"{head}table {table}: {f.name} = "), col.cast("string"),
            F.lit(f" does not fit its contract's {to.simpleString()}{tail}"),
        )  # fmt: skip
        df = df.withColumn(f.name, F.when(fits, col.cast(to)).otherwise(F.raise_error(message)))
    return df


def check_partition_columns(table: str, schema: StructType, partition_by: Sequence[str]) -> None:
    fields = {f.name: f.dataType for f in schema.fields}
    for col in partition_by:
        if col not in fields:
            raise InputError(f"table {table}: partition column {col!r} is not in the frame")
        if not isinstance(fields[col], PARTITION_TYPES):
            raise InputError(
                f"table {table}: partition column {col!r} has type "
                f"{fields[col].simpleString()}; supported: date, string, integers, boolean"
            )


def encode_partition_value(value: Any) -> str | None:
    """A Python value as the string the Delta log stores in ``partitionValues``."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        raise InputError(f"timestamp partition values are not supported: {value!r}")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def escape_path_name(text: str) -> str:
    """A partition value as Spark names its directory: special characters as ``%XX``, so
    Spark's and Delta's readers parse the value back exactly."""
    return "".join(f"%{ord(ch):02X}" if ch in _PATH_ESCAPED else ch for ch in text)


def partition_dir(partition_by: Sequence[str], values: Mapping[str, str | None]) -> str:
    """Hive-style relative directory, e.g. ``date=2026-01-01``."""
    return "/".join(
        f"{escape_path_name(c)}="
        + (escape_path_name(values[c]) if values[c] is not None else NULL_PARTITION)  # type: ignore[arg-type]
        for c in partition_by
    )


def sql_literal(value: str, dtype: DataType) -> str:
    """A partition value (as the Delta log stores it) as a typed Spark SQL literal."""
    if isinstance(dtype, DateType):
        return f"DATE '{dt.date.fromisoformat(value).isoformat()}'"
    if isinstance(dtype, (IntegerType, LongType, ShortType, ByteType)):
        return str(int(value))
    if isinstance(dtype, BooleanType):
        return "true" if value == "true" else "false"
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def replace_predicate(
    replace: Mapping[str, Sequence[str | None]], schema: StructType, qualifier: str = ""
) -> str:
    """``replaceWhere`` SQL from typed literals: ``col IN (...)``, ``col IS NULL`` for null
    (columns prefixed with ``qualifier``, e.g. ``t.``, in a merge)."""
    clauses = []
    for col, values in replace.items():
        name = qualifier + "`" + col.replace("`", "``") + "`"
        dtype = schema[col].dataType
        terms = []
        literals = [sql_literal(v, dtype) for v in values if v is not None]
        if literals:
            terms.append(f"{name} IN ({', '.join(literals)})")
        if any(v is None for v in values):
            terms.append(f"{name} IS NULL")
        clauses.append("(" + " OR ".join(terms) + ")")
    return " AND ".join(clauses)


def as_values(value: Any) -> list[Any]:
    """A ``replace_where`` value as the list of values it means (one value or several)."""
    return list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]


def normalize_replace_where(
    table: str, partition_by: Sequence[str], replace_where: Mapping[str, Any]
) -> dict[str, list[str | None]]:
    """``{column: value or values}`` on partition columns -> ``{column: [log strings]}``."""
    if not replace_where:
        raise InputError(f"table {table}: replace_where is empty; use mode='overwrite' instead")
    out: dict[str, list[str | None]] = {}
    for col, value in replace_where.items():
        if col not in partition_by:
            raise InputError(
                f"table {table}: replace_where column {col!r} is not a partition column "
                f"(partitioned by {list(partition_by)})"
            )
        values = as_values(value)
        if not values:
            raise InputError(f"table {table}: replace_where {col!r} has no values")
        out[col] = sorted({encode_partition_value(v) for v in values}, key=lambda v: v or "")
    return out
