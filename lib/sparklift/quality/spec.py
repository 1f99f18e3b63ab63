"""A table's checks: its contract's (schema, key, not null) merged with ``quality.tables``.

Kept as one plain object so that the metrics of a partition (:mod:`.metrics`) and their
evaluation (:mod:`.rules`) read the same list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pyspark.sql.types import DateType, StructType

from sparklift.config import QualityConfig, TableChecks
from sparklift.contracts import CONTRACTS
from sparklift.errors import InputError


@dataclass(frozen=True)
class TableSpec:
    """Everything checked on one table (its partition of the run date, if it has one)."""

    table: str
    schema: StructType | None  # the contract's columns (None: a table without contract)
    open_schema: bool  # further columns allowed
    date_column: str | None
    key: tuple[str, ...]
    not_null: tuple[str, ...]
    checks: TableChecks
    severity: dict[str, str] = field(default_factory=dict)  # every check kind

    def severity_of(self, kind: str) -> str:
        return self.severity[kind]


def table_spec(table: str, conf: QualityConfig) -> TableSpec:
    """The checks of ``table``: from its contract and its entry of ``quality.tables``."""
    checks = conf.tables.get(table, TableChecks())
    c = CONTRACTS.get(table)
    if c is None and table not in conf.tables:
        raise InputError(
            f"table {table} has no contract and no entry in quality.tables: nothing to check"
        )
    date_column = checks.date_column
    if date_column is None and c is not None:
        types = {f.name: f.dataType for f in c.schema.fields}
        dates = [p for p in c.partition_by if isinstance(types.get(p), DateType)]
        date_column = dates[0] if dates else None
    key = c.key if c is not None else ()
    nulls = set(c.nullable_key) if c is not None else set()
    always = [k for k in key if k not in nulls]  # the key, but for a dimension some rows lack
    not_null = tuple(dict.fromkeys([*always, *(checks.not_null or ())]))
    return TableSpec(
        table=table,
        schema=c.schema if c is not None else None,
        open_schema=c is None or c.extra is not None,
        date_column=date_column,
        key=key,
        not_null=not_null,
        checks=checks,
        severity=conf.severity | checks.severity,
    )


def missing_columns(spec: TableSpec, columns: list[str]) -> list[str]:
    """The columns ``spec`` checks that the table lacks (the schema check names them; the
    other checks skip them)."""
    c = spec.checks
    wanted = {*spec.not_null, *spec.key, *c.ranges, *c.accepted, *c.references}
    a = c.anomaly
    wanted |= {*a.null_share, *a.mean, *a.quantiles, *a.distinct, *a.psi}
    if spec.date_column:
        wanted.add(spec.date_column)
    return sorted(wanted - set(columns))


def psi_edges(metrics: Mapping[str, float | None], column: str, bins: int) -> list[float] | None:
    """The ``bins - 1`` bin edges of ``column`` stored in ``metrics`` (None: none, or edges
    of another number of bins)."""
    edges = [metrics.get(f"psi_edge:{column}:{i}") for i in range(1, bins)]
    if any(e is None for e in edges) or f"psi_edge:{column}:{bins}" in metrics:
        return None
    return [float(e) for e in edges]  # type: ignore[arg-type]
