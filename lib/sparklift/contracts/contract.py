"""What a table contract is: a table's name, schema, partitioning, key and grain."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql.types import DataType, StructField, StructType


def fields(*columns: tuple[str, DataType]) -> StructType:
    """A schema from ``(name, type)`` pairs (all nullable, as every table here is)."""
    return StructType([StructField(name, kind) for name, kind in columns])


@dataclass(frozen=True)
class TableContract:
    """One table's contract, the single place its shape is declared.

    ``schema`` is every column of a table sparklift owns; of an *open* table (``extra``
    says what else it may hold, e.g. feature columns) it is the columns sparklift needs,
    and further columns are allowed. ``partition_by`` is how ``Catalog.write`` lays the
    table out; ``key`` the columns that identify a row (``nullable_key``: those of them
    null on some rows, as a row's place in a dimension only some rows have, such as the
    event week of a week's effect); ``description`` its grain.
    """

    name: str
    schema: StructType
    partition_by: tuple[str, ...]
    key: tuple[str, ...]
    description: str
    extra: str | None = None
    nullable_key: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        columns = set(self.schema.fieldNames())
        unknown = [c for c in (*self.partition_by, *self.key) if c not in columns]
        if unknown:
            raise ValueError(f"contract {self.name}: columns {unknown} are not in its schema")
        if not set(self.nullable_key) <= set(self.key):
            raise ValueError(f"contract {self.name}: nullable_key {self.nullable_key} not in key")

    @property
    def columns(self) -> list[str]:
        return self.schema.fieldNames()
